package proxy_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/fault/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/rbac/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/weftmesh/weft/internal/hbone"
	"github.com/weftmesh/weft/waypoint/metrics"
	"github.com/weftmesh/weft/waypoint/proxy"
	"github.com/weftmesh/weft/waypoint/upstream"
)

// The tunnel of every request: a client of namespace shop reaching the books VIP.
var (
	vip    = netip.MustParseAddrPort("10.96.0.20:80")
	client = netip.MustParseAddrPort("10.244.1.5:40000")
	gwID   = spiffeid.RequireFromString("spiffe://cluster.local/ns/shop/sa/gw")
)

// backend is an upstream test server that answers with its name, failing as told.
type backend struct {
	name  string
	srv   *httptest.Server
	calls atomic.Int32
	fail  atomic.Int32 // answer 503 to this many next requests
	delay time.Duration
}

func newBackend(t *testing.T, name string) *backend {
	b := &backend{name: name}
	b.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b.calls.Add(1)
		if b.delay > 0 {
			select {
			case <-time.After(b.delay):
			case <-r.Context().Done():
				return
			}
		}
		if b.fail.Load() > 0 {
			b.fail.Add(-1)
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("X-Backend", name)
		fmt.Fprintf(w, "%s %s %s %s", name, r.Method, r.URL.RequestURI(), body)
	}))
	t.Cleanup(b.srv.Close)
	return b
}

func (b *backend) addr() netip.AddrPort {
	return b.srv.Listener.Addr().(*net.TCPAddr).AddrPort()
}

type tcpDialer struct{}

func (tcpDialer) Dial(ctx context.Context, ep *upstream.Endpoint) (net.Conn, error) {
	var d net.Dialer
	return d.DialContext(ctx, "tcp", ep.Addr.String())
}

func decode[T proto.Message](t *testing.T, m T, js string) T {
	t.Helper()
	if err := protojson.Unmarshal([]byte(js), m); err != nil {
		t.Fatalf("%v\n%s", err, js)
	}
	return m
}

// env is a handler configured with the listener and routes given, over clusters v1 and v2
// (one backend each).
type env struct {
	h      *proxy.Handler
	v1, v2 *backend
	reg    *prometheus.Registry
	log    *bytes.Buffer
}

const listenerJSON = `{
  "name": "main_internal",
  "filterChains": [{
    "name": "80",
    "filterChainMatch": {"destinationPort": 80},
    "filters": [{"name": "envoy.filters.network.http_connection_manager", "typedConfig": {
      "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
      "statPrefix": "inbound_80",
      "rds": {"routeConfigName": "80", "configSource": {"ads": {}}},
      "httpFilters": [
        %s
        {"name": "envoy.filters.http.fault", "typedConfig": {"@type": "type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault"}},
        {"name": "envoy.filters.http.router", "typedConfig": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}
      ]}}]
  }]
}`

func newEnv(t *testing.T, routesJSON, rbacFilters string, clusterExtra string) *env {
	t.Helper()
	e := &env{v1: newBackend(t, "v1"), v2: newBackend(t, "v2"), reg: prometheus.NewRegistry(), log: &bytes.Buffer{}}
	m, err := metrics.New(e.reg)
	if err != nil {
		t.Fatal(err)
	}
	mgr := upstream.NewManager(tcpDialer{}, upstream.Options{Logger: slog.New(slog.DiscardHandler)})
	t.Cleanup(func() { _ = mgr.Close() })
	var clusters []*clusterv3.Cluster
	var loads []*endpointv3.ClusterLoadAssignment
	for _, b := range []*backend{e.v1, e.v2} {
		name := "outbound|80|" + b.name + "|books.shop.svc.cluster.local"
		clusters = append(clusters, decode(t, &clusterv3.Cluster{}, fmt.Sprintf(`{"name": %q, "type": "STATIC", "connectTimeout": "1s" %s,
		  "loadAssignment": {"clusterName": %q, "endpoints": [{"lbEndpoints": [{"endpoint": {"address": {"socketAddress": {"address": %q, "portValue": %d}}},
		    "metadata": {"filterMetadata": {"weft": {"workload": "books-%s", "namespace": "shop", "app": "books", "version": %q}}}}]}]}}`,
			name, clusterExtra, name, b.addr().Addr().String(), b.addr().Port(), b.name, b.name)))
	}
	if err := mgr.Update(clusters, loads); err != nil {
		t.Fatal(err)
	}
	l := decode(t, &listenerv3.Listener{}, fmt.Sprintf(listenerJSON, rbacFilters))
	rc := decode(t, &routev3.RouteConfiguration{}, routesJSON)
	cfg, err := proxy.Compile([]*listenerv3.Listener{l}, []*routev3.RouteConfiguration{rc})
	if err != nil {
		t.Fatal(err)
	}
	e.h = proxy.NewHandler(proxy.HandlerOptions{Clusters: mgr, Metrics: m,
		AccessLog: slog.New(slog.NewJSONHandler(e.log, nil)), Logger: slog.New(slog.DiscardHandler)})
	e.h.SetConfig(cfg)
	return e
}

