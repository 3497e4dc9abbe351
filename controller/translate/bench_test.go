package translate

import (
	"fmt"
	"net/netip"
	"testing"

	securityv1beta1 "istio.io/api/security/v1beta1"
	typev1beta1 "istio.io/api/type/v1beta1"
	securityv1 "istio.io/client-go/pkg/apis/security/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/weftmesh/weft/api"
)

// benchCluster is the size of a synthetic cluster.
type benchCluster struct {
	namespaces, servicesPerNS, podsPerService, nodes int
}

func (c benchCluster) String() string {
	return fmt.Sprintf("services=%d/pods=%d", c.namespaces*c.servicesPerNS, c.namespaces*c.servicesPerNS*c.podsPerService)
}

// benchIP returns the n-th address of the prefix 10.<b>.0.0/16 (n < 65536).
func benchIP(b byte, n int) string {
	return netip.AddrFrom4([4]byte{10, b, byte(n >> 8), byte(n)}).String()
}

// benchInput builds an ambient cluster as the controller sees it: per namespace (ns-<i>, bound
// to its waypoint by its istio.io/use-waypoint label) a waypoint Gateway with its Service and
// pod, servicesPerNS Services (an HTTP port and a gRPC port with a named target port) with
// their EndpointSlices and podsPerService ready pods each, spread over the nodes; a mesh-wide
// STRICT PeerAuthentication, a PERMISSIVE one for the first namespace and a workload one with
// a port level; and AuthorizationPolicies of every scope: a GLOBAL DENY, per namespace a
// NAMESPACE ALLOW, a WORKLOAD_SELECTOR ALLOW and a waypoint-targeted (targetRefs) ALLOW.
func benchInput(c benchCluster) Input {
	var in Input
	pod, vip := 0, 0
	for n := range c.namespaces {
		ns := fmt.Sprintf("ns-%d", n)
		in.Namespaces = append(in.Namespaces, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns, Labels: map[string]string{
			api.LabelDataplaneMode: api.DataplaneModeAmbient, api.LabelUseWaypoint: "waypoint"}}})
		in.Gateways = append(in.Gateways, &gatewayv1.Gateway{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "waypoint"},
			Spec: gatewayv1.GatewaySpec{GatewayClassName: "istio-waypoint",
				Listeners: []gatewayv1.Listener{{Name: "mesh", Port: 15008, Protocol: "HBONE"}}},
		})
		wpLabels := map[string]string{api.LabelGatewayName: "waypoint"}
		in.Services = append(in.Services, &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "waypoint", Labels: wpLabels},
			Spec:       corev1.ServiceSpec{ClusterIP: benchIP(96, vip), Ports: []corev1.ServicePort{{Name: "mesh", Port: 15008}}},
		})
		vip++
		wpPod := benchPod(ns, "waypoint-0", "waypoint", wpLabels, fmt.Sprintf("node-%d", n%c.nodes), benchIP(244, pod))
		pod++
		in.Pods = append(in.Pods, wpPod)
		in.EndpointSlices = append(in.EndpointSlices, benchSlice(ns, "waypoint", []corev1.Pod{*wpPod}, discoveryv1.EndpointPort{Name: ptr.To("mesh"), Port: ptr.To[int32](15008)}))

		for s := range c.servicesPerNS {
			app := fmt.Sprintf("svc-%d", s)
			in.Services = append(in.Services, &corev1.Service{
				ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: app},
				Spec: corev1.ServiceSpec{ClusterIP: benchIP(96, vip), ClusterIPs: []string{benchIP(96, vip)}, Selector: map[string]string{"app": app},
					Ports: []corev1.ServicePort{
						{Name: "http", Port: 80, TargetPort: intstr.FromInt32(8080)},
						{Name: "grpc", Port: 9090, TargetPort: intstr.FromString("grpc")},
					}},
			})
			vip++
			var pods []corev1.Pod
			for p := range c.podsPerService {
				labels := map[string]string{"app": app, "version": fmt.Sprintf("v%d", p%3+1)}
				po := benchPod(ns, fmt.Sprintf("%s-%d", app, p), app, labels, fmt.Sprintf("node-%d", pod%c.nodes), benchIP(244, pod))
				pod++
				in.Pods = append(in.Pods, po)
				pods = append(pods, *po)
			}
			in.EndpointSlices = append(in.EndpointSlices, benchSlice(ns, app, pods,
				discoveryv1.EndpointPort{Name: ptr.To("http"), Port: ptr.To[int32](8080)},
				discoveryv1.EndpointPort{Name: ptr.To("grpc"), Port: ptr.To[int32](9091)}))
		}

		in.AuthorizationPolicies = append(in.AuthorizationPolicies,
			benchPolicy(ns, "ns-allow", securityv1beta1.AuthorizationPolicy_ALLOW, func(sp *securityv1beta1.AuthorizationPolicy) {
				sp.Rules = []*securityv1beta1.Rule{{From: []*securityv1beta1.Rule_From{{Source: &securityv1beta1.Source{Namespaces: []string{ns, "istio-system"}}}}}}
			}),
			benchPolicy(ns, "svc-0-allow", securityv1beta1.AuthorizationPolicy_ALLOW, func(sp *securityv1beta1.AuthorizationPolicy) {
				sp.Selector = &typev1beta1.WorkloadSelector{MatchLabels: map[string]string{"app": "svc-0"}}
				sp.Rules = []*securityv1beta1.Rule{{
					From: []*securityv1beta1.Rule_From{{Source: &securityv1beta1.Source{Principals: []string{"cluster.local/ns/" + ns + "/sa/svc-1"}}}},
					To:   []*securityv1beta1.Rule_To{{Operation: &securityv1beta1.Operation{Ports: []string{"8080"}}}},
				}}
			}),
			benchPolicy(ns, "waypoint-get", securityv1beta1.AuthorizationPolicy_ALLOW, func(sp *securityv1beta1.AuthorizationPolicy) {
				sp.TargetRefs = []*typev1beta1.PolicyTargetReference{{Group: "gateway.networking.k8s.io", Kind: "Gateway", Name: "waypoint"}}
				sp.Rules = []*securityv1beta1.Rule{{To: []*securityv1beta1.Rule_To{{Operation: &securityv1beta1.Operation{Methods: []string{"GET"}}}}}}
			}),
		)
	}
	in.AuthorizationPolicies = append(in.AuthorizationPolicies,
		benchPolicy("istio-system", "mesh-deny", securityv1beta1.AuthorizationPolicy_DENY, func(sp *securityv1beta1.AuthorizationPolicy) {
			sp.Rules = []*securityv1beta1.Rule{{From: []*securityv1beta1.Rule_From{{Source: &securityv1beta1.Source{IpBlocks: []string{"203.0.113.0/24"}}}}}}
		}))

	mode := func(m securityv1beta1.PeerAuthentication_MutualTLS_Mode) *securityv1beta1.PeerAuthentication_MutualTLS {
		return &securityv1beta1.PeerAuthentication_MutualTLS{Mode: m}
	}
	mesh := &securityv1.PeerAuthentication{ObjectMeta: metav1.ObjectMeta{Namespace: "istio-system", Name: "default"}}
	mesh.Spec.Mtls = mode(securityv1beta1.PeerAuthentication_MutualTLS_STRICT)
	nsWide := &securityv1.PeerAuthentication{ObjectMeta: metav1.ObjectMeta{Namespace: "ns-0", Name: "default"}}
	nsWide.Spec.Mtls = mode(securityv1beta1.PeerAuthentication_MutualTLS_PERMISSIVE)
	workload := &securityv1.PeerAuthentication{ObjectMeta: metav1.ObjectMeta{Namespace: "ns-0", Name: "svc-0"}}
	workload.Spec.Selector = &typev1beta1.WorkloadSelector{MatchLabels: map[string]string{"app": "svc-0"}}
	workload.Spec.Mtls = mode(securityv1beta1.PeerAuthentication_MutualTLS_STRICT)
	workload.Spec.PortLevelMtls = map[uint32]*securityv1beta1.PeerAuthentication_MutualTLS{9091: mode(securityv1beta1.PeerAuthentication_MutualTLS_PERMISSIVE)}
	in.PeerAuthentications = []*securityv1.PeerAuthentication{mesh, nsWide, workload}
	return in
}

