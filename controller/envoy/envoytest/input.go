// Package envoytest builds synthetic inputs of envoy.Build, for the benchmarks of the packages
// that translate a waypoint's namespace (controller/envoy, controller/waypointcfg).
package envoytest

import (
	"fmt"
	"net/netip"

	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
	networking "istio.io/api/networking/v1alpha3"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/weftmesh/weft/api"
	"github.com/weftmesh/weft/controller/envoy"
)

// Namespace is the namespace of Input's objects.
const Namespace = "shop"

// IP returns the n-th address of the prefix 10.<b>.0.0/16 (n < 65536).
func IP(b byte, n int) string {
	return netip.AddrFrom4([4]byte{10, b, byte(n >> 8), byte(n)}).String()
}

// Input builds one waypoint's namespace of n Services ("svc-<i>", an HTTP port 9080, and
// a TCP port 5432 on every tenth), each with three enrolled pods (versions v1, v2, v3) in one
// EndpointSlice. Four Services in five have a DestinationRule (subsets per version, connection
// pool, outlier detection) and a VirtualService (a header match to v2, a /api prefix with
// retries and a timeout split 80/20 between v1 and v3, the rest to v1); the fifth has an
// HTTPRoute instead (a path match to the previous Service, the rest split 50/50 between both).
// Two ServiceEntries (DNS and STATIC) are routed to from svc-0.
func Input(n int) envoy.Input {
	in := envoy.Input{Namespace: Namespace, NamespaceLabels: map[string]string{api.LabelDataplaneMode: api.DataplaneModeAmbient}}
	pod := 0
	for i := range n {
		name := fmt.Sprintf("svc-%d", i)
		ports := []corev1.ServicePort{{Name: "http", Port: 9080, TargetPort: intstr.FromInt32(8080)}}
		if i%10 == 9 {
			ports = append(ports, corev1.ServicePort{Name: "tcp-db", Port: 5432, TargetPort: intstr.FromInt32(5432)})
		}
		in.Services = append(in.Services, &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Namespace: Namespace, Name: name},
			Spec:       corev1.ServiceSpec{ClusterIP: IP(96, i), ClusterIPs: []string{IP(96, i)}, Ports: ports},
		})
		es := &discoveryv1.EndpointSlice{
			ObjectMeta:  metav1.ObjectMeta{Namespace: Namespace, Name: name + "-abc", Labels: map[string]string{discoveryv1.LabelServiceName: name}},
			AddressType: discoveryv1.AddressTypeIPv4,
			Ports: []discoveryv1.EndpointPort{
				{Name: ptr.To("http"), Port: ptr.To[int32](8080)},
				{Name: ptr.To("tcp-db"), Port: ptr.To[int32](5432)},
			},
		}
		for v := 1; v <= 3; v++ {
			ip := IP(244, pod)
			pod++
			p := &corev1.Pod{
				ObjectMeta: metav1.ObjectMeta{Namespace: Namespace, Name: fmt.Sprintf("%s-v%d", name, v),
					Labels: map[string]string{"app": name, "version": fmt.Sprintf("v%d", v)}},
				Spec:   corev1.PodSpec{NodeName: fmt.Sprintf("node-%d", pod%10), ServiceAccountName: name},
				Status: corev1.PodStatus{PodIP: ip, PodIPs: []corev1.PodIP{{IP: ip}}},
			}
			in.Pods = append(in.Pods, p)
			es.Endpoints = append(es.Endpoints, discoveryv1.Endpoint{
				Addresses: []string{ip}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)},
				TargetRef: &corev1.ObjectReference{Kind: "Pod", Namespace: Namespace, Name: p.Name},
			})
		}
		in.EndpointSlices = append(in.EndpointSlices, es)
		if i%5 == 4 {
			in.HTTPRoutes = append(in.HTTPRoutes, httpRoute(name, fmt.Sprintf("svc-%d", i-1)))
			continue
		}
		in.DestinationRules = append(in.DestinationRules, destinationRule(name))
		in.VirtualServices = append(in.VirtualServices, virtualService(name, i == 0))
	}
	in.ServiceEntries = []*networkingv1.ServiceEntry{
		{ObjectMeta: metav1.ObjectMeta{Namespace: Namespace, Name: "httpbin"}, Spec: networking.ServiceEntry{
			Hosts: []string{"httpbin.org"}, Location: networking.ServiceEntry_MESH_EXTERNAL, Resolution: networking.ServiceEntry_DNS,
			Ports: []*networking.ServicePort{{Number: 80, Name: "http", Protocol: "HTTP"}},
		}},
		{ObjectMeta: metav1.ObjectMeta{Namespace: Namespace, Name: "legacy"}, Spec: networking.ServiceEntry{
			Hosts: []string{"legacy.example.com"}, Addresses: []string{"192.0.2.10"},
			Location: networking.ServiceEntry_MESH_EXTERNAL, Resolution: networking.ServiceEntry_STATIC,
			Ports:     []*networking.ServicePort{{Number: 8080, Name: "http", Protocol: "HTTP", TargetPort: 80}},
			Endpoints: []*networking.WorkloadEntry{{Address: "192.0.2.11"}, {Address: "192.0.2.12"}},
		}},
	}
	return in
}

