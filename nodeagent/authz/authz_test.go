package authz_test

import (
	"net/netip"
	"testing"

	"github.com/weftmesh/weft/nodeagent/authz"
	"github.com/weftmesh/weft/nodeagent/state"
)

func TestReason(t *testing.T) {
	tests := []struct {
		d    authz.Decision
		want string
	}{
		{authz.Decision{Policy: "shop/block-10", Action: state.ActionDeny, Rule: 0},
			"denied by DENY policy shop/block-10: rule 0 matched"},
		{authz.Decision{Allowed: true, Policy: "shop/allow-gw", Action: state.ActionAllow, Rule: 2, Allows: 1},
			"allowed by ALLOW policy shop/allow-gw: rule 2 matched"},
		{authz.Decision{Action: state.ActionAllow, Rule: -1, Allows: 3},
			"denied: no ALLOW policy matched (3 apply)"},
		{authz.Decision{Allowed: true, Rule: -1, Audited: []string{"shop/a", "istio-system/b"}},
			"allowed: no ALLOW policy applies; audited by shop/a, istio-system/b"},
		{authz.Decision{Policy: "shop/odd", Action: 7, Rule: -1},
			"denied by AuthorizationAction(7) policy shop/odd: unknown action, denied (fail closed)"},
	}
	for _, tt := range tests {
		if got := tt.d.Reason(); got != tt.want {
			t.Errorf("Reason() = %q, want %q", got, tt.want)
		}
	}
}

func TestUnknownActionFailsClosed(t *testing.T) {
	p := &state.Authorization{Name: "odd", Namespace: "shop", Action: 7}
	if d := authz.Evaluate([]*state.Authorization{p}, gwToBooks); d.Allowed || d.Policy != "shop/odd" {
		t.Errorf("Evaluate() = %+v, want a deny by shop/odd", d)
	}
}

func TestPrincipalNamespace(t *testing.T) {
	tests := map[string]string{
		"cluster.local/ns/shop/sa/gw":          "shop",
		"spiffe://cluster.local/ns/shop/sa/gw": "shop",
		"example.org/ns/a.b-c/sa/x/extra":      "a.b-c",
		"cluster.local/sa/gw":                  "",
		"cluster.local/ns/shop":                "",
		"":                                     "",
		"cluster.local/ns/a/b/sa/c":            "",
	}
	for in, want := range tests {
		if got := authz.PrincipalNamespace(in); got != want {
			t.Errorf("PrincipalNamespace(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestSourceNamespaceGiven(t *testing.T) {
	p := &state.Authorization{Name: "a", Namespace: "bookinfo", Rules: []state.AuthorizationRule{rule(from(source(namespaces("given"))))}}
	c := gwToBooks
	c.SourceNamespace = "given"
	if d := authz.Evaluate([]*state.Authorization{p}, c); !d.Allowed {
		t.Errorf("SourceNamespace is not used: %s", d.Reason())
	}
	c = plainToBooks
	c.SourceNamespace = "given" // ignored: plaintext has no namespace
	if d := authz.Evaluate([]*state.Authorization{p}, c); d.Allowed {
		t.Errorf("a plaintext connection matched a namespace: %s", d.Reason())
	}
}

// benchPolicies are the policies of a busy workload: a mesh-wide STRICT-like DENY, a
// namespace DENY by IP blocks, an AUDIT, and three ALLOW policies, the last one matching.
func benchPolicies(b testing.TB) (*state.Snapshot, *state.Workload) {
	snap := mesh(b, ps(
		deny("istio-system/deny-plaintext", rule(from(source(notPrincipals("*"))))),
		deny("bookinfo/deny-blocks", rule(from(source(ipBlocks("192.168.0.0/16", "172.16.0.0/12", "fd00:bad::/32"))))),
		audit("bookinfo/audit-dev", rule(from(source(namespaces("dev"))))),
		allow("bookinfo/allow-monitoring", rule(from(source(namespaces("monitoring"))), to(operation(ports("15020"))))),
		allow("bookinfo/allow-dev", rule(from(source(principals("cluster.local/ns/dev/*"))), when("destination.port", "8080"))),
		allow("bookinfo/allow-shop", rule(
			from(source(principals("cluster.local/ns/shop/sa/cart")), source(namespaces("shop"), notIPBlocks("10.9.0.0/16"))),
			to(operation(ports("80", "9080"))),
		)).on("app=books"),
	))
	w, _ := snap.WorkloadByIP(netip.MustParseAddr("10.1.0.10"))
	return snap, w
}

func BenchmarkEvaluate(b *testing.B) {
	snap, w := benchPolicies(b)
	for _, bc := range []struct {
		name string
		conn authz.Conn
	}{
		{"allowed", gwToBooks},
		{"denied-plaintext", plainToBooks},
		{"denied-no-allow", mtls("cluster.local/ns/other/sa/x", "10.4.0.1", "10.1.0.10", 9080)},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				authz.Evaluate(snap.PoliciesFor(w), bc.conn)
			}
		})
	}
}

// TestEvaluateDoesNotAllocate pins the zero-allocation property of the hot path (no AUDIT
// policy matches).
func TestEvaluateDoesNotAllocate(t *testing.T) {
	snap, w := benchPolicies(t)
	for _, c := range []authz.Conn{gwToBooks, plainToBooks, mtls("spiffe://"+gw, "::ffff:10.2.0.7", "10.1.0.10", 9080)} {
		if n := testing.AllocsPerRun(100, func() { authz.Evaluate(snap.PoliciesFor(w), c) }); n != 0 {
			t.Errorf("Evaluate(%+v) allocates %v times", c, n)
		}
	}
}

// TestUnknownPolicyFailsClosed: a workload may name a policy its node does not receive (only
// the workload's own node enforces it); should a workload evaluated here name one, every
// connection to it is denied rather than let through unchecked.
func TestUnknownPolicyFailsClosed(t *testing.T) {
	w := &state.Workload{UID: "Kubernetes//Pod/shop/web", Name: "web", Namespace: "shop", Node: "node-a",
		Addresses: []netip.Addr{netip.MustParseAddr("10.0.0.1")}, AuthorizationPolicies: []string{"shop/elsewhere"}}
	snap := state.NewSnapshot("1", []*state.Workload{w}, nil)
	if err := snap.Validate(); err != nil {
		t.Fatalf("a workload naming a policy the snapshot lacks is valid: %v", err)
	}
	ws, _ := snap.WorkloadByUID(w.UID)
	d := authz.Evaluate(snap.PoliciesFor(ws), authz.Conn{SourcePrincipal: "cluster.local/ns/shop/sa/gw", SourceNamespace: "shop",
		SourceIP: netip.MustParseAddr("10.0.0.2"), DestinationIP: netip.MustParseAddr("10.0.0.1"), DestinationPort: 80})
	if d.Allowed || d.Policy != "shop/elsewhere" {
		t.Fatalf("decision %+v, want denied by shop/elsewhere", d)
	}
}
