package translate

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	securityv1beta1 "istio.io/api/security/v1beta1"
	typev1beta1 "istio.io/api/type/v1beta1"
	securityv1 "istio.io/client-go/pkg/apis/security/v1"

	"github.com/weftmesh/weft/api"
	workloadv1 "github.com/weftmesh/weft/api/workload/v1"
)

// AuthorizationName is the resource name of an AuthorizationPolicy in workload discovery,
// "authorization/<namespace>/<name>".
func AuthorizationName(namespace, name string) string {
	return "authorization/" + namespace + "/" + name
}

// The condition types Istio's ambient controller writes into an AuthorizationPolicy's status:
// ZtunnelAccepted for a policy enforced at L4 (selector or namespace scope), WaypointAccepted
// for one attached to a waypoint (targetRefs). A policy carries one of them.
const (
	ConditionZtunnelAccepted  = "ZtunnelAccepted"
	ConditionWaypointAccepted = "WaypointAccepted"
)

// Condition reasons, Istio's where Istio has one.
const (
	// ReasonAccepted: enforced as written.
	ReasonAccepted = "Accepted"
	// ReasonUnsupportedValue: enforced without parts L4 cannot check (HTTP attributes,
	// connection.sni), or not enforced at all (CUSTOM, dry-run); the message says which.
	ReasonUnsupportedValue = "UnsupportedValue"
	// ReasonInvalid: not enforced because the policy is malformed.
	ReasonInvalid = "Invalid"
	// ReasonPartiallyInvalid: enforced without its malformed parts, in the safe direction.
	ReasonPartiallyInvalid = "PartiallyInvalid"
	// ReasonAncestorNotBound: a targetRefs policy whose Service has no waypoint.
	ReasonAncestorNotBound = "AncestorNotBound"
	// ReasonTargetNotFound: a targetRefs policy whose target does not exist here.
	ReasonTargetNotFound = "TargetNotFound"
)

// PolicyCondition is the condition the controller reports on one AuthorizationPolicy.
type PolicyCondition struct {
	Type    string `json:"type"`
	Status  bool   `json:"status"` // true: the policy (or part of it) is enforced
	Reason  string `json:"reason"`
	Message string `json:"message"`
	// ObservedGeneration is the policy's metadata.generation the condition describes.
	ObservedGeneration int64 `json:"observedGeneration"`
}

// PolicyKey is the key of Mesh.PolicyStatus: "<namespace>/<name>".
func PolicyKey(namespace, name string) string { return namespace + "/" + name }

// policy is one translated AuthorizationPolicy.
type policy struct {
	name     string                    // resource name
	auth     *workloadv1.Authorization // nil when not translated
	selector map[string]string         // WORKLOAD_SELECTOR: the labels a workload must carry
	cond     PolicyCondition           // its status
	warning  error                     // set when the policy is malformed or not enforced
}

const annotationDryRun = "istio.io/dry-run"

