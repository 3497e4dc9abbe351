package upstream

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// TestGoldenClustersCompile: every cluster and load assignment the controller emits in its
// golden files is accepted (read as JSON, not imported).
func TestGoldenClustersCompile(t *testing.T) {
	files, err := filepath.Glob("../../controller/envoy/testdata/*.golden")
	if err != nil || len(files) == 0 {
		t.Fatalf("no golden files: %v", err)
	}
	total := 0
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			raw, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			var doc struct {
				Clusters  []json.RawMessage `json:"clusters"`
				Endpoints []json.RawMessage `json:"endpoints"`
			}
			if err := json.Unmarshal(raw, &doc); err != nil {
				t.Fatal(err)
			}
			var cs []*clusterv3.Cluster
			for _, r := range doc.Clusters {
				c := &clusterv3.Cluster{}
				if err := protojson.Unmarshal(r, c); err != nil {
					t.Fatal(err)
				}
				cs = append(cs, c)
			}
			var ls []*endpointv3.ClusterLoadAssignment
			for _, r := range doc.Endpoints {
				l := &endpointv3.ClusterLoadAssignment{}
				if err := protojson.Unmarshal(r, l); err != nil {
					t.Fatal(err)
				}
				ls = append(ls, l)
			}
			m := NewManager(&loopDialer{}, Options{Logger: quietLogger(), TickInterval: -1, Resolver: fakeResolver{}})
			defer m.Close()
			if err := m.Update(cs, ls); err != nil {
				t.Fatalf("the controller's clusters are refused: %v", err)
			}
			if got := len(m.Clusters()); got != len(cs) {
				t.Errorf("%d clusters, want %d", got, len(cs))
			}
			total += len(cs)
		})
	}
	if total == 0 {
		t.Error("the golden files hold no cluster")
	}
}

type fakeResolver map[string][]netip.Addr

func (r fakeResolver) LookupNetIP(_ context.Context, network, host string) ([]netip.Addr, error) {
	var out []netip.Addr
	for _, a := range r[host] {
		if network == "ip" || (network == "ip4") == a.Is4() {
			out = append(out, a)
		}
	}
	if len(out) == 0 {
		return nil, errors.New("no such host")
	}
	return out, nil
}

func TestUpdateKeepsStateAndIsAllOrNothing(t *testing.T) {
	s := newServer(t, "a", nil, false)
	m := newTestManager(t, nil, nil)
	a := edsCluster("a", withLimits(10, 10, 10))
	if err := m.Update(clustersOf(a), loadsOf(cla("a", s.addr))); err != nil {
		t.Fatal(err)
	}
	ca := mustCluster(t, m, "a")
	for range 3 {
		if _, _, err := get(t, ca, Pick{}); err != nil {
			t.Fatal(err)
		}
	}
	// Same config, a new cluster and a new endpoint: a keeps its state.
	other := netip.MustParseAddrPort("127.0.0.1:1")
	if err := m.Update(clustersOf(edsCluster("a", withLimits(10, 10, 10)), edsCluster("b")), loadsOf(cla("a", s.addr, other), cla("b", s.addr))); err != nil {
		t.Fatal(err)
	}
	if got := mustCluster(t, m, "a"); got != ca {
		t.Fatal("an unchanged cluster was replaced")
	}
	if st := ca.Stats(); st.RequestsTotal != 3 || st.ActiveConnections != 1 || st.Endpoints != 2 {
		t.Errorf("stats %+v; want the 3 requests and the pooled connection kept, 2 endpoints", st)
	}
	cb := mustCluster(t, m, "b")
	// A bad cluster: nothing changes.
	bad := edsCluster("c")
	bad.HealthChecks = []*corev3.HealthCheck{{}}
	err := m.Update(clustersOf(edsCluster("a"), bad), nil)
	if err == nil || !strings.Contains(err.Error(), `cluster "c"`) || !strings.Contains(err.Error(), "health_checks") {
		t.Fatalf("got %v; want an error naming cluster c and health_checks", err)
	}
	if got, _ := m.Cluster("a"); got != ca {
		t.Error("a failed update changed cluster a")
	}
	if got, ok := m.Cluster("b"); !ok || got != cb {
		t.Error("a failed update removed cluster b")
	}
	if _, ok := m.Cluster("c"); ok {
		t.Error("a failed update added cluster c")
	}
	// A changed config replaces the cluster; removed ones go.
	if err := m.Update(clustersOf(edsCluster("a", withLimits(5, 5, 5))), loadsOf(cla("a", s.addr))); err != nil {
		t.Fatal(err)
	}
	if got := mustCluster(t, m, "a"); got == ca || got.Stats().RequestsTotal != 0 {
		t.Error("a changed cluster kept its old state")
	}
	if _, ok := m.Cluster("b"); ok {
		t.Error("removed cluster b is still there")
	}
	deadline := time.Now().Add(2 * time.Second)
	for ca.Stats().ActiveConnections != 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if n := ca.Stats().ActiveConnections; n != 0 {
		t.Errorf("the replaced cluster keeps %d idle connections open", n)
	}
}

