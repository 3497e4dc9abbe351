package authz_test

import (
	"net/netip"
	"strconv"
	"strings"
	"testing"

	"github.com/weftmesh/weft/nodeagent/authz"
	"github.com/weftmesh/weft/nodeagent/state"
)

// The helpers below write policies in the shape of Istio's AuthorizationPolicy YAML and
// translate them as the controller does (istiod's ambient conversion): every `from` is one
// clause of source matches, every `to` one clause of operation matches, every `when` one
// clause with one match; a policy without selector is NAMESPACE-scoped, or GLOBAL in the root
// namespace; a selector makes it WORKLOAD_SELECTOR, named by the workloads it selects.

const rootNamespace = "istio-system"

// policy is an AuthorizationPolicy before translation.
type policy struct {
	a        *state.Authorization
	selector map[string]string // nil: no selector
}

func newPolicy(action state.AuthorizationAction, key string, rules []state.AuthorizationRule) *policy {
	ns, name, _ := strings.Cut(key, "/")
	return &policy{a: &state.Authorization{Name: name, Namespace: ns, Action: action, Rules: rules}}
}

func allow(key string, rules ...state.AuthorizationRule) *policy {
	return newPolicy(state.ActionAllow, key, rules)
}

func deny(key string, rules ...state.AuthorizationRule) *policy {
	return newPolicy(state.ActionDeny, key, rules)
}

func audit(key string, rules ...state.AuthorizationRule) *policy {
	return newPolicy(state.ActionAudit, key, rules)
}

// noRules makes `rules` present but empty after translation (e.g. an ALLOW whose rules all
// needed L7 attributes): the same as a policy without rules.
var noRules []state.AuthorizationRule

// on sets the policy's selector: matchLabels "k=v".
func (p *policy) on(labels ...string) *policy {
	p.selector = map[string]string{}
	for _, l := range labels {
		k, v, _ := strings.Cut(l, "=")
		p.selector[k] = v
	}
	return p
}

func ps(p ...*policy) []*policy { return p }

// rule is one entry of `rules`; its clauses come from from, to and when.
func rule(clauses ...state.AuthorizationClause) state.AuthorizationRule {
	return state.AuthorizationRule{Clauses: clauses}
}

// from is a rule's `from`: one of the sources must match.
func from(sources ...state.AuthorizationMatch) state.AuthorizationClause {
	return state.AuthorizationClause{Matches: sources}
}

// to is a rule's `to`: one of the operations must match.
func to(ops ...state.AuthorizationMatch) state.AuthorizationClause {
	return state.AuthorizationClause{Matches: ops}
}

type field func(*state.AuthorizationMatch)

// source and operation are the entries of from and to; their fields are AND-ed.
func source(fs ...field) state.AuthorizationMatch    { return build(fs) }
func operation(fs ...field) state.AuthorizationMatch { return build(fs) }

func build(fs []field) state.AuthorizationMatch {
	var m state.AuthorizationMatch
	for _, f := range fs {
		f(&m)
	}
	return m
}

func strs(vs []string) []state.StringMatch {
	out := make([]state.StringMatch, len(vs))
	for i, v := range vs {
		out[i] = state.ParseStringMatch(v)
	}
	return out
}

func cidrs(vs []string) []netip.Prefix {
	out := make([]netip.Prefix, len(vs))
	for i, v := range vs {
		p, ok := state.ParseCIDR(v)
		if !ok {
			panic("bad CIDR in a test: " + v)
		}
		out[i] = p
	}
	return out
}

func portList(vs []string) []uint16 {
	out := make([]uint16, len(vs))
	for i, v := range vs {
		n, err := strconv.ParseUint(v, 10, 16)
		if err != nil {
			panic("bad port in a test: " + v)
		}
		out[i] = uint16(n)
	}
	return out
}

func principals(v ...string) field {
	return func(m *state.AuthorizationMatch) { m.Principals = strs(v) }
}
func notPrincipals(v ...string) field {
	return func(m *state.AuthorizationMatch) { m.NotPrincipals = strs(v) }
}
func namespaces(v ...string) field {
	return func(m *state.AuthorizationMatch) { m.Namespaces = strs(v) }
}
func notNamespaces(v ...string) field {
	return func(m *state.AuthorizationMatch) { m.NotNamespaces = strs(v) }
}
func ipBlocks(v ...string) field {
	return func(m *state.AuthorizationMatch) { m.SourceIPs = cidrs(v) }
}
func notIPBlocks(v ...string) field {
	return func(m *state.AuthorizationMatch) { m.NotSourceIPs = cidrs(v) }
}
func ports(v ...string) field {
	return func(m *state.AuthorizationMatch) { m.DestinationPorts = portList(v) }
}
func notPorts(v ...string) field {
	return func(m *state.AuthorizationMatch) { m.NotDestinationPorts = portList(v) }
}