// authorization translates an AuthorizationPolicy as istiod does for ztunnel
// (pilot/pkg/serviceregistry/ambient/authorization.go), with these differences, each in the
// direction that never allows more than the policy says:
//   - a field that is malformed (bad CIDR, port, value) is handled like an HTTP attribute: in
//     ALLOW its rule is dropped, in DENY and AUDIT the field is removed (istiod skips the bad
//     value, which in ALLOW can allow more);
//   - a DENY rule whose source, operation or condition loses every field matches every
//     connection (Istio's documented L4 semantics; ztunnel skips such an empty match, which
//     makes the rule a no-op);
//   - AUDIT is translated (ztunnel does not support it);
//   - trustDomains, notTrustDomains and source.trustDomain are treated as not checkable at L4
//     (istiod ignores the first two).
//
// serviceAccounts hold "<ns>/<sa>" (or "<sa>" in the policy's namespace) and become principal
// suffixes "/ns/<ns>/sa/<sa>", which is exact: neither a trust domain nor a Kubernetes name
// contains "/". services maps the "<namespace>/<name>" of every Service to the key of the
// waypoint it is bound to ("" when none), and waypoints holds the waypoints (targetRefs).
func authorization(ap *securityv1.AuthorizationPolicy, services map[string]string, waypoints map[string]*Waypoint, o Options) *policy {
	spec := &ap.Spec
	p := &policy{name: AuthorizationName(ap.Namespace, ap.Name)}
	ztunnel := func(status bool, reason, format string, args ...any) {
		p.cond = PolicyCondition{Type: ConditionZtunnelAccepted, Status: status, Reason: reason,
			Message: fmt.Sprintf(format, args...), ObservedGeneration: ap.Generation}
	}
	fail := func(reason, format string, args ...any) *policy {
		ztunnel(false, reason, format, args...)
		p.warning = fmt.Errorf("AuthorizationPolicy %s/%s: %s", ap.Namespace, ap.Name, p.cond.Message)
		return p
	}

	refs := slices.Clone(spec.GetTargetRefs())
	if spec.GetTargetRef() != nil {
		refs = append([]*typev1beta1.PolicyTargetReference{spec.GetTargetRef()}, refs...)
	}
	if len(refs) > 0 && spec.GetSelector() != nil {
		return fail(ReasonInvalid, "only one of targetRefs or selector can be set; remove one of them")
	}
	if len(refs) > 0 {
		p.cond = waypointCondition(ap, refs, services, waypoints, o)
		if !p.cond.Status {
			p.warning = fmt.Errorf("AuthorizationPolicy %s/%s: %s", ap.Namespace, ap.Name, p.cond.Message)
		}
		return p
	}

	dryRunNote := ""
	if v, ok := ap.Annotations[annotationDryRun]; ok {
		dry, err := strconv.ParseBool(v)
		switch {
		case err != nil:
			dryRunNote = fmt.Sprintf(" Annotation %s: %q is not a boolean, so the policy is enforced (as Istio does); write \"true\" or \"false\".", annotationDryRun, v)
		case dry:
			return fail(ReasonUnsupportedValue, "the policy uses the %s annotation, but dry-run is not supported at L4: the policy is not enforced; remove the annotation to enforce it", annotationDryRun)
		}
	}

	var action workloadv1.AuthorizationAction
	switch spec.GetAction() {
	case securityv1beta1.AuthorizationPolicy_ALLOW:
		action = workloadv1.AuthorizationAction_ALLOW
	case securityv1beta1.AuthorizationPolicy_DENY:
		action = workloadv1.AuthorizationAction_DENY
	case securityv1beta1.AuthorizationPolicy_AUDIT:
		action = workloadv1.AuthorizationAction_AUDIT
	default:
		return fail(ReasonUnsupportedValue, "ztunnel does not support the %s action: external authorization needs a waypoint proxy; the policy is not enforced", spec.GetAction())
	}

	scope := workloadv1.AuthorizationScope_NAMESPACE
	if ap.Namespace == o.RootNamespace {
		scope = workloadv1.AuthorizationScope_GLOBAL
	}
	selectorNote := ""
	if sel := spec.GetSelector(); sel != nil {
		for _, k := range sortedKeys(sel.GetMatchLabels()) {
			v := sel.GetMatchLabels()[k]
			if k == "" {
				return fail(ReasonInvalid, "selector.matchLabels: the empty key is not a label; name the label, e.g. app: web")
			}
			if strings.Contains(k, "*") || strings.Contains(v, "*") {
				return fail(ReasonInvalid, "selector.matchLabels[%s]: %q: wildcards are not supported in a selector; write the exact label value", k, v)
			}
		}
		if len(sel.GetMatchLabels()) > 0 {
			scope = workloadv1.AuthorizationScope_WORKLOAD_SELECTOR
			p.selector = sel.GetMatchLabels()
		} else if scope == workloadv1.AuthorizationScope_GLOBAL {
			selectorNote = " The selector has no labels, so it selects every workload of the mesh."
		} else {
			selectorNote = " The selector has no labels, so it selects every workload of the namespace."
		}
	}
	if action == workloadv1.AuthorizationAction_DENY && len(spec.GetRules()) == 0 {
		return fail(ReasonInvalid, "a DENY policy without rules never matches; add `rules: [{}]` to deny every connection")
	}

	p.auth = &workloadv1.Authorization{Name: ap.Name, Namespace: ap.Namespace, Scope: scope, Action: action}
	var all []problem
	var notes []string
	for i, r := range spec.GetRules() {
		c := &ruleCtx{path: fmt.Sprintf("rules[%d]", i), namespace: ap.Namespace}
		rule, none := c.rule(r)
		all = append(all, c.problems...)
		switch {
		case none:
			// The rule cannot match any connection as written (disjoint IP ranges).
		case action == workloadv1.AuthorizationAction_ALLOW && len(c.problems) > 0:
			// An ALLOW rule that needs what L4 cannot check, or is malformed, matches nothing.
		default:
			if len(c.problems) > 0 && len(rule.Clauses) == 0 {
				notes = append(notes, fmt.Sprintf("%s now matches every connection.", c.path))
			}
			p.auth.Rules = append(p.auth.Rules, rule)
		}
	}
	if action == workloadv1.AuthorizationAction_ALLOW && len(all) > 0 && len(p.auth.Rules) == 0 {
		notes = append(notes, "No rule is left: the policy allows no connection to the workloads it applies to.")
	}

	if len(all) == 0 {
		if selectorNote+dryRunNote == "" {
			ztunnel(true, ReasonAccepted, "attached to ztunnel")
		} else {
			ztunnel(true, ReasonAccepted, "attached to ztunnel.%s%s", selectorNote, dryRunNote)
		}
		return p
	}
	msg, invalid := problemsMessage(action, all)
	if len(notes) > 0 {
		msg += " " + strings.Join(notes, " ")
	}
	msg += selectorNote + dryRunNote
	if invalid {
		ztunnel(true, ReasonPartiallyInvalid, "%s", msg)
		p.warning = fmt.Errorf("AuthorizationPolicy %s/%s: %s", ap.Namespace, ap.Name, msg)
	} else {
		ztunnel(true, ReasonUnsupportedValue, "%s", msg)
	}
	return p
}

