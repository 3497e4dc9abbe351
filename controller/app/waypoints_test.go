package app

import (
	"context"
	"net"
	"slices"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	securityv1beta1 "istio.io/api/security/v1beta1"
	typev1beta1 "istio.io/api/type/v1beta1"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	securityv1 "istio.io/client-go/pkg/apis/security/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/weftmesh/weft/api"
	"github.com/weftmesh/weft/controller/envoy"
	"github.com/weftmesh/weft/controller/status"
	"github.com/weftmesh/weft/controller/translate"
	"github.com/weftmesh/weft/controller/waypointcfg"
	"github.com/weftmesh/weft/controller/xds"
)

// shop is a namespace enrolled in the mesh whose traffic goes through waypoint "waypoint":
// Service reviews with one pod, a VirtualService with one bad route, and a policy on the
// Gateway.
func shop() (translate.Input, envoy.Input) {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop", Labels: map[string]string{
		api.LabelDataplaneMode: api.DataplaneModeAmbient, api.LabelUseWaypoint: "waypoint"}}}
	gw := &gatewayv1.Gateway{ObjectMeta: metav1.ObjectMeta{Name: "waypoint", Namespace: "shop"}, Spec: gatewayv1.GatewaySpec{
		GatewayClassName: api.WaypointGatewayClass,
		Listeners:        []gatewayv1.Listener{{Name: api.WaypointListener, Port: api.WaypointPort, Protocol: api.WaypointProtocol}},
	}}
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "reviews", Namespace: "shop"}, Spec: corev1.ServiceSpec{
		ClusterIP: "10.96.0.20", ClusterIPs: []string{"10.96.0.20"},
		Ports: []corev1.ServicePort{{Name: "http", Port: 9080, TargetPort: intstr.FromInt32(9080)}},
	}}
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "reviews-v1", Namespace: "shop", Labels: map[string]string{"app": "reviews", "version": "v1"}},
		Spec:   corev1.PodSpec{NodeName: "node-a", ServiceAccountName: "reviews"},
		Status: corev1.PodStatus{PodIP: "10.244.1.11", PodIPs: []corev1.PodIP{{IP: "10.244.1.11"}}}}
	port, name, ready := int32(9080), "http", true
	slice := &discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Name: "reviews-a", Namespace: "shop", Labels: map[string]string{discoveryv1.LabelServiceName: "reviews"}},
		AddressType: discoveryv1.AddressTypeIPv4, Ports: []discoveryv1.EndpointPort{{Name: &name, Port: &port}},
		Endpoints: []discoveryv1.Endpoint{{Addresses: []string{"10.244.1.11"}, Conditions: discoveryv1.EndpointConditions{Ready: &ready},
			TargetRef: &corev1.ObjectReference{Kind: "Pod", Name: "reviews-v1", Namespace: "shop"}}}}
	vs := &networkingv1.VirtualService{ObjectMeta: metav1.ObjectMeta{Name: "reviews", Namespace: "shop", Generation: 4}}
	vs.Spec.Hosts = []string{"reviews", "nosuch"}
	vs.Spec.Http = nil
	ap := &securityv1.AuthorizationPolicy{ObjectMeta: metav1.ObjectMeta{Name: "get-only", Namespace: "shop", Generation: 1}}
	ap.Spec.TargetRefs = []*typev1beta1.PolicyTargetReference{{Group: "gateway.networking.k8s.io", Kind: "Gateway", Name: "waypoint"}}
	ap.Spec.Action = securityv1beta1.AuthorizationPolicy_ALLOW
	ap.Spec.Rules = []*securityv1beta1.Rule{{To: []*securityv1beta1.Rule_To{{Operation: &securityv1beta1.Operation{Methods: []string{"GET"}}}}}}
	in := translate.Input{Namespaces: []*corev1.Namespace{ns}, Pods: []*corev1.Pod{pod}, Services: []*corev1.Service{svc},
		EndpointSlices: []*discoveryv1.EndpointSlice{slice}, AuthorizationPolicies: []*securityv1.AuthorizationPolicy{ap}, Gateways: []*gatewayv1.Gateway{gw}}
	ein := envoy.Input{Namespace: "shop", Services: in.Services, EndpointSlices: in.EndpointSlices, Pods: in.Pods,
		VirtualServices: []*networkingv1.VirtualService{vs}}
	return in, ein
}

