package state

import (
	"encoding/json"
	"net/netip"
	"slices"
	"strings"
	"testing"
)

func pfx(s string) netip.Prefix {
	p, ok := ParseCIDR(s)
	if !ok {
		panic(s)
	}
	return p
}

// authzFixture returns policies of every scope for the workloads of fixture().
func authzFixture() []*Authorization {
	return []*Authorization{
		{Name: "allow-gw", Namespace: "shop", Scope: ScopeWorkloadSelector, Action: ActionAllow, Rules: []AuthorizationRule{{
			Clauses: []AuthorizationClause{{Matches: []AuthorizationMatch{{Principals: []StringMatch{Exact("cluster.local/ns/shop/sa/gw")}}}}},
		}}},
		{Name: "strict", Namespace: "istio-system", Scope: ScopeGlobal, Action: ActionDeny, Rules: []AuthorizationRule{{
			Clauses: []AuthorizationClause{{Matches: []AuthorizationMatch{{NotPrincipals: []StringMatch{Presence()}}}}},
		}}},
		{Name: "deny-blocks", Namespace: "shop", Scope: ScopeNamespace, Action: ActionDeny, Rules: []AuthorizationRule{{
			Clauses: []AuthorizationClause{{Matches: []AuthorizationMatch{{
				SourceIPs:        []netip.Prefix{netip.MustParsePrefix("10.9.9.9/16"), netip.MustParsePrefix("::ffff:192.168.0.0/112")},
				DestinationPorts: []uint16{8080},
			}}}},
		}}},
		{Name: "audit-all", Namespace: "legacy", Scope: ScopeNamespace, Action: ActionAudit, Rules: []AuthorizationRule{{}}},
	}
}

func authzSnapshot(t *testing.T, mutate func(ws []*Workload, as []*Authorization) []*Authorization) *Snapshot {
	t.Helper()
	ws, ss := fixture()
	ws[0].AuthorizationPolicies = []string{"shop/allow-gw"}
	as := authzFixture()
	if mutate != nil {
		as = mutate(ws, as)
	}
	return NewSnapshot("v1", ws, ss, WithAuthorizations(as))
}

func keys(as []*Authorization) []string {
	out := make([]string, len(as))
	for i, a := range as {
		out[i] = a.Key()
	}
	return out
}

func TestPoliciesFor(t *testing.T) {
	s := authzSnapshot(t, nil)
	if err := s.Validate(); err != nil {
		t.Fatal(err)
	}
	if got, want := keys(s.Authorizations()), []string{"istio-system/strict", "legacy/audit-all", "shop/allow-gw", "shop/deny-blocks"}; !slices.Equal(got, want) {
		t.Errorf("Authorizations() = %q, want %q", got, want)
	}
	tests := []struct {
		uid  string
		want []string
	}{
		{"Kubernetes//Pod/shop/web-1", []string{"istio-system/strict", "shop/deny-blocks", "shop/allow-gw"}},
		{"Kubernetes//Pod/shop/web-2", []string{"istio-system/strict", "shop/deny-blocks"}},
		{"Kubernetes//Pod/legacy/db-0", []string{"istio-system/strict", "legacy/audit-all"}},
	}
	for _, tt := range tests {
		w, _ := s.WorkloadByUID(tt.uid)
		if got := keys(s.PoliciesFor(w)); !slices.Equal(got, tt.want) {
			t.Errorf("PoliciesFor(%s) = %q, want %q", tt.uid, got, tt.want)
		}
	}
	// Workloads of one namespace without selecting policies share one list.
	w2, _ := s.WorkloadByUID("Kubernetes//Pod/shop/web-2")
	w3, _ := s.WorkloadByUID("Kubernetes//Pod/shop/web-3")
	if &s.PoliciesFor(w2)[0] != &s.PoliciesFor(w3)[0] {
		t.Error("web-2 and web-3 do not share their policy list")
	}
	// A workload that is not the snapshot's own is resolved against its policies.
	other := &Workload{Namespace: "shop", AuthorizationPolicies: []string{"shop/allow-gw", "shop/unknown", "shop/deny-blocks"}}
	if got, want := keys(s.PoliciesFor(other)), []string{"istio-system/strict", "shop/deny-blocks", "shop/allow-gw"}; !slices.Equal(got, want) {
		t.Errorf("PoliciesFor(other) = %q, want %q", got, want)
	}
	if s.PoliciesFor(nil) != nil {
		t.Error("PoliciesFor(nil) != nil")
	}
	if a, ok := s.Authorization("shop/allow-gw"); !ok || a.ResourceName() != "authorization/shop/allow-gw" {
		t.Errorf("Authorization() = %v, %t", a, ok)
	}
	// CIDRs are normalized: masked, IPv4-mapped prefixes made IPv4.
	a, _ := s.Authorization("shop/deny-blocks")
	got := a.Rules[0].Clauses[0].Matches[0].SourceIPs
	if want := []netip.Prefix{pfx("10.9.0.0/16"), pfx("192.168.0.0/16")}; !slices.Equal(got, want) {
		t.Errorf("SourceIPs = %v, want %v", got, want)
	}
	if in := authzFixture()[2].Rules[0].Clauses[0].Matches[0].SourceIPs[0]; in.String() != "10.9.9.9/16" {
		t.Errorf("NewSnapshot modified its input: %v", in)
	}
}

