package xds

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"testing"

	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	"github.com/weftmesh/weft/api"
	"github.com/weftmesh/weft/controller/envoy"
	"github.com/weftmesh/weft/controller/translate"
)

const (
	benchServices = 100 // of benchPods pods each, in one ambient namespace
	benchPods     = 10
	benchNodes    = 20
)

// benchIP returns the n-th address of the prefix 10.<b>.0.0/16 (n < 65536).
func benchIP(b byte, n int) string {
	return netip.AddrFrom4([4]byte{10, b, byte(n >> 8), byte(n)}).String()
}

// benchObjects returns benchServices Services ("svc-<i>", an HTTP port) of benchPods ready pods
// each in namespace shop, spread over benchNodes nodes, and their EndpointSlices. With
// changed, the last pod has another address: the change of one pod.
func benchObjects(changed bool) ([]*corev1.Service, []*discoveryv1.EndpointSlice, []*corev1.Pod) {
	var svcs []*corev1.Service
	var eps []*discoveryv1.EndpointSlice
	var pods []*corev1.Pod
	for i := range benchServices {
		name := fmt.Sprintf("svc-%d", i)
		svcs = append(svcs, &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: name},
			Spec: corev1.ServiceSpec{ClusterIP: benchIP(96, i),
				Ports: []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromInt32(8080)}}},
		})
		es := &discoveryv1.EndpointSlice{
			ObjectMeta:  metav1.ObjectMeta{Namespace: "shop", Name: name + "-abc", Labels: map[string]string{discoveryv1.LabelServiceName: name}},
			AddressType: discoveryv1.AddressTypeIPv4,
			Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("http"), Port: ptr.To[int32](8080)}},
		}
		for j := range benchPods {
			n := len(pods)
			ip := benchIP(244, n)
			if changed && i == benchServices-1 && j == benchPods-1 {
				ip = benchIP(245, n)
			}
			p := pod(fmt.Sprintf("%s-%d", name, j), fmt.Sprintf("node-%d", n%benchNodes), ip)
			p.Labels = map[string]string{"app": name}
			p.Spec.ServiceAccountName = name
			pods = append(pods, p)
			es.Endpoints = append(es.Endpoints, discoveryv1.Endpoint{
				Addresses: []string{ip}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)},
				TargetRef: &corev1.ObjectReference{Kind: "Pod", Namespace: "shop", Name: p.Name},
			})
		}
		eps = append(eps, es)
	}
	return svcs, eps, pods
}

// benchMesh translates benchObjects(changed) in an ambient namespace.
func benchMesh(changed bool) *translate.Mesh {
	svcs, eps, pods := benchObjects(changed)
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop", Labels: map[string]string{api.LabelDataplaneMode: api.DataplaneModeAmbient}}}
	return translate.Build(translate.Input{Namespaces: []*corev1.Namespace{ns}, Pods: pods, Services: svcs, EndpointSlices: eps}, translate.Options{})
}

// benchNodeNames returns the names of the benchNodes nodes.
func benchNodeNames() []string {
	nodes := make([]string, benchNodes)
	for i := range nodes {
		nodes[i] = fmt.Sprintf("node-%d", i)
	}
	return nodes
}

