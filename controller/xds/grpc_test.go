package xds

import (
	"context"
	"strings"
	"testing"
	"time"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// TestGRPCNodes checks who may subscribe over state-of-the-world ADS, and that an allowed
// proxyless gRPC pod receives the routes of its namespace's waypoint.
func TestGRPCNodes(t *testing.T) {
	s, conn := serve(t)
	k := WaypointKey{"shop", "waypoint"}
	s.PushWaypoints(context.Background(), map[WaypointKey]*WaypointConfig{k: waypointConfig(5)})
	for _, tc := range []struct {
		name, caller, node, typeURL string
		code                        codes.Code // OK: served
	}{
		{"own namespace and pod", "x-sa=shop/client/client-0", GRPCNodeID(k, "client-0"), resource.RouteType, codes.OK},
		{"other namespace", "x-sa=other/client/client-0", GRPCNodeID(k, "client-0"), resource.RouteType, codes.PermissionDenied},
		{"other pod", "x-sa=shop/client/client-1", GRPCNodeID(k, "client-0"), resource.RouteType, codes.PermissionDenied},
		{"unknown waypoint", "x-sa=shop/client/client-0", GRPCNodeID(WaypointKey{"shop", "nope"}, "client-0"), resource.RouteType, codes.PermissionDenied},
		{"waypoint node over SotW", "x-sa=shop/waypoint/wp-0", WaypointNodeID(k, "wp-0"), resource.RouteType, codes.PermissionDenied},
		{"node agent over SotW", "x-node=node-a", "node-a", resource.RouteType, codes.Unimplemented},
		{"other type", "x-sa=shop/client/client-0", GRPCNodeID(k, "client-0"), resource.SecretType, codes.InvalidArgument},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			key, value, _ := strings.Cut(tc.caller, "=")
			ctx = metadata.AppendToOutgoingContext(ctx, key, value)
			st, err := discovery.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(ctx)
			if err != nil {
				t.Fatal(err)
			}
			_ = st.Send(&discovery.DiscoveryRequest{Node: &core.Node{Id: tc.node}, TypeUrl: tc.typeURL})
			resp, err := st.Recv()
			if got := status.Code(err); got != tc.code {
				t.Fatalf("code %v (%v), want %v", got, err, tc.code)
			}
			if tc.code == codes.OK && (resp.GetTypeUrl() != resource.RouteType || len(resp.GetResources()) == 0) {
				t.Fatalf("response %v, want the waypoint's routes", resp)
			}
		})
	}
}
