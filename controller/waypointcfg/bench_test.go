package waypointcfg

import (
	"fmt"
	"net/netip"
	"testing"

	networking "istio.io/api/networking/v1alpha3"
	securityv1beta1 "istio.io/api/security/v1beta1"
	typev1beta1 "istio.io/api/type/v1beta1"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	securityv1 "istio.io/client-go/pkg/apis/security/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	"github.com/weftmesh/weft/api"
	"github.com/weftmesh/weft/controller/envoy"
	"github.com/weftmesh/weft/controller/rbac"
	"github.com/weftmesh/weft/controller/translate"
)

const benchNS = "foo"

// benchIP returns the n-th address of the prefix 10.<b>.0.0/16 (n < 65536).
func benchIP(b byte, n int) string {
	return netip.AddrFrom4([4]byte{10, b, byte(n >> 8), byte(n)}).String()
}

// benchWaypoint builds waypoint foo/waypoint with n Services bound to it ("svc-<i>": an HTTP
// port 9080 and, on every tenth, a TCP port 5432; two enrolled pods each; a VirtualService
// with a header match and a default route) and the AuthorizationPolicies of the namespace: a
// waypoint-wide ALLOW (GET and POST from namespaces foo and bar, not on /admin/), a
// waypoint-wide AUDIT of /admin/, and on every fifth Service a DENY of DELETE of its own.
// It returns the waypoint, the objects of its namespace and the policies, as
// controller/app passes them to ForWaypoint.
func benchWaypoint(n int) (*translate.Waypoint, envoy.Input, []*securityv1.AuthorizationPolicy) {
	wp := &translate.Waypoint{Namespace: benchNS, Name: "waypoint", For: "service"}
	ein := envoy.Input{Namespace: benchNS}
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
	pod := 0
	for i := range n {
		name := fmt.Sprintf("svc-%d", i)
		wp.Services = append(wp.Services, benchNS+"/"+name)
		ports := []corev1.ServicePort{{Name: "http", Port: 9080, TargetPort: intstr.FromInt32(8080)}}
		if i%10 == 9 {
			ports = append(ports, corev1.ServicePort{Name: "tcp-db", Port: 5432, TargetPort: intstr.FromInt32(5432)})
		}
		ein.Services = append(ein.Services, &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Namespace: benchNS, Name: name},
			Spec:       corev1.ServiceSpec{ClusterIP: benchIP(96, i), ClusterIPs: []string{benchIP(96, i)}, Ports: ports},
		})
		es := &discoveryv1.EndpointSlice{
			ObjectMeta:  metav1.ObjectMeta{Namespace: benchNS, Name: name + "-abc", Labels: map[string]string{discoveryv1.LabelServiceName: name}},
			AddressType: discoveryv1.AddressTypeIPv4,
			Ports: []discoveryv1.EndpointPort{
				{Name: ptr.To("http"), Port: ptr.To[int32](8080)},
				{Name: ptr.To("tcp-db"), Port: ptr.To[int32](5432)},
			},
		}
		for r := range 2 {
			ip := benchIP(244, pod)
			pod++
			p := &corev1.Pod{
				ObjectMeta: metav1.ObjectMeta{Namespace: benchNS, Name: fmt.Sprintf("%s-%d", name, r), Labels: map[string]string{"app": name}},
				Spec:       corev1.PodSpec{NodeName: fmt.Sprintf("node-%d", pod%10), ServiceAccountName: name},
				Status:     corev1.PodStatus{PodIP: ip, PodIPs: []corev1.PodIP{{IP: ip}}},
			}
			ein.Pods = append(ein.Pods, p)
			es.Endpoints = append(es.Endpoints, discoveryv1.Endpoint{
				Addresses: []string{ip}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)},
				TargetRef: &corev1.ObjectReference{Kind: "Pod", Namespace: benchNS, Name: p.Name},
			})
		}
		ein.EndpointSlices = append(ein.EndpointSlices, es)
		vs := &networkingv1.VirtualService{ObjectMeta: metav1.ObjectMeta{Namespace: benchNS, Name: name}}
		vs.Spec.Hosts = []string{name}
		vs.Spec.Http = []*networking.HTTPRoute{
			{
				Match:   []*networking.HTTPMatchRequest{{Headers: map[string]*networking.StringMatch{"end-user": {MatchType: &networking.StringMatch_Exact{Exact: "jason"}}}}},
				Route:   []*networking.HTTPRouteDestination{{Destination: &networking.Destination{Host: name}}},
				Retries: &networking.HTTPRetry{Attempts: 3, RetryOn: "5xx"},
			},
			{Route: []*networking.HTTPRouteDestination{{Destination: &networking.Destination{Host: name}}}},
		}
		ein.VirtualServices = append(ein.VirtualServices, vs)
		if i%5 == 0 {
			policies = append(policies, benchPolicy(name+"-no-delete", securityv1beta1.AuthorizationPolicy_DENY,
				[]*typev1beta1.PolicyTargetReference{{Kind: "Service", Name: name}},
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
