package state

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
)

// Option adds content to a snapshot built by [NewSnapshot].
type Option func(*snapshotOptions)

type snapshotOptions struct {
	authorizations []*Authorization
}

// WithAuthorizations adds authorization policies to the snapshot. NewSnapshot copies them
// (the slices inside are shared, as for workloads); their problems are reported at
// authorizations[i].
func WithAuthorizations(as []*Authorization) Option {
	return func(o *snapshotOptions) { o.authorizations = as }
}

// authzIndex is the part of a snapshot that serves authorization lookups.
type authzIndex struct {
	authorizations []*Authorization            // sorted by key
	byKey          map[string]*Authorization   // key → policy
	global         []*Authorization            // GLOBAL, sorted by key
	byNamespace    map[string][]*Authorization // NAMESPACE, per namespace, sorted by key
	base           map[string][]*Authorization // GLOBAL + NAMESPACE, per namespace (cached)
	policies       map[*Workload][]*Authorization
}

// buildAuthorizations copies, normalizes, validates and indexes the policies.
func (x *authzIndex) buildAuthorizations(p *Problems, in []*Authorization) {
	x.byKey = make(map[string]*Authorization, len(in))
	x.byNamespace = make(map[string][]*Authorization)
	x.base = make(map[string][]*Authorization)
	keyAt := make(map[string]int, len(in))
	for i, src := range in {
		path := "authorizations[" + strconv.Itoa(i) + "]"
		if src == nil {
			p.Add(path, "empty entry; describe an authorization or remove the entry")
			continue
		}
		a := copyAuthorization(src)
		validateAuthorization(p, path, a)
		if a.Name == "" || a.Namespace == "" {
			continue // cannot be named
		}
		if j, dup := keyAt[a.key]; dup {
			p.Add(path+".name", "%q is already authorizations[%d]; describe each policy once", a.key, j)
			continue
		}
		keyAt[a.key] = i
		x.byKey[a.key] = a
		x.authorizations = append(x.authorizations, a)
	}
	slices.SortFunc(x.authorizations, func(a, b *Authorization) int { return strings.Compare(a.key, b.key) })
	for _, a := range x.authorizations {
		switch a.Scope {
		case ScopeGlobal:
			x.global = append(x.global, a)
		case ScopeNamespace:
			x.byNamespace[a.Namespace] = append(x.byNamespace[a.Namespace], a)
		}
	}
}

// copyAuthorization copies a with its rules, normalizing the CIDRs, and sets its key.
func copyAuthorization(src *Authorization) *Authorization {
	a := new(Authorization)
	*a = *src
	a.key = a.Namespace + "/" + a.Name
	if src.Rules == nil {
		return a
	}
	a.Rules = make([]AuthorizationRule, len(src.Rules))
	for i, r := range src.Rules {
		if r.Clauses == nil {
			continue
		}
		cls := make([]AuthorizationClause, len(r.Clauses))
		for j, cl := range r.Clauses {
			if cl.Matches == nil {
				continue
			}
			ms := slices.Clone(cl.Matches)
			for k := range ms {
				m := &ms[k]
				m.SourceIPs = normalizePrefixes(m.SourceIPs)
				m.NotSourceIPs = normalizePrefixes(m.NotSourceIPs)
				m.DestinationIPs = normalizePrefixes(m.DestinationIPs)
				m.NotDestinationIPs = normalizePrefixes(m.NotDestinationIPs)
			}
			cls[j].Matches = ms
		}
		a.Rules[i].Clauses = cls
	}
	return a
}

func normalizePrefixes(ps []netip.Prefix) []netip.Prefix {
	if ps == nil {
		return nil
	}
	out := make([]netip.Prefix, len(ps))
	for i, p := range ps {
		out[i] = normalizePrefix(p)
	}
	return out
}

func validateAuthorization(p *Problems, path string, a *Authorization) {
	for _, f := range []struct{ field, value, what string }{
		{"name", a.Name, "the policy's name"},
		{"namespace", a.Namespace, "the policy's namespace"},
	} {
		switch {
		case f.value == "":
			p.Add(path+"."+f.field, "missing; set %s", f.what)
		case strings.Contains(f.value, "/"):
			p.Add(path+"."+f.field, "%q contains \"/\"; write %s (a Kubernetes name)", f.value, f.what)
		}
	}
	if !enumValid(authorizationScopeNames, a.Scope) {
		p.Add(path+".scope", "unknown scope %d; use %s", a.Scope, orList(authorizationScopeNames))
	}
	if !enumValid(authorizationActionNames, a.Action) {
		p.Add(path+".action", "unknown action %d; use %s (CUSTOM is not supported by the node agent)", a.Action, orList(authorizationActionNames))
	}
	for i, r := range a.Rules {
		for j, cl := range r.Clauses {
			for k := range cl.Matches {
				validateMatch(p, fmt.Sprintf("%s.rules[%d].clauses[%d].matches[%d]", path, i, j, k), &cl.Matches[k])
			}
		}
	}
}