// do sends one request through the handler as if it came from the tunnel.
func (e *env) do(t *testing.T, method, target, body string, header ...string) *http.Response {
	t.Helper()
	r := httptest.NewRequest(method, target, strings.NewReader(body))
	for i := 0; i+1 < len(header); i += 2 {
		r.Header.Set(header[i], header[i+1])
	}
	in := &hbone.Inbound{PeerID: gwID, Authority: vip, ForwardedFor: client, RemoteAddr: client,
		Baggage: hbone.Baggage{Namespace: "shop", WorkloadName: "gw", ServiceName: "gw", ServiceVersion: "v1"}}
	r = r.WithContext(proxy.WithTunnel(r.Context(), in))
	w := httptest.NewRecorder()
	e.h.ServeHTTP(w, r)
	return w.Result()
}

func body(t *testing.T, resp *http.Response) string {
	t.Helper()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func routes(routesJSON string) string {
	return `{"name": "80", "virtualHosts": [{"name": "books.shop.svc.cluster.local:80",
	  "domains": ["books.shop.svc.cluster.local", "books", "books:80", "10.96.0.20", "10.96.0.20:80"],
	  "routes": [` + routesJSON + `]}]}`
}

const (
	toV1 = `{"match": {"prefix": "/"}, "route": {"cluster": "outbound|80|v1|books.shop.svc.cluster.local", "timeout": "0s"}}`
)

func TestRouting(t *testing.T) {
	e := newEnv(t, routes(`
	  {"name": "jason", "match": {"prefix": "/", "headers": [{"name": "end-user", "stringMatch": {"exact": "jason"}}]},
	   "route": {"cluster": "outbound|80|v2|books.shop.svc.cluster.local"}},
	  {"name": "moved", "match": {"path": "/old"}, "redirect": {"pathRedirect": "/new"}},
	  {"name": "teapot", "match": {"path": "/tea"}, "directResponse": {"status": 418, "body": {"inlineString": "short and stout"}}},
	  {"name": "split", "match": {"prefix": "/split"}, "route": {"weightedClusters": {"clusters": [
	     {"name": "outbound|80|v1|books.shop.svc.cluster.local", "weight": 50},
	     {"name": "outbound|80|v2|books.shop.svc.cluster.local", "weight": 50}]}}},
	  {"name": "gone", "match": {"prefix": "/gone"}, "route": {"cluster": "outbound|80|v9|books.shop.svc.cluster.local"}},
	  `+toV1), "", "")

	// The virtual host is chosen by the tunnel's destination: any Host header reaches books.
	if resp := e.do(t, "GET", "http://anything.example/x?q=1", ""); resp.StatusCode != 200 || body(t, resp) != "v1 GET /x?q=1 " {
		t.Errorf("default route: %d", resp.StatusCode)
	}
	if got := body(t, e.do(t, "GET", "http://books/", "", "end-user", "jason")); !strings.HasPrefix(got, "v2 ") {
		t.Errorf("end-user: jason → %q, want v2", got)
	}
	if resp := e.do(t, "GET", "http://books/old", ""); resp.StatusCode != http.StatusMovedPermanently || resp.Header.Get("Location") != "http://books/new" {
		t.Errorf("redirect: %d %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	if resp := e.do(t, "GET", "http://books/tea", ""); resp.StatusCode != 418 || body(t, resp) != "short and stout" {
		t.Errorf("direct response: %d", resp.StatusCode)
	}
	n := map[string]int{}
	for range 400 {
		n[e.do(t, "GET", "http://books/split", "").Header.Get("X-Backend")]++
	}
	if n["v1"] < 160 || n["v1"] > 240 {
		t.Errorf("50/50 over 400 requests: %v", n)
	}
	if resp := e.do(t, "GET", "http://books/gone", ""); resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("unknown cluster: %d, want 503 (NC)", resp.StatusCode)
	}
	// Metrics: the source from the tunnel, the destination from the endpoint's metadata.
	got := testutil.CollectAndCount(e.reg, "istio_requests_total")
	if got == 0 {
		t.Fatal("no istio_requests_total series")
	}
	want := `istio_requests_total{connection_security_policy="mutual_tls",destination_app="books",destination_canonical_revision="v2",destination_canonical_service="books",destination_cluster="unknown",destination_principal="unknown",destination_service="books.shop.svc.cluster.local",destination_service_name="books",destination_service_namespace="shop",destination_version="v2",destination_workload="books-v2",destination_workload_namespace="shop",grpc_response_status="",reporter="waypoint",request_protocol="http",response_code="200",response_flags="-",source_app="gw",source_canonical_revision="v1",source_canonical_service="gw",source_principal="spiffe://cluster.local/ns/shop/sa/gw",source_version="v1",source_workload="gw",source_workload_namespace="shop"}`
	if text := gather(t, e.reg); !strings.Contains(text, want) {
		t.Errorf("metrics lack\n%s\nin\n%s", want, text)
	}
	// One access log record per request, JSON.
	var rec map[string]any
	line, _, _ := strings.Cut(e.log.String(), "\n")
	if err := json.Unmarshal([]byte(line), &rec); err != nil || rec["response_code"] != float64(200) || rec["x_request_id"] == "" || rec["downstream_peer_principal"] != gwID.String() {
		t.Errorf("access log record %s (%v)", line, err)
	}
}

func gather(t *testing.T, g prometheus.Gatherer) string {
	t.Helper()
	var buf bytes.Buffer
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, fmt.Sprintf("%s=%q", l.GetName(), l.GetValue()))
			}
			fmt.Fprintf(&buf, "%s{%s}\n", mf.GetName(), strings.Join(labels, ","))
		}
	}
	return buf.String()
}

