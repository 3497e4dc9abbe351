// Package explain answers weftctl's questions about one pod from the same translation the
// controller runs ([translate.Build]): which AuthorizationPolicies apply to its workload, why,
// whether and how far each is enforced, and which mutual TLS mode each of its ports gets from
// which PeerAuthentication. It is pure: it takes a [translate.Input] and [Options] and returns
// rows; [WriteAuthz] and [WriteTLS] print them as tables.
package explain

import (
	"cmp"
	"fmt"
	"slices"
	"strings"

	securityv1beta1 "istio.io/api/security/v1beta1"
	securityv1 "istio.io/client-go/pkg/apis/security/v1"
	corev1 "k8s.io/api/core/v1"

	"github.com/weftmesh/weft/api"
	workloadv1 "github.com/weftmesh/weft/api/workload/v1"
	"github.com/weftmesh/weft/controller/translate"
)

// Options say which pod to explain and how the controller translates (its trust domain and
// root namespace must match the controller's flags).
type Options struct {
	Translate translate.Options
	Namespace string // the pod's namespace
	Pod       string // the pod's name
}

// PodNotFoundError is returned when the pod is not in the input.
type PodNotFoundError struct {
	Namespace, Name string
	// Elsewhere lists the namespaces that have a pod of that name.
	Elsewhere []string
}

func (e *PodNotFoundError) Error() string {
	msg := fmt.Sprintf("pod %q not found in namespace %q", e.Name, e.Namespace)
	if len(e.Elsewhere) > 0 {
		return msg + fmt.Sprintf("; a pod of that name is in namespace %s: add -n %s", strings.Join(e.Elsewhere, ", "), e.Elsewhere[0])
	}
	return msg + "; name the pod's namespace with -n <namespace>"
}

// Pod describes the pod and whether Weft has it in the mesh.
type Pod struct {
	Pod            string `json:"pod"` // "<namespace>/<name>"
	Node           string `json:"node,omitempty"`
	ServiceAccount string `json:"serviceAccount"`
	// Principal is the workload's identity in AuthorizationPolicy form ("<td>/ns/<ns>/sa/<sa>").
	Principal string `json:"principal"`
	Enrolled  bool   `json:"enrolled"`
	// Enrollment says why the pod is or is not in the mesh.
	Enrollment string `json:"enrollment"`
}

// AuthzReport is the answer of `weftctl authz check`.
type AuthzReport struct {
	Pod
	// Policies are the AuthorizationPolicies that apply to the pod's workload, in evaluation
	// order (CUSTOM, DENY, ALLOW, AUDIT), then by namespace and name.
	Policies []AuthzRow `json:"policies"`
	// Evaluation is how the policies combine, for this workload.
	Evaluation []string `json:"evaluation"`
	// Notes are the full condition messages of the policies not enforced as written, and notes
	// of the caller (e.g. CRDs that are not installed).
	Notes []string `json:"notes,omitempty"`
}

// AuthzRow is one AuthorizationPolicy that applies to the workload.
type AuthzRow struct {
	Policy string `json:"policy"` // "<namespace>/<name>"
	Action string `json:"action"` // ALLOW, DENY, AUDIT, CUSTOM
	// Scope says why the policy applies: mesh-wide, namespace, the selector's labels that
	// matched, or targetRefs.
	Scope string `json:"scope"`
	// Enforced is "yes", "partly: …" or "no: …", from the policy's condition.
	Enforced string `json:"enforced"`
	// Rules are the L4 checks the node agent makes, one entry per rule (rules are OR-ed).
	// Empty when the policy is not translated.
	Rules     []string                   `json:"rules"`
	Condition *translate.PolicyCondition `json:"condition,omitempty"`

	translated bool // the node agents receive the policy
}

// TLSReport is the answer of `weftctl tls-check`.
type TLSReport struct {
	Pod
	// Ports has a row per container port, per port the workload policy names, and a last row
	// "*" for every other port.
	Ports []TLSRow `json:"ports"`
	// Considered lists the PeerAuthentications in force for the pod, most specific first.
	Considered []string `json:"considered"`
	Notes      []string `json:"notes,omitempty"`
}

