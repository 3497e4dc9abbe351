package explain

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
)

// WriteAuthz prints r as `weftctl authz check` does: the pod, a table of the policies (a
// policy with several rules continues on the next lines, "or …"), the evaluation and notes.
func WriteAuthz(w io.Writer, r *AuthzReport) error {
	var b strings.Builder
	writePod(&b, r.Pod)
	if len(r.Policies) == 0 {
		b.WriteString("No AuthorizationPolicy applies to this workload.\n")
	} else {
		tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "POLICY\tACTION\tSCOPE\tENFORCED\tRULES")
		for _, p := range r.Policies {
			rules := p.Rules
			if len(rules) == 0 {
				rules = []string{"-"}
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", p.Policy, p.Action, p.Scope, p.Enforced, rules[0])
			for _, rule := range rules[1:] {
				fmt.Fprintf(tw, "\t\t\t\tor %s\n", rule)
			}
		}
		tw.Flush()
	}
	b.WriteString("\nEvaluation:\n")
	for _, e := range r.Evaluation {
		fmt.Fprintf(&b, "  %s\n", e)
	}
	writeNotes(&b, r.Notes)
	return write(w, b.String())
}

// WriteTLS prints r as `weftctl tls-check` does.
func WriteTLS(w io.Writer, r *TLSReport) error {
	var b strings.Builder
	writePod(&b, r.Pod)
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "PORT\tNAME\tMODE\tDECIDED BY\tNOTE")
	for _, p := range r.Ports {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", p.Port, or(p.Name, "-"), p.Mode, p.DecidedBy, p.Note)
	}
	tw.Flush()
	if len(r.Considered) > 0 {
		b.WriteString("\nPeerAuthentications in force, most specific first:\n")
		for _, c := range r.Considered {
			fmt.Fprintf(&b, "  %s\n", c)
		}
	} else {
		b.WriteString("\nNo PeerAuthentication applies: the mesh default is PERMISSIVE.\n")
	}
	writeNotes(&b, r.Notes)
	return write(w, b.String())
}

func writePod(b *strings.Builder, p Pod) {
	fmt.Fprintf(b, "Pod:       %s", p.Pod)
	if p.Node != "" {
		fmt.Fprintf(b, " on %s", p.Node)
	}
	fmt.Fprintf(b, "\nIdentity:  %s\nMesh:      %s\n\n", p.Principal, p.Enrollment)
}

func writeNotes(b *strings.Builder, notes []string) {
	if len(notes) == 0 {
		return
	}
	b.WriteString("\nNotes:\n")
	for _, n := range notes {
		fmt.Fprintf(b, "  - %s\n", n)
	}
}

// write writes s without the trailing blanks that tabwriter leaves after an empty last column.
func write(w io.Writer, s string) error {
	lines := strings.Split(s, "\n")
	for i, l := range lines {
		lines[i] = strings.TrimRight(l, " ")
	}
	_, err := io.WriteString(w, strings.Join(lines, "\n"))
	return err
}

func or(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
