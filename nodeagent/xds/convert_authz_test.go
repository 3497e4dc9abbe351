package xds

import (
	"errors"
	"net/netip"
	"reflect"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	workloadv1 "github.com/weftmesh/weft/api/workload/v1"
	"github.com/weftmesh/weft/nodeagent/state"
)

const allowGW = "authorization/shop/allow-gw"

func exact(v string) *workloadv1.StringMatch {
	return &workloadv1.StringMatch{Match: &workloadv1.StringMatch_Exact{Exact: v}}
}

func prefix(v string) *workloadv1.StringMatch {
	return &workloadv1.StringMatch{Match: &workloadv1.StringMatch_Prefix{Prefix: v}}
}

func suffix(v string) *workloadv1.StringMatch {
	return &workloadv1.StringMatch{Match: &workloadv1.StringMatch_Suffix{Suffix: v}}
}

func presence() *workloadv1.StringMatch {
	return &workloadv1.StringMatch{Match: &workloadv1.StringMatch_Presence{Presence: true}}
}

// authorizationAddr is an ALLOW policy of shop: from gw or plaintext-free shop sources in
// 10.244/16, to port 8080.
func authorizationAddr() *workloadv1.Address {
	return &workloadv1.Address{Name: allowGW, Type: &workloadv1.Address_Authorization{Authorization: &workloadv1.Authorization{
		Name:      "allow-gw",
		Namespace: "shop",
		Scope:     workloadv1.AuthorizationScope_WORKLOAD_SELECTOR,
		Action:    workloadv1.AuthorizationAction_ALLOW,
		Rules: []*workloadv1.AuthorizationRule{
			{Clauses: []*workloadv1.AuthorizationClause{
				{Matches: []*workloadv1.AuthorizationMatch{
					{Principals: []*workloadv1.StringMatch{exact("cluster.local/ns/shop/sa/gw")}},
					{
						Namespaces:    []*workloadv1.StringMatch{prefix("sh")},
						NotPrincipals: []*workloadv1.StringMatch{suffix("/sa/untrusted"), presence()},
						SourceIps:     []string{"10.244.0.0/16", "fd00::7", "::ffff:10.1.0.0/112"},
						NotSourceIps:  []string{"10.244.9.9"},
					},
				}},
				{Matches: []*workloadv1.AuthorizationMatch{{
					DestinationPorts:    []uint32{8080},
					NotDestinationPorts: []uint32{15020},
					DestinationIps:      []string{"10.96.0.10"},
					NotDestinationIps:   []string{"10.96.0.0/24"},
				}}},
			}},
			{}, // rules: [{}]
		},
	}}}
}

func TestConvertAuthorization(t *testing.T) {
	r, err := ConvertResource(authorizationAddr())
	if err != nil || r.Workload != nil || r.Service != nil {
		t.Fatalf("ConvertResource() = %+v, %v", r, err)
	}
	p := func(s string) netip.Prefix { return netip.MustParsePrefix(s) }
	want := &state.Authorization{
		Name: "allow-gw", Namespace: "shop", Scope: state.ScopeWorkloadSelector, Action: state.ActionAllow,
		Rules: []state.AuthorizationRule{
			{Clauses: []state.AuthorizationClause{
				{Matches: []state.AuthorizationMatch{
					{Principals: []state.StringMatch{state.Exact("cluster.local/ns/shop/sa/gw")}},
					{
						Namespaces:    []state.StringMatch{state.Prefix("sh")},
						NotPrincipals: []state.StringMatch{state.Suffix("/sa/untrusted"), state.Presence()},
						SourceIPs:     []netip.Prefix{p("10.244.0.0/16"), p("fd00::7/128"), p("10.1.0.0/16")},
						NotSourceIPs:  []netip.Prefix{p("10.244.9.9/32")},
					},
				}},
				{Matches: []state.AuthorizationMatch{{
					DestinationPorts:    []uint16{8080},
					NotDestinationPorts: []uint16{15020},
					DestinationIPs:      []netip.Prefix{p("10.96.0.10/32")},
					NotDestinationIPs:   []netip.Prefix{p("10.96.0.0/24")},
				}}},
			}},
			{},
		},
	}
	if !reflect.DeepEqual(r.Authorization, want) {
		t.Errorf("ConvertResource() =\n%+v\nwant\n%+v", r.Authorization, want)
	}

	// A workload names its selecting policies by resource name.
	wa := workloadAddr(webUID, "10.0.0.1")
	wa.GetWorkload().AuthorizationPolicies = []string{allowGW, "authorization/istio-system/x"}
	r, err = ConvertResource(wa)
	if err != nil || !reflect.DeepEqual(r.Workload.AuthorizationPolicies, []string{"shop/allow-gw", "istio-system/x"}) {
		t.Errorf("ConvertResource(workload) = %+v, %v", r.Workload, err)
	}
}

