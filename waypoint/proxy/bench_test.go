package proxy_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/weftmesh/weft/internal/hbone"
	"github.com/weftmesh/weft/waypoint/proxy"
)

// BenchmarkHandler is one request through the waypoint's filter chain and router to a
// loopback upstream over a pooled connection, with metrics and the access log on (to
// io.Discard): the waypoint's own cost per request, without the tunnels.
func BenchmarkHandler(b *testing.B) {
	t := &testing.T{}
	e := newEnv(t, routes(`{"match": {"prefix": "/"}, "route": {"weightedClusters": {"clusters": [
	     {"name": "outbound|80|v1|books.shop.svc.cluster.local", "weight": 50},
	     {"name": "outbound|80|v2|books.shop.svc.cluster.local", "weight": 50}]}, "retryPolicy": {"retryOn": "5xx", "numRetries": 2}}}`), "", "")
	h := e.h
	in := &hbone.Inbound{PeerID: gwID, Authority: vip, ForwardedFor: client, RemoteAddr: client,
		Baggage: hbone.Baggage{Namespace: "shop", WorkloadName: "gw"}}
	b.ReportAllocs()
	for b.Loop() {
		r := httptest.NewRequest(http.MethodGet, "http://books/x", strings.NewReader(""))
		r = r.WithContext(proxy.WithTunnel(r.Context(), in))
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != 200 {
			b.Fatalf("status %d", w.Code)
		}
		_, _ = io.Copy(io.Discard, w.Body)
	}
}