// waypointCondition is the WaypointAccepted condition of a policy with targetRefs. Such a
// policy is for a waypoint only (istiod never sends it to ztunnel): it is accepted when every
// target is a waypoint Gateway, the waypoint class, or a Service bound to a waypoint, and has
// no effect otherwise, as in Istio. What the waypoint enforces of it is reported by the
// waypoint's own translation (controller/rbac).
func waypointCondition(ap *securityv1.AuthorizationPolicy, refs []*typev1beta1.PolicyTargetReference, services map[string]string, waypoints map[string]*Waypoint, o Options) PolicyCondition {
	type binding struct {
		ancestor, reason, message string
		bound                     bool
	}
	var bs []binding
	for i, ref := range refs {
		ns := ap.Namespace
		if ref.GetNamespace() != "" {
			ns = ref.GetNamespace()
		}
		key := ns + "/" + ref.GetName()
		group := ref.GetGroup()
		if group == "" {
			group = "core"
		}
		b := binding{ancestor: ref.GetKind() + "." + group + ":" + key, reason: ReasonInvalid}
		switch {
		case ref.GetKind() == "Service" && (ref.GetGroup() == "" || ref.GetGroup() == "core"):
			wp, found := services[key]
			switch {
			case wp != "":
				b.bound, b.message = true, fmt.Sprintf("Service %s is bound to waypoint %s", key, wp)
			case found:
				b.reason, b.message = ReasonAncestorNotBound, fmt.Sprintf("Service %s is not bound to a waypoint", key)
			default:
				b.reason, b.message = ReasonTargetNotFound, fmt.Sprintf("Service %s was not found", key)
			}
		case ref.GetKind() == "Gateway" && ref.GetGroup() == "gateway.networking.k8s.io":
			if waypoints[key] != nil {
				b.bound, b.message = true, fmt.Sprintf("bound to waypoint %s", key)
			} else {
				b.reason, b.message = ReasonTargetNotFound, fmt.Sprintf("Gateway %s is not a waypoint of this mesh", key)
			}
		case ref.GetKind() == "GatewayClass" && ref.GetGroup() == "gateway.networking.k8s.io":
			switch {
			case ap.Namespace != o.RootNamespace:
				b.message = fmt.Sprintf("AuthorizationPolicy must be in the root namespace `%s` when referencing a GatewayClass", o.RootNamespace)
			case ref.GetName() == api.WaypointGatewayClass:
				b.bound, b.message = true, fmt.Sprintf("bound to every waypoint of class %s", ref.GetName())
			default:
				b.reason, b.message = ReasonTargetNotFound, fmt.Sprintf("GatewayClass %s is not a waypoint class of this mesh", ref.GetName())
			}
		case ref.GetKind() == "ServiceEntry" && ref.GetGroup() == "networking.istio.io":
			b.reason, b.message = ReasonTargetNotFound, fmt.Sprintf("ServiceEntry %s was not found: Weft does not support ServiceEntry", key)
		default:
			b.message = fmt.Sprintf("targetRefs[%d]: kind %q of group %q cannot carry an AuthorizationPolicy; target a Service (group \"\") or a Gateway (group gateway.networking.k8s.io)", i, ref.GetKind(), ref.GetGroup())
		}
		if b.bound {
			b.reason = ReasonAccepted
		}
		bs = append(bs, b)
	}
	const why = " A policy with targetRefs is enforced only by a waypoint proxy, never at L4: it has no effect until its targets are bound to a waypoint. To enforce its L4 rules in the node agents, replace targetRefs with a selector."
	c := PolicyCondition{Type: ConditionWaypointAccepted, ObservedGeneration: ap.Generation}
	var ancestors, details []string
	all := true
	for _, b := range bs {
		ancestors = append(ancestors, b.ancestor)
		details = append(details, b.message)
		all = all && b.bound
	}
	switch {
	case all:
		c.Status, c.Reason = true, ReasonAccepted
		c.Message = "Enforced by the waypoint: " + strings.Join(details, "; ") + "."
	case len(bs) == 1:
		c.Reason, c.Message = bs[0].reason, bs[0].message+"."+why
	default:
		c.Reason = ReasonInvalid
		c.Message = "Invalid targetRefs: " + strings.Join(ancestors, ", ") + " (" + strings.Join(details, "; ") + ")." + why
	}
	return c
}