func TestFaultsTimeoutsRetries(t *testing.T) {
	e := newEnv(t, routes(`
	  {"name": "abort", "match": {"prefix": "/abort"}, "route": {"cluster": "outbound|80|v1|books.shop.svc.cluster.local"},
	   "typedPerFilterConfig": {"envoy.filters.http.fault": {"@type": "type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault",
	     "abort": {"httpStatus": 503, "percentage": {"numerator": 100}}}}},
	  {"name": "delay", "match": {"prefix": "/delay"}, "route": {"cluster": "outbound|80|v1|books.shop.svc.cluster.local"},
	   "typedPerFilterConfig": {"envoy.filters.http.fault": {"@type": "type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault",
	     "delay": {"fixedDelay": "0.2s", "percentage": {"numerator": 100}}}}},
	  {"name": "slow", "match": {"prefix": "/slow"}, "route": {"cluster": "outbound|80|v2|books.shop.svc.cluster.local", "timeout": "0.1s"}},
	  {"name": "retry", "match": {"prefix": "/retry"}, "route": {"cluster": "outbound|80|v1|books.shop.svc.cluster.local",
	   "retryPolicy": {"retryOn": "5xx", "numRetries": 2, "perTryTimeout": "2s"}}},
	  `+toV1), "", "")
	e.v2.delay = time.Second

	if resp := e.do(t, "GET", "http://books/abort", ""); resp.StatusCode != 503 || e.v1.calls.Load() != 0 {
		t.Errorf("abort fault: %d after %d upstream calls, want 503 without calling", resp.StatusCode, e.v1.calls.Load())
	}
	start := time.Now()
	if resp := e.do(t, "GET", "http://books/delay", ""); resp.StatusCode != 200 || time.Since(start) < 200*time.Millisecond {
		t.Errorf("delay fault: %d after %v, want 200 after ≥ 200 ms", resp.StatusCode, time.Since(start))
	}
	start = time.Now()
	if resp := e.do(t, "GET", "http://books/slow", ""); resp.StatusCode != http.StatusGatewayTimeout || time.Since(start) > 900*time.Millisecond {
		t.Errorf("timeout: %d after %v, want 504 after about 100 ms", resp.StatusCode, time.Since(start))
	}
	e.v1.fail.Store(2)
	calls := e.v1.calls.Load()
	if resp := e.do(t, "POST", "http://books/retry", "payload"); resp.StatusCode != 200 || body(t, resp) != "v1 POST /retry payload" {
		t.Errorf("retries: %d, want 200 with the body replayed", resp.StatusCode)
	}
	if n := e.v1.calls.Load() - calls; n != 3 {
		t.Errorf("retries: %d upstream attempts, want 3", n)
	}
	e.v1.fail.Store(3)
	if resp := e.do(t, "GET", "http://books/retry", ""); resp.StatusCode != 503 {
		t.Errorf("retries exhausted: %d, want the last 503", resp.StatusCode)
	}
}

