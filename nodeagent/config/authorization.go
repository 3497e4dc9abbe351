package config

import (
	"net/netip"
	"strconv"

	"github.com/weftmesh/weft/nodeagent/state"
)

// The file form of an authorization policy: weft.workload.v1.Authorization in camelCase,
// with string matches in Istio's form ("a", "a*", "*a", "*") and CIDRs or single addresses.

type fileAuthorization struct {
	Name      string      `json:"name"`
	Namespace string      `json:"namespace"`
	Scope     string      `json:"scope"`
	Action    string      `json:"action"`
	Rules     []*fileRule `json:"rules"`
}

type fileRule struct {
	Clauses []*fileClause `json:"clauses"`
}

type fileClause struct {
	Matches []*fileMatch `json:"matches"`
}

type fileMatch struct {
	Namespaces          []string `json:"namespaces"`
	NotNamespaces       []string `json:"notNamespaces"`
	Principals          []string `json:"principals"`
	NotPrincipals       []string `json:"notPrincipals"`
	SourceIPs           []string `json:"sourceIps"`
	NotSourceIPs        []string `json:"notSourceIps"`
	DestinationIPs      []string `json:"destinationIps"`
	NotDestinationIPs   []string `json:"notDestinationIps"`
	DestinationPorts    []int    `json:"destinationPorts"`
	NotDestinationPorts []int    `json:"notDestinationPorts"`
}

func convertAuthorizations(p *state.Problems, in []*fileAuthorization) []*state.Authorization {
	if in == nil {
		return nil
	}
	out := make([]*state.Authorization, len(in))
	for i, fa := range in {
		if fa != nil { // a nil entry is reported by the snapshot
			out[i] = convertAuthorization(p, "authorizations["+strconv.Itoa(i)+"]", fa)
		}
	}
	return out
}

func convertAuthorization(p *state.Problems, path string, fa *fileAuthorization) *state.Authorization {
	a := &state.Authorization{Name: fa.Name, Namespace: fa.Namespace}
	parseEnum(p, path+".scope", fa.Scope, &a.Scope)
	parseEnum(p, path+".action", fa.Action, &a.Action)
	if fa.Rules != nil {
		a.Rules = make([]state.AuthorizationRule, 0, len(fa.Rules))
	}
	for i, fr := range fa.Rules {
		rp := path + ".rules[" + strconv.Itoa(i) + "]"
		if fr == nil {
			p.Add(rp, "empty entry; write {} for a rule that matches every connection, or remove the entry")
			continue
		}
		var r state.AuthorizationRule
		for j, fc := range fr.Clauses {
			cp := rp + ".clauses[" + strconv.Itoa(j) + "]"
			if fc == nil {
				p.Add(cp, "empty entry; describe a clause, e.g. {matches: [{principals: [<principal>]}]}, or remove the entry")
				continue
			}
			var cl state.AuthorizationClause
			if fc.Matches != nil {
				cl.Matches = make([]state.AuthorizationMatch, 0, len(fc.Matches))
			}
			for k, fm := range fc.Matches {
				mp := cp + ".matches[" + strconv.Itoa(k) + "]"
				if fm == nil {
					p.Add(mp, "empty entry; describe a match, e.g. {namespaces: [shop]}, or remove the entry")
					continue
				}
				cl.Matches = append(cl.Matches, convertMatch(p, mp, fm))
			}
			r.Clauses = append(r.Clauses, cl)
		}
		a.Rules = append(a.Rules, r)
	}
	return a
}

func convertMatch(p *state.Problems, path string, fm *fileMatch) state.AuthorizationMatch {
	return state.AuthorizationMatch{
		Namespaces:          stringMatches(fm.Namespaces),
		NotNamespaces:       stringMatches(fm.NotNamespaces),
		Principals:          stringMatches(fm.Principals),
		NotPrincipals:       stringMatches(fm.NotPrincipals),
		SourceIPs:           parseCIDRs(p, path+".sourceIps", fm.SourceIPs),
		NotSourceIPs:        parseCIDRs(p, path+".notSourceIps", fm.NotSourceIPs),
		DestinationIPs:      parseCIDRs(p, path+".destinationIps", fm.DestinationIPs),
		NotDestinationIPs:   parseCIDRs(p, path+".notDestinationIps", fm.NotDestinationIPs),
		DestinationPorts:    parseMatchPorts(p, path+".destinationPorts", fm.DestinationPorts),
		NotDestinationPorts: parseMatchPorts(p, path+".notDestinationPorts", fm.NotDestinationPorts),
	}
}

// stringMatches reads Istio's forms; the snapshot reports the values that cannot be matches.
func stringMatches(in []string) []state.StringMatch {
	if in == nil {
		return nil
	}
	out := make([]state.StringMatch, len(in))
	for i, s := range in {
		out[i] = state.ParseStringMatch(s)
	}
	return out
}

func parseCIDRs(p *state.Problems, path string, in []string) []netip.Prefix {
	if in == nil {
		return nil
	}
	out := make([]netip.Prefix, 0, len(in))
	for k, s := range in {
		pre, ok := state.ParseCIDR(s)
		if !ok {
			p.Add(path+"["+strconv.Itoa(k)+"]", "%q is not a CIDR; write a CIDR such as 10.0.0.0/8 or fd00::/64, or a single address", s)
			continue
		}
		out = append(out, pre)
	}
	return out
}

// parseMatchPorts parses the ports of a match; 0 is kept (Istio accepts it; it matches no
// connection).
func parseMatchPorts(p *state.Problems, path string, in []int) []uint16 {
	if in == nil {
		return nil
	}
	out := make([]uint16, 0, len(in))
	for k, n := range in {
		if port, ok := checkPort(p, path+"["+strconv.Itoa(k)+"]", n, true); ok {
			out = append(out, port)
		}
	}
	return out
}
