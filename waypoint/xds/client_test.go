package xds

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
)

const node = "waypoint~shop~waypoint~waypoint-1"

// server is a go-control-plane delta ADS server on loopback that records the requests.
type server struct {
	cache cachev3.SnapshotCache
	conn  *grpc.ClientConn

	mu       sync.Mutex
	requests []*discoveryv3.DeltaDiscoveryRequest
	kill     bool // end the stream at the next request
	version  int
}

func newServer(t *testing.T) *server {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	s := &server{cache: cachev3.NewSnapshotCache(false, cachev3.IDHash{}, nil)}
	xs := serverv3.NewServer(ctx, s.cache, serverv3.CallbackFuncs{
		StreamDeltaRequestFunc: func(_ int64, req *discoveryv3.DeltaDiscoveryRequest) error {
			s.mu.Lock()
			defer s.mu.Unlock()
			s.requests = append(s.requests, req)
			if s.kill {
				s.kill = false
				return status.Error(codes.Unavailable, "test: stream ended")
			}
			return nil
		},
	})
	g := grpc.NewServer()
	discoveryv3.RegisterAggregatedDiscoveryServiceServer(g, xs)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = g.Serve(ln) }()
	t.Cleanup(g.Stop)
	s.conn, err = grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.conn.Close() })
	return s
}

// set sets a snapshot of the clusters given by name → connect timeout (0 s is invalid), each
// with its endpoints, a listener and a route.
func (s *server) set(t *testing.T, clusters map[string]int) {
	t.Helper()
	s.mu.Lock()
	s.version++
	v := s.version
	s.mu.Unlock()
	res := map[resource.Type][]types.Resource{
		resource.ListenerType: {&listenerv3.Listener{Name: "main_internal"}},
		resource.RouteType:    {&routev3.RouteConfiguration{Name: "9080"}},
	}
	for name, secs := range clusters {
		res[resource.ClusterType] = append(res[resource.ClusterType], &clusterv3.Cluster{Name: name, ConnectTimeout: durationpb.New(time.Duration(secs) * time.Second)})
		res[resource.EndpointType] = append(res[resource.EndpointType], &endpointv3.ClusterLoadAssignment{ClusterName: name})
	}
	snap, err := cachev3.NewSnapshot(fmt.Sprintf("v%d", v), res)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.cache.SetSnapshot(context.Background(), node, snap); err != nil {
		t.Fatal(err)
	}
}

// waitRequest waits for a request that ok accepts, among those after skip.
func (s *server) waitRequest(t *testing.T, what string, ok func(*discoveryv3.DeltaDiscoveryRequest) bool) *discoveryv3.DeltaDiscoveryRequest {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		s.mu.Lock()
		for _, r := range s.requests {
			if ok(r) {
				s.mu.Unlock()
				return r
			}
		}
		s.mu.Unlock()
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("no request: %s", what)
	return nil
}

func (s *server) reset() {
	s.mu.Lock()
	s.requests = nil
	s.mu.Unlock()
}

// run starts a client; sets receive what it applies, and apply fails while fail holds an error.
func run(t *testing.T, s *server, fail *error, mu *sync.Mutex, resync time.Duration) (*Client, chan *Resources) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	sets := make(chan *Resources, 16)
	c := NewClient(s.conn, "test", Options{Node: node, MinBackoff: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond, ResyncAfterNACK: resync})
	done := make(chan error, 1)
	go func() {
		done <- c.Run(ctx, func(r *Resources) error {
			mu.Lock()
			defer mu.Unlock()
			if *fail != nil {
				return *fail
			}
			sets <- r
			return nil
		})
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return c, sets
}

func next(t *testing.T, sets chan *Resources) *Resources {
	t.Helper()
	select {
	case r := <-sets:
		return r
	case <-time.After(5 * time.Second):
		t.Fatal("nothing applied")
		return nil
	}
}