func TestRBAC(t *testing.T) {
	allowGet := `{"name": "envoy.filters.http.rbac.allow", "typedConfig": {"@type": "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC",
	  "rules": {"action": "ALLOW", "policies": {"ns[shop]-policy[get-only]-rule[0]": {
	    "permissions": [{"header": {"name": ":method", "stringMatch": {"exact": "GET"}}}],
	    "principals": [{"authenticated": {"principalName": {"exact": "spiffe://cluster.local/ns/shop/sa/gw"}}}]}}}}},`
	e := newEnv(t, routes(toV1), allowGet, "")
	if resp := e.do(t, "GET", "http://books/", ""); resp.StatusCode != 200 {
		t.Errorf("GET: %d, want 200", resp.StatusCode)
	}
	if resp := e.do(t, "POST", "http://books/", "x"); resp.StatusCode != 403 || body(t, resp) != "RBAC: access denied" {
		t.Errorf("POST: %d, want 403", resp.StatusCode)
	}
	if e.v1.calls.Load() != 1 {
		t.Errorf("upstream calls = %d, want only the GET", e.v1.calls.Load())
	}
	if !strings.Contains(e.log.String(), `"rbac_denied_by":"(no ALLOW policy matched)"`) {
		t.Errorf("access log does not say why: %s", e.log.String())
	}
}

func TestCircuitBreaker(t *testing.T) {
	e := newEnv(t, routes(toV1), "", `, "circuitBreakers": {"thresholds": [{"maxConnections": 1, "maxPendingRequests": 1}]}`)
	e.v1.delay = 300 * time.Millisecond
	codes := make(chan int, 20)
	for range 20 {
		go func() { codes <- e.do(t, "GET", "http://books/", "").StatusCode }()
	}
	n := map[int]int{}
	for range 20 {
		n[<-codes]++
	}
	// One request on the connection and one pending; while the connection is still being
	// opened the first request is itself pending, and the second overflows, as in Envoy.
	if n[200] < 1 || n[200] > 2 || n[200]+n[503] != 20 {
		t.Errorf("20 concurrent requests, 1 connection + 1 pending: %v, want 1 or 2 × 200 and the rest 503", n)
	}
	if !strings.Contains(gather(t, e.reg), `response_flags="UO"`) {
		t.Error("no UO response flag counted")
	}
}

