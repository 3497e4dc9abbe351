package xds

import (
	"net/netip"
	"strconv"

	workloadv1 "github.com/weftmesh/weft/api/workload/v1"
	"github.com/weftmesh/weft/nodeagent/state"
)

// convertAuthorization converts an authorization policy received as the resource name, which
// must be "authorization/<namespace>/<name>".
func convertAuthorization(p *problems, name string, in *workloadv1.Authorization) *state.Authorization {
	if ns, n := in.GetNamespace(), in.GetName(); ns != "" && n != "" && state.AuthorizationResourcePrefix+ns+"/"+n != name {
		p.add("", "the resource name differs from %q; name an authorization resource \"authorization/<namespace>/<name>\"",
			state.AuthorizationResourcePrefix+ns+"/"+n)
	}
	a := &state.Authorization{Name: in.GetName(), Namespace: in.GetNamespace()}
	a.Scope = convertEnum[state.AuthorizationScope](p, "scope", in.GetScope(), workloadv1.AuthorizationScope_name)
	a.Action = convertEnum[state.AuthorizationAction](p, "action", in.GetAction(), workloadv1.AuthorizationAction_name)
	if in.GetRules() != nil {
		a.Rules = make([]state.AuthorizationRule, 0, len(in.GetRules()))
	}
	for i, r := range in.GetRules() {
		var rule state.AuthorizationRule
		for j, cl := range r.GetClauses() {
			var c state.AuthorizationClause
			if cl.GetMatches() != nil {
				c.Matches = make([]state.AuthorizationMatch, 0, len(cl.GetMatches()))
			}
			for k, m := range cl.GetMatches() {
				field := "rules[" + strconv.Itoa(i) + "].clauses[" + strconv.Itoa(j) + "].matches[" + strconv.Itoa(k) + "]"
				c.Matches = append(c.Matches, convertMatch(p, field, m))
			}
			rule.Clauses = append(rule.Clauses, c)
		}
		a.Rules = append(a.Rules, rule)
	}
	return a
}

func convertMatch(p *problems, field string, m *workloadv1.AuthorizationMatch) state.AuthorizationMatch {
	return state.AuthorizationMatch{
		Namespaces:          convertStringMatches(p, field+".namespaces", m.GetNamespaces()),
		NotNamespaces:       convertStringMatches(p, field+".notNamespaces", m.GetNotNamespaces()),
		Principals:          convertStringMatches(p, field+".principals", m.GetPrincipals()),
		NotPrincipals:       convertStringMatches(p, field+".notPrincipals", m.GetNotPrincipals()),
		SourceIPs:           convertCIDRs(p, field+".sourceIps", m.GetSourceIps()),
		NotSourceIPs:        convertCIDRs(p, field+".notSourceIps", m.GetNotSourceIps()),
		DestinationIPs:      convertCIDRs(p, field+".destinationIps", m.GetDestinationIps()),
		NotDestinationIPs:   convertCIDRs(p, field+".notDestinationIps", m.GetNotDestinationIps()),
		DestinationPorts:    convertMatchPorts(p, field+".destinationPorts", m.GetDestinationPorts()),
		NotDestinationPorts: convertMatchPorts(p, field+".notDestinationPorts", m.GetNotDestinationPorts()),
	}
}

// convertStringMatches converts the oneof of each StringMatch; presence counts whatever its
// boolean says, as in ztunnel. The snapshot checks the values.
func convertStringMatches(p *problems, field string, in []*workloadv1.StringMatch) []state.StringMatch {
	if in == nil {
		return nil
	}
	out := make([]state.StringMatch, 0, len(in))
	for k, m := range in {
		switch v := m.GetMatch().(type) {
		case *workloadv1.StringMatch_Exact:
			out = append(out, state.Exact(v.Exact))
		case *workloadv1.StringMatch_Prefix:
			out = append(out, state.Prefix(v.Prefix))
		case *workloadv1.StringMatch_Suffix:
			out = append(out, state.Suffix(v.Suffix))
		case *workloadv1.StringMatch_Presence:
			out = append(out, state.Presence())
		default:
			p.add(field+"["+strconv.Itoa(k)+"]", "no match is set; set exact, prefix, suffix or presence")
		}
	}
	return out
}

func convertCIDRs(p *problems, field string, in []string) []netip.Prefix {
	if in == nil {
		return nil
	}
	out := make([]netip.Prefix, 0, len(in))
	for k, s := range in {
		pre, ok := state.ParseCIDR(s)
		if !ok {
			p.add(field+"["+strconv.Itoa(k)+"]", "%q is not a CIDR; write a CIDR such as 10.0.0.0/8 or fd00::/64, or a single address", s)
			continue
		}
		out = append(out, pre)
	}
	return out
}

// convertMatchPorts converts the ports of a match; 0 is kept (Istio accepts it; it matches no
// connection).
func convertMatchPorts(p *problems, field string, in []uint32) []uint16 {
	if in == nil {
		return nil
	}
	out := make([]uint16, 0, len(in))
	for k, n := range in {
		if port, ok := convertPort(p, field+"["+strconv.Itoa(k)+"]", n, true); ok {
			out = append(out, port)
		}
	}
	return out
}
