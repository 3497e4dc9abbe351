package metrics_test

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/weftmesh/weft/waypoint/metrics"
)

func BenchmarkObserve(b *testing.B) {
	m, _ := metrics.New(prometheus.NewRegistry())
	l := &metrics.Labels{SourceWorkload: "gw", SourceWorkloadNamespace: "mesh", SourcePrincipal: "spiffe://cluster.local/ns/mesh/sa/gw",
		DestinationWorkload: "books-v1", DestinationService: "books.mesh.svc.cluster.local", RequestProtocol: "http", ResponseCode: 200}
	b.ReportAllocs()
	for b.Loop() {
		m.Observe(l, 3*time.Millisecond, 100, 2000)
	}
}