func clusterNames(r *Resources) []string {
	var out []string
	for _, c := range r.Clusters {
		out = append(out, c.Name)
	}
	return out
}

func isACK(typ string) func(*discoveryv3.DeltaDiscoveryRequest) bool {
	return func(r *discoveryv3.DeltaDiscoveryRequest) bool {
		return r.TypeUrl == typ && r.ResponseNonce != "" && r.ErrorDetail == nil
	}
}

func TestApplyACKAndNACK(t *testing.T) {
	s := newServer(t)
	s.set(t, map[string]int{"outbound|9080||b": 1, "outbound|9080||a": 1})
	var fail error
	var mu sync.Mutex
	c, sets := run(t, s, &fail, &mu, 200*time.Millisecond)

	// The first set is complete (every type answered) and sorted.
	first := next(t, sets)
	if got := clusterNames(first); !slices.Equal(got, []string{"outbound|9080||a", "outbound|9080||b"}) {
		t.Fatalf("clusters %v, want both, sorted", got)
	}
	if len(first.Listeners) != 1 || len(first.Routes) != 1 || len(first.Endpoints) != 2 {
		t.Fatalf("first set: %d listeners, %d routes, %d endpoints", len(first.Listeners), len(first.Routes), len(first.Endpoints))
	}
	for _, typ := range Types {
		s.waitRequest(t, "ACK of "+typ, isACK(typ))
	}
	if r := s.waitRequest(t, "first request", func(r *discoveryv3.DeltaDiscoveryRequest) bool { return r.Node != nil }); r.Node.Id != node {
		t.Fatalf("node %q", r.Node.Id)
	}

	// An invalid cluster: NACKed naming it, nothing applied, the last good set stays.
	s.reset()
	s.set(t, map[string]int{"outbound|9080||a": 1, "outbound|9080||bad": 0})
	nack := s.waitRequest(t, "NACK", func(r *discoveryv3.DeltaDiscoveryRequest) bool { return r.ErrorDetail != nil })
	if nack.TypeUrl != resource.ClusterType || nack.ErrorDetail.Code != int32(codes.InvalidArgument) ||
		!strings.Contains(nack.ErrorDetail.Message, `Cluster "outbound|9080||bad"`) || !strings.Contains(nack.ErrorDetail.Message, "ConnectTimeout") {
		t.Fatalf("NACK %s: %v", nack.TypeUrl, nack.ErrorDetail)
	}
	// The endpoints of the same snapshot are valid: they are applied with the clusters held.
	r := next(t, sets)
	if got := clusterNames(r); !slices.Equal(got, []string{"outbound|9080||a", "outbound|9080||b"}) {
		t.Fatalf("after the NACK the clusters in force are %v, want the last good ones", got)
	}
	waitStatus(t, c, func(st Status) bool {
		return st.RejectedType == resource.ClusterType && st.Rejected != "" && st.Connected
	})

	// apply refuses: NACK with its reason.
	mu.Lock()
	fail = errors.New("listener main_internal: no such port")
	mu.Unlock()
	s.reset()
	s.set(t, map[string]int{"outbound|9080||a": 2})
	nack = s.waitRequest(t, "NACK of apply", func(r *discoveryv3.DeltaDiscoveryRequest) bool { return r.ErrorDetail != nil })
	if !strings.Contains(nack.ErrorDetail.Message, "rejected by the waypoint: listener main_internal: no such port") {
		t.Fatalf("NACK: %v", nack.ErrorDetail)
	}

	// Good again: the removal of b is applied (the server counted the rejected removal of b's
	// endpoints as delivered: the resync after the NACK gets it resent) and everything settles.
	mu.Lock()
	fail = nil
	mu.Unlock()
	s.reset()
	s.set(t, map[string]int{"outbound|9080||a": 3})
	deadline := time.After(5 * time.Second)
	for {
		var r *Resources
		select {
		case r = <-sets:
		case <-deadline:
			t.Fatal("the removal of b was not applied")
		}
		if slices.Equal(clusterNames(r), []string{"outbound|9080||a"}) && len(r.Endpoints) == 1 &&
			r.Clusters[0].ConnectTimeout.AsDuration() == 3*time.Second {
			break
		}
	}
	waitStatus(t, c, func(st Status) bool {
		return st.Rejected == "" && st.LastError == "" && st.Resources[resource.ClusterType] == 1
	})
}

