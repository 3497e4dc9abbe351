package proxy_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/weftmesh/weft/internal/hbone"
	"github.com/weftmesh/weft/waypoint/metrics"
	"github.com/weftmesh/weft/waypoint/proxy"
	"github.com/weftmesh/weft/waypoint/upstream"
)

// The bound workload books-pod (10.244.1.7) and the chains of its pod-addressed traffic, as
// controller/envoy emits them for a waypoint-for: workload|all waypoint, beside the books
// Service's own chain of port 80 (no prefix ranges) and the db Service's TCP chain on 5432.
var podIP = netip.MustParseAddr("10.244.1.7")

const podListenerJSON = `{
  "name": "main_internal",
  "filterChains": [
    {"name": "80", "filterChainMatch": {"destinationPort": 80},
     "filters": [{"name": "envoy.filters.network.http_connection_manager", "typedConfig": {
       "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
       "statPrefix": "inbound_80", "rds": {"routeConfigName": "80", "configSource": {"ads": {}}},
       "httpFilters": [{"name": "envoy.filters.http.router", "typedConfig": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}]}}]},
    {"name": "inbound-pod|80|10.244.1.7",
     "filterChainMatch": {"destinationPort": 80, "prefixRanges": [{"addressPrefix": "10.244.1.7", "prefixLen": 32}]},
     "filters": [{"name": "envoy.filters.network.http_connection_manager", "typedConfig": {
       "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
       "statPrefix": "inbound_inbound-pod|80|10.244.1.7", "rds": {"routeConfigName": "inbound-pod|80|10.244.1.7", "configSource": {"ads": {}}},
       "httpFilters": [
         {"name": "envoy.filters.http.rbac.deny", "typedConfig": {"@type": "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC",
           "rules": {"action": "DENY", "policies": {"ns[shop]-policy[no-post]-rule[0]": {
             "permissions": [{"header": {"name": ":method", "stringMatch": {"exact": "POST"}}}], "principals": [{"any": true}]}}}}},
         {"name": "envoy.filters.http.router", "typedConfig": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}]}}]},
    {"name": "db.shop.svc.cluster.local:5432",
     "filterChainMatch": {"destinationPort": 5432, "prefixRanges": [{"addressPrefix": "10.96.0.30", "prefixLen": 32}]},
     "filters": [{"name": "envoy.filters.network.tcp_proxy", "typedConfig": {
       "@type": "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy",
       "statPrefix": "outbound|5432||db.shop.svc.cluster.local", "cluster": "outbound|5432||db.shop.svc.cluster.local"}}]},
    {"name": "inbound-pod|5432|10.244.1.7",
     "filterChainMatch": {"destinationPort": 5432, "prefixRanges": [{"addressPrefix": "10.244.1.7", "prefixLen": 32}]},
     "filters": [
       {"name": "envoy.filters.network.rbac.deny", "typedConfig": {
         "@type": "type.googleapis.com/envoy.extensions.filters.network.rbac.v3.RBAC", "statPrefix": "tcp.",
         "rules": {"action": "DENY", "policies": {"ns[shop]-policy[no-mallory]-rule[0]": {
           "permissions": [{"any": true}],
           "principals": [{"authenticated": {"principalName": {"exact": "spiffe://cluster.local/ns/shop/sa/mallory"}}}]}}}}},
       {"name": "envoy.filters.network.tcp_proxy", "typedConfig": {
         "@type": "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy",
         "statPrefix": "inbound-pod|5432|10.244.1.7", "cluster": "inbound-pod|5432|10.244.1.7"}}]}
  ]
}`

const podRoutesJSON = `{"name": "inbound-pod|80|10.244.1.7", "virtualHosts": [{"name": "inbound-pod|80|10.244.1.7", "domains": ["*"],
  "routes": [{"name": "default", "match": {"prefix": "/"}, "route": {"cluster": "inbound-pod|80|10.244.1.7", "timeout": "0s"}}]}]}`

// recordingDialer dials plain TCP and records the endpoints it was asked for.
type recordingDialer struct {
	mu  sync.Mutex
	eps []upstream.Endpoint
}

func (d *recordingDialer) Dial(ctx context.Context, ep *upstream.Endpoint) (net.Conn, error) {
	d.mu.Lock()
	d.eps = append(d.eps, *ep)
	d.mu.Unlock()
	var nd net.Dialer
	return nd.DialContext(ctx, "tcp", ep.Addr.String())
}

func (d *recordingDialer) dialed() []upstream.Endpoint {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]upstream.Endpoint(nil), d.eps...)
}

func staticCluster(t *testing.T, name string, at netip.AddrPort, meta string) *clusterv3.Cluster {
	t.Helper()
	return decode(t, &clusterv3.Cluster{}, fmt.Sprintf(`{"name": %q, "type": "STATIC", "connectTimeout": "1s",
	  "loadAssignment": {"clusterName": %q, "endpoints": [{"lbEndpoints": [{"endpoint": {"address": {"socketAddress": {"address": %q, "portValue": %d}}},
	    "metadata": {"filterMetadata": {"weft": %s}}}]}]}}`, name, name, at.Addr().String(), at.Port(), meta))
}