func TestMirror(t *testing.T) {
	e := newEnv(t, routes(`{"match": {"prefix": "/"}, "route": {"cluster": "outbound|80|v1|books.shop.svc.cluster.local",
	  "requestMirrorPolicies": [{"cluster": "outbound|80|v2|books.shop.svc.cluster.local", "runtimeFraction": {"defaultValue": {"numerator": 100}}}]}}`), "", "")
	for range 5 {
		if got := body(t, e.do(t, "POST", "http://books/m", "copy me")); got != "v1 POST /m copy me" {
			t.Errorf("client got %q, want v1's answer", got)
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for e.v2.calls.Load() < 5 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := e.v2.calls.Load(); n != 5 {
		t.Errorf("v2 received %d mirrored copies, want 5", n)
	}
	if text := gather(t, e.reg); !strings.Contains(text, `destination_canonical_revision="v2"`) {
		t.Error("mirrored requests are not counted in the metrics")
	}
}

// gRPC end to end: a grpc-go client speaking HTTP/2 without TLS (prior knowledge, as on a
// tunnel) through the handler to a grpc-go server over an HTTP/2 cluster; trailers (the
// grpc-status) and streaming must pass.
func TestGRPC(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	hs := health.NewServer()
	hs.SetServingStatus("books", healthpb.HealthCheckResponse_SERVING)
	healthpb.RegisterHealthServer(gs, hs)
	go func() { _ = gs.Serve(lis) }()
	t.Cleanup(gs.Stop)
	addr := lis.Addr().(*net.TCPAddr).AddrPort()

	mgr := upstream.NewManager(tcpDialer{}, upstream.Options{Logger: slog.New(slog.DiscardHandler)})
	t.Cleanup(func() { _ = mgr.Close() })
	name := "outbound|80||books.shop.svc.cluster.local"
	c := decode(t, &clusterv3.Cluster{}, fmt.Sprintf(`{"name": %q, "type": "STATIC", "connectTimeout": "1s",
	  "typedExtensionProtocolOptions": {"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
	    "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions", "explicitHttpConfig": {"http2ProtocolOptions": {}}}},
	  "loadAssignment": {"clusterName": %q, "endpoints": [{"lbEndpoints": [{"endpoint": {"address": {"socketAddress": {"address": %q, "portValue": %d}}}}]}]}}`,
		name, name, addr.Addr().String(), addr.Port()))
	if err := mgr.Update([]*clusterv3.Cluster{c}, nil); err != nil {
		t.Fatal(err)
	}
	l := decode(t, &listenerv3.Listener{}, fmt.Sprintf(listenerJSON, ""))
	rc := decode(t, &routev3.RouteConfiguration{}, routes(`{"match": {"prefix": "/"}, "route": {"cluster": "`+name+`"}}`))
	cfg, err := proxy.Compile([]*listenerv3.Listener{l}, []*routev3.RouteConfiguration{rc})
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	m, _ := metrics.New(reg)
	h := proxy.NewHandler(proxy.HandlerOptions{Clusters: mgr, Metrics: m, Logger: slog.New(slog.DiscardHandler)})
	h.SetConfig(cfg)
	in := &hbone.Inbound{PeerID: gwID, Authority: vip, ForwardedFor: client, RemoteAddr: client}
	var protocols http.Protocols
	protocols.SetUnencryptedHTTP2(true)
	front := &http.Server{Protocols: &protocols, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.ServeHTTP(w, r.WithContext(proxy.WithTunnel(r.Context(), in)))
	})}
	fl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = front.Serve(fl) }()
	t.Cleanup(func() { _ = front.Close() })

	conn, err := grpc.NewClient(fl.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{Service: "books"})
	if err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("Check through the waypoint: %v %v", resp, err)
	}
	// A gRPC error status travels in the trailers.
	_, err = healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{Service: "unknown"})
	if status.Code(err) != codes.NotFound {
		t.Errorf("Check of an unknown service: %v, want NotFound from the upstream's trailers", err)
	}
	// Server streaming: the first message arrives while the stream stays open.
	stream, err := healthpb.NewHealthClient(conn).Watch(ctx, &healthpb.HealthCheckRequest{Service: "books"})
	if err != nil {
		t.Fatal(err)
	}
	if msg, err := stream.Recv(); err != nil || msg.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Errorf("Watch through the waypoint: %v %v", msg, err)
	}
	if text := gather(t, reg); !strings.Contains(text, `request_protocol="grpc"`) || !strings.Contains(text, `grpc_response_status="5"`) {
		t.Errorf("gRPC requests not counted with their status:\n%s", text)
	}
}

