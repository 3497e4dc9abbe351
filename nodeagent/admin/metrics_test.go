package admin

import (
	"bytes"
	"flag"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/weftmesh/weft/nodeagent/state"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// golden compares got with testdata/name, or rewrites the file with -update.
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the golden file (run go test -update after checking):\n%s", path, got)
	}
}

// testMesh is a client and a server workload and the server's service.
func testMesh(t testing.TB) *state.Snapshot {
	t.Helper()
	ws := []*state.Workload{
		{
			UID: "Kubernetes//Pod/shop/client-1", Name: "client-1", Namespace: "shop", ServiceAccount: "client",
			Node: "node-a", ClusterID: "Kubernetes", Addresses: []netip.Addr{netip.MustParseAddr("10.244.1.5")},
			TunnelProtocol: state.TunnelHBONE, WorkloadName: "client", CanonicalName: "client", CanonicalRevision: "v1",
		},
		{
			UID: "Kubernetes//Pod/shop/web-1", Name: "web-1", Namespace: "shop", ServiceAccount: "web",
			Node: "node-b", ClusterID: "Kubernetes", Addresses: []netip.Addr{netip.MustParseAddr("10.244.2.7")},
			TunnelProtocol: state.TunnelHBONE, WorkloadName: "web", CanonicalName: "web", CanonicalRevision: "v2",
			PeerAuthentication: state.PeerAuthentication{Mode: state.ModeStrict, PortLevel: map[uint16]state.Mode{9090: state.ModePermissive}},
		},
		{
			UID: "Kubernetes//Pod/legacy/db-0", Name: "db-0", Namespace: "legacy", Node: "node-b",
			Addresses: []netip.Addr{netip.MustParseAddr("10.244.2.9")}, WorkloadName: "db", WorkloadType: state.Pod,
		},
	}
	ss := []*state.Service{{
		Name: "web", Namespace: "shop", Hostname: "web.shop.svc.cluster.local",
		VIPs:      []netip.Addr{netip.MustParseAddr("10.96.0.10")},
		Ports:     []state.ServicePort{{Name: "http", Port: 80, TargetPort: 8080, AppProtocol: state.ProtocolHTTP11}},
		Endpoints: []state.Endpoint{{WorkloadUID: "Kubernetes//Pod/shop/web-1"}},
	}}
	snap := state.NewSnapshot("3f2a9c0e1b2d4a5f", ws, ss)
	if err := snap.Validate(); err != nil {
		t.Fatal(err)
	}
	return snap
}

// TestMetricsGolden records a few connections and decisions and compares the scrape with
// testdata/metrics.golden: the metric families, their labels and values as Prometheus reads
// them.
func TestMetricsGolden(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	snap := testMesh(t)
	client, _ := snap.WorkloadByUID("Kubernetes//Pod/shop/client-1")
	web, _ := snap.WorkloadByUID("Kubernetes//Pod/shop/web-1")
	svc, _ := snap.ServiceByAddr(netip.MustParseAddrPort("10.96.0.10:80"))

	// Outbound, reported by the client's agent: client → web through the service, mTLS.
	out := Labels{Reporter: ReporterSource, SecurityPolicy: SecurityMutualTLS}
	out.SetSource(client)
	out.SourcePrincipal = client.Identity().String()
	out.SetDestination(web)
	out.SetDestinationService(svc)
	c := m.ConnOpened(&out)
	c.BytesReceived(100) // request
	c.BytesSent(2048)    // response
	c.BytesSent(0)
	c.Closed(FlagNone)
	c.Closed(FlagDenied) // ignored: already closed

	// Inbound, reported by web's agent, for the same connection.
	in := out
	in.Reporter = ReporterDestination
	c = m.ConnOpened(&in)
	c.BytesReceived(100)
	c.BytesSent(2048)
	c.Closed(FlagNone)

	// Inbound plaintext from outside the mesh, refused by STRICT.
	deny := Labels{Reporter: ReporterDestination, SecurityPolicy: SecurityNone}
	deny.SetDestination(web)
	m.ConnOpened(&deny).Closed(FlagDenied)
	m.Denied(Inbound, DenyStrictPlaintext)

	m.Passthrough(Outbound, PassthroughNotInMesh)
	m.Passthrough(Outbound, PassthroughNotInMesh)
	m.Passthrough(Inbound, PassthroughPermissive)
	m.Denied(Outbound, DenySelfCall)
	m.Passthrough(Inbound, PassthroughReason(99)) // out of range: ignored

	srv, err := New(Options{Store: new(state.Store), Gatherer: reg})
	if err != nil {
		t.Fatal(err)
	}
	h := srv.StatsHandler()
	body := scrape(t, h, "/metrics")
	golden(t, "metrics.golden", body)
	if alt := scrape(t, h, "/stats/prometheus"); !bytes.Equal(alt, body) {
		t.Error("/stats/prometheus differs from /metrics")
	}

	if n := testutil.CollectAndCount(reg, "istio_tcp_connections_closed_total"); n != 3 {
		t.Errorf("closed series = %d, want 3 (two reporters with -, one DENY)", n)
	}
}

