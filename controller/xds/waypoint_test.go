package xds

import (
	"context"
	"slices"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/weftmesh/weft/api"
)

var shopWaypoint = WaypointKey{Namespace: "shop", Name: "waypoint"}

// waypointConfig is a small valid configuration whose cluster has the given connect timeout.
func waypointConfig(timeout int64) *WaypointConfig {
	return &WaypointConfig{
		Listener:  &listenerv3.Listener{Name: "main_internal"},
		Routes:    []*routev3.RouteConfiguration{{Name: "9080"}},
		Clusters:  []*clusterv3.Cluster{{Name: "outbound|9080||reviews.shop.svc.cluster.local", ConnectTimeout: durationpb.New(time.Duration(timeout) * time.Second)}},
		Endpoints: []*endpointv3.ClusterLoadAssignment{{ClusterName: "outbound|9080||reviews.shop.svc.cluster.local"}},
	}
}

// subscribeWaypoint opens a stream as caller ("<ns>/<sa>/<pod>") for node and subscribes
// (wildcard) to each of types.
func subscribeWaypoint(t *testing.T, conn *grpc.ClientConn, caller, node string, types ...string) *client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	ctx = metadata.AppendToOutgoingContext(ctx, "x-sa", caller)
	st, err := discovery.NewAggregatedDiscoveryServiceClient(conn).DeltaAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	c := &client{t: t, stream: st}
	for i, typ := range types {
		req := &discovery.DeltaDiscoveryRequest{TypeUrl: typ}
		if i == 0 {
			req.Node = &core.Node{Id: node}
		}
		c.send(req)
	}
	return c
}

func TestWaypointServed(t *testing.T) {
	s, conn := serve(t)
	s.PushWaypoints(context.Background(), map[WaypointKey]*WaypointConfig{shopWaypoint: waypointConfig(1)})
	node := WaypointNodeID(shopWaypoint, "waypoint-7d9f")
	c := subscribeWaypoint(t, conn, "shop/waypoint/waypoint-7d9f", node, WaypointTypes...)

	got := map[string][]string{}
	nonces := map[string]string{}
	for range WaypointTypes {
		r := c.recv()
		got[r.TypeUrl] = names(r)
		nonces[r.TypeUrl] = r.Nonce
	}
	want := map[string][]string{
		resource.ListenerType: {"main_internal"},
		resource.RouteType:    {"9080"},
		resource.ClusterType:  {"outbound|9080||reviews.shop.svc.cluster.local"},
		resource.EndpointType: {"outbound|9080||reviews.shop.svc.cluster.local"},
	}
	for typ, w := range want {
		if !slices.Equal(got[typ], w) {
			t.Errorf("%s: got %v, want %v", typ, got[typ], w)
		}
	}
	for _, typ := range WaypointTypes {
		c.send(&discovery.DeltaDiscoveryRequest{TypeUrl: typ, ResponseNonce: nonces[typ]})
	}
	waitWaypoint(t, s, node, func(st NodeStatus) bool {
		return st.InSync() && st.Streams == 1 && st.Waypoint == "shop/waypoint" && st.Resources == 4
	})

	// An unchanged push sends nothing; a changed cluster sends only the cluster.
	s.PushWaypoints(context.Background(), map[WaypointKey]*WaypointConfig{shopWaypoint: waypointConfig(1)})
	s.PushWaypoints(context.Background(), map[WaypointKey]*WaypointConfig{shopWaypoint: waypointConfig(2)})
	r := c.recv()
	if r.TypeUrl != resource.ClusterType || len(r.Resources) != 1 {
		t.Fatalf("after a cluster change: %s %v, want the cluster only", r.TypeUrl, names(r))
	}
	c.send(&discovery.DeltaDiscoveryRequest{TypeUrl: r.TypeUrl, ResponseNonce: r.Nonce,
		ErrorDetail: &rpcstatus.Status{Code: int32(codes.InvalidArgument), Message: "cluster x: bad"}})
	waitWaypoint(t, s, node, func(st NodeStatus) bool {
		return st.Nacked == r.SystemVersionInfo && st.NackType == resource.ClusterType && st.NackError == "cluster x: bad"
	})
	if s.WaypointConfigs()["shop/waypoint"] != r.SystemVersionInfo {
		t.Fatalf("configs %v, want shop/waypoint at %s", s.WaypointConfigs(), r.SystemVersionInfo)
	}
	if len(s.Statuses()) != 0 {
		t.Fatalf("waypoint pods appear among the node agents: %+v", s.Statuses())
	}

	// The waypoint is deleted: its pod loses every resource.
	s.PushWaypoints(context.Background(), nil)
	removed := map[string]int{}
	for range WaypointTypes {
		r := c.recv()
		removed[r.TypeUrl] = len(r.RemovedResources)
	}
	for _, typ := range WaypointTypes {
		if removed[typ] != 1 {
			t.Errorf("%s: %d removed, want 1", typ, removed[typ])
		}
	}
}