// TLSRow is the mutual TLS mode of one port.
type TLSRow struct {
	Port      string `json:"port"` // "8080/TCP", or "*" for the other ports
	Name      string `json:"name,omitempty"`
	Mode      string `json:"mode"`      // STRICT, PERMISSIVE or DISABLE
	DecidedBy string `json:"decidedBy"` // "<ns>/<name> (<level>)" or "default (PERMISSIVE)"
	Note      string `json:"note,omitempty"`
}

// subject is the pod with the translation.
type subject struct {
	pod      *corev1.Pod
	mesh     *translate.Mesh
	workload *workloadv1.Workload // nil when the pod is not a workload (finished, host network)
	info     Pod
}

func find(in translate.Input, o Options) (*subject, error) {
	var pod *corev1.Pod
	var elsewhere []string
	for _, p := range in.Pods {
		if p.Name != o.Pod {
			continue
		}
		if p.Namespace == o.Namespace {
			pod = p
		} else {
			elsewhere = append(elsewhere, p.Namespace)
		}
	}
	if pod == nil {
		slices.Sort(elsewhere)
		return nil, &PodNotFoundError{Namespace: o.Namespace, Name: o.Pod, Elsewhere: slices.Compact(elsewhere)}
	}
	s := &subject{pod: pod, mesh: translate.Build(in, o.Translate)}
	for _, r := range s.mesh.Resources {
		if w := r.Address.GetWorkload(); w != nil && w.Namespace == pod.Namespace && w.Name == pod.Name {
			s.workload = w
		}
	}
	sa := cmp.Or(pod.Spec.ServiceAccountName, "default")
	s.info = Pod{
		Pod:            pod.Namespace + "/" + pod.Name,
		Node:           pod.Spec.NodeName,
		ServiceAccount: sa,
		Principal:      cmp.Or(o.Translate.TrustDomain, api.DefaultTrustDomain) + "/ns/" + pod.Namespace + "/sa/" + sa,
		Enrolled:       s.workload.GetTunnelProtocol() == workloadv1.TunnelProtocol_HBONE,
	}
	var nsLabels map[string]string
	for _, ns := range in.Namespaces {
		if ns.Name == pod.Namespace {
			nsLabels = ns.Labels
		}
	}
	s.info.Enrollment = enrollment(pod, nsLabels, s.workload, s.info.Enrolled)
	return s, nil
}

// enrollment says why the pod is in the mesh or not.
func enrollment(pod *corev1.Pod, nsLabels map[string]string, w *workloadv1.Workload, enrolled bool) string {
	label := api.LabelDataplaneMode
	if enrolled {
		if pod.Labels[label] == api.DataplaneModeAmbient {
			return fmt.Sprintf("enrolled: the pod is labelled %s=%s", label, api.DataplaneModeAmbient)
		}
		return fmt.Sprintf("enrolled: namespace %s is labelled %s=%s", pod.Namespace, label, api.DataplaneModeAmbient)
	}
	const not = "not enrolled: policies are not enforced by Weft"
	switch {
	case pod.Spec.HostNetwork:
		return not + " (a host-network pod shares its node's address and is never in the mesh)"
	case pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed:
		return not + fmt.Sprintf(" (the pod has finished: %s)", pod.Status.Phase)
	case w == nil:
		return not + " yet (the pod is not scheduled)"
	case pod.Labels[label] == api.DataplaneModeNone:
		return not + fmt.Sprintf(" (the pod opts out with the label %s=%s)", label, api.DataplaneModeNone)
	}
	return not + fmt.Sprintf(" (label namespace %s or the pod %s=%s to enroll it)", pod.Namespace, label, api.DataplaneModeAmbient)
}

