package waypointcfg

import (
	"fmt"
	"testing"

	securityv1beta1 "istio.io/api/security/v1beta1"
	typev1beta1 "istio.io/api/type/v1beta1"
	securityv1 "istio.io/client-go/pkg/apis/security/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/weftmesh/weft/api"
	"github.com/weftmesh/weft/controller/envoy"
	"github.com/weftmesh/weft/controller/envoy/envoytest"
	"github.com/weftmesh/weft/controller/rbac"
	"github.com/weftmesh/weft/controller/translate"
)

const benchNS = envoytest.Namespace

// benchWaypoint builds waypoint <ns>/waypoint bound to the n Services of envoytest.Input(n), with
// a waypoint-wide ALLOW (GET and POST from namespaces foo and bar, except /admin/), a
// waypoint-wide AUDIT of /admin/, and on every fifth Service a DENY of DELETE of its own.
// It returns the waypoint, the objects of its namespace and the policies, as
// controller/app passes them to ForWaypoint.
func benchWaypoint(n int) (*translate.Waypoint, envoy.Input, []*securityv1.AuthorizationPolicy) {
	wp := &translate.Waypoint{Namespace: benchNS, Name: "waypoint", For: "service"}
	ein := envoytest.Input(n)
	op := func(o *securityv1beta1.Operation) []*securityv1beta1.Rule_To {
		return []*securityv1beta1.Rule_To{{Operation: o}}
	}
	gateway := []*typev1beta1.PolicyTargetReference{{Group: "gateway.networking.k8s.io", Kind: "Gateway", Name: "waypoint"}}
	policies := []*securityv1.AuthorizationPolicy{
		benchPolicy("waypoint-allow", securityv1beta1.AuthorizationPolicy_ALLOW, gateway, &securityv1beta1.Rule{
			From: []*securityv1beta1.Rule_From{{Source: &securityv1beta1.Source{Namespaces: []string{"foo", "bar"}}}},
			To:   op(&securityv1beta1.Operation{Methods: []string{"GET", "POST"}, NotPaths: []string{"/admin/*"}}),
		}),
		benchPolicy("waypoint-audit", securityv1beta1.AuthorizationPolicy_AUDIT, gateway, &securityv1beta1.Rule{
			To: op(&securityv1beta1.Operation{Paths: []string{"/admin/*"}}),
		}),
	}
	for i, svc := range ein.Services {
		wp.Services = append(wp.Services, benchNS+"/"+svc.Name)
		if i%5 == 0 {
			policies = append(policies, benchPolicy(svc.Name+"-no-delete", securityv1beta1.AuthorizationPolicy_DENY,
				[]*typev1beta1.PolicyTargetReference{{Kind: "Service", Name: svc.Name}},
				&securityv1beta1.Rule{To: op(&securityv1beta1.Operation{Methods: []string{"DELETE"}})}))
		}
	}
	return wp, ein, policies
}

func benchPolicy(name string, action securityv1beta1.AuthorizationPolicy_Action, refs []*typev1beta1.PolicyTargetReference, rule *securityv1beta1.Rule) *securityv1.AuthorizationPolicy {
	ap := &securityv1.AuthorizationPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: benchNS, Name: name, Generation: 1}}
	ap.Spec.Action = action
	ap.Spec.TargetRefs = refs
	ap.Spec.Rules = []*securityv1beta1.Rule{rule}
	return ap
}

var benchSizes = []int{10, 50, 200}

// checkBench fails b unless cfg is the complete configuration of benchWaypoint(n): a Listener,
// no problem, every policy accepted, and the per-route RBAC configs of the Services with a
// policy of their own.
func checkBench(b *testing.B, cfg *Config, n int) {
	b.Helper()
	if cfg.Listener == nil || len(cfg.Routes) == 0 || len(cfg.Problems) != 0 {
		b.Fatalf("listener %v, %d routes, problems %v", cfg.Listener != nil, len(cfg.Routes), cfg.Problems)
	}
	if err := cfg.Listener.ValidateAll(); err != nil {
		b.Fatal(err)
	}
	if want := 2 + (n+4)/5; len(cfg.PolicyStatus) != want {
		b.Fatalf("%d policy conditions, want %d", len(cfg.PolicyStatus), want)
	}
	for key, c := range cfg.PolicyStatus {
		if !c.Status {
			b.Fatalf("policy %s not accepted: %+v", key, c)
		}
	}
	overrides := 0
	for _, rc := range cfg.Routes {
		for _, vh := range rc.VirtualHosts {
			if len(vh.TypedPerFilterConfig) == 3 {
				overrides++
			}
		}
	}
	if want := (n + 4) / 5; overrides != want {
		b.Fatalf("%d virtual hosts with per-route RBAC, want %d", overrides, want)
	}
}

// BenchmarkForWaypoint assembles one waypoint's configuration as the controller does on every
// change (ForWaypoint): the routing of its namespace (envoy.Build), the RBAC of the policies
// attached to it (rbac.Build) and their merge.
func BenchmarkForWaypoint(b *testing.B) {
	for _, n := range benchSizes {
		b.Run(fmt.Sprintf("services=%d", n), func(b *testing.B) {
			wp, ein, policies := benchWaypoint(n)
			nsLabels := map[string]string{api.LabelDataplaneMode: api.DataplaneModeAmbient}
			checkBench(b, ForWaypoint(wp, ein, nsLabels, policies, translate.Options{}), n)
			b.ReportAllocs()
			for b.Loop() {
				ForWaypoint(wp, ein, nsLabels, policies, translate.Options{})
			}
		})
	}
}

// BenchmarkMerge is the merge alone: the RBAC filters inserted into every connection manager
// of the Listener and the per-route configs of the Services with policies of their own, from
// a prebuilt routing configuration and RBAC output.
func BenchmarkMerge(b *testing.B) {
	for _, n := range benchSizes {
		b.Run(fmt.Sprintf("services=%d", n), func(b *testing.B) {
			wp, ein, policies := benchWaypoint(n)
			ein.NamespaceLabels = map[string]string{api.LabelDataplaneMode: api.DataplaneModeAmbient}
			env := envoy.Build(ein, envoy.Options{})
			authz := rbac.Build(rbac.Input{WaypointName: wp.Name, WaypointNamespace: wp.Namespace, Services: wp.Services, Policies: policies})
			checkBench(b, Merge(env, authz, ""), n)
			b.ReportAllocs()
			for b.Loop() {
				Merge(env, authz, "")
			}
		})
	}
}
