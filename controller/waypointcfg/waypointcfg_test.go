package waypointcfg

import (
	"flag"
	"net/netip"
	"slices"
	"testing"

	rbacv3 "github.com/envoyproxy/go-control-plane/envoy/config/rbac/v3"
	rbachttpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/rbac/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	rbacnetv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/rbac/v3"
	"google.golang.org/protobuf/proto"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	securityv1 "istio.io/client-go/pkg/apis/security/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/weftmesh/weft/api"
	"github.com/weftmesh/weft/controller/envoy"
	"github.com/weftmesh/weft/controller/rbac"
	"github.com/weftmesh/weft/controller/translate"
	"github.com/weftmesh/weft/internal/golden"
)

var update = flag.Bool("update", false, "rewrite the golden files")

// inputOf is the waypoint foo/waypoint with every Service of the file bound to it.
func inputOf(t *testing.T, objs []runtime.Object) Input {
	t.Helper()
	in := Input{Name: "waypoint", Envoy: envoy.Input{Namespace: "foo"}}
	for _, obj := range objs {
		switch o := obj.(type) {
		case *corev1.Namespace:
			in.Envoy.NamespaceLabels = o.Labels
		case *corev1.Pod:
			in.Envoy.Pods = append(in.Envoy.Pods, o)
			if v := o.Labels[api.LabelUseWaypoint]; v != "" && v != api.UseWaypointNone {
				// The test's stand-in for translate.Waypoint.Workloads.
				in.Workloads = append(in.Workloads, translate.WorkloadUID("", o.Namespace, o.Name))
			}
		case *corev1.Service:
			in.Envoy.Services = append(in.Envoy.Services, o)
			in.Services = append(in.Services, o.Namespace+"/"+o.Name)
		case *discoveryv1.EndpointSlice:
			in.Envoy.EndpointSlices = append(in.Envoy.EndpointSlices, o)
		case *networkingv1.VirtualService:
			in.Envoy.VirtualServices = append(in.Envoy.VirtualServices, o)
		case *securityv1.AuthorizationPolicy:
			in.Policies = append(in.Policies, o)
		default:
			t.Fatalf("unexpected %T", obj)
		}
	}
	return in
}

func build(t *testing.T, file string) *Config {
	t.Helper()
	cfg := Build(inputOf(t, golden.Objects(t, file)), Options{})
	validate(t, cfg)
	return cfg
}

// TestGolden merges each testdata/*.yaml and compares the Listener, the routes, the cluster
// names, the problems and the policy status with testdata/*.golden.
func TestGolden(t *testing.T) {
	golden.Run(t, "testdata/*.yaml", *update, func(t *testing.T, objs []runtime.Object) []byte {
		cfg := Build(inputOf(t, objs), Options{})
		validate(t, cfg)
		return render(t, cfg)
	})
}

// TestFilterOrder checks the chain of a port with CORS and fault: cors, the RBAC filters in
// AUDIT, DENY, ALLOW order, fault, router.
func TestFilterOrder(t *testing.T) {
	cfg := build(t, "testdata/gateway-allow-service-deny.yaml")
	got := httpFilters(t, cfg)
	want := []string{envoy.CorsFilter, AuditFilter, DenyFilter, AllowFilter, envoy.FaultFilter, envoy.RouterFilter}
	if !slices.Equal(got["9080"], want) {
		t.Fatalf("filters of chain 9080: %v, want %v", got["9080"], want)
	}
}