func TestCompileRejects(t *testing.T) {
	tests := []struct {
		name string
		mod  func(*clusterv3.Cluster)
		want string
	}{
		{"unknown field", func(c *clusterv3.Cluster) { c.PerConnectionBufferLimitBytes = wrapperspb.UInt32(1) }, "per_connection_buffer_limit_bytes"},
		{"lb policy", func(c *clusterv3.Cluster) { c.LbPolicy = clusterv3.Cluster_CLUSTER_PROVIDED }, "lb_policy"},
		{"retry budget", func(c *clusterv3.Cluster) {
			c.CircuitBreakers = &clusterv3.CircuitBreakers{Thresholds: []*clusterv3.CircuitBreakers_Thresholds{{RetryBudget: &clusterv3.CircuitBreakers_Thresholds_RetryBudget{}}}}
		}, "retry_budget"},
		{"maglev size", func(c *clusterv3.Cluster) {
			c.LbPolicy = clusterv3.Cluster_MAGLEV
			c.LbConfig = &clusterv3.Cluster_MaglevLbConfig_{MaglevLbConfig: &clusterv3.Cluster_MaglevLbConfig{TableSize: wrapperspb.UInt64(1000)}}
		}, "table_size"},
		{"ring config on round robin", func(c *clusterv3.Cluster) {
			c.LbConfig = &clusterv3.Cluster_RingHashLbConfig_{RingHashLbConfig: &clusterv3.Cluster_RingHashLbConfig{}}
		}, "ring_hash_lb_config"},
		{"outlier detector extension", func(c *clusterv3.Cluster) {
			c.OutlierDetection = &clusterv3.OutlierDetection{Monitors: []*corev3.TypedExtensionConfig{{Name: "x"}}}
		}, "monitors"},
		{"enforcing over 100", func(c *clusterv3.Cluster) {
			c.OutlierDetection = &clusterv3.OutlierDetection{EnforcingConsecutive_5Xx: wrapperspb.UInt32(101)}
		}, "enforcing_consecutive_5xx"},
		{"zero connect timeout", func(c *clusterv3.Cluster) { c.ConnectTimeout = durationpb.New(0) }, "connect_timeout"},
		{"static without endpoints", func(c *clusterv3.Cluster) {
			c.ClusterDiscoveryType = &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC}
			c.EdsClusterConfig = nil
		}, "load_assignment"},
		{"other protocol options", func(c *clusterv3.Cluster) {
			withProtocol(false, 0)(c)
			c.TypedExtensionProtocolOptions["envoy.extensions.upstreams.tcp.v3.TcpProtocolOptions"] = c.TypedExtensionProtocolOptions[HTTPProtocolOptionsName]
		}, "TcpProtocolOptions"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := edsCluster("bad")
			tt.mod(c)
			m := newTestManager(t, nil, nil)
			err := m.Update(clustersOf(c), nil)
			if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), `cluster "bad"`) {
				t.Errorf("got %v; want an error naming cluster bad and %s", err, tt.want)
			}
		})
	}
	// Load assignments are checked too.
	m := newTestManager(t, nil, nil)
	l := cla("c", addrs(2)...)
	l.Endpoints[0].Priority = 1
	if err := m.Update(clustersOf(edsCluster("c")), loadsOf(l)); err == nil || !strings.Contains(err.Error(), "priority") {
		t.Errorf("got %v, want priority refused", err)
	}
	l = cla("c", addrs(1)...)
	l.Endpoints[0].LbEndpoints = append(l.Endpoints[0].LbEndpoints, lbEndpoint(addrs(2)[1], map[string]any{"tunnel": "GRE"}))
	if err := m.Update(clustersOf(edsCluster("c")), loadsOf(l)); err == nil || !strings.Contains(err.Error(), "tunnel") {
		t.Errorf("got %v, want the tunnel refused", err)
	}
}

func TestEndpointMetadata(t *testing.T) {
	s := newServer(t, "a", nil, false)
	d := &loopDialer{}
	m := newTestManager(t, d, nil)
	l := &endpointv3.ClusterLoadAssignment{ClusterName: "c", Endpoints: []*endpointv3.LocalityLbEndpoints{{LbEndpoints: []*endpointv3.LbEndpoint{
		lbEndpoint(s.addr, map[string]any{"tunnel": "HBONE", "identity": "spiffe://cluster.local/ns/default/sa/reviews",
			"workload": "reviews-v1-abc", "namespace": "default", "app": "reviews", "version": "v1"})}}}}
	if err := m.Update(clustersOf(edsCluster("c")), loadsOf(l)); err != nil {
		t.Fatal(err)
	}
	_, ep, err := get(t, mustCluster(t, m, "c"), Pick{})
	if err != nil {
		t.Fatal(err)
	}
	want := Endpoint{Addr: s.addr, Tunnel: true, Identity: "spiffe://cluster.local/ns/default/sa/reviews", Workload: "reviews-v1-abc", Namespace: "default", App: "reviews", Version: "v1"}
	d.mu.Lock()
	defer d.mu.Unlock()
	if *ep != want || len(d.seen) != 1 || d.seen[0] != want {
		t.Errorf("endpoint %+v, dialled %+v; want %+v", *ep, d.seen, want)
	}
}