// when is one condition with values; whenNot one with notValues. The keys are the L4
// attributes: source.ip, source.namespace, source.principal, destination.ip,
// destination.port.
func when(key string, values ...string) state.AuthorizationClause {
	return condition(key, values, false)
}

func whenNot(key string, notValues ...string) state.AuthorizationClause {
	return condition(key, notValues, true)
}

func condition(key string, vs []string, not bool) state.AuthorizationClause {
	var m state.AuthorizationMatch
	pick := func(pos, neg field) {
		if not {
			neg(&m)
		} else {
			pos(&m)
		}
	}
	switch key {
	case "source.ip":
		pick(ipBlocks(vs...), notIPBlocks(vs...))
	case "source.namespace":
		pick(namespaces(vs...), notNamespaces(vs...))
	case "source.principal":
		pick(principals(vs...), notPrincipals(vs...))
	case "destination.ip":
		pick(func(m *state.AuthorizationMatch) { m.DestinationIPs = cidrs(vs) },
			func(m *state.AuthorizationMatch) { m.NotDestinationIPs = cidrs(vs) })
	case "destination.port":
		pick(ports(vs...), notPorts(vs...))
	default:
		panic("not an L4 condition: " + key)
	}
	return state.AuthorizationClause{Matches: []state.AuthorizationMatch{m}}
}

// The mesh of every case: books and ratings in bookinfo, web in shop.
var meshWorkloads = []*state.Workload{
	{UID: "Kubernetes//Pod/bookinfo/books-0", Name: "books-0", Namespace: "bookinfo", ServiceAccount: "books",
		Addresses: addrs("10.1.0.10", "fd00:1::10"), TunnelProtocol: state.TunnelHBONE, Labels: map[string]string{"app": "books", "version": "v1"}},
	{UID: "Kubernetes//Pod/bookinfo/ratings-0", Name: "ratings-0", Namespace: "bookinfo", ServiceAccount: "ratings",
		Addresses: addrs("10.1.0.11"), TunnelProtocol: state.TunnelHBONE, Labels: map[string]string{"app": "ratings", "version": "v1"}},
	{UID: "Kubernetes//Pod/shop/web-0", Name: "web-0", Namespace: "shop", ServiceAccount: "web",
		Addresses: addrs("10.2.0.5"), TunnelProtocol: state.TunnelHBONE, Labels: map[string]string{"app": "web"}},
}

func addrs(s ...string) []netip.Addr {
	out := make([]netip.Addr, len(s))
	for i, a := range s {
		out[i] = netip.MustParseAddr(a)
	}
	return out
}

// mesh translates the policies as the controller does and builds the snapshot.
func mesh(t testing.TB, policies []*policy) *state.Snapshot {
	t.Helper()
	ws := make([]*state.Workload, len(meshWorkloads))
	for i, w := range meshWorkloads {
		c := *w
		ws[i] = &c
	}
	var as []*state.Authorization
	for _, p := range policies {
		a := *p.a
		switch {
		case p.selector != nil:
			a.Scope = state.ScopeWorkloadSelector
			for _, w := range ws {
				if (a.Namespace == rootNamespace || a.Namespace == w.Namespace) && selects(p.selector, w.Labels) {
					w.AuthorizationPolicies = append(w.AuthorizationPolicies, a.Key())
				}
			}
		case a.Namespace == rootNamespace:
			a.Scope = state.ScopeGlobal
		default:
			a.Scope = state.ScopeNamespace
		}
		as = append(as, &a)
	}
	snap := state.NewSnapshot("test", ws, nil, state.WithAuthorizations(as))
	if err := snap.Validate(); err != nil {
		t.Fatal(err)
	}
	return snap
}

func selects(selector, labels map[string]string) bool {
	for k, v := range selector {
		if labels[k] != v {
			return false
		}
	}
	return true
}

// Connections. The identities: gw (shop/gw) at 10.2.0.7, tool (dev/tool) at 10.3.0.9, and
// plaintext clients.
const (
	gw   = "cluster.local/ns/shop/sa/gw"
	tool = "cluster.local/ns/dev/sa/tool"
)

// mtls is a connection with the peer identity principal from src to dst:port.
func mtls(principal, src, dst string, port uint16) authz.Conn {
	return authz.Conn{
		SourcePrincipal: principal,
		SourceIP:        netip.MustParseAddr(src),
		DestinationIP:   netip.MustParseAddr(dst),
		DestinationPort: port,
	}
}

// plain is a plaintext connection from src to dst:port.
func plain(src, dst string, port uint16) authz.Conn { return mtls("", src, dst, port) }

// Typical connections to books (10.1.0.10) on port 9080.
var (
	gwToBooks    = mtls(gw, "10.2.0.7", "10.1.0.10", 9080)
	toolToBooks  = mtls(tool, "10.3.0.9", "10.1.0.10", 9080)
	plainToBooks = plain("10.9.0.1", "10.1.0.10", 9080)
)
