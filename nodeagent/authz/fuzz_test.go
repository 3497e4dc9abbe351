package authz_test

import (
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/weftmesh/weft/nodeagent/authz"
	"github.com/weftmesh/weft/nodeagent/state"
)

// bytesReader hands out fuzz bytes; past the end it returns zeros.
type bytesReader struct{ b []byte }

func (r *bytesReader) next() int {
	if len(r.b) == 0 {
		return 0
	}
	v := r.b[0]
	r.b = r.b[1:]
	return int(v)
}

// pick returns one of vs.
func pick[T any](r *bytesReader, vs []T) T { return vs[r.next()%len(vs)] }

// Small pools, so that random policies and connections meet often.
var (
	fuzzPrincipals = []string{"", gw, tool, "cluster.local/ns/shop/sa/cart", "spiffe://" + gw, "example.org/ns/shop/sa/gw"}
	fuzzStrings    = []string{"*", gw, tool, "cluster.local/ns/shop/*", "*/sa/gw", "shop", "dev", "sh*", "*ev", "cluster.local/*", "x"}
	fuzzPrefixes   = []string{"10.0.0.0/8", "10.2.0.0/16", "10.2.0.7", "10.3.0.9/32", "0.0.0.0/0", "::/0", "fd00::/16", "fd00:2::7", "::ffff:10.2.0.0/112", "192.168.0.0/16"}
	fuzzAddrs      = []string{"10.2.0.7", "10.3.0.9", "10.9.0.1", "192.168.1.1", "fd00:2::7", "::ffff:10.2.0.7", "10.1.0.10", "fd00:1::10"}
	fuzzPorts      = []uint16{80, 8080, 9080, 9090, 15000}
)

func fuzzStringMatches(r *bytesReader) []state.StringMatch {
	n := r.next() % 3
	if n == 0 {
		return nil
	}
	out := make([]state.StringMatch, n)
	for i := range out {
		out[i] = state.ParseStringMatch(pick(r, fuzzStrings))
	}
	return out
}

func fuzzCIDRs(r *bytesReader) []netip.Prefix {
	n := r.next() % 3
	if n == 0 {
		return nil
	}
	out := make([]netip.Prefix, n)
	for i := range out {
		s := pick(r, fuzzPrefixes)
		if r.next()%2 == 0 { // sometimes as the caller wrote it, not normalized
			out[i], _ = state.ParseCIDR(s)
		} else if strings.Contains(s, "/") {
			out[i] = netip.MustParsePrefix(s)
		} else {
			a := netip.MustParseAddr(s)
			out[i] = netip.PrefixFrom(a, a.BitLen())
		}
	}
	return out
}

func fuzzPortList(r *bytesReader) []uint16 {
	n := r.next() % 3
	if n == 0 {
		return nil
	}
	out := make([]uint16, n)
	for i := range out {
		out[i] = pick(r, fuzzPorts)
	}
	return out
}

func fuzzMatch(r *bytesReader) state.AuthorizationMatch {
	var m state.AuthorizationMatch
	set := r.next() | r.next()<<8 // which fields are present
	if set&1 != 0 {
		m.Principals = fuzzStringMatches(r)
	}
	if set&2 != 0 {
		m.NotPrincipals = fuzzStringMatches(r)
	}
	if set&4 != 0 {
		m.Namespaces = fuzzStringMatches(r)
	}
	if set&8 != 0 {
		m.NotNamespaces = fuzzStringMatches(r)
	}
	if set&16 != 0 {
		m.SourceIPs = fuzzCIDRs(r)
	}
	if set&32 != 0 {
		m.NotSourceIPs = fuzzCIDRs(r)
	}
	if set&64 != 0 {
		m.DestinationIPs = fuzzCIDRs(r)
	}
	if set&128 != 0 {
		m.NotDestinationIPs = fuzzCIDRs(r)
	}
	if set&256 != 0 {
		m.DestinationPorts = fuzzPortList(r)
	}
	if set&512 != 0 {
		m.NotDestinationPorts = fuzzPortList(r)
	}
	return m
}

func fuzzPolicies(r *bytesReader) []*state.Authorization {
	n := r.next() % 5
	out := make([]*state.Authorization, n)
	for i := range out {
		a := &state.Authorization{
			Name:      "p" + string(rune('0'+i)),
			Namespace: "bookinfo",
			Action:    state.AuthorizationAction(r.next() % 3),
		}
		if nr := r.next() % 4; nr > 0 {
			a.Rules = make([]state.AuthorizationRule, nr-1) // nr-1 == 0: rules present but empty
			for j := range a.Rules {
				a.Rules[j].Clauses = make([]state.AuthorizationClause, r.next()%4)
				for k := range a.Rules[j].Clauses {
					ms := make([]state.AuthorizationMatch, r.next()%4)
					for l := range ms {
						ms[l] = fuzzMatch(r)
					}
					a.Rules[j].Clauses[k].Matches = ms
				}
			}
		}
		out[i] = a
	}
	return out
}

func fuzzConn(r *bytesReader) authz.Conn {
	return authz.Conn{
		SourcePrincipal: pick(r, fuzzPrincipals),
		SourceIP:        netip.MustParseAddr(pick(r, fuzzAddrs)),
		DestinationIP:   netip.MustParseAddr(pick(r, fuzzAddrs)),
		DestinationPort: pick(r, fuzzPorts),
	}
}

