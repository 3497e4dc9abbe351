package authz

import (
	"net/netip"
	"strconv"
	"strings"

	"github.com/weftmesh/weft/nodeagent/state"
)

// Conn is what the engine knows of a connection at L4.
type Conn struct {
	// SourcePrincipal is the peer's mTLS identity without the "spiffe://" scheme, e.g.
	// "cluster.local/ns/shop/sa/gw"; empty for a plaintext connection. A leading "spiffe://"
	// is ignored.
	SourcePrincipal string
	// SourceNamespace is the namespace of SourcePrincipal; when empty it is read from the
	// principal ([PrincipalNamespace]). It is ignored for a plaintext connection.
	SourceNamespace string
	SourceIP        netip.Addr
	DestinationIP   netip.Addr
	DestinationPort uint16
}

// Plaintext reports whether the connection carries no mTLS identity.
func (c *Conn) Plaintext() bool { return c.SourcePrincipal == "" }

// Decision is the outcome of [Evaluate].
type Decision struct {
	Allowed bool
	// Policy is "<namespace>/<name>" of the policy that decided: the DENY policy that
	// matched, or the ALLOW policy that matched. It is empty when no policy decided: the
	// default allow (no ALLOW policy applies) or the deny because ALLOW policies apply and
	// none matched.
	Policy string
	// Action is the deciding policy's action; ALLOW when Policy is empty (the ALLOW policies
	// decided by their absence or by none matching).
	Action state.AuthorizationAction
	// Rule is the index of the deciding policy's rule that matched, -1 when Policy is empty.
	Rule int
	// Allows is the number of ALLOW policies that apply.
	Allows int
	// Audited lists "<namespace>/<name>" of the AUDIT policies that matched; nil when none.
	Audited []string
}

// Reason returns a one-line explanation for logs, e.g. "denied by DENY policy
// shop/block-10: rule 0 matched" or "denied: no ALLOW policy matched (3 apply)".
func (d Decision) Reason() string {
	var b strings.Builder
	switch {
	case d.Policy != "":
		if d.Allowed {
			b.WriteString("allowed by ")
		} else {
			b.WriteString("denied by ")
		}
		b.WriteString(d.Action.String())
		b.WriteString(" policy ")
		b.WriteString(d.Policy)
		if d.Rule >= 0 {
			b.WriteString(": rule ")
			b.WriteString(strconv.Itoa(d.Rule))
			b.WriteString(" matched")
		} else {
			b.WriteString(": unknown action, denied (fail closed)")
		}
	case d.Allowed:
		b.WriteString("allowed: no ALLOW policy applies")
	default:
		b.WriteString("denied: no ALLOW policy matched (")
		b.WriteString(strconv.Itoa(d.Allows))
		b.WriteString(" apply)")
	}
	if len(d.Audited) > 0 {
		b.WriteString("; audited by ")
		b.WriteString(strings.Join(d.Audited, ", "))
	}
	return b.String()
}

// Evaluate decides whether c is allowed by policies, the policies that apply to its
// destination workload ([state.Snapshot.PoliciesFor]), in Istio's order: any matching DENY
// denies; else, when ALLOW policies apply, one must match; else the connection is allowed.
// AUDIT policies that match are listed in Decision.Audited. A policy whose action is unknown
// (a snapshot never has one) denies, to fail closed.
//
// Evaluate does not allocate unless an AUDIT policy matches.
func Evaluate(policies []*state.Authorization, c Conn) Decision {
	in := prepare(&c)
	var audited []string
	allows := 0
	for _, p := range policies {
		switch p.Action {
		case state.ActionAllow:
			allows++
		case state.ActionAudit:
			if matchRules(p.Rules, &in) >= 0 {
				audited = append(audited, p.Key())
			}
		}
	}
	for _, p := range policies {
		switch p.Action {
		case state.ActionAllow, state.ActionAudit:
			continue
		case state.ActionDeny:
			if r := matchRules(p.Rules, &in); r >= 0 {
				return Decision{Policy: p.Key(), Action: state.ActionDeny, Rule: r, Allows: allows, Audited: audited}
			}
		default:
			return Decision{Policy: p.Key(), Action: p.Action, Rule: -1, Allows: allows, Audited: audited}
		}
	}
	for _, p := range policies {
		if p.Action != state.ActionAllow {
			continue
		}
		if r := matchRules(p.Rules, &in); r >= 0 {
			return Decision{Allowed: true, Policy: p.Key(), Action: state.ActionAllow, Rule: r, Allows: allows, Audited: audited}
		}
	}
	return Decision{Allowed: allows == 0, Action: state.ActionAllow, Rule: -1, Allows: allows, Audited: audited}
}

// Matches reports whether p matches c, and which rule: the index of the first rule that
// matches, or -1.
func Matches(p *state.Authorization, c Conn) (bool, int) {
	in := prepare(&c)
	r := matchRules(p.Rules, &in)
	return r >= 0, r
}

// PrincipalNamespace returns the namespace of a principal
// "<trust domain>/ns/<namespace>/sa/<service account>" (with or without "spiffe://"), or ""
// when it has none. It does not allocate.
func PrincipalNamespace(principal string) string {
	principal = strings.TrimPrefix(principal, "spiffe://")
	_, rest, ok := strings.Cut(principal, "/ns/")
	if !ok {
		return ""
	}
	ns, _, ok := strings.Cut(rest, "/sa/")
	if !ok || strings.Contains(ns, "/") {
		return ""
	}
	return ns
}