func TestPoliciesForDoesNotAllocate(t *testing.T) {
	s := authzSnapshot(t, nil)
	w, _ := s.WorkloadByUID("Kubernetes//Pod/shop/web-1")
	a, _ := s.Authorization("shop/allow-gw")
	if n := testing.AllocsPerRun(100, func() {
		s.PoliciesFor(w)
		_ = a.Key()
	}); n != 0 {
		t.Errorf("PoliciesFor allocates %v times per run, want 0", n)
	}
}

func TestValidateAuthorizations(t *testing.T) {
	match := func(as []*Authorization) *AuthorizationMatch {
		return &as[2].Rules[0].Clauses[0].Matches[0]
	}
	tests := []struct {
		name   string
		mutate func(ws []*Workload, as []*Authorization) []*Authorization
		want   []string
	}{
		{
			name: "missing and malformed names, unknown enums",
			mutate: func(ws []*Workload, as []*Authorization) []*Authorization {
				return append(as, nil, &Authorization{Name: "a/b", Scope: 3, Action: 3})
			},
			want: []string{
				`authorizations[4]: empty entry; describe an authorization or remove the entry`,
				`authorizations[5].name: "a/b" contains "/"; write the policy's name (a Kubernetes name)`,
				`authorizations[5].namespace: missing; set the policy's namespace`,
				`authorizations[5].scope: unknown scope 3; use WORKLOAD_SELECTOR, NAMESPACE or GLOBAL`,
				`authorizations[5].action: unknown action 3; use ALLOW, DENY or AUDIT (CUSTOM is not supported by the node agent)`,
			},
		},
		{
			name: "duplicate policy",
			mutate: func(ws []*Workload, as []*Authorization) []*Authorization {
				dup := *as[0]
				return append(as, &dup)
			},
			want: []string{`authorizations[4].name: "shop/allow-gw" is already authorizations[0]; describe each policy once`},
		},
		{
			name: "string matches",
			mutate: func(ws []*Workload, as []*Authorization) []*Authorization {
				m := match(as)
				m.Principals = []StringMatch{Exact(""), Exact("*x"), Prefix(""), Prefix("*a"), Suffix(""), {Kind: MatchPresence, Value: "v"}, {Kind: 9}}
				m.NotNamespaces = []StringMatch{Exact("ok"), Exact("bad*")}
				return as
			},
			want: []string{
				`authorizations[2].rules[0].clauses[0].matches[0].notNamespaces[1]: exact value "bad*" starts or ends with "*", which Istio reads as a wildcard; write a value, "prefix*", "*suffix" or "*" (any value)`,
				`authorizations[2].rules[0].clauses[0].matches[0].principals[0]: empty exact value; write a value, "prefix*", "*suffix" or "*" (any value)`,
				`authorizations[2].rules[0].clauses[0].matches[0].principals[1]: exact value "*x" starts or ends with "*", which Istio reads as a wildcard; write a value, "prefix*", "*suffix" or "*" (any value)`,
				`authorizations[2].rules[0].clauses[0].matches[0].principals[2]: empty prefix, which matches any value; write "*" for presence, or a prefix`,
				`authorizations[2].rules[0].clauses[0].matches[0].principals[3]: prefix "*a" starts with "*"; Istio has no infix match: write a value, "prefix*", "*suffix" or "*" (any value)`,
				`authorizations[2].rules[0].clauses[0].matches[0].principals[4]: empty suffix, which matches any value; write "*" for presence, or a suffix`,
				`authorizations[2].rules[0].clauses[0].matches[0].principals[5]: presence takes no value (found "v"); write "*"`,
				`authorizations[2].rules[0].clauses[0].matches[0].principals[6]: unknown match kind MatchKind(9); use EXACT, PREFIX, SUFFIX or PRESENCE`,
			},
		},
		{
			name: "CIDRs and ports",
			mutate: func(ws []*Workload, as []*Authorization) []*Authorization {
				m := match(as)
				m.NotDestinationIPs = []netip.Prefix{pfx("10.0.0.0/8"), {}}
				m.DestinationPorts = []uint16{8080, 0}
				return as
			},
			want: []string{
				`authorizations[2].rules[0].clauses[0].matches[0].notDestinationIps[1]: missing or malformed; write a CIDR such as 10.0.0.0/8 or fd00::/64, or a single address`,
			},
		},
		{
			name: "workload names malformed and repeated policies (unknown ones are fine: see TestUnknownPolicyFailsClosed)",
			mutate: func(ws []*Workload, as []*Authorization) []*Authorization {
				ws[1].AuthorizationPolicies = []string{"shop/nope", "allow-gw", "shop/allow-gw", "shop/allow-gw", "shop/deny-blocks"}
				return as
			},
			want: []string{
				`workloads[1].authorizationPolicies[1]: "allow-gw" is not a policy name; write "<namespace>/<name>"`,
				`workloads[1].authorizationPolicies[3]: "shop/allow-gw" is listed twice; list each policy once`,
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := authzSnapshot(t, tt.mutate).Validate()
			if err == nil {
				t.Fatal("Validate() = nil")
			}
			var got []string
			for _, fe := range err.(*ValidationError).Errors {
				got = append(got, fe.Error())
			}
			if g, w := strings.Join(got, "\n"), strings.Join(tt.want, "\n"); g != w {
				t.Errorf("problems:\n%s\nwant:\n%s", g, w)
			}
		})
	}
}