// FuzzEvaluate builds policies and a connection from the fuzz input and checks that Evaluate
// does not panic, agrees with a naive reading of the semantics (refMatches), and keeps
// Istio's invariants: a matching DENY always denies; without ALLOW policies and a matching
// DENY the connection is allowed; otherwise it is allowed exactly when an ALLOW matches;
// AUDIT policies are reported and never change the decision.
func FuzzEvaluate(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte{1, 1, 2, 1, 1, 1, 1, 0, 1, 1})
	f.Add([]byte{3, 0, 2, 2, 1, 2, 3, 1, 0, 16, 1, 2, 1, 2, 3, 4, 5, 6, 7})
	f.Add([]byte{4, 1, 3, 3, 3, 3, 255, 3, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 0, 0, 2, 2, 9, 9, 9})
	f.Fuzz(func(t *testing.T, data []byte) {
		r := &bytesReader{b: data}
		policies := fuzzPolicies(r)
		c := fuzzConn(r)
		d := authz.Evaluate(policies, c)

		var (
			firstDeny string
			allows    int
			allowed   bool
			audited   []string
		)
		for _, p := range policies {
			m := refMatches(p, c)
			if ok, _ := authz.Matches(p, c); ok != m {
				t.Fatalf("Matches(%s) = %t, the reference says %t", p.Key(), ok, m)
			}
			switch p.Action {
			case state.ActionDeny:
				if m && firstDeny == "" {
					firstDeny = p.Key()
				}
			case state.ActionAllow:
				allows++
				allowed = allowed || m
			case state.ActionAudit:
				if m {
					audited = append(audited, p.Key())
				}
			}
		}
		switch {
		case firstDeny != "":
			if d.Allowed || d.Policy != firstDeny || d.Action != state.ActionDeny {
				t.Fatalf("a matching DENY (%s) must deny; got %+v", firstDeny, d)
			}
		case allows == 0:
			if !d.Allowed || d.Policy != "" {
				t.Fatalf("no ALLOW policy and no matching DENY must allow; got %+v", d)
			}
		default:
			if d.Allowed != allowed || d.Allows != allows {
				t.Fatalf("ALLOW policies (%d) match: %t; got %+v", allows, allowed, d)
			}
		}
		if !slices.Equal(d.Audited, audited) {
			t.Fatalf("Audited = %q, want %q", d.Audited, audited)
		}
		if r := d.Reason(); r == "" || strings.Contains(r, "\n") {
			t.Fatalf("Reason() = %q", r)
		}

		// AUDIT policies never change the decision.
		noAudit := slices.DeleteFunc(slices.Clone(policies), func(p *state.Authorization) bool { return p.Action == state.ActionAudit })
		if d2 := authz.Evaluate(noAudit, c); d2.Allowed != d.Allowed || d2.Policy != d.Policy {
			t.Fatalf("without the AUDIT policies: %+v; with: %+v", d2, d)
		}
		// The same connection with IPv4-mapped addresses is decided alike.
		c2 := c
		if c2.SourceIP.Is4() {
			c2.SourceIP = netip.AddrFrom16(c2.SourceIP.As16())
		}
		if d2 := authz.Evaluate(policies, c2); d2.Allowed != d.Allowed || d2.Policy != d.Policy {
			t.Fatalf("IPv4-mapped source decided differently: %+v; unmapped: %+v", d2, d)
		}
	})
}

// refMatches is a naive, independent reading of the semantics of an Authorization.
func refMatches(p *state.Authorization, c authz.Conn) bool {
	principal := strings.TrimPrefix(c.SourcePrincipal, "spiffe://")
	var ns string
	if principal != "" {
		ns = authz.PrincipalNamespace(principal)
	}
	src, dst := c.SourceIP.Unmap(), c.DestinationIP.Unmap()
	strOK := func(pos, neg []state.StringMatch, v string) bool {
		has := func(ms []state.StringMatch) bool {
			if principal == "" { // plaintext: the value is absent, nothing matches it
				return false
			}
			return slices.ContainsFunc(ms, func(m state.StringMatch) bool { return m.Matches(v) })
		}
		return (len(pos) == 0 || has(pos)) && !has(neg)
	}
	ipOK := func(pos, neg []netip.Prefix, a netip.Addr) bool {
		has := func(ps []netip.Prefix) bool {
			for _, p := range ps {
				if p.Addr().Is4In6() && p.Bits() >= 96 {
					p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
				}
				if p.Masked().Contains(a) {
					return true
				}
			}
			return false
		}
		return (len(pos) == 0 || has(pos)) && !has(neg)
	}
	portOK := func(pos, neg []uint16) bool {
		return (len(pos) == 0 || slices.Contains(pos, c.DestinationPort)) && !slices.Contains(neg, c.DestinationPort)
	}
	return slices.ContainsFunc(p.Rules, func(r state.AuthorizationRule) bool {
		for _, cl := range r.Clauses {
			if len(cl.Matches) == 0 {
				continue
			}
			if !slices.ContainsFunc(cl.Matches, func(m state.AuthorizationMatch) bool {
				return strOK(m.Principals, m.NotPrincipals, principal) &&
					strOK(m.Namespaces, m.NotNamespaces, ns) &&
					ipOK(m.SourceIPs, m.NotSourceIPs, src) &&
					ipOK(m.DestinationIPs, m.NotDestinationIPs, dst) &&
					portOK(m.DestinationPorts, m.NotDestinationPorts)
			}) {
				return false
			}
		}
		return true
	})
}