// TestPodAddressed sends pod-addressed HTTP requests and TCP connections (the tunnel's
// authority is the bound pod's IP:port) through the waypoint: they reach that pod, with its
// identity for the re-tunnel, whatever Host header they carry, under the waypoint-wide RBAC;
// Service-addressed traffic still takes the Service's chain.
func TestPodAddressed(t *testing.T) {
	svc, pod := newBackend(t, "service"), newBackend(t, "pod")
	echo := echoServer(t)
	reg := prometheus.NewRegistry()
	m, err := metrics.New(reg)
	if err != nil {
		t.Fatal(err)
	}
	dialer := &recordingDialer{}
	mgr := upstream.NewManager(dialer, upstream.Options{Logger: slog.New(slog.DiscardHandler)})
	t.Cleanup(func() { _ = mgr.Close() })
	podMeta := `{"tunnel": "HBONE", "identity": "spiffe://cluster.local/ns/shop/sa/books", "workload": "books-pod", "namespace": "shop", "app": "books", "version": "v1"}`
	clusters := []*clusterv3.Cluster{
		staticCluster(t, "outbound|80||books.shop.svc.cluster.local", svc.addr(), `{"workload": "books-svc", "namespace": "shop"}`),
		staticCluster(t, "inbound-pod|80|10.244.1.7", pod.addr(), podMeta),
		staticCluster(t, "outbound|5432||db.shop.svc.cluster.local", echo, `{"workload": "db-0", "namespace": "shop"}`),
		staticCluster(t, "inbound-pod|5432|10.244.1.7", echo, podMeta),
	}
	if err := mgr.Update(clusters, nil); err != nil {
		t.Fatal(err)
	}
	svcRoutes := `{"name": "80", "virtualHosts": [{"name": "books.shop.svc.cluster.local:80", "domains": ["books", "10.96.0.20:80"],
	  "routes": [{"match": {"prefix": "/"}, "route": {"cluster": "outbound|80||books.shop.svc.cluster.local", "timeout": "0s"}}]}]}`
	cfg, err := proxy.Compile([]*listenerv3.Listener{decode(t, &listenerv3.Listener{}, podListenerJSON)},
		[]*routev3.RouteConfiguration{decode(t, &routev3.RouteConfiguration{}, svcRoutes), decode(t, &routev3.RouteConfiguration{}, podRoutesJSON)})
	if err != nil {
		t.Fatal(err)
	}
	h := proxy.NewHandler(proxy.HandlerOptions{Clusters: mgr, Metrics: m, Logger: slog.New(slog.DiscardHandler)})
	h.SetConfig(cfg)
	tunnel := func(dst netip.AddrPort, peer string) *hbone.Inbound {
		return &hbone.Inbound{PeerID: spiffeid.RequireFromString(peer), Authority: dst, ForwardedFor: client, RemoteAddr: client,
			Baggage: hbone.Baggage{Namespace: "shop", WorkloadName: "gw", ServiceName: "gw", ServiceVersion: "v1"}}
	}

	t.Run("http", func(t *testing.T) {
		tests := []struct {
			name, method, host string
			dst                netip.AddrPort
			wantStatus         int
			wantBody           string
		}{
			{"pod address reaches the pod", "GET", "10.244.1.7", netip.AddrPortFrom(podIP, 80), 200, "pod GET /x "},
			{"a service Host header cannot steer it", "GET", "books", netip.AddrPortFrom(podIP, 80), 200, "pod GET /x "},
			{"waypoint-wide DENY applies", "POST", "10.244.1.7", netip.AddrPortFrom(podIP, 80), 403, "RBAC: access denied"},
			{"service VIP takes the service chain", "POST", "books", netip.MustParseAddrPort("10.96.0.20:80"), 200, "service POST /x "},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				in := tunnel(tt.dst, gwID.String())
				if st, err := h.Accept(in); st != 0 {
					t.Fatalf("Accept = %d (%v)", st, err)
				}
				r := httptest.NewRequest(tt.method, "http://"+tt.host+"/x", nil)
				r = r.WithContext(proxy.WithTunnel(r.Context(), in))
				w := httptest.NewRecorder()
				h.ServeHTTP(w, r)
				if got := strings.TrimSpace(w.Body.String()); w.Code != tt.wantStatus || got != strings.TrimSpace(tt.wantBody) {
					t.Fatalf("%s %s via %s = %d %q, want %d %q", tt.method, tt.host, tt.dst, w.Code, got, tt.wantStatus, tt.wantBody)
				}
			})
		}
		if pod.calls.Load() != 2 || svc.calls.Load() != 1 {
			t.Errorf("calls: pod %d, service %d; want 2 and 1", pod.calls.Load(), svc.calls.Load())
		}
		var podDial *upstream.Endpoint
		for _, ep := range dialer.dialed() {
			if ep.Addr == pod.addr() {
				podDial = &ep
			}
		}
		if podDial == nil || !podDial.Tunnel || podDial.Identity != "spiffe://cluster.local/ns/shop/sa/books" {
			t.Errorf("the pod was dialled as %+v, want an HBONE tunnel verifying spiffe://cluster.local/ns/shop/sa/books", podDial)
		}
		if out := gather(t, reg); !strings.Contains(out, `destination_workload="books-pod"`) {
			t.Errorf("metrics lack the pod as destination:\n%s", out)
		}
	})

	t.Run("tcp", func(t *testing.T) {
		tests := []struct {
			name       string
			dst        netip.AddrPort
			peer       string
			wantAccept int
			wantRelay  int
		}{
			{"pod address relays to the pod", netip.AddrPortFrom(podIP, 5432), gwID.String(), 0, 0},
			{"waypoint-wide DENY applies", netip.AddrPortFrom(podIP, 5432), "spiffe://cluster.local/ns/shop/sa/mallory", 0, http.StatusUnauthorized},
			{"an unbound pod is refused", netip.MustParseAddrPort("10.244.1.8:5432"), gwID.String(), http.StatusBadRequest, 0},
			{"a port without a chain is refused", netip.AddrPortFrom(podIP, 6000), gwID.String(), http.StatusBadRequest, 0},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				in := tunnel(tt.dst, tt.peer)
				if st, err := h.Accept(in); st != tt.wantAccept {
					t.Fatalf("Accept = %d (%v), want %d", st, err, tt.wantAccept)
				}
				if tt.wantAccept != 0 {
					return
				}
				before := len(dialer.dialed())
				serve, st, err := h.Relay(context.Background(), in)
				if st != tt.wantRelay || (st == 0) != (serve != nil) {
					t.Fatalf("Relay = %v, %d (%v), want status %d", serve != nil, st, err, tt.wantRelay)
				}
				if serve == nil {
					return
				}
				eps := dialer.dialed()[before:]
				if len(eps) != 1 || eps[0].Workload != "books-pod" || eps[0].Identity != "spiffe://cluster.local/ns/shop/sa/books" {
					t.Fatalf("dialled %+v, want the pod books-pod with its identity", eps)
				}
				cl, srv := tcpPair(t)
				done := make(chan struct{})
				go func() { serve(srv); close(done) }()
				if _, err := io.WriteString(cl, "to the pod"); err != nil {
					t.Fatal(err)
				}
				if err := cl.(*net.TCPConn).CloseWrite(); err != nil {
					t.Fatal(err)
				}
				if got, err := io.ReadAll(cl); err != nil || string(got) != "to the pod" {
					t.Fatalf("echo = %q, %v", got, err)
				}
				<-done
			})
		}
	})
}