// benchServer returns a Server without gRPC server, logging nowhere.
func benchServer(b *testing.B) *Server {
	b.Helper()
	s, err := New(b.Context(), Options{Authenticate: authByHeader, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	return s
}

// BenchmarkNodeSnapshot is what a push computes for one node agent from a translated mesh of
// 100 services × 10 pods on 20 nodes: the digest of its resources (shared and its own) and its
// snapshot, before the snapshot cache.
func BenchmarkNodeSnapshot(b *testing.B) {
	m := benchMesh(false)
	shared, local := m.Shared(), m.Local("node-0")
	snap := newSnapshot("1", shared, local)
	if want := benchServices * (benchPods + 1); len(shared) != want || len(snap.GetResources(api.AddressType)) != want {
		b.Fatalf("%d shared, %d in the snapshot, want %d (every service and workload)", len(shared), len(snap.GetResources(api.AddressType)), want)
	}
	b.ReportAllocs()
	for b.Loop() {
		_ = digest(shared) + digest(local)
		newSnapshot("1", shared, local)
	}
}

// BenchmarkPush is one Server.Push to 20 nodes (no agent connected) where one pod changed
// since the previous push, so every node gets a new snapshot in the cache: the meshes
// alternate between two that differ by one pod's address.
func BenchmarkPush(b *testing.B) {
	meshes := [2]*translate.Mesh{benchMesh(false), benchMesh(true)}
	nodes := benchNodeNames()
	s := benchServer(b)
	ctx := context.Background()
	s.Push(ctx, meshes[1], nodes)
	s.Push(ctx, meshes[0], nodes)
	if st := s.Statuses(); len(st) != benchNodes || st[0].Pushed != "2" || st[0].Resources != benchServices*(benchPods+1) {
		b.Fatalf("statuses %+v", st)
	}
	b.ReportAllocs()
	i := 1
	for b.Loop() {
		s.Push(ctx, meshes[i%2], nodes)
		i++
	}
	// Two pushes before the loop, one per iteration: each changed node-0.
	if st := s.Statuses(); st[0].Pushed != fmt.Sprint(i+1) {
		b.Fatalf("pushed %s, want %d: a push was skipped", st[0].Pushed, i+1)
	}
}

// benchWaypointConfig is the configuration of waypoint shop/waypoint fronting the Services of
// benchObjects(changed), as controller/envoy builds it.
func benchWaypointConfig(b *testing.B, changed bool) *WaypointConfig {
	b.Helper()
	svcs, eps, pods := benchObjects(changed)
	cfg := envoy.Build(envoy.Input{Namespace: "shop", Services: svcs, EndpointSlices: eps, Pods: pods,
		NamespaceLabels: map[string]string{api.LabelDataplaneMode: api.DataplaneModeAmbient}}, envoy.Options{})
	if cfg.Listener == nil || len(cfg.Clusters) != benchServices || len(cfg.Endpoints) != benchServices || len(cfg.Problems) != 0 {
		b.Fatalf("listener %v, %d clusters, %d endpoints, problems %v", cfg.Listener != nil, len(cfg.Clusters), len(cfg.Endpoints), cfg.Problems)
	}
	return &WaypointConfig{Listener: cfg.Listener, Routes: cfg.Routes, Clusters: cfg.Clusters, Endpoints: cfg.Endpoints}
}

// BenchmarkPushWaypoints is one Server.PushWaypoints of a waypoint fronting 100 services × 10
// pods whose configuration changed (one endpoint's address): the digest of every resource and
// the new snapshot (no waypoint pod connected).
func BenchmarkPushWaypoints(b *testing.B) {
	k := WaypointKey{Namespace: "shop", Name: "waypoint"}
	cfgs := [2]map[WaypointKey]*WaypointConfig{{k: benchWaypointConfig(b, false)}, {k: benchWaypointConfig(b, true)}}
	s := benchServer(b)
	ctx := context.Background()
	s.PushWaypoints(ctx, cfgs[1])
	s.PushWaypoints(ctx, cfgs[0])
	if got := s.WaypointConfigs()[k.String()]; got != "w2" {
		b.Fatalf("waypoint configuration at %q, want w2", got)
	}
	if n := len(waypointResources(cfgs[0][k])[resource.ClusterType]); n != benchServices {
		b.Fatalf("%d clusters", n)
	}
	b.ReportAllocs()
	i := 1
	for b.Loop() {
		s.PushWaypoints(ctx, cfgs[i%2])
		i++
	}
	if got, want := s.WaypointConfigs()[k.String()], fmt.Sprintf("w%d", i+1); got != want {
		b.Fatalf("waypoint configuration at %s, want %s: a push was skipped", got, want)
	}
}