func TestConvertAuthorizationErrors(t *testing.T) {
	az := func(a *workloadv1.Address) *workloadv1.Authorization { return a.GetAuthorization() }
	match := func(a *workloadv1.Address) *workloadv1.AuthorizationMatch {
		return az(a).GetRules()[0].GetClauses()[0].GetMatches()[1]
	}
	tests := []struct {
		name   string
		in     *workloadv1.Address
		mutate func(a *workloadv1.Address)
		want   []string
	}{
		{
			name: "CIDRs, ports, string matches",
			in:   authorizationAddr(),
			mutate: func(a *workloadv1.Address) {
				m := match(a)
				m.SourceIps = append(m.SourceIps, "10.0.0.0/33")
				m.NotDestinationIps = []string{"fe80::1%eth0", "x"}
				m.DestinationPorts = []uint32{0, 65536} // 0 is accepted, as by Istio
				m.Principals = []*workloadv1.StringMatch{{}}
			},
			want: []string{
				`authorization "authorization/shop/allow-gw": rules[0].clauses[0].matches[1].principals[0]: no match is set; set exact, prefix, suffix or presence`,
				`authorization "authorization/shop/allow-gw": rules[0].clauses[0].matches[1].sourceIps[3]: "10.0.0.0/33" is not a CIDR; write a CIDR such as 10.0.0.0/8 or fd00::/64, or a single address`,
				`authorization "authorization/shop/allow-gw": rules[0].clauses[0].matches[1].notDestinationIps[0]: "fe80::1%eth0" is not a CIDR; write a CIDR such as 10.0.0.0/8 or fd00::/64, or a single address`,
				`authorization "authorization/shop/allow-gw": rules[0].clauses[0].matches[1].notDestinationIps[1]: "x" is not a CIDR; write a CIDR such as 10.0.0.0/8 or fd00::/64, or a single address`,
				`authorization "authorization/shop/allow-gw": rules[0].clauses[0].matches[1].destinationPorts[1]: 65536 is out of range; write a port number from 1 to 65535`,
			},
		},
		{
			name: "enum values out of range",
			in:   authorizationAddr(),
			mutate: func(a *workloadv1.Address) {
				az(a).Scope = 3
				az(a).Action = 3 // CUSTOM has no value
			},
			want: []string{
				`authorization "authorization/shop/allow-gw": scope: unknown value 3; use WORKLOAD_SELECTOR, NAMESPACE or GLOBAL`,
				`authorization "authorization/shop/allow-gw": action: unknown value 3; use ALLOW, DENY or AUDIT`,
			},
		},
		{
			name:   "named unlike its content",
			in:     authorizationAddr(),
			mutate: func(a *workloadv1.Address) { az(a).Namespace = "shop2" },
			want: []string{
				`authorization "authorization/shop/allow-gw": the resource name differs from "authorization/shop2/allow-gw"; name an authorization resource "authorization/<namespace>/<name>"`,
			},
		},
		{
			name: "workload names a policy without the resource prefix",
			in:   workloadAddr(webUID, "10.0.0.1"),
			mutate: func(a *workloadv1.Address) {
				a.GetWorkload().AuthorizationPolicies = []string{allowGW, "shop/allow-gw"}
			},
			want: []string{
				`workload "Kubernetes//Pod/shop/web-1": authorizationPolicies[1]: "shop/allow-gw" is not an authorization's resource name; write "authorization/<namespace>/<name>"`,
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := proto.Clone(tt.in).(*workloadv1.Address)
			tt.mutate(in)
			r, err := ConvertResource(in)
			if err == nil {
				t.Fatalf("ConvertResource() = %+v, nil; want an error", r)
			}
			if got, want := err.Error(), strings.Join(tt.want, "\n"); got != want {
				t.Errorf("error:\n%s\nwant:\n%s", got, want)
			}
			var re *ResourceError
			if !errors.As(err, &re) || re.Name != in.GetName() {
				t.Errorf("errors.As(*ResourceError) = %+v", re)
			}
		})
	}
}

func TestBuildSnapshotAuthorizations(t *testing.T) {
	web := workloadAddr(webUID, "10.0.0.1")
	web.GetWorkload().AuthorizationPolicies = []string{allowGW}
	strict := &workloadv1.Address{Name: "authorization/istio-system/strict", Type: &workloadv1.Address_Authorization{Authorization: &workloadv1.Authorization{
		Name: "strict", Namespace: "istio-system", Scope: workloadv1.AuthorizationScope_GLOBAL, Action: workloadv1.AuthorizationAction_DENY,
		Rules: []*workloadv1.AuthorizationRule{{Clauses: []*workloadv1.AuthorizationClause{{Matches: []*workloadv1.AuthorizationMatch{{
			NotPrincipals: []*workloadv1.StringMatch{presence()},
		}}}}}},
	}}}
	snap, err := buildSnapshot("1", held(t, web, strict, authorizationAddr()))
	if err != nil {
		t.Fatal(err)
	}
	w, _ := snap.WorkloadByUID(webUID)
	if got := keys(snap.PoliciesFor(w)); !reflect.DeepEqual(got, []string{"istio-system/strict", "shop/allow-gw"}) {
		t.Errorf("PoliciesFor() = %q", got)
	}

	// Problems of the snapshot are reported against the resources.
	bad := authorizationAddr()
	bad.GetAuthorization().GetRules()[0].GetClauses()[0].GetMatches()[0].Principals = []*workloadv1.StringMatch{exact("")}
	web.GetWorkload().AuthorizationPolicies = []string{allowGW, "authorization/shop/gone"}
	_, err = buildSnapshot("2", held(t, web, bad))
	want := `authorization "authorization/shop/allow-gw": rules[0].clauses[0].matches[0].principals[0]: empty exact value; write a value, "prefix*", "*suffix" or "*" (any value)`
	if err == nil || err.Error() != want {
		t.Errorf("error:\n%v\nwant:\n%s", err, want)
	}
}

func keys(as []*state.Authorization) []string {
	out := make([]string, len(as))
	for i, a := range as {
		out[i] = a.Key()
	}
	return out
}