func destinationRule(host string) *networkingv1.DestinationRule {
	dr := &networkingv1.DestinationRule{ObjectMeta: metav1.ObjectMeta{Namespace: Namespace, Name: host}}
	dr.Spec.Host = host
	for v := 1; v <= 3; v++ {
		name := fmt.Sprintf("v%d", v)
		dr.Spec.Subsets = append(dr.Spec.Subsets, &networking.Subset{Name: name, Labels: map[string]string{"version": name}})
	}
	dr.Spec.TrafficPolicy = &networking.TrafficPolicy{
		ConnectionPool: &networking.ConnectionPoolSettings{
			Tcp:  &networking.ConnectionPoolSettings_TCPSettings{MaxConnections: 100},
			Http: &networking.ConnectionPoolSettings_HTTPSettings{Http1MaxPendingRequests: 100, MaxRequestsPerConnection: 10},
		},
		OutlierDetection: &networking.OutlierDetection{
			Consecutive_5XxErrors: wrapperspb.UInt32(5), Interval: durationpb.New(10e9), BaseEjectionTime: durationpb.New(30e9), MaxEjectionPercent: 50,
		},
	}
	return dr
}

func virtualService(host string, external bool) *networkingv1.VirtualService {
	dest := func(subset string, weight int32) *networking.HTTPRouteDestination {
		return &networking.HTTPRouteDestination{Destination: &networking.Destination{Host: host, Subset: subset}, Weight: weight}
	}
	vs := &networkingv1.VirtualService{ObjectMeta: metav1.ObjectMeta{Namespace: Namespace, Name: host}}
	vs.Spec.Hosts = []string{host}
	if external {
		vs.Spec.Http = append(vs.Spec.Http,
			&networking.HTTPRoute{
				Match: []*networking.HTTPMatchRequest{{Uri: &networking.StringMatch{MatchType: &networking.StringMatch_Prefix{Prefix: "/external"}}}},
				Route: []*networking.HTTPRouteDestination{{Destination: &networking.Destination{Host: "httpbin.org"}}},
			},
			&networking.HTTPRoute{
				Match: []*networking.HTTPMatchRequest{{Uri: &networking.StringMatch{MatchType: &networking.StringMatch_Prefix{Prefix: "/legacy"}}}},
				Route: []*networking.HTTPRouteDestination{{Destination: &networking.Destination{Host: "legacy.example.com", Port: &networking.PortSelector{Number: 8080}}}},
			})
	}
	vs.Spec.Http = append(vs.Spec.Http,
		&networking.HTTPRoute{
			Name:  "jason",
			Match: []*networking.HTTPMatchRequest{{Headers: map[string]*networking.StringMatch{"end-user": {MatchType: &networking.StringMatch_Exact{Exact: "jason"}}}}},
			Route: []*networking.HTTPRouteDestination{dest("v2", 0)},
		},
		&networking.HTTPRoute{
			Name:    "api",
			Match:   []*networking.HTTPMatchRequest{{Uri: &networking.StringMatch{MatchType: &networking.StringMatch_Prefix{Prefix: "/api/"}}}},
			Route:   []*networking.HTTPRouteDestination{dest("v1", 80), dest("v3", 20)},
			Timeout: durationpb.New(2e9),
			Retries: &networking.HTTPRetry{Attempts: 3, PerTryTimeout: durationpb.New(5e8), RetryOn: "5xx,connect-failure"},
		},
		&networking.HTTPRoute{Route: []*networking.HTTPRouteDestination{dest("v1", 0)}},
	)
	return vs
}

func httpRoute(svc, other string) *gatewayv1.HTTPRoute {
	backend := func(name string, weight int32) gatewayv1.HTTPBackendRef {
		return gatewayv1.HTTPBackendRef{BackendRef: gatewayv1.BackendRef{Weight: &weight,
			BackendObjectReference: gatewayv1.BackendObjectReference{Name: gatewayv1.ObjectName(name), Port: ptr.To[gatewayv1.PortNumber](9080)}}}
	}
	hr := &gatewayv1.HTTPRoute{ObjectMeta: metav1.ObjectMeta{Namespace: Namespace, Name: svc}}
	hr.Spec.ParentRefs = []gatewayv1.ParentReference{{Group: ptr.To[gatewayv1.Group](""), Kind: ptr.To[gatewayv1.Kind]("Service"),
		Name: gatewayv1.ObjectName(svc), Port: ptr.To[gatewayv1.PortNumber](9080)}}
	hr.Spec.Rules = []gatewayv1.HTTPRouteRule{
		{
			Matches: []gatewayv1.HTTPRouteMatch{{Path: &gatewayv1.HTTPPathMatch{Type: ptr.To(gatewayv1.PathMatchPathPrefix), Value: ptr.To("/other/")},
				Headers: []gatewayv1.HTTPHeaderMatch{{Name: "x-canary", Value: "yes"}}}},
			BackendRefs: []gatewayv1.HTTPBackendRef{backend(other, 1)},
		},
		{BackendRefs: []gatewayv1.HTTPBackendRef{backend(svc, 50), backend(other, 50)}},
	}
	return hr
}
