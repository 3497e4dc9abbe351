package proxy_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/rbac/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/weftmesh/weft/internal/hbone"
	"github.com/weftmesh/weft/waypoint/metrics"
	"github.com/weftmesh/weft/waypoint/proxy"
	"github.com/weftmesh/weft/waypoint/upstream"
)

var dbVIP = netip.MustParseAddrPort("10.96.0.30:5432")

// tcpListenerJSON has an HTTP-less listener with one TCP chain for the db VIP on 5432: a
// network RBAC DENY of the principal "mallory" and tcp_proxy to the db cluster.
const tcpListenerJSON = `{
  "name": "main_internal",
  "filterChains": [{
    "name": "db.shop.svc.cluster.local:5432",
    "filterChainMatch": {"destinationPort": 5432, "prefixRanges": [{"addressPrefix": "10.96.0.30", "prefixLen": 32}]},
    "filters": [
      {"name": "envoy.filters.network.rbac.deny", "typedConfig": {
        "@type": "type.googleapis.com/envoy.extensions.filters.network.rbac.v3.RBAC", "statPrefix": "tcp.",
        "rules": {"action": "DENY", "policies": {"ns[shop]-policy[no-mallory]-rule[0]": {
          "permissions": [{"any": true}],
          "principals": [{"authenticated": {"principalName": {"exact": "spiffe://cluster.local/ns/shop/sa/mallory"}}}]}}}}},
      {"name": "envoy.filters.network.tcp_proxy", "typedConfig": {
        "@type": "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy",
        "statPrefix": "outbound|5432||db.shop.svc.cluster.local", "cluster": "outbound|5432||db.shop.svc.cluster.local"}}
    ]
  }]
}`

// echoServer echoes each connection until the client half-closes, then closes.
func echoServer(t *testing.T) netip.AddrPort {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_, _ = io.Copy(c, c)
			}()
		}
	}()
	return ln.Addr().(*net.TCPAddr).AddrPort()
}

// tcpPair returns both ends of a loopback TCP connection (they can half-close).
func tcpPair(t *testing.T) (net.Conn, net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	a, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	b, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close(); b.Close() })
	return a, b
}