// Authz explains which AuthorizationPolicies apply to the workload of the pod o names.
func Authz(in translate.Input, o Options) (*AuthzReport, error) {
	s, err := find(in, o)
	if err != nil {
		return nil, err
	}
	root := cmp.Or(o.Translate.RootNamespace, "istio-system")
	services := map[string]*corev1.Service{}
	for _, svc := range in.Services {
		services[svc.Namespace+"/"+svc.Name] = svc
	}
	r := &AuthzReport{Pod: s.info, Policies: []AuthzRow{}}
	for _, ap := range in.AuthorizationPolicies {
		scope, ok := applies(ap, s.pod, root, services)
		if !ok {
			continue
		}
		key := translate.PolicyKey(ap.Namespace, ap.Name)
		auth := s.mesh.Resources[translate.AuthorizationName(ap.Namespace, ap.Name)].Address.GetAuthorization()
		if auth != nil && auth.Scope == workloadv1.AuthorizationScope_WORKLOAD_SELECTOR && s.info.Enrolled &&
			!slices.Contains(s.workload.AuthorizationPolicies, translate.AuthorizationName(ap.Namespace, ap.Name)) {
			continue // the translation is the authority on selection
		}
		row := AuthzRow{Policy: key, Action: ap.Spec.GetAction().String(), Scope: scope, Rules: []string{}, translated: auth != nil}
		if c, ok := s.mesh.PolicyStatus[key]; ok {
			row.Condition = &c
		}
		row.Enforced = enforced(ap, row.Condition, s.info.Enrolled)
		if auth != nil {
			row.Rules = rules(auth)
		}
		if c := row.Condition; c != nil && (c.Reason != translate.ReasonAccepted || c.Message != "attached to ztunnel") {
			r.Notes = append(r.Notes, key+": "+c.Message)
		}
		r.Policies = append(r.Policies, row)
	}
	slices.SortFunc(r.Policies, func(a, b AuthzRow) int {
		return cmp.Or(cmp.Compare(actionOrder(a.Action), actionOrder(b.Action)), cmp.Compare(a.Policy, b.Policy))
	})
	slices.Sort(r.Notes)
	r.Evaluation = evaluation(r)
	return r, nil
}

func actionOrder(action string) int {
	switch action {
	case "CUSTOM":
		return 0
	case "DENY":
		return 1
	case "ALLOW":
		return 2
	}
	return 3
}

// applies reports whether ap applies to pod and why (the SCOPE column). It follows the scopes
// of the translation (see translate's package documentation); for an enrolled workload, Authz
// checks a selector's answer against the workload's authorization_policies.
func applies(ap *securityv1.AuthorizationPolicy, pod *corev1.Pod, root string, services map[string]*corev1.Service) (string, bool) {
	refs := slices.Clone(ap.Spec.GetTargetRefs())
	if ap.Spec.GetTargetRef() != nil {
		refs = append(refs, ap.Spec.GetTargetRef())
	}
	if ap.Spec.GetSelector() == nil && len(refs) > 0 {
		for _, ref := range refs {
			if ref.GetKind() != "Service" || (ref.GetGroup() != "" && ref.GetGroup() != "core") {
				continue
			}
			key := cmp.Or(ref.GetNamespace(), ap.Namespace) + "/" + ref.GetName()
			svc := services[key]
			if svc == nil || svc.Namespace != pod.Namespace || len(svc.Spec.Selector) == 0 || !matches(svc.Spec.Selector, pod.Labels) {
				continue
			}
			return "targetRefs Service " + key + " (L7: enforced by its waypoint)", true
		}
		return "", false
	}
	if ap.Namespace != pod.Namespace && ap.Namespace != root {
		return "", false
	}
	sel := ap.Spec.GetSelector().GetMatchLabels()
	if len(sel) == 0 {
		if ap.Namespace == root {
			return "mesh-wide (root namespace " + root + ")", true
		}
		return "namespace " + ap.Namespace, true
	}
	if !matches(sel, pod.Labels) {
		return "", false
	}
	var kv []string
	for k, v := range sel {
		kv = append(kv, k+"="+v)
	}
	slices.Sort(kv)
	scope := "selector " + strings.Join(kv, ",")
	if ap.Namespace == root && pod.Namespace != root {
		scope += " (root namespace: every namespace)"
	}
	return scope, true
}

func matches(sel, labels map[string]string) bool {
	for k, v := range sel {
		if l, ok := labels[k]; !ok || l != v {
			return false
		}
	}
	return true
}