// A request body streams to the upstream as it arrives even when the route retries (the body
// is recorded for a replay, not read in full first): a bidirectional exchange where the client
// sends its second line only after the answer to its first must not stall.
func TestStreamingBodyWithRetries(t *testing.T) {
	var protocols http.Protocols
	protocols.SetUnencryptedHTTP2(true)
	up := &http.Server{Protocols: &protocols, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusOK)
		sc := bufio.NewScanner(r.Body)
		for sc.Scan() {
			fmt.Fprintf(w, "got %s\n", sc.Text())
			_ = http.NewResponseController(w).Flush()
		}
	})}
	ul, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = up.Serve(ul) }()
	t.Cleanup(func() { _ = up.Close() })
	addr := ul.Addr().(*net.TCPAddr).AddrPort()

	mgr := upstream.NewManager(tcpDialer{}, upstream.Options{Logger: slog.New(slog.DiscardHandler)})
	t.Cleanup(func() { _ = mgr.Close() })
	name := "outbound|80||books.shop.svc.cluster.local"
	c := decode(t, &clusterv3.Cluster{}, fmt.Sprintf(`{"name": %q, "type": "STATIC", "connectTimeout": "1s",
	  "typedExtensionProtocolOptions": {"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
	    "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions", "explicitHttpConfig": {"http2ProtocolOptions": {}}}},
	  "loadAssignment": {"clusterName": %q, "endpoints": [{"lbEndpoints": [{"endpoint": {"address": {"socketAddress": {"address": %q, "portValue": %d}}}}]}]}}`,
		name, name, addr.Addr().String(), addr.Port()))
	if err := mgr.Update([]*clusterv3.Cluster{c}, nil); err != nil {
		t.Fatal(err)
	}
	l := decode(t, &listenerv3.Listener{}, fmt.Sprintf(listenerJSON, ""))
	rc := decode(t, &routev3.RouteConfiguration{}, routes(`{"match": {"prefix": "/"}, "route": {"cluster": "`+name+`",
	  "retryPolicy": {"retryOn": "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes", "numRetries": 2, "retriableStatusCodes": [503]}}}`))
	cfg, err := proxy.Compile([]*listenerv3.Listener{l}, []*routev3.RouteConfiguration{rc})
	if err != nil {
		t.Fatal(err)
	}
	h := proxy.NewHandler(proxy.HandlerOptions{Clusters: mgr, Logger: slog.New(slog.DiscardHandler)})
	h.SetConfig(cfg)
	in := &hbone.Inbound{PeerID: gwID, Authority: vip, ForwardedFor: client, RemoteAddr: client}
	front := &http.Server{Protocols: &protocols, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.ServeHTTP(w, r.WithContext(proxy.WithTunnel(r.Context(), in)))
	})}
	fl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = front.Serve(fl) }()
	t.Cleanup(func() { _ = front.Close() })

	pr, pw := io.Pipe()
	hc := &http.Client{Transport: &http.Transport{Protocols: &protocols}, Timeout: 5 * time.Second}
	req, _ := http.NewRequest(http.MethodPost, "http://"+fl.Addr().String()+"/stream", pr)
	go func() { _, _ = io.WriteString(pw, "first\n") }()
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	rd := bufio.NewReader(resp.Body)
	if line, err := rd.ReadString('\n'); err != nil || line != "got first\n" {
		t.Fatalf("first answer %q, %v: the body did not stream through the waypoint", line, err)
	}
	_, _ = io.WriteString(pw, "second\n")
	_ = pw.Close()
	if line, err := rd.ReadString('\n'); err != nil || line != "got second\n" {
		t.Fatalf("second answer %q, %v", line, err)
	}
}