func TestBuildWaypoints(t *testing.T) {
	in, ein := shop()
	m := translate.Build(in, translate.Options{})
	res, err := buildWaypoints(m, in, func(ns string) (envoy.Input, error) {
		if ns != "shop" {
			t.Errorf("EnvoyInput(%q)", ns)
		}
		return ein, nil
	}, translate.Options{})
	if err != nil {
		t.Fatal(err)
	}
	cfg := res.configs[xds.WaypointKey{Namespace: "shop", Name: "waypoint"}]
	if cfg == nil || cfg.Listener == nil || len(cfg.Clusters) != 1 || len(cfg.Endpoints) != 1 {
		t.Fatalf("configs %v: want the waypoint's listener, cluster and endpoints", res.configs)
	}
	if c := res.policies["shop/get-only"]; c.Type != translate.ConditionWaypointAccepted || c.Reason != translate.ReasonAccepted {
		t.Errorf("policy condition %+v", c)
	}
	if _, ok := res.routes[status.RouteKey{Kind: "VirtualService", Namespace: "shop", Name: "reviews"}]; !ok {
		t.Errorf("route verdicts %v lack the VirtualService", res.routes)
	}
}

// TestWaypointReceivesItsNamespace: a waypoint pod subscribes to the controller's xDS server
// and receives the Listener (with the RBAC filters), routes, clusters and endpoints of its
// namespace.
func TestWaypointReceivesItsNamespace(t *testing.T) {
	in, ein := shop()
	m := translate.Build(in, translate.Options{})
	res, err := buildWaypoints(m, in, func(string) (envoy.Input, error) { return ein, nil }, translate.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	server, err := xds.New(ctx, xds.Options{Authenticate: func(ctx context.Context) (xds.Peer, error) {
		md, _ := metadata.FromIncomingContext(ctx)
		return xds.Peer{Namespace: "shop", ServiceAccount: md.Get("sa")[0], Pod: "waypoint-1"}, nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	server.Push(ctx, m, []string{"node-a"})
	server.PushWaypoints(ctx, res.configs)
	g := grpc.NewServer()
	server.Register(g)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = g.Serve(ln) }()
	defer g.Stop()
	conn, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	st, err := discovery.NewAggregatedDiscoveryServiceClient(conn).DeltaAggregatedResources(metadata.AppendToOutgoingContext(ctx, "sa", "waypoint"))
	if err != nil {
		t.Fatal(err)
	}
	node := xds.WaypointNodeID(xds.WaypointKey{Namespace: "shop", Name: "waypoint"}, "waypoint-1")
	for i, typ := range xds.WaypointTypes {
		req := &discovery.DeltaDiscoveryRequest{TypeUrl: typ, ResourceNamesSubscribe: []string{"*"}}
		if i == 0 {
			req.Node = &corev3.Node{Id: node}
		}
		if err := st.Send(req); err != nil {
			t.Fatal(err)
		}
	}
	got := map[string][]string{}
	var listener *listenerv3.Listener
	for range xds.WaypointTypes {
		resp, err := st.Recv()
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range resp.Resources {
			got[resp.TypeUrl] = append(got[resp.TypeUrl], r.Name)
			if resp.TypeUrl == resource.ListenerType {
				listener = &listenerv3.Listener{}
				if err := r.Resource.UnmarshalTo(listener); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	cluster := envoy.ClusterName(9080, "", "reviews.shop.svc.cluster.local")
	want := map[string][]string{
		resource.ListenerType: {envoy.ListenerName}, resource.RouteType: {"9080"},
		resource.ClusterType: {cluster}, resource.EndpointType: {cluster},
	}
	for typ, w := range want {
		if !slices.Equal(got[typ], w) {
			t.Errorf("%s: %v, want %v", typ, got[typ], w)
		}
	}
	hcm := &hcmv3.HttpConnectionManager{}
	if err := listener.GetFilterChains()[0].GetFilters()[0].GetTypedConfig().UnmarshalTo(hcm); err != nil {
		t.Fatal(err)
	}
	var filters []string
	for _, f := range hcm.HttpFilters {
		filters = append(filters, f.Name)
	}
	if !slices.Equal(filters, []string{waypointcfg.AuditFilter, waypointcfg.DenyFilter, waypointcfg.AllowFilter, envoy.RouterFilter}) {
		t.Errorf("HTTP filters %v", filters)
	}

	// Another service account may not subscribe as the waypoint.
	bad, err := discovery.NewAggregatedDiscoveryServiceClient(conn).DeltaAggregatedResources(metadata.AppendToOutgoingContext(ctx, "sa", "reviews"))
	if err != nil {
		t.Fatal(err)
	}
	if err := bad.Send(&discovery.DeltaDiscoveryRequest{Node: &corev3.Node{Id: node}, TypeUrl: resource.ClusterType}); err != nil {
		t.Fatal(err)
	}
	if _, err := bad.Recv(); err == nil {
		t.Fatal("a stream of another service account was served")
	}
}