func TestTCPChain(t *testing.T) {
	echo := echoServer(t)
	reg := prometheus.NewRegistry()
	m, err := metrics.New(reg)
	if err != nil {
		t.Fatal(err)
	}
	mgr := upstream.NewManager(tcpDialer{}, upstream.Options{Logger: slog.New(slog.DiscardHandler)})
	t.Cleanup(func() { _ = mgr.Close() })
	name := "outbound|5432||db.shop.svc.cluster.local"
	cl := decode(t, &clusterv3.Cluster{}, fmt.Sprintf(`{"name": %q, "type": "STATIC", "connectTimeout": "1s",
	  "loadAssignment": {"clusterName": %q, "endpoints": [{"lbEndpoints": [{"endpoint": {"address": {"socketAddress": {"address": %q, "portValue": %d}}},
	    "metadata": {"filterMetadata": {"weft": {"workload": "db-0", "namespace": "shop", "app": "db", "version": "v1"}}}}]}]}}`,
		name, name, echo.Addr().String(), echo.Port()))
	if err := mgr.Update([]*clusterv3.Cluster{cl}, nil); err != nil {
		t.Fatal(err)
	}
	cfg, err := proxy.Compile([]*listenerv3.Listener{decode(t, &listenerv3.Listener{}, tcpListenerJSON)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	h := proxy.NewHandler(proxy.HandlerOptions{Clusters: mgr, Metrics: m, AccessLog: slog.New(slog.NewJSONHandler(&logs, nil)), Logger: slog.New(slog.DiscardHandler)})
	h.SetConfig(cfg)

	tests := []struct {
		name       string
		dst        netip.AddrPort
		peer       string
		wantAccept int // Accept's status
		wantRelay  int // Relay's status (0: relayed)
	}{
		{"allowed client relays", dbVIP, "spiffe://cluster.local/ns/shop/sa/gw", 0, 0},
		{"denied principal gets 401", dbVIP, "spiffe://cluster.local/ns/shop/sa/mallory", 0, http.StatusUnauthorized},
		{"other address on the port is refused", netip.MustParseAddrPort("10.96.0.31:5432"), "spiffe://cluster.local/ns/shop/sa/gw", http.StatusBadRequest, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := &hbone.Inbound{PeerID: spiffeid.RequireFromString(tt.peer), Authority: tt.dst, ForwardedFor: client,
				Baggage: hbone.Baggage{WorkloadName: "gw", Namespace: "shop"}}
			if st, err := h.Accept(in); st != tt.wantAccept {
				t.Fatalf("Accept = %d (%v), want %d", st, err, tt.wantAccept)
			}
			if tt.wantAccept != 0 {
				return
			}
			serve, st, err := h.Relay(context.Background(), in)
			if st != tt.wantRelay || (st == 0) != (serve != nil) {
				t.Fatalf("Relay = %v, %d (%v), want status %d", serve != nil, st, err, tt.wantRelay)
			}
			if serve == nil {
				return
			}
			cl, srv := tcpPair(t)
			done := make(chan struct{})
			go func() { serve(srv); close(done) }()
			if _, err := io.WriteString(cl, "hello over tcp"); err != nil {
				t.Fatal(err)
			}
			if err := cl.(*net.TCPConn).CloseWrite(); err != nil { // the echo ends after our EOF
				t.Fatal(err)
			}
			got, err := io.ReadAll(cl)
			if err != nil || string(got) != "hello over tcp" {
				t.Fatalf("echo = %q, %v", got, err)
			}
			<-done
		})
	}
	if got := testutil.ToFloat64(metricWith(t, reg, "istio_tcp_connections_closed_total")); got != 1 {
		t.Errorf("closed connections = %v, want 1", got)
	}
	if got := testutil.ToFloat64(metricWith(t, reg, "istio_tcp_received_bytes_total")); got != 14 {
		t.Errorf("received bytes = %v, want 14", got)
	}
	if got := testutil.ToFloat64(metricWith(t, reg, "istio_tcp_sent_bytes_total")); got != 14 {
		t.Errorf("sent bytes = %v, want 14", got)
	}
	if !strings.Contains(logs.String(), `"rbac_denied_by":"ns[shop]-policy[no-mallory]-rule[0]"`) || !strings.Contains(logs.String(), `"response_code":401`) {
		t.Errorf("access log lacks the denial:\n%s", logs.String())
	}
}

// metricWith returns the single series of the named counter as a collector.
func metricWith(t *testing.T, g prometheus.Gatherer, name string) prometheus.Collector {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.GetMetric()) == 1 {
			c := prometheus.NewCounter(prometheus.CounterOpts{Name: name})
			c.Add(mf.GetMetric()[0].GetCounter().GetValue())
			return c
		}
	}
	t.Fatalf("%s: no single series", name)
	return nil
}

func TestCompileTCPChainRejects(t *testing.T) {
	tests := []struct {
		name, from, to, want string
	}{
		{"weighted clusters", `"cluster": "outbound|5432||db.shop.svc.cluster.local"`, `"weightedClusters": {"clusters": [{"name": "a", "weight": 1}]}`, "weighted_clusters"},
		{"idle timeout", `"statPrefix": "outbound`, `"idleTimeout": "5s", "statPrefix": "outbound`, "idle_timeout"},
		{"other filter first", `"envoy.filters.network.rbac.deny"`, `"envoy.filters.network.ext_authz"`, "only network RBAC filters"},
		{"server names", `"destinationPort": 5432,`, `"destinationPort": 5432, "serverNames": ["db"],`, "server_names"},
		{"continuous enforcement", `"statPrefix": "tcp.",`, `"statPrefix": "tcp.", "enforcementType": "CONTINUOUS",`, "enforcement_type"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			js := strings.Replace(tcpListenerJSON, tt.from, tt.to, 1)
			if js == tcpListenerJSON {
				t.Fatal("replacement did not apply")
			}
			_, err := proxy.Compile([]*listenerv3.Listener{decode(t, &listenerv3.Listener{}, js)}, nil)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Compile error %v, want one naming %q", err, tt.want)
			}
		})
	}
}