func benchPod(ns, name, sa string, labels map[string]string, node, ip string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: labels,
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: sa + "-7c9", Controller: ptr.To(true)}}},
		Spec: corev1.PodSpec{NodeName: node, ServiceAccountName: sa},
		Status: corev1.PodStatus{Phase: corev1.PodRunning, PodIP: ip, PodIPs: []corev1.PodIP{{IP: ip}},
			Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}},
	}
}

func benchSlice(ns, svc string, pods []corev1.Pod, ports ...discoveryv1.EndpointPort) *discoveryv1.EndpointSlice {
	es := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: ns, Name: svc + "-abc", Labels: map[string]string{discoveryv1.LabelServiceName: svc}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       ports,
	}
	for _, p := range pods {
		es.Endpoints = append(es.Endpoints, discoveryv1.Endpoint{
			Addresses:  []string{p.Status.PodIP},
			Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)},
			NodeName:   ptr.To(p.Spec.NodeName),
			TargetRef:  &corev1.ObjectReference{Kind: "Pod", Namespace: p.Namespace, Name: p.Name},
		})
	}
	return es
}

func benchPolicy(ns, name string, action securityv1beta1.AuthorizationPolicy_Action, spec func(*securityv1beta1.AuthorizationPolicy)) *securityv1.AuthorizationPolicy {
	ap := &securityv1.AuthorizationPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Generation: 1}}
	ap.Spec.Action = action
	spec(&ap.Spec)
	return ap
}