// problemKind is why a part of a rule is not enforced as written.
type problemKind int

const (
	problemHTTP    problemKind = iota // an HTTP attribute
	problemNotL4                      // not visible to an L4 proxy (connection.sni) or not supported
	problemInvalid                    // malformed
)

type problem struct {
	kind   problemKind
	path   string // e.g. rules[0].from[1].source.ipBlocks
	detail string // for problemNotL4 and problemInvalid: what and the fix
}

// problemsMessage describes ps for the policy's status, in Istio's words where Istio has them.
func problemsMessage(action workloadv1.AuthorizationAction, ps []problem) (msg string, invalid bool) {
	var http, notL4, bad []string
	for _, p := range ps {
		switch p.kind {
		case problemHTTP:
			http = append(http, p.path)
		case problemNotL4:
			notL4 = append(notL4, p.path+" ("+p.detail+")")
		case problemInvalid:
			bad = append(bad, p.path+": "+p.detail)
		}
	}
	var parts []string
	if len(http)+len(notL4) > 0 {
		var found []string
		if len(http) > 0 {
			found = append(found, "ztunnel does not support HTTP attributes (found: "+strings.Join(http, ", ")+"). In ambient mode you must use a waypoint proxy to enforce HTTP rules.")
		}
		if len(notL4) > 0 {
			found = append(found, "ztunnel cannot check at L4: "+strings.Join(notL4, ", ")+".")
		}
		switch action {
		case workloadv1.AuthorizationAction_ALLOW:
			found = append(found, "Within an ALLOW policy, rules matching these attributes are omitted. This will be more restrictive than requested.")
		case workloadv1.AuthorizationAction_DENY:
			found = append(found, "DENY policy with these attributes is enforced without them. This will be more restrictive than requested.")
		default:
			found = append(found, "AUDIT policy with these attributes is applied without them, so it records more connections than requested.")
		}
		parts = append(parts, strings.Join(found, " "))
	}
	if len(bad) > 0 {
		s := "Invalid: " + strings.Join(bad, "; ") + "."
		switch action {
		case workloadv1.AuthorizationAction_ALLOW:
			s += " Within an ALLOW policy, a rule with an invalid field is omitted (it matches nothing)."
		case workloadv1.AuthorizationAction_DENY:
			s += " Within a DENY policy, an invalid field is removed from its rule, which therefore denies more."
		default:
			s += " Within an AUDIT policy, an invalid field is removed from its rule, which therefore records more."
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, " "), len(bad) > 0
}

// ruleCtx translates one rule, collecting what it cannot enforce. A part it cannot enforce is
// left out of the rule: correct for DENY and AUDIT (the rule matches more); for ALLOW the
// caller drops the whole rule.
type ruleCtx struct {
	path      string
	namespace string // the policy's, for serviceAccounts without a namespace
	problems  []problem
}

func (c *ruleCtx) add(kind problemKind, path, format string, args ...any) {
	c.problems = append(c.problems, problem{kind: kind, path: path, detail: fmt.Sprintf(format, args...)})
}

// rule translates r into clauses: the from clause, the to clause, one clause per when
// condition. A clause that lost an entry to a problem matches everything and is left out.
// none reports a rule that can match no connection (every source's IP ranges are disjoint).
func (c *ruleCtx) rule(r *securityv1beta1.Rule) (rule *workloadv1.AuthorizationRule, none bool) {
	rule = &workloadv1.AuthorizationRule{}
	if r == nil {
		c.add(problemInvalid, c.path, "a rule must not be null; write {} to match every connection")
		return rule, false
	}
	if from, none := c.from(r.GetFrom()); none {
		return rule, true
	} else if from != nil {
		rule.Clauses = append(rule.Clauses, from)
	}
	if to := c.to(r.GetTo()); to != nil {
		rule.Clauses = append(rule.Clauses, to)
	}
	for i, w := range r.GetWhen() {
		if m := c.when(fmt.Sprintf("%s.when[%d]", c.path, i), w); m != nil {
			rule.Clauses = append(rule.Clauses, &workloadv1.AuthorizationClause{Matches: []*workloadv1.AuthorizationMatch{m}})
		}
	}
	return rule, false
}

func (c *ruleCtx) from(from []*securityv1beta1.Rule_From) (clause *workloadv1.AuthorizationClause, none bool) {
	if len(from) == 0 {
		return nil, false
	}
	clause = &workloadv1.AuthorizationClause{}
	all := false
	for j, f := range from {
		path := fmt.Sprintf("%s.from[%d].source", c.path, j)
		if f.GetSource() == nil {
			c.add(problemInvalid, path, "must be set; name the sources, e.g. principals: [cluster.local/ns/shop/sa/web]")
			all = true
			continue
		}
		m, empty, matchesNone := c.source(path, f.GetSource())
		switch {
		case matchesNone:
		case empty:
			all = true
		default:
			clause.Matches = append(clause.Matches, m)
		}
	}
	if all {
		return nil, false
	}
	if len(clause.Matches) == 0 {
		return nil, true
	}
	return clause, false
}

// source translates one source. empty: nothing of it is left to check (it matches every
// connection); none: it can match no connection.
func (c *ruleCtx) source(path string, s *securityv1beta1.Source) (m *workloadv1.AuthorizationMatch, empty, none bool) {
	m = &workloadv1.AuthorizationMatch{}
	if len(s.GetPrincipals())+len(s.GetNotPrincipals())+len(s.GetRequestPrincipals())+len(s.GetNotRequestPrincipals())+
		len(s.GetNamespaces())+len(s.GetNotNamespaces())+len(s.GetServiceAccounts())+len(s.GetNotServiceAccounts())+
		len(s.GetIpBlocks())+len(s.GetNotIpBlocks())+len(s.GetRemoteIpBlocks())+len(s.GetNotRemoteIpBlocks())+
		len(s.GetTrustDomains())+len(s.GetNotTrustDomains()) == 0 {
		c.add(problemInvalid, path, "must not be empty; name the sources, e.g. namespaces: [shop]")
		return m, true, false
	}
	m.Principals = c.principals(path+".principals", s.GetPrincipals())
	m.NotPrincipals = c.principals(path+".notPrincipals", s.GetNotPrincipals())
	m.Namespaces = c.stringMatches(path+".namespaces", s.GetNamespaces())
	m.NotNamespaces = c.stringMatches(path+".notNamespaces", s.GetNotNamespaces())
	if len(s.GetServiceAccounts())+len(s.GetNotServiceAccounts()) > 0 &&
		len(s.GetPrincipals())+len(s.GetNotPrincipals())+len(s.GetNamespaces())+len(s.GetNotNamespaces()) > 0 {
		c.add(problemInvalid, path+".serviceAccounts", "cannot be set with namespaces or principals; use one or the other")
	} else {
		m.Principals = append(m.Principals, c.serviceAccounts(path+".serviceAccounts", s.GetServiceAccounts())...)
		m.NotPrincipals = append(m.NotPrincipals, c.serviceAccounts(path+".notServiceAccounts", s.GetNotServiceAccounts())...)
	}
	// ipBlocks and remoteIpBlocks both match the connection's source address at L4 (the
	// original client address is preserved and there is no X-Forwarded-For); both must hold.
	ips, ipsOK := c.cidrs(path+".ipBlocks", s.GetIpBlocks())
	remote, remoteOK := c.cidrs(path+".remoteIpBlocks", s.GetRemoteIpBlocks())
	switch {
	case ipsOK && remoteOK && len(ips) > 0 && len(remote) > 0:
		m.SourceIps = intersect(ips, remote)
		if len(m.SourceIps) == 0 {
			return m, false, true
		}
	case ipsOK && len(ips) > 0:
		m.SourceIps = ips
	case remoteOK && len(remote) > 0:
		m.SourceIps = remote
	}
	notIPs, _ := c.cidrs(path+".notIpBlocks", s.GetNotIpBlocks())
	notRemote, _ := c.cidrs(path+".notRemoteIpBlocks", s.GetNotRemoteIpBlocks())
	m.NotSourceIps = dedupe(append(notIPs, notRemote...))
	if len(s.GetRequestPrincipals()) > 0 {
		c.add(problemHTTP, path+".requestPrincipals", "")
	}
	if len(s.GetNotRequestPrincipals()) > 0 {
		c.add(problemHTTP, path+".notRequestPrincipals", "")
	}
	if len(s.GetTrustDomains()) > 0 {
		c.add(problemNotL4, path+".trustDomains", "not supported; match principals instead, e.g. \"td/*\"")
	}
	if len(s.GetNotTrustDomains()) > 0 {
		c.add(problemNotL4, path+".notTrustDomains", "not supported; match notPrincipals instead, e.g. \"td/*\"")
	}
	return m, emptyMatch(m), false
}

func (c *ruleCtx) to(to []*securityv1beta1.Rule_To) *workloadv1.AuthorizationClause {
	if len(to) == 0 {
		return nil
	}
	clause := &workloadv1.AuthorizationClause{}
	for j, t := range to {
		path := fmt.Sprintf("%s.to[%d].operation", c.path, j)
		op := t.GetOperation()
		if op == nil || len(op.GetPorts())+len(op.GetNotPorts())+len(op.GetHosts())+len(op.GetNotHosts())+
			len(op.GetMethods())+len(op.GetNotMethods())+len(op.GetPaths())+len(op.GetNotPaths()) == 0 {
			c.add(problemInvalid, path, "must not be empty; name the operation, e.g. ports: [\"8080\"]")
			return nil
		}
		m := &workloadv1.AuthorizationMatch{}
		m.DestinationPorts, _ = c.ports(path+".ports", op.GetPorts())
		m.NotDestinationPorts, _ = c.ports(path+".notPorts", op.GetNotPorts())
		for _, f := range []struct {
			name string
			v    []string
		}{{"hosts", op.GetHosts()}, {"notHosts", op.GetNotHosts()}, {"methods", op.GetMethods()}, {"notMethods", op.GetNotMethods()}, {"paths", op.GetPaths()}, {"notPaths", op.GetNotPaths()}} {
			if len(f.v) > 0 {
				c.add(problemHTTP, path+"."+f.name, "")
			}
		}
		if emptyMatch(m) {
			return nil // this operation matches every connection, so the clause does
		}
		clause.Matches = append(clause.Matches, m)
	}
	return clause
}

// when translates one condition into a match; nil when nothing of it can be checked (the
// caller leaves the clause out).
func (c *ruleCtx) when(path string, w *securityv1beta1.Condition) *workloadv1.AuthorizationMatch {
	key := w.GetKey()
	if key == "" {
		c.add(problemInvalid, path+".key", "must be set, e.g. source.ip")
		return nil
	}
	if len(w.GetValues())+len(w.GetNotValues()) == 0 {
		c.add(problemInvalid, path, "%s: set values or notValues", key)
		return nil
	}
	m := &workloadv1.AuthorizationMatch{}
	var ok, notOK bool
	switch {
	case key == "source.ip" || key == "remote.ip":
		m.SourceIps, ok = c.cidrs(path+".values", w.GetValues())
		m.NotSourceIps, notOK = c.cidrs(path+".notValues", w.GetNotValues())
	case key == "destination.ip":
		m.DestinationIps, ok = c.cidrs(path+".values", w.GetValues())
		m.NotDestinationIps, notOK = c.cidrs(path+".notValues", w.GetNotValues())
	case key == "destination.port":
		m.DestinationPorts, ok = c.ports(path+".values", w.GetValues())
		m.NotDestinationPorts, notOK = c.ports(path+".notValues", w.GetNotValues())
	case key == "source.namespace":
		m.Namespaces, ok = c.stringMatches(path+".values", w.GetValues()), true
		m.NotNamespaces, notOK = c.stringMatches(path+".notValues", w.GetNotValues()), true
	case key == "source.principal":
		m.Principals, ok = c.principals(path+".values", w.GetValues()), true
		m.NotPrincipals, notOK = c.principals(path+".notValues", w.GetNotValues()), true
	case key == "source.serviceAccount":
		m.Principals, ok = c.serviceAccounts(path+".values", w.GetValues()), true
		m.NotPrincipals, notOK = c.serviceAccounts(path+".notValues", w.GetNotValues()), true
	case key == "connection.sni":
		c.add(problemNotL4, path+" "+key, "the server name is inside the mTLS tunnel; match destination.port or use a waypoint")
		return nil
	case key == "source.trustDomain":
		c.add(problemNotL4, path+" "+key, "not supported; match source.principal instead, e.g. \"td/*\"")
		return nil
	case key == "request.auth.principal", key == "request.auth.audiences", key == "request.auth.presenter",
		mapKey(key, "request.headers"), mapKey(key, "request.auth.claims"), mapKey(key, "experimental.envoy.filters."):
		c.add(problemHTTP, path+" "+key, "")
		return nil
	case key == "destination.namespace":
		c.add(problemInvalid, path+".key", "%s is replaced by the policy's own namespace; move the policy to that namespace", key)
		return nil
	case strings.HasPrefix(key, "destination.labels"):
		c.add(problemInvalid, path+".key", "%s is replaced by the workload selector; use selector.matchLabels", key)
		return nil
	default:
		c.add(problemInvalid, path+".key", "unknown attribute %q; see https://istio.io/latest/docs/reference/config/security/conditions/", key)
		return nil
	}
	if !ok || !notOK || emptyMatch(m) {
		return nil // a malformed value list: the whole condition is left out
	}
	return m
}

// mapKey reports whether key is prefix followed by a bracketed name, e.g. request.headers[x].
func mapKey(key, prefix string) bool {
	if prefix == "experimental.envoy.filters." {
		return strings.HasPrefix(key, prefix)
	}
	rest, ok := strings.CutPrefix(key, prefix)
	return ok && len(rest) > 2 && rest[0] == '[' && rest[len(rest)-1] == ']'
}

// stringMatches converts Istio string matches: "*" presence, "a*" prefix, "*a" suffix, else exact.
// A list with an empty value is malformed and left out.
func (c *ruleCtx) stringMatches(path string, vs []string) []*workloadv1.StringMatch {
	if len(vs) == 0 {
		return nil
	}
	out := make([]*workloadv1.StringMatch, 0, len(vs))
	for i, v := range vs {
		if v == "" {
			c.add(problemInvalid, fmt.Sprintf("%s[%d]", path, i), "empty value; write a value, or \"*\" for any")
			return nil
		}
		out = append(out, stringMatch(v))
	}
	return out
}

func stringMatch(v string) *workloadv1.StringMatch {
	switch {
	case v == "*":
		return &workloadv1.StringMatch{Match: &workloadv1.StringMatch_Presence{Presence: true}}
	case strings.HasPrefix(v, "*"):
		return &workloadv1.StringMatch{Match: &workloadv1.StringMatch_Suffix{Suffix: v[1:]}}
	case strings.HasSuffix(v, "*"):
		return &workloadv1.StringMatch{Match: &workloadv1.StringMatch_Prefix{Prefix: v[:len(v)-1]}}
	}
	return &workloadv1.StringMatch{Match: &workloadv1.StringMatch_Exact{Exact: v}}
}

// principals is stringMatches for principals, which Istio writes without "spiffe://".
func (c *ruleCtx) principals(path string, vs []string) []*workloadv1.StringMatch {
	for i, v := range vs {
		if rest, ok := strings.CutPrefix(v, "spiffe://"); ok {
			c.add(problemInvalid, fmt.Sprintf("%s[%d]", path, i), "%q: principals are written without spiffe://, e.g. %q", v, rest)
			return nil
		}
	}
	return c.stringMatches(path, vs)
}

// serviceAccounts converts "<ns>/<sa>" or "<sa>" into principal suffixes.
func (c *ruleCtx) serviceAccounts(path string, vs []string) []*workloadv1.StringMatch {
	if len(vs) > 16 {
		c.add(problemInvalid, path, "at most 16 service accounts; split the source")
		return nil
	}
	var out []*workloadv1.StringMatch
	for i, v := range vs {
		ns, sa, ok := ParseServiceAccount(v, c.namespace)
		if !ok {
			c.add(problemInvalid, fmt.Sprintf("%s[%d]", path, i), "%q: %s", v, ServiceAccountFix)
			return nil
		}
		out = append(out, &workloadv1.StringMatch{Match: &workloadv1.StringMatch_Suffix{Suffix: "/ns/" + ns + "/sa/" + sa}})
	}
	return out
}

// cidrs converts IPs and CIDRs into canonical CIDRs ("10.0.0.0/8", "10.1.2.3/32"). ok is false
// when a value is malformed; the field is then left out.
func (c *ruleCtx) cidrs(path string, vs []string) (out []string, ok bool) {
	for i, v := range vs {
		p, ok := ParseCIDR(v)
		if !ok {
			c.add(problemInvalid, fmt.Sprintf("%s[%d]", path, i), "%q is %s", v, CIDRFix)
			return nil, false
		}
		out = append(out, p.String())
	}
	return dedupe(out), true
}

// ports converts port strings; ok is false when one is malformed (the field is left out).
func (c *ruleCtx) ports(path string, vs []string) (out []uint32, ok bool) {
	for i, v := range vs {
		n, err := strconv.ParseUint(v, 10, 16)
		if err != nil {
			c.add(problemInvalid, fmt.Sprintf("%s[%d]", path, i), "%q is not a port number (0-65535); write it as a number in quotes, e.g. \"8080\"", v)
			return nil, false
		}
		out = append(out, uint32(n))
	}
	slices.Sort(out)
	return slices.Compact(out), true
}

// ParseCIDR parses an AuthorizationPolicy address: an IP ("10.0.0.5", a /32 or /128) or a CIDR,
// masked ("10.0.0.7/8" is 10.0.0.0/8); zones are refused. The waypoint's RBAC translation
// shares it, so both enforcement points read addresses alike.
func ParseCIDR(v string) (netip.Prefix, bool) {
	var p netip.Prefix
	var err error
	if strings.Contains(v, "/") {
		p, err = netip.ParsePrefix(v)
	} else {
		var a netip.Addr
		if a, err = netip.ParseAddr(v); err == nil {
			if a.Zone() != "" { // PrefixFrom would drop it silently
				return netip.Prefix{}, false
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
	}
	if err != nil {
		return netip.Prefix{}, false
	}
	return p.Masked(), true
}

// CIDRFix completes the message about a value ParseCIDR refused.
const CIDRFix = `not an IP address or CIDR; write e.g. "10.0.0.5" or "10.0.0.0/16"`

// ParseServiceAccount parses a serviceAccounts value, "<namespace>/<serviceaccount>" or
// "<serviceaccount>" (in namespace ns): no wildcards, at most 320 characters.
func ParseServiceAccount(v, ns string) (namespace, serviceAccount string, ok bool) {
	namespace, serviceAccount, found := strings.Cut(v, "/")
	if !found {
		namespace, serviceAccount = ns, v
	}
	if namespace == "" || serviceAccount == "" || strings.Contains(serviceAccount, "/") || strings.Contains(v, "*") || len(v) > 320 {
		return "", "", false
	}
	return namespace, serviceAccount, true
}

// ServiceAccountFix completes the message about a value ParseServiceAccount refused.
const ServiceAccountFix = `write "<namespace>/<serviceaccount>" or "<serviceaccount>", without wildcards`

// intersect returns the CIDRs in both a and b: of two prefixes that overlap, the narrower.
func intersect(a, b []string) []string {
	var out []string
	for _, x := range a {
		px := netip.MustParsePrefix(x)
		for _, y := range b {
			py := netip.MustParsePrefix(y)
			if !px.Overlaps(py) {
				continue
			}
			if px.Bits() >= py.Bits() {
				out = append(out, x)
			} else {
				out = append(out, y)
			}
		}
	}
	return dedupe(out)
}

func dedupe(vs []string) []string {
	if len(vs) == 0 {
		return nil
	}
	slices.Sort(vs)
	return slices.Compact(vs)
}

func emptyMatch(m *workloadv1.AuthorizationMatch) bool {
	return len(m.Namespaces)+len(m.NotNamespaces)+len(m.Principals)+len(m.NotPrincipals)+
		len(m.SourceIps)+len(m.NotSourceIps)+len(m.DestinationIps)+len(m.NotDestinationIps)+
		len(m.DestinationPorts)+len(m.NotDestinationPorts) == 0
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// selects reports whether a policy with selector sel selects a workload with labels.
func selects(sel, labels map[string]string) bool {
	for k, v := range sel {
		if l, ok := labels[k]; !ok || l != v {
			return false
		}
	}
	return true
}