// TestPerRoute checks which virtual hosts override the waypoint's filters and with what.
func TestPerRoute(t *testing.T) {
	cfg := build(t, "testdata/seed.yaml")
	// The chain enforces nothing: no waypoint-wide policy.
	for _, f := range chainRBAC(t, cfg, "8000") {
		if f.GetRules() != nil || f.GetShadowRules() != nil {
			t.Errorf("the chain's RBAC filter enforces %v, want nothing (no waypoint-wide policy)", f)
		}
	}
	rc := cfg.Routes[0]
	for _, vh := range rc.VirtualHosts {
		switch vh.Name {
		case "httpbin.foo.svc.cluster.local:8000":
			actions := map[string]string{}
			for _, name := range []string{AuditFilter, DenyFilter, AllowFilter} {
				a, ok := vh.TypedPerFilterConfig[name]
				if !ok {
					t.Fatalf("httpbin has no per-route config for %s", name)
				}
				pr := &rbachttpv3.RBACPerRoute{}
				if err := a.UnmarshalTo(pr); err != nil {
					t.Fatal(err)
				}
				actions[name] = pr.GetRbac().GetRules().GetAction().String()
				if pr.GetRbac().GetRules() == nil {
					actions[name] = "none"
				}
			}
			want := map[string]string{AuditFilter: "none", DenyFilter: "DENY", AllowFilter: "ALLOW"}
			for k, v := range want {
				if actions[k] != v {
					t.Errorf("httpbin %s: %s, want %s", k, actions[k], v)
				}
			}
		case "reviews.foo.svc.cluster.local:8000":
			if len(vh.TypedPerFilterConfig) != 0 {
				t.Errorf("reviews has per-route configs %v, want none (no policy of its own)", vh.TypedPerFilterConfig)
			}
		default:
			t.Errorf("unexpected virtual host %s", vh.Name)
		}
	}
}

func TestNoPolicyNoFilters(t *testing.T) {
	cfg := build(t, "testdata/no-policy.yaml")
	if got := httpFilters(t, cfg)["9080"]; !slices.Equal(got, []string{envoy.RouterFilter}) {
		t.Fatalf("filters %v, want the router only", got)
	}
	if len(cfg.PolicyStatus) != 0 {
		t.Fatalf("status %v for a policy that does not apply at the waypoint", cfg.PolicyStatus)
	}
}

func TestMergeDoesNotModifyInput(t *testing.T) {
	in := inputOf(t, golden.Objects(t, "testdata/seed.yaml"))
	env := envoy.Build(in.Envoy, envoy.Options{})
	before := proto.Clone(env.Routes[0])
	beforeL := proto.Clone(env.Listener)
	cfg := Build(in, Options{})
	if proto.Equal(cfg.Routes[0], env.Routes[0]) {
		t.Fatal("merged routes equal the unmerged ones")
	}
	env2 := envoy.Build(in.Envoy, envoy.Options{})
	_ = Merge(env2, rbac.Build(rbac.Input{WaypointName: in.Name, WaypointNamespace: "foo", Services: in.Services, Policies: in.Policies}), "")
	if !proto.Equal(env2.Routes[0], before) || !proto.Equal(env2.Listener, beforeL) {
		t.Fatal("Merge modified its input")
	}
}

func TestServiceKey(t *testing.T) {
	for _, tc := range []struct{ vh, want string }{
		{"httpbin.foo.svc.cluster.local:8000", "foo/httpbin"},
		{"httpbin.foo.svc.cluster.local", "foo/httpbin"},
		{"api.example.com:443", ""},
		{"a.b.c.svc.cluster.local:80", ""},
	} {
		if got := serviceKey(tc.vh, ".svc.cluster.local"); got != tc.want {
			t.Errorf("serviceKey(%q) = %q, want %q", tc.vh, got, tc.want)
		}
	}
}

func httpFilters(t *testing.T, cfg *Config) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	for _, fc := range cfg.Listener.GetFilterChains() {
		hcm := &hcmv3.HttpConnectionManager{}
		if err := fc.Filters[0].GetTypedConfig().UnmarshalTo(hcm); err != nil {
			t.Fatal(err)
		}
		for _, f := range hcm.HttpFilters {
			out[fc.Name] = append(out[fc.Name], f.Name)
		}
	}
	return out
}

func chainRBAC(t *testing.T, cfg *Config, chain string) []*rbachttpv3.RBAC {
	t.Helper()
	var out []*rbachttpv3.RBAC
	for _, fc := range cfg.Listener.GetFilterChains() {
		if fc.Name != chain {
			continue
		}
		hcm := &hcmv3.HttpConnectionManager{}
		if err := fc.Filters[0].GetTypedConfig().UnmarshalTo(hcm); err != nil {
			t.Fatal(err)
		}
		for _, f := range hcm.HttpFilters {
			r := &rbachttpv3.RBAC{}
			if f.GetTypedConfig().MessageIs(r) {
				if err := f.GetTypedConfig().UnmarshalTo(r); err != nil {
					t.Fatal(err)
				}
				out = append(out, r)
			}
		}
	}
	if len(out) != 3 {
		t.Fatalf("chain %s has %d RBAC filters, want 3", chain, len(out))
	}
	return out
}