func TestWaypointStreamRefused(t *testing.T) {
	s, conn := serve(t)
	s.PushWaypoints(context.Background(), map[WaypointKey]*WaypointConfig{shopWaypoint: waypointConfig(1)})
	s.Push(context.Background(), mesh(pod("a", "node-a", "198.18.1.5")), []string{"node-a"})
	other := WaypointKey{Namespace: "shop", Name: "edge"}
	for _, tc := range []struct {
		name, caller, node, typ string
		code                    codes.Code
	}{
		{"wrong service account", "shop/default/waypoint-1", WaypointNodeID(shopWaypoint, "waypoint-1"), resource.ClusterType, codes.PermissionDenied},
		{"wrong namespace", "bar/waypoint/waypoint-1", WaypointNodeID(shopWaypoint, "waypoint-1"), resource.ClusterType, codes.PermissionDenied},
		{"another pod", "shop/waypoint/waypoint-1", WaypointNodeID(shopWaypoint, "waypoint-2"), resource.ClusterType, codes.PermissionDenied},
		{"not a waypoint", "shop/edge/edge-1", WaypointNodeID(other, "edge-1"), resource.ClusterType, codes.PermissionDenied},
		{"not a waypoint node ID", "shop/waypoint/waypoint-1", "node-a", resource.ClusterType, codes.PermissionDenied},
		{"workload discovery to a waypoint", "shop/waypoint/waypoint-1", WaypointNodeID(shopWaypoint, "waypoint-1"), api.AddressType, codes.InvalidArgument},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := subscribeWaypoint(t, conn, tc.caller, tc.node, tc.typ)
			_, err := c.stream.Recv()
			if status.Code(err) != tc.code {
				t.Fatalf("Recv: %v, want code %v", err, tc.code)
			}
			t.Log(err)
		})
	}
	t.Run("Envoy types to a node agent", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(metadata.AppendToOutgoingContext(context.Background(), "x-node", "node-a"), 10*time.Second)
		defer cancel()
		st, err := discovery.NewAggregatedDiscoveryServiceClient(conn).DeltaAggregatedResources(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := st.Send(&discovery.DeltaDiscoveryRequest{Node: &core.Node{Id: "node-a"}, TypeUrl: resource.ClusterType}); err != nil {
			t.Fatal(err)
		}
		if _, err := st.Recv(); status.Code(err) != codes.InvalidArgument {
			t.Fatalf("Recv: %v, want InvalidArgument", err)
		}
	})
}

func TestParseWaypointNodeID(t *testing.T) {
	for _, tc := range []struct {
		id      string
		key     WaypointKey
		pod     string
		wantErr bool
	}{
		{id: "waypoint~shop~waypoint~wp-1", key: shopWaypoint, pod: "wp-1"},
		{id: "waypoint~shop~waypoint", wantErr: true},
		{id: "sidecar~shop~waypoint~wp-1", wantErr: true},
		{id: "waypoint~~waypoint~wp-1", wantErr: true},
		{id: "node-a", wantErr: true},
	} {
		k, p, err := ParseWaypointNodeID(tc.id)
		if (err != nil) != tc.wantErr || !tc.wantErr && (k != tc.key || p != tc.pod) {
			t.Errorf("ParseWaypointNodeID(%q) = %v, %q, %v", tc.id, k, p, err)
		}
		if !tc.wantErr && WaypointNodeID(k, p) != tc.id {
			t.Errorf("WaypointNodeID(%v, %q) = %q", k, p, WaypointNodeID(k, p))
		}
	}
}

func waitWaypoint(t *testing.T, s *Server, node string, ok func(NodeStatus) bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		for _, st := range s.WaypointStatuses() {
			if st.Node == node && ok(st) {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("status of %s: %+v", node, s.WaypointStatuses())
		}
		time.Sleep(10 * time.Millisecond)
	}
}