// BenchmarkBuild translates a whole cluster (Build): what the controller does on every change
// batch before it pushes.
func BenchmarkBuild(b *testing.B) {
	for _, c := range []benchCluster{
		{namespaces: 1, servicesPerNS: 10, podsPerService: 10, nodes: 5},
		{namespaces: 10, servicesPerNS: 10, podsPerService: 10, nodes: 20},
		{namespaces: 20, servicesPerNS: 50, podsPerService: 10, nodes: 100},
	} {
		b.Run(c.String(), func(b *testing.B) {
			in := benchInput(c)
			m := Build(in, Options{})
			// Every pod and service, the policies other than the waypoint-targeted ones
			// (enforced by the waypoint, not the agents), and no warning: not an error path.
			services, pods := c.namespaces*(c.servicesPerNS+1), c.namespaces*(c.servicesPerNS*c.podsPerService+1)
			if want := services + pods + 2*c.namespaces + 1; len(m.Resources) != want || len(m.Warnings) != 0 {
				b.Fatalf("%d resources, want %d; warnings %v", len(m.Resources), want, m.Warnings)
			}
			if len(m.Waypoints) != c.namespaces || len(m.Local("node-0")) == 0 {
				b.Fatalf("%d waypoints, %d local resources on node-0", len(m.Waypoints), len(m.Local("node-0")))
			}
			for key, cond := range m.PolicyStatus {
				if !cond.Status {
					b.Fatalf("policy %s: %+v", key, cond)
				}
			}
			b.ReportAllocs()
			for b.Loop() {
				Build(in, Options{})
			}
		})
	}
}

// BenchmarkForNode is what one node's agent receives from a translated cluster of 100
// services × 10 pods on 20 nodes.
func BenchmarkForNode(b *testing.B) {
	m := Build(benchInput(benchCluster{namespaces: 10, servicesPerNS: 10, podsPerService: 10, nodes: 20}), Options{})
	if n := len(m.ForNode("node-0")); n <= len(m.Shared()) {
		b.Fatalf("node-0 receives %d resources, %d shared", n, len(m.Shared()))
	}
	b.ReportAllocs()
	for b.Loop() {
		m.ForNode("node-0")
	}
}