func TestStrictDNS(t *testing.T) {
	s := newServer(t, "a", nil, false)
	d := &loopDialer{}
	m := NewManager(d, Options{Logger: quietLogger(), TickInterval: -1, Resolver: fakeResolver{"api.example.com": {s.addr.Addr(), netip.MustParseAddr("::1")}}})
	defer m.Close()
	c := &clusterv3.Cluster{
		Name: "dns", ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STRICT_DNS},
		DnsLookupFamily: clusterv3.Cluster_V4_ONLY, LbPolicy: clusterv3.Cluster_ROUND_ROBIN,
		LoadAssignment: &endpointv3.ClusterLoadAssignment{ClusterName: "dns", Endpoints: []*endpointv3.LocalityLbEndpoints{{LbEndpoints: []*endpointv3.LbEndpoint{
			{HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{Address: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
				Address: "api.example.com", PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: uint32(s.addr.Port())}}}}}}}}}}},
	}
	if err := m.Update(clustersOf(c), nil); err != nil {
		t.Fatal(err)
	}
	body, ep, err := get(t, mustCluster(t, m, "dns"), Pick{})
	if err != nil || body != "a" || ep.Addr != s.addr || ep.Hostname != "api.example.com" || ep.Tunnel {
		t.Fatalf("got %q from %+v, %v", body, ep, err)
	}
	if n := len(mustCluster(t, m, "dns").Endpoints()); n != 1 {
		t.Errorf("%d endpoints, want 1 (V4_ONLY)", n)
	}
}

func TestOriginalDst(t *testing.T) {
	s := newServer(t, "a", nil, false)
	clock := newClock()
	m := newTestManager(t, nil, clock)
	c := &clusterv3.Cluster{Name: "passthrough", ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_ORIGINAL_DST}, LbPolicy: clusterv3.Cluster_CLUSTER_PROVIDED}
	if err := m.Update(clustersOf(c), nil); err != nil {
		t.Fatal(err)
	}
	cl := mustCluster(t, m, "passthrough")
	if _, _, err := get(t, cl, Pick{}); !errors.Is(err, ErrNoHealthyUpstream) {
		t.Errorf("without an original destination: %v", err)
	}
	body, ep, err := get(t, cl, Pick{OriginalDst: &Endpoint{Addr: s.addr, Tunnel: false}})
	if err != nil || body != "a" || ep.Addr != s.addr {
		t.Fatalf("got %q %v %v", body, ep, err)
	}
	clock.Advance(time.Hour + time.Second) // past the idle timeout and cleanup_interval
	m.tick()
	cl.mu.Lock()
	n := len(cl.byKey)
	cl.mu.Unlock()
	if n != 0 || cl.Stats().ActiveConnections != 0 {
		t.Errorf("%d hosts, %d connections after cleanup; want none", n, cl.Stats().ActiveConnections)
	}
}

func TestCloseStopsEverything(t *testing.T) {
	release := make(chan struct{})
	var once sync.Once
	s := newServer(t, "a", func(w http.ResponseWriter, r *http.Request) { <-release }, false)
	defer once.Do(func() { close(release) })
	m := NewManager(&loopDialer{}, Options{Logger: quietLogger(), TickInterval: time.Millisecond})
	if err := m.Update(clustersOf(edsCluster("c", withLimits(1, 5, 10))), loadsOf(cla("c", s.addr))); err != nil {
		t.Fatal(err)
	}
	c := mustCluster(t, m, "c")
	errs := make(chan error, 2)
	go func() { _, _, err := get(t, c, Pick{}); errs <- err }()
	for c.Stats().ActiveRequests == 0 {
		time.Sleep(time.Millisecond)
	}
	go func() { _, _, err := get(t, c, Pick{}); errs <- err }()
	for c.Stats().PendingRequests == 0 {
		time.Sleep(time.Millisecond)
	}
	m.Close()
	if err := <-errs; !errors.Is(err, ErrClosed) {
		t.Errorf("pending request: %v, want ErrClosed", err)
	}
	once.Do(func() { close(release) })
	if err := <-errs; err != nil {
		t.Errorf("in-flight request: %v, want it to finish", err)
	}
	if _, _, err := get(t, c, Pick{}); !errors.Is(err, ErrClosed) {
		t.Errorf("after Close: %v", err)
	}
	if err := m.Update(nil, nil); err == nil {
		t.Error("Update after Close must fail")
	}
}
