package upstream

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	upstreamhttpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// loopDialer dials endpoints on loopback and counts the dials and the endpoints it saw.
type loopDialer struct {
	dials atomic.Int64
	mu    sync.Mutex
	seen  []Endpoint
	fail  map[netip.AddrPort]bool
}

func (d *loopDialer) Dial(ctx context.Context, ep *Endpoint) (net.Conn, error) {
	d.dials.Add(1)
	d.mu.Lock()
	d.seen = append(d.seen, *ep)
	fail := d.fail[ep.Addr]
	d.mu.Unlock()
	if fail {
		return nil, &net.OpError{Op: "dial", Net: "tcp", Err: errRefused}
	}
	var nd net.Dialer
	return nd.DialContext(ctx, "tcp", ep.Addr.String())
}

var errRefused = &net.AddrError{Err: "connection refused (test)"}

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *fakeClock { return &fakeClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)} }

func (f *fakeClock) Now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.t
}

func (f *fakeClock) Advance(d time.Duration) {
	f.mu.Lock()
	f.t = f.t.Add(d)
	f.mu.Unlock()
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func newTestManager(t *testing.T, d Dialer, clock *fakeClock) *Manager {
	t.Helper()
	if d == nil {
		d = &loopDialer{}
	}
	opts := Options{Logger: quietLogger(), TickInterval: -1}
	if clock != nil {
		opts.Now = clock.Now
	}
	m := NewManager(d, opts)
	t.Cleanup(func() { m.Close() })
	return m
}

// server is an httptest server on 127.0.0.1 that answers with its name and counts
// requests and connections.
type server struct {
	*httptest.Server
	name  string
	reqs  atomic.Int64
	conns atomic.Int64
	addr  netip.AddrPort
}

func newServer(t *testing.T, name string, h http.HandlerFunc, h2c bool) *server {
	t.Helper()
	s := &server{name: name}
	inner := func(w http.ResponseWriter, r *http.Request) {
		s.reqs.Add(1)
		w.Header().Set("x-server", name)
		if h != nil {
			h(w, r)
			return
		}
		io.WriteString(w, name)
	}
	s.Server = httptest.NewUnstartedServer(http.HandlerFunc(inner))
	s.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			s.conns.Add(1)
		}
	}
	if h2c {
		s.Config.Protocols = new(http.Protocols)
		s.Config.Protocols.SetHTTP1(true)
		s.Config.Protocols.SetUnencryptedHTTP2(true)
	}
	s.Start()
	t.Cleanup(s.Close)
	s.addr = netip.MustParseAddrPort(s.Listener.Addr().String())
	return s
}

type clusterOpt func(*clusterv3.Cluster)

func edsCluster(name string, opts ...clusterOpt) *clusterv3.Cluster {
	c := &clusterv3.Cluster{
		Name:                 name,
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS},
		EdsClusterConfig: &clusterv3.Cluster_EdsClusterConfig{EdsConfig: &corev3.ConfigSource{
			ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}}}},
		ConnectTimeout: durationpb.New(time.Second),
		LbPolicy:       clusterv3.Cluster_ROUND_ROBIN,
	}
	for _, o := range opts {
		o(c)
	}
	return c
}

func withLB(p clusterv3.Cluster_LbPolicy) clusterOpt {
	return func(c *clusterv3.Cluster) { c.LbPolicy = p }
}

func withLimits(conns, pending, requests uint32) clusterOpt {
	return func(c *clusterv3.Cluster) {
		c.CircuitBreakers = &clusterv3.CircuitBreakers{Thresholds: []*clusterv3.CircuitBreakers_Thresholds{{
			MaxConnections: wrapperspb.UInt32(conns), MaxPendingRequests: wrapperspb.UInt32(pending),
			MaxRequests: wrapperspb.UInt32(requests), MaxRetries: wrapperspb.UInt32(2)}}}
	}
}

func withProtocol(http2 bool, perConn uint32) clusterOpt {
	return func(c *clusterv3.Cluster) {
		o := &upstreamhttpv3.HttpProtocolOptions{UpstreamProtocolOptions: &upstreamhttpv3.HttpProtocolOptions_ExplicitHttpConfig_{
			ExplicitHttpConfig: &upstreamhttpv3.HttpProtocolOptions_ExplicitHttpConfig{
				ProtocolConfig: &upstreamhttpv3.HttpProtocolOptions_ExplicitHttpConfig_HttpProtocolOptions{HttpProtocolOptions: &corev3.Http1ProtocolOptions{}}}}}
		if http2 {
			o.GetExplicitHttpConfig().ProtocolConfig = &upstreamhttpv3.HttpProtocolOptions_ExplicitHttpConfig_Http2ProtocolOptions{Http2ProtocolOptions: &corev3.Http2ProtocolOptions{}}
		}
		if perConn > 0 {
			o.CommonHttpProtocolOptions = &corev3.HttpProtocolOptions{MaxRequestsPerConnection: wrapperspb.UInt32(perConn)}
		}
		a, err := anypb.New(o)
		if err != nil {
			panic(err)
		}
		c.TypedExtensionProtocolOptions = map[string]*anypb.Any{HTTPProtocolOptionsName: a}
	}
}

func withOutlier(od *clusterv3.OutlierDetection, panicThreshold float64) clusterOpt {
	return func(c *clusterv3.Cluster) {
		c.OutlierDetection = od
		c.CommonLbConfig = &clusterv3.Cluster_CommonLbConfig{HealthyPanicThreshold: &typev3.Percent{Value: panicThreshold}}
	}
}

func cla(name string, addrs ...netip.AddrPort) *endpointv3.ClusterLoadAssignment {
	var lbs []*endpointv3.LbEndpoint
	for _, a := range addrs {
		lbs = append(lbs, lbEndpoint(a, nil))
	}
	return &endpointv3.ClusterLoadAssignment{ClusterName: name, Endpoints: []*endpointv3.LocalityLbEndpoints{{LbEndpoints: lbs}}}
}

func lbEndpoint(a netip.AddrPort, md map[string]any) *endpointv3.LbEndpoint {
	lb := &endpointv3.LbEndpoint{
		HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{Address: &corev3.Address{
			Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
				Address: a.Addr().String(), PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: uint32(a.Port())}}}}}},
		HealthStatus: corev3.HealthStatus_HEALTHY,
	}
	if md != nil {
		s, err := structpb.NewStruct(md)
		if err != nil {
			panic(err)
		}
		lb.Metadata = &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{MetadataNamespace: s}}
	}
	return lb
}

// get sends a GET through the cluster and returns the response body and the endpoint.
func get(t *testing.T, c *Cluster, p Pick) (string, *Endpoint, error) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, "http://svc.test/", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, ep, err := c.RoundTrip(req, p)
	if err != nil {
		return "", ep, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b), ep, nil
}

func mustCluster(t *testing.T, m *Manager, name string) *Cluster {
	t.Helper()
	c, ok := m.Cluster(name)
	if !ok {
		t.Fatalf("cluster %s missing", name)
	}
	return c
}

func clustersOf(cs ...*clusterv3.Cluster) []*clusterv3.Cluster { return cs }

func loadsOf(ls ...*endpointv3.ClusterLoadAssignment) []*endpointv3.ClusterLoadAssignment {
	return ls
}