func TestStringMatchForms(t *testing.T) {
	tests := []struct {
		in   string
		want StringMatch
	}{
		{"*", Presence()},
		{"cluster.local/ns/shop/*", Prefix("cluster.local/ns/shop/")},
		{"*/sa/gw", Suffix("/sa/gw")},
		{"shop", Exact("shop")},
		{"a*b", Exact("a*b")},
		{"**", Suffix("*")},
		{"a**", Prefix("a*")},
	}
	for _, tt := range tests {
		got := ParseStringMatch(tt.in)
		if got != tt.want || got.String() != tt.in {
			t.Errorf("ParseStringMatch(%q) = %+v (%q), want %+v", tt.in, got, got.String(), tt.want)
		}
	}
	for _, tt := range []struct {
		m    StringMatch
		v    string
		want bool
	}{
		{Exact("abc"), "abc", true}, {Exact("abc"), "abcd", false},
		{Prefix("abc"), "abc", true}, {Prefix("abc"), "abcd", true}, {Prefix("abc"), "xabc", false},
		{Suffix("abc"), "abc", true}, {Suffix("abc"), "xabc", true}, {Suffix("abc"), "abcd", false},
		{Presence(), "x", true}, {Presence(), "", false}, {StringMatch{Kind: 9}, "x", false},
	} {
		if got := tt.m.Matches(tt.v); got != tt.want {
			t.Errorf("%v.Matches(%q) = %t", tt.m, tt.v, got)
		}
	}
	b, _ := json.Marshal([]StringMatch{Presence(), Prefix("a")})
	var back []StringMatch
	if err := json.Unmarshal(b, &back); err != nil || string(b) != `["*","a*"]` || back[1] != Prefix("a") {
		t.Errorf("JSON = %s, back = %v, %v", b, back, err)
	}
}

func TestParseCIDR(t *testing.T) {
	tests := map[string]string{
		"10.0.0.0/8":          "10.0.0.0/8",
		"10.1.2.3/8":          "10.0.0.0/8",
		"10.1.2.3":            "10.1.2.3/32",
		"fd00::1":             "fd00::1/128",
		"fd00::/64":           "fd00::/64",
		"::ffff:10.1.2.3":     "10.1.2.3/32",
		"::ffff:10.0.0.0/104": "10.0.0.0/8",
		"::/0":                "::/0",
		"10.0.0.0/33":         "",
		"10.0.0.x":            "",
		"fe80::1%eth0":        "",
		"":                    "",
	}
	for in, want := range tests {
		p, ok := ParseCIDR(in)
		if got := p.String(); (want == "" && ok) || (want != "" && (!ok || got != want)) {
			t.Errorf("ParseCIDR(%q) = %s, %t; want %q", in, got, ok, want)
		}
	}
}