func TestReconnectAnnouncesVersions(t *testing.T) {
	s := newServer(t)
	s.set(t, map[string]int{"outbound|9080||a": 1})
	var fail error
	var mu sync.Mutex
	c, sets := run(t, s, &fail, &mu, time.Hour)
	next(t, sets)
	for _, typ := range Types {
		s.waitRequest(t, "ACK of "+typ, isACK(typ))
	}
	s.mu.Lock()
	s.requests, s.kill = nil, true // the next request ends the stream
	s.mu.Unlock()
	s.set(t, map[string]int{"outbound|9080||a": 1, "outbound|9080||b": 1})

	for _, typ := range Types {
		r := s.waitRequest(t, "a new stream's subscription to "+typ, func(r *discoveryv3.DeltaDiscoveryRequest) bool {
			return r.TypeUrl == typ && r.ResponseNonce == "" && len(r.InitialResourceVersions) > 0
		})
		if !slices.Contains(r.ResourceNamesSubscribe, "*") {
			t.Errorf("%s: subscribed to %v, want the wildcard", typ, r.ResourceNamesSubscribe)
		}
		if typ == resource.ClusterType {
			if _, ok := r.InitialResourceVersions["outbound|9080||a"]; !ok {
				t.Errorf("initial versions %v lack the cluster held", r.InitialResourceVersions)
			}
		}
	}
	// The new cluster arrives on the new stream.
	deadline := time.After(5 * time.Second)
	for {
		select {
		case r := <-sets:
			if len(r.Clusters) == 2 {
				waitStatus(t, c, func(st Status) bool { return st.Connected })
				return
			}
		case <-deadline:
			t.Fatal("the new cluster was not applied after the reconnect")
		}
	}
}

func TestRunNeedsNode(t *testing.T) {
	c := NewClient(nil, "test", Options{})
	if err := c.Run(context.Background(), func(*Resources) error { return nil }); err == nil || !strings.Contains(err.Error(), "Node") {
		t.Fatalf("Run without a node: %v", err)
	}
}

func TestDecodeRejects(t *testing.T) {
	cl, _ := anyOf(t, &clusterv3.Cluster{Name: "x", ConnectTimeout: durationpb.New(time.Second)})
	for _, tc := range []struct {
		name, typ string
		r         *discoveryv3.Resource
		want      string
	}{
		{"no name", resource.ClusterType, &discoveryv3.Resource{Resource: cl}, "no name"},
		{"no body", resource.ClusterType, &discoveryv3.Resource{Name: "x"}, "no body"},
		{"wrong type", resource.ListenerType, &discoveryv3.Resource{Name: "x", Resource: cl}, "want type.googleapis.com/envoy.config.listener.v3.Listener"},
		{"other name", resource.ClusterType, &discoveryv3.Resource{Name: "y", Resource: cl}, `sent as "y" but named "x"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := decode(tc.typ, tc.r)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("decode: %v, want %q", err, tc.want)
			}
		})
	}
}

func waitStatus(t *testing.T, c *Client, ok func(Status) bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !ok(c.Status()) {
		if time.Now().After(deadline) {
			t.Fatalf("status %+v", c.Status())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func anyOf(t *testing.T, m proto.Message) (*anypb.Any, error) {
	t.Helper()
	a, err := anypb.New(m)
	if err != nil {
		t.Fatal(err)
	}
	return a, nil
}
