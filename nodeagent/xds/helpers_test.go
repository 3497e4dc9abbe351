package xds

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"google.golang.org/grpc"
	grpcbackoff "google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/weftmesh/weft/api"
	workloadv1 "github.com/weftmesh/weft/api/workload/v1"
	"github.com/weftmesh/weft/nodeagent/state"
)

// controlPlane is go-control-plane's xDS server with a LinearCache of Addresses, on a real
// gRPC server on loopback, recording what the agent sends.
type controlPlane struct {
	t     *testing.T
	cache *cachev3.LinearCache
	addr  string

	mu       sync.Mutex
	srv      *grpc.Server
	requests []*discoveryv3.DeltaDiscoveryRequest
	// sent holds the responses sent on each stream.
	sent map[streamKey][]*discoveryv3.DeltaDiscoveryResponse
	// streams are the streams in the order their first request arrived.
	streams []streamKey
	servers int // started so far
}

// streamKey names a stream: each xDS server numbers its streams from 1.
type streamKey struct{ server, id int64 }

func startControlPlane(t *testing.T, initial ...*workloadv1.Address) *controlPlane {
	t.Helper()
	res := make(map[string]types.Resource, len(initial))
	for _, a := range initial {
		res[a.GetName()] = a
	}
	cp := &controlPlane{
		t:     t,
		cache: cachev3.NewLinearCache(api.AddressType, cachev3.WithInitialResources(res)),
		sent:  make(map[streamKey][]*discoveryv3.DeltaDiscoveryResponse),
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cp.addr = lis.Addr().String()
	cp.serve(lis)
	t.Cleanup(cp.stop)
	return cp
}

// serve starts a gRPC server on lis, with an xDS server over the same cache.
func (cp *controlPlane) serve(lis net.Listener) {
	cp.mu.Lock()
	cp.servers++
	server := int64(cp.servers)
	cp.mu.Unlock()
	cb := serverv3.CallbackFuncs{
		StreamDeltaRequestFunc: func(id int64, req *discoveryv3.DeltaDiscoveryRequest) error {
			cp.mu.Lock()
			defer cp.mu.Unlock()
			cp.requests = append(cp.requests, req)
			if k := (streamKey{server, id}); !slices.Contains(cp.streams, k) {
				cp.streams = append(cp.streams, k)
			}
			return nil
		},
		StreamDeltaResponseFunc: func(id int64, _ *discoveryv3.DeltaDiscoveryRequest, resp *discoveryv3.DeltaDiscoveryResponse) {
			cp.mu.Lock()
			defer cp.mu.Unlock()
			k := streamKey{server, id}
			cp.sent[k] = append(cp.sent[k], resp)
		},
	}
	srv := grpc.NewServer()
	discoveryv3.RegisterAggregatedDiscoveryServiceServer(srv, serverv3.NewServer(cp.t.Context(), cp.cache, cb))
	cp.mu.Lock()
	cp.srv = srv
	cp.mu.Unlock()
	go func() { _ = srv.Serve(lis) }()
}

// stop stops the server, closing its streams; the cache stays.
func (cp *controlPlane) stop() {
	cp.mu.Lock()
	srv := cp.srv
	cp.srv = nil
	cp.mu.Unlock()
	if srv != nil {
		srv.Stop()
	}
}

// restart serves again on the same address.
func (cp *controlPlane) restart() {
	cp.t.Helper()
	lis, err := net.Listen("tcp", cp.addr)
	if err != nil {
		cp.t.Fatalf("listen again on %s: %v", cp.addr, err)
	}
	cp.serve(lis)
}

func (cp *controlPlane) update(a *workloadv1.Address) {
	cp.t.Helper()
	if err := cp.cache.UpdateResource(a.GetName(), a); err != nil {
		cp.t.Fatal(err)
	}
}

func (cp *controlPlane) updateAs(name string, a *workloadv1.Address) {
	cp.t.Helper()
	if err := cp.cache.UpdateResource(name, a); err != nil {
		cp.t.Fatal(err)
	}
}

func (cp *controlPlane) delete(name string) {
	cp.t.Helper()
	if err := cp.cache.DeleteResource(name); err != nil {
		cp.t.Fatal(err)
	}
}

// reqs returns the requests received so far.
func (cp *controlPlane) reqs() []*discoveryv3.DeltaDiscoveryRequest {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	return slices.Clone(cp.requests)
}

// acked reports whether the response with nonce was ACKed, and nacked returns the NACK of
// the latest NACKed response, nil if none.
func (cp *controlPlane) acks() (acks, nacks []*discoveryv3.DeltaDiscoveryRequest) {
	for _, r := range cp.reqs() {
		switch {
		case r.GetResponseNonce() == "":
		case r.GetErrorDetail() != nil:
			nacks = append(nacks, r)
		default:
			acks = append(acks, r)
		}
	}
	return acks, nacks
}

// streamResponses returns the responses sent on the n-th stream (from 0).
func (cp *controlPlane) streamResponses(n int) []*discoveryv3.DeltaDiscoveryResponse {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	if n >= len(cp.streams) {
		return nil
	}
	return slices.Clone(cp.sent[cp.streams[n]])
}

// dial connects to the control plane, with a connection back-off as short as the source's.
func dial(t *testing.T, addr string) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(addr,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           grpcbackoff.Config{BaseDelay: 10 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: 50 * time.Millisecond},
			MinConnectTimeout: time.Second,
		}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// agent is a fake agent: it applies snapshots to a store, and rejects those with a workload
// named "reject-me".
type agent struct {
	store state.Store
	mu    sync.Mutex
	calls []*state.Snapshot // delivered
}

func (a *agent) apply(s *state.Snapshot) error {
	a.mu.Lock()
	a.calls = append(a.calls, s)
	a.mu.Unlock()
	for _, w := range s.Workloads() {
		if w.Name == "reject-me" {
			return errors.New("workload reject-me is not welcome")
		}
	}
	return a.store.Replace(s)
}

func (a *agent) delivered() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.calls)
}

// uids returns the UIDs of the workloads in force.
func (a *agent) uids() []string {
	var uids []string
	for _, w := range a.store.Load().Workloads() {
		uids = append(uids, w.UID)
	}
	return uids
}

// waitFor polls cond for up to 3 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// testOptions are fast back-off options.
func testOptions() Options {
	return Options{
		Node:       "node-a",
		Cluster:    "Kubernetes",
		MinBackoff: 5 * time.Millisecond,
		MaxBackoff: 50 * time.Millisecond,
		Logger:     quietLogger(),
	}
}

// startSource runs a Source against addr in the background; the test's end stops it and
// checks that Run returned nil.
func startSource(t *testing.T, addr string, a *agent) *Source {
	t.Helper()
	src := NewSource(dial(t, addr), addr, testOptions())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- src.Run(ctx, a.apply) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(2 * time.Second):
			t.Error("Run did not return after cancel")
		}
	})
	return src
}