// validate checks the package's promise: every resource passes its ValidateAll().
func validate(t *testing.T, cfg *Config) {
	t.Helper()
	if cfg.Listener != nil {
		golden.Validate(t, cfg.Listener)
	}
	golden.Validate(t, cfg.Routes...)
	golden.Validate(t, cfg.Clusters...)
	golden.Validate(t, cfg.Endpoints...)
}

func render(t *testing.T, cfg *Config) []byte {
	t.Helper()
	clusters, problems := []string{}, []string{}
	for _, c := range cfg.Clusters {
		clusters = append(clusters, c.Name)
	}
	for _, p := range cfg.Problems {
		problems = append(problems, p.Error())
	}
	return golden.JSON(t, map[string]any{"listener": golden.Proto(t, cfg.Listener), "routes": golden.Protos(t, cfg.Routes),
		"clusters": clusters, "problems": problems, "policyStatus": cfg.PolicyStatus})
}

// TestPodChainsGatewayWide checks that the chains of bound workloads carry the waypoint-wide
// policies only: the HTTP chain's RBAC filters are the Gateway's DENY (no ALLOW: the
// Service-targeted ALLOW of reviews does not apply to pod-addressed traffic), its virtual
// host has no per-route override, and the TCP chain's network DENY matches everything.
func TestPodChainsGatewayWide(t *testing.T) {
	cfg := build(t, "testdata/workload.yaml")
	httpChain := envoy.PodName(netip.MustParseAddr("10.244.1.10"), 9080)
	fs := chainRBAC(t, cfg, httpChain)
	if got := fs[1].GetRules().GetAction(); got != rbacv3.RBAC_DENY || len(fs[1].GetRules().GetPolicies()) != 1 {
		t.Errorf("deny filter of %s: %v, want the waypoint's DENY", httpChain, fs[1])
	}
	if fs[2].GetRules() != nil {
		t.Errorf("allow filter of %s enforces %v, want nothing (the Service's ALLOW must not apply)", httpChain, fs[2].GetRules())
	}
	var found bool
	for _, rc := range cfg.Routes {
		if rc.Name != httpChain {
			continue
		}
		found = true
		if len(rc.VirtualHosts) != 1 || len(rc.VirtualHosts[0].TypedPerFilterConfig) != 0 {
			t.Errorf("route %s: %v, want one virtual host without per-route RBAC", rc.Name, rc.VirtualHosts)
		}
	}
	if !found {
		t.Fatalf("no route configuration %s", httpChain)
	}
	tcpChain := envoy.PodName(netip.MustParseAddr("10.244.2.40"), 3306)
	for _, fc := range cfg.Listener.GetFilterChains() {
		if fc.Name != tcpChain {
			continue
		}
		var names []string
		for _, f := range fc.Filters {
			names = append(names, f.Name)
		}
		want := []string{NetworkAuditFilter, NetworkDenyFilter, NetworkAllowFilter, envoy.TCPProxyFilter}
		if !slices.Equal(names, want) {
			t.Fatalf("filters of %s: %v, want %v", tcpChain, names, want)
		}
		deny := &rbacnetv3.RBAC{}
		if err := fc.Filters[1].GetTypedConfig().UnmarshalTo(deny); err != nil {
			t.Fatal(err)
		}
		if deny.GetRules().GetAction() != rbacv3.RBAC_DENY || len(deny.GetRules().GetPolicies()) != 1 {
			t.Errorf("network deny of %s: %v, want the waypoint's DENY (L4 part)", tcpChain, deny)
		}
		allow := &rbacnetv3.RBAC{}
		if err := fc.Filters[2].GetTypedConfig().UnmarshalTo(allow); err != nil {
			t.Fatal(err)
		}
		if allow.GetRules() != nil {
			t.Errorf("network allow of %s enforces %v, want nothing", tcpChain, allow.GetRules())
		}
		return
	}
	t.Fatalf("no chain %s", tcpChain)
}