// enforced is the ENFORCED column: from the policy's condition, "no" for a pod outside the mesh.
func enforced(ap *securityv1.AuthorizationPolicy, c *translate.PolicyCondition, enrolled bool) string {
	switch {
	case !enrolled:
		return "no: pod not in the mesh"
	case c == nil:
		return "unknown: no condition"
	case c.Type == translate.ConditionWaypointAccepted && c.Status:
		return "yes, at the waypoint"
	case c.Type == translate.ConditionWaypointAccepted:
		return "no: needs a waypoint (see its WaypointAccepted condition)"
	case !c.Status && c.Reason == translate.ReasonInvalid:
		return "no: invalid"
	case !c.Status && ap.Spec.GetAction() == securityv1beta1.AuthorizationPolicy_CUSTOM:
		return "no: CUSTOM needs a waypoint"
	case !c.Status && strings.Contains(c.Message, "dry-run"):
		return "no: dry-run"
	case !c.Status:
		return "no: " + c.Reason
	case c.Reason == translate.ReasonAccepted:
		return "yes"
	case c.Reason == translate.ReasonUnsupportedValue:
		return "partly: fields L4 cannot check"
	case c.Reason == translate.ReasonPartiallyInvalid:
		return "partly: invalid fields"
	}
	return "partly: " + c.Reason
}

// evaluation says how the policies combine for the workload.
func evaluation(r *AuthzReport) []string {
	out := []string{"Order: CUSTOM, then DENY (any matching DENY policy denies), then ALLOW (when an ALLOW policy applies, a connection must match one); with no ALLOW policy, connections not denied are allowed. AUDIT only records."}
	if !r.Enrolled {
		return append(out, "This pod is not in the mesh: Weft enforces none of these policies on it.")
	}
	var allow, deny []string
	for _, p := range r.Policies {
		if !p.translated {
			continue
		}
		switch p.Action {
		case "ALLOW":
			allow = append(allow, p.Policy)
		case "DENY":
			deny = append(deny, p.Policy)
		}
	}
	if len(deny) > 0 {
		out = append(out, fmt.Sprintf("Enforced DENY: %s.", strings.Join(deny, ", ")))
	}
	if len(allow) == 0 {
		return append(out, "No ALLOW policy is enforced for this workload: every connection that no DENY policy matches is allowed.")
	}
	return append(out, fmt.Sprintf("Enforced ALLOW: %s; a connection that matches none of their rules is denied.", strings.Join(allow, ", ")))
}

// rules summarises the L4 rules of an authorization, one string per rule.
func rules(a *workloadv1.Authorization) []string {
	if len(a.Rules) == 0 {
		return []string{"no rule left: matches no connection"}
	}
	var out []string
	for _, r := range a.Rules {
		if len(r.Clauses) == 0 {
			out = append(out, "any connection")
			continue
		}
		var clauses []string
		for _, c := range r.Clauses {
			var ms []string
			for _, m := range c.Matches {
				ms = append(ms, match(m))
			}
			s := strings.Join(ms, " or ")
			if len(ms) == 0 {
				s = "any connection"
			} else if len(ms) > 1 && len(r.Clauses) > 1 {
				s = "(" + s + ")"
			}
			clauses = append(clauses, s)
		}
		out = append(out, strings.Join(clauses, " and "))
	}
	return out
}

// match renders one match as Istio's field names: "from principals X and notNamespaces Y to ports 8080".
func match(m *workloadv1.AuthorizationMatch) string {
	var from, to []string
	add := func(dst *[]string, name string, vs []string) {
		switch len(vs) {
		case 0:
		case 1:
			*dst = append(*dst, name+" "+vs[0])
		default:
			*dst = append(*dst, name+" ["+strings.Join(vs, ", ")+"]")
		}
	}
	add(&from, "principals", strs(m.Principals))
	add(&from, "notPrincipals", strs(m.NotPrincipals))
	add(&from, "namespaces", strs(m.Namespaces))
	add(&from, "notNamespaces", strs(m.NotNamespaces))
	add(&from, "ipBlocks", m.SourceIps)
	add(&from, "notIpBlocks", m.NotSourceIps)
	add(&to, "ports", ports(m.DestinationPorts))
	add(&to, "notPorts", ports(m.NotDestinationPorts))
	add(&to, "ip", m.DestinationIps)
	add(&to, "notIp", m.NotDestinationIps)
	var parts []string
	if len(from) > 0 {
		parts = append(parts, "from "+strings.Join(from, " and "))
	}
	if len(to) > 0 {
		parts = append(parts, "to "+strings.Join(to, " and "))
	}
	if len(parts) == 0 {
		return "any connection"
	}
	return strings.Join(parts, " ")
}