func validateMatch(p *Problems, path string, m *AuthorizationMatch) {
	for _, f := range []struct {
		field string
		ms    []StringMatch
	}{
		{"namespaces", m.Namespaces}, {"notNamespaces", m.NotNamespaces},
		{"principals", m.Principals}, {"notPrincipals", m.NotPrincipals},
	} {
		for l, sm := range f.ms {
			if msg := sm.problem(); msg != "" {
				p.Add(path+"."+f.field+"["+strconv.Itoa(l)+"]", "%s", msg)
			}
		}
	}
	for _, f := range []struct {
		field string
		ps    []netip.Prefix
	}{
		{"sourceIps", m.SourceIPs}, {"notSourceIps", m.NotSourceIPs},
		{"destinationIps", m.DestinationIPs}, {"notDestinationIps", m.NotDestinationIPs},
	} {
		for l, pre := range f.ps {
			if !pre.IsValid() {
				p.Add(path+"."+f.field+"["+strconv.Itoa(l)+"]", "missing or malformed; write a CIDR such as 10.0.0.0/8 or fd00::/64, or a single address")
			}
		}
	}
	// Ports are not checked: Istio accepts port 0, which matches no connection.
}

// resolvePolicies checks the names of w's selecting policies and records every policy that
// applies to w.
func (x *authzIndex) resolvePolicies(p *Problems, path string, w *Workload) {
	base := x.baseFor(w.Namespace)
	if len(w.AuthorizationPolicies) == 0 {
		x.policies[w] = base
		return
	}
	list := slices.Clip(slices.Clone(base))
	var selected []*Authorization
	for k, name := range w.AuthorizationPolicies {
		pp := path + ".authorizationPolicies[" + strconv.Itoa(k) + "]"
		a, ok := x.byKey[name]
		switch {
		case !strings.Contains(name, "/"):
			p.Add(pp, "%q is not a policy name; write \"<namespace>/<name>\"", name)
		case slices.Contains(w.AuthorizationPolicies[:k], name):
			p.Add(pp, "%q is listed twice; list each policy once", name)
		case !ok:
			// A workload of another node may name policies that only its own node receives
			// (enforcement is at the destination). Should a workload of this node name one, the
			// agent fails closed: the policy stands as one that denies every connection.
			ns, n, _ := strings.Cut(name, "/")
			selected = append(selected, &Authorization{Name: n, Namespace: ns, Action: ActionDeny,
				Rules: []AuthorizationRule{{}}, key: name})
		case slices.Contains(list, a):
			// A GLOBAL or NAMESPACE policy applies anyway; naming it changes nothing.
		default:
			selected = append(selected, a)
		}
	}
	slices.SortFunc(selected, func(a, b *Authorization) int { return strings.Compare(a.key, b.key) })
	x.policies[w] = append(list, selected...)
}

// baseFor returns the GLOBAL policies and the NAMESPACE policies of namespace ns.
func (x *authzIndex) baseFor(ns string) []*Authorization {
	if l, ok := x.base[ns]; ok {
		return l
	}
	nsl := x.byNamespace[ns]
	var l []*Authorization
	switch {
	case len(nsl) == 0:
		l = x.global
	case len(x.global) == 0:
		l = nsl
	default:
		l = slices.Concat(x.global, nsl)
	}
	l = slices.Clip(l)
	x.base[ns] = l
	return l
}

// Authorizations returns every authorization policy, sorted by namespace and name. The slice
// belongs to the snapshot.
func (s *Snapshot) Authorizations() []*Authorization { return s.authz.authorizations }

// Authorization returns the policy whose [Authorization.Key] is key ("<namespace>/<name>").
func (s *Snapshot) Authorization(key string) (*Authorization, bool) {
	a, ok := s.authz.byKey[key]
	return a, ok
}

// PoliciesFor returns the authorization policies that apply to connections to w: the GLOBAL
// ones, the NAMESPACE ones of w's namespace and those named by w.AuthorizationPolicies, in
// that order, each group sorted by namespace and name. The slice belongs to the snapshot.
// For a workload of the snapshot it does not allocate; for another one it resolves w's
// fields against the snapshot's policies, ignoring unknown names.
func (s *Snapshot) PoliciesFor(w *Workload) []*Authorization {
	if w == nil {
		return nil
	}
	if l, ok := s.authz.policies[w]; ok {
		return l
	}
	l := slices.Concat(s.authz.global, s.authz.byNamespace[w.Namespace])
	var selected []*Authorization
	for _, name := range w.AuthorizationPolicies {
		if a, ok := s.authz.byKey[name]; ok && !slices.Contains(l, a) && !slices.Contains(selected, a) {
			selected = append(selected, a)
		}
	}
	slices.SortFunc(selected, func(a, b *Authorization) int { return cmp.Compare(a.key, b.key) })
	return append(l, selected...)
}