// TestCompileChainOverlap checks that chains matching the same connections are refused,
// whether HTTP or TCP, and that HTTP chains match nothing but port and prefix ranges.
func TestCompileChainOverlap(t *testing.T) {
	tests := []struct{ name, from, to, want string }{
		{"two TCP chains on one prefix", `"addressPrefix": "10.96.0.30"`, `"addressPrefix": "10.244.1.7"`, "also matched by chain"},
		{"HTTP and TCP chain on one prefix", `"destinationPort": 5432, "prefixRanges": [{"addressPrefix": "10.244.1.7"`, `"destinationPort": 80, "prefixRanges": [{"addressPrefix": "10.244.1.7"`, "also matched by chain"},
		{"two HTTP chains for every address", `"filterChainMatch": {"destinationPort": 80, "prefixRanges": [{"addressPrefix": "10.244.1.7", "prefixLen": 32}]}`, `"filterChainMatch": {"destinationPort": 80}`, "two chains matching every address"},
		{"server names on an HTTP chain", `"filterChainMatch": {"destinationPort": 80},`, `"filterChainMatch": {"destinationPort": 80, "serverNames": ["books"]},`, "server_names"},
		{"a bad prefix length", `"addressPrefix": "10.244.1.7", "prefixLen": 32}]},
     "filters": [{"name": "envoy.filters.network.http`, `"addressPrefix": "10.244.1.7", "prefixLen": 33}]},
     "filters": [{"name": "envoy.filters.network.http`, "prefix_len"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			js := strings.Replace(podListenerJSON, tt.from, tt.to, 1)
			if js == podListenerJSON {
				t.Fatal("replacement did not apply")
			}
			_, err := proxy.Compile([]*listenerv3.Listener{decode(t, &listenerv3.Listener{}, js)}, nil)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Compile error %v, want one naming %q", err, tt.want)
			}
		})
	}
}
