package authz

import (
	"net/netip"
	"slices"
	"strings"

	"github.com/weftmesh/weft/nodeagent/state"
)

// input is a Conn prepared for matching.
type input struct {
	plaintext bool
	principal string
	namespace string
	src, dst  netip.Addr
	port      uint16
}

func prepare(c *Conn) input {
	in := input{
		plaintext: c.SourcePrincipal == "",
		principal: strings.TrimPrefix(c.SourcePrincipal, "spiffe://"),
		src:       c.SourceIP.Unmap(),
		dst:       c.DestinationIP.Unmap(),
		port:      c.DestinationPort,
	}
	if !in.plaintext {
		in.namespace = c.SourceNamespace
		if in.namespace == "" {
			in.namespace = PrincipalNamespace(in.principal)
		}
	}
	return in
}

// matchRules returns the index of the first rule that matches, or -1; without rules nothing
// matches.
func matchRules(rules []state.AuthorizationRule, in *input) int {
	for i := range rules {
		if matchRule(&rules[i], in) {
			return i
		}
	}
	return -1
}

// matchRule: all clauses must match; no clause matches everything.
func matchRule(r *state.AuthorizationRule, in *input) bool {
	for i := range r.Clauses {
		if !matchClause(&r.Clauses[i], in) {
			return false
		}
	}
	return true
}

// matchClause: one match must match; a clause without matches matches everything (ztunnel).
func matchClause(cl *state.AuthorizationClause, in *input) bool {
	if len(cl.Matches) == 0 {
		return true
	}
	for i := range cl.Matches {
		if matchOne(&cl.Matches[i], in) {
			return true
		}
	}
	return false
}

// matchOne: every field that is set must match.
func matchOne(m *state.AuthorizationMatch, in *input) bool {
	return ports(m.DestinationPorts, m.NotDestinationPorts, in.port) &&
		ips(m.SourceIPs, m.NotSourceIPs, in.src) &&
		ips(m.DestinationIPs, m.NotDestinationIPs, in.dst) &&
		identity(m.Principals, m.NotPrincipals, in.principal, in.plaintext) &&
		identity(m.Namespaces, m.NotNamespaces, in.namespace, in.plaintext)
}

func ports(pos, neg []uint16, port uint16) bool {
	if len(pos) > 0 && !slices.Contains(pos, port) {
		return false
	}
	return !slices.Contains(neg, port)
}

func ips(pos, neg []netip.Prefix, a netip.Addr) bool {
	if len(pos) > 0 && !anyPrefix(pos, a) {
		return false
	}
	return !anyPrefix(neg, a)
}

func anyPrefix(ps []netip.Prefix, a netip.Addr) bool {
	for _, p := range ps {
		if pa := p.Addr(); pa.Is4In6() && p.Bits() >= 96 {
			// Not normalized by a snapshot: an IPv4-mapped prefix denotes IPv4 addresses.
			p = netip.PrefixFrom(pa.Unmap(), p.Bits()-96)
		}
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// identity matches a value of the peer's identity. A plaintext connection has no identity: no
// value of either list matches it, so a positive list fails and a negative one passes.
func identity(pos, neg []state.StringMatch, v string, plaintext bool) bool {
	if plaintext {
		return len(pos) == 0
	}
	if len(pos) > 0 && !anyString(pos, v) {
		return false
	}
	return !anyString(neg, v)
}

func anyString(ms []state.StringMatch, v string) bool {
	for i := range ms {
		if ms[i].Matches(v) {
			return true
		}
	}
	return false
}