func strs(ms []*workloadv1.StringMatch) []string {
	var out []string
	for _, m := range ms {
		switch v := m.Match.(type) {
		case *workloadv1.StringMatch_Exact:
			out = append(out, v.Exact)
		case *workloadv1.StringMatch_Prefix:
			out = append(out, v.Prefix+"*")
		case *workloadv1.StringMatch_Suffix:
			out = append(out, "*"+v.Suffix)
		case *workloadv1.StringMatch_Presence:
			out = append(out, "*")
		}
	}
	return out
}

func ports(ps []uint32) []string {
	var out []string
	for _, p := range ps {
		out = append(out, fmt.Sprint(p))
	}
	return out
}

// TLS explains the mutual TLS mode of each port of the pod o names.
func TLS(in translate.Input, o Options) (*TLSReport, error) {
	s, err := find(in, o)
	if err != nil {
		return nil, err
	}
	e := translate.ExplainPeerAuthentication(in, o.Translate, s.pod)
	r := &TLSReport{Pod: s.info, Ports: []TLSRow{}, Considered: []string{}}
	excluded := map[uint32]bool{}
	for _, p := range s.workload.GetExcludeInboundPorts() {
		excluded[p] = true
	}
	row := func(port uint32, proto corev1.Protocol, name string) TLSRow {
		d, ok := e.Ports[port]
		by := decidedBy(e.Default)
		if !ok {
			d = e.Default
		} else if d != e.Default {
			by = decidedBy(d) + ", portLevelMtls"
		}
		t := TLSRow{Port: fmt.Sprintf("%d/%s", port, cmp.Or(proto, corev1.ProtocolTCP)), Name: name, Mode: d.Mode.String(), DecidedBy: by}
		switch {
		case proto != "" && proto != corev1.ProtocolTCP:
			t.Note = fmt.Sprintf("%s is not captured: Weft carries TCP only", proto)
		case excluded[port]:
			t.Note = "not captured (" + api.AnnotationExcludeInboundPorts + "): plaintext reaches the app, the mode is not applied"
		}
		return t
	}
	seen := map[uint32]bool{}
	var rows []TLSRow
	var sortKey []uint32
	for _, c := range slices.Concat(s.pod.Spec.InitContainers, s.pod.Spec.Containers) {
		for _, p := range c.Ports {
			port := uint32(p.ContainerPort)
			if p.Protocol == "" || p.Protocol == corev1.ProtocolTCP {
				if seen[port] {
					continue
				}
				seen[port] = true
			}
			rows = append(rows, row(port, p.Protocol, cmp.Or(p.Name, c.Name)))
			sortKey = append(sortKey, port)
		}
	}
	for port := range e.Ports {
		if !seen[port] {
			t := row(port, corev1.ProtocolTCP, "")
			if t.Note == "" {
				t.Note = "named by portLevelMtls, not declared by a container"
			}
			rows = append(rows, t)
			sortKey = append(sortKey, port)
		}
	}
	idx := make([]int, len(rows))
	for i := range idx {
		idx[i] = i
	}
	slices.SortStableFunc(idx, func(a, b int) int {
		return cmp.Or(cmp.Compare(sortKey[a], sortKey[b]), cmp.Compare(rows[a].Port, rows[b].Port))
	})
	for _, i := range idx {
		r.Ports = append(r.Ports, rows[i])
	}
	r.Ports = append(r.Ports, TLSRow{Port: "*", Name: "(other ports)", Mode: e.Default.Mode.String(), DecidedBy: decidedBy(e.Default)})

	for _, d := range e.Considered {
		mode := d.Mode.String()
		if d.Mode == workloadv1.MTLSMode_UNSET {
			mode = "UNSET (inherits)"
		}
		r.Considered = append(r.Considered, fmt.Sprintf("%s (%s): %s", d.Policy, d.Level, mode))
	}
	for _, p := range e.Ignored {
		r.Notes = append(r.Notes, p+" is ignored: an older PeerAuthentication at the same level wins (as in Istio); delete one of them")
	}
	if !r.Enrolled {
		r.Notes = append(r.Notes, "The pod is not in the mesh: Weft applies no PeerAuthentication to it, and it accepts plaintext on every port. The modes above apply once it is enrolled.")
	}
	return r, nil
}

func decidedBy(d translate.PeerAuthDecision) string {
	if d.Level == translate.PeerAuthLevelDefault {
		return "default (PERMISSIVE)"
	}
	return fmt.Sprintf("%s (%s)", d.Policy, d.Level)
}