func scrape(t *testing.T, h http.Handler, path string) []byte {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("GET %s: %d %s", path, rec.Code, rec.Body)
	}
	b, _ := io.ReadAll(rec.Body)
	return b
}

func TestTCPLabelNames(t *testing.T) {
	// The labels Istio documents (istio.io, "Istio Standard Metrics") that apply to TCP
	// metrics, in ztunnel's order.
	want := []string{
		"reporter",
		"source_workload", "source_canonical_service", "source_canonical_revision", "source_workload_namespace",
		"source_principal", "source_app", "source_version", "source_cluster",
		"destination_service", "destination_service_namespace", "destination_service_name",
		"destination_workload", "destination_canonical_service", "destination_canonical_revision",
		"destination_workload_namespace", "destination_principal", "destination_app", "destination_version",
		"destination_cluster",
		"request_protocol", "response_flags", "connection_security_policy",
	}
	if got := TCPLabelNames(); !slices.Equal(got, want) || len(got) != numLabels {
		t.Errorf("TCPLabelNames() = %v", got)
	}
}

func TestMetricsRegisterTwice(t *testing.T) {
	reg := prometheus.NewRegistry()
	if _, err := NewMetrics(reg); err != nil {
		t.Fatal(err)
	}
	if _, err := NewMetrics(reg); err == nil {
		t.Error("registering twice succeeded")
	}
}

func TestNilMetrics(t *testing.T) {
	var m *Metrics
	c := m.ConnOpened(&Labels{})
	c.BytesSent(1)
	c.BytesReceived(1)
	c.Closed(FlagNone)
	m.Passthrough(Outbound, PassthroughExcludedPort)
	m.Denied(Inbound, DenyAuthorizationPolicy)
}

func TestConnMetricsConcurrent(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	c := m.ConnOpened(&Labels{Reporter: ReporterDestination})
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range 1000 {
				c.BytesSent(1)
				c.BytesReceived(2)
			}
			c.Closed(FlagConnectFailure)
		})
	}
	wg.Wait()
	if got := testutil.ToFloat64(m.sent); got != 4000 {
		t.Errorf("sent = %v", got)
	}
	if got := testutil.ToFloat64(m.received); got != 8000 {
		t.Errorf("received = %v", got)
	}
	if got := testutil.ToFloat64(m.closed); got != 1 {
		t.Errorf("closed = %v, want 1", got)
	}
}

// TestConnMetricsAllocations pins the costs: per-byte and per-decision calls never allocate;
// opening a connection allocates only its handle.
func TestConnMetricsAllocations(t *testing.T) {
	m, err := NewMetrics(prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	l := &Labels{Reporter: ReporterSource, SourceWorkload: "a", DestinationWorkload: "b"}
	c := m.ConnOpened(l)
	if n := testing.AllocsPerRun(100, func() {
		c.BytesSent(1500)
		c.BytesReceived(1500)
		m.Passthrough(Outbound, PassthroughNotInMesh)
		m.Denied(Inbound, DenyStrictPlaintext)
	}); n != 0 {
		t.Errorf("hot path allocates %v times", n)
	}
	if n := testing.AllocsPerRun(100, func() { m.ConnOpened(l).Closed(FlagNone) }); n > 1 {
		t.Errorf("ConnOpened+Closed allocates %v times, want at most 1", n)
	}
}

func BenchmarkConnOpenedClosed(b *testing.B) {
	m, err := NewMetrics(prometheus.NewRegistry())
	if err != nil {
		b.Fatal(err)
	}
	l := &Labels{Reporter: ReporterSource, SourceWorkload: "a", SourceWorkloadNamespace: "ns",
		DestinationWorkload: "b", DestinationService: "b.ns.svc.cluster.local", SecurityPolicy: SecurityMutualTLS}
	b.ReportAllocs()
	for b.Loop() {
		m.ConnOpened(l).Closed(FlagNone)
	}
}

func BenchmarkBytesSent(b *testing.B) {
	m, err := NewMetrics(prometheus.NewRegistry())
	if err != nil {
		b.Fatal(err)
	}
	c := m.ConnOpened(&Labels{})
	b.ReportAllocs()
	for b.Loop() {
		c.BytesSent(16384)
	}
}
