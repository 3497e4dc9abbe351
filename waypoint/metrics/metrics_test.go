package metrics_test

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/weftmesh/weft/waypoint/metrics"
)

func TestObserve(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := metrics.New(reg)
	if err != nil {
		t.Fatal(err)
	}
	l := &metrics.Labels{SourceWorkload: "gw", SourceWorkloadNamespace: "mesh", SourcePrincipal: "spiffe://cluster.local/ns/mesh/sa/gw",
		DestinationWorkload: "books-v1", DestinationService: "books.mesh.svc.cluster.local", RequestProtocol: "http", ResponseCode: 503, ResponseFlags: "UO"}
	m.Observe(l, 3*time.Millisecond, 100, 2000)
	m.Observe(l, 7*time.Millisecond, 100, 2000)
	want := `
# HELP istio_requests_total Requests served by the waypoint.
# TYPE istio_requests_total counter
istio_requests_total{connection_security_policy="mutual_tls",destination_app="unknown",destination_canonical_revision="unknown",destination_canonical_service="unknown",destination_cluster="unknown",destination_principal="unknown",destination_service="books.mesh.svc.cluster.local",destination_service_name="unknown",destination_service_namespace="unknown",destination_version="unknown",destination_workload="books-v1",destination_workload_namespace="unknown",grpc_response_status="",reporter="waypoint",request_protocol="http",response_code="503",response_flags="UO",source_app="unknown",source_canonical_revision="unknown",source_canonical_service="unknown",source_principal="spiffe://cluster.local/ns/mesh/sa/gw",source_version="unknown",source_workload="gw",source_workload_namespace="mesh"} 2
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "istio_requests_total"); err != nil {
		t.Error(err)
	}
	if n := testutil.CollectAndCount(reg, "istio_request_duration_milliseconds"); n != 1 {
		t.Errorf("duration series = %d, want 1", n)
	}
	// Another label set is another series, also once its series are cached.
	other := *l
	other.ResponseCode = 200
	for range 3 {
		m.Observe(&other, time.Millisecond, 100, 2000)
	}
	m.Observe(l, time.Millisecond, 100, 2000)
	if n := testutil.CollectAndCount(reg, "istio_requests_total"); n != 2 {
		t.Errorf("request series = %d, want 2", n)
	}
	byCode := map[string]float64{}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "istio_requests_total" {
			continue
		}
		for _, mt := range mf.GetMetric() {
			for _, lp := range mt.GetLabel() {
				if lp.GetName() == "response_code" {
					byCode[lp.GetValue()] += mt.GetCounter().GetValue()
				}
			}
		}
	}
	if byCode["200"] != 3 || byCode["503"] != 3 {
		t.Errorf("requests by response code = %v, want 3 of 200 and 3 of 503", byCode)
	}
}

func TestTCP(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := metrics.New(reg)
	if err != nil {
		t.Fatal(err)
	}
	l := &metrics.Labels{SourceWorkload: "client", DestinationService: "db.mesh.svc.cluster.local", ResponseCode: 200}
	m.TCPOpened(l)
	m.TCPOpened(l)
	m.TCPClosed(l, 10, 4)
	labels := `connection_security_policy="mutual_tls",destination_app="unknown",destination_canonical_revision="unknown",destination_canonical_service="unknown",destination_cluster="unknown",destination_principal="unknown",destination_service="db.mesh.svc.cluster.local",destination_service_name="unknown",destination_service_namespace="unknown",destination_version="unknown",destination_workload="unknown",destination_workload_namespace="unknown",reporter="waypoint",request_protocol="tcp",response_flags="-",source_app="unknown",source_canonical_revision="unknown",source_canonical_service="unknown",source_principal="unknown",source_version="unknown",source_workload="client",source_workload_namespace="unknown"`
	tests := []struct {
		name, help string
		want       float64
	}{
		{"istio_tcp_connections_opened_total", "TCP connections opened through the waypoint.", 2},
		{"istio_tcp_connections_closed_total", "TCP connections through the waypoint that closed.", 1},
		{"istio_tcp_sent_bytes_total", "Bytes sent to the clients of TCP connections (the responses).", 10},
		{"istio_tcp_received_bytes_total", "Bytes received from the clients of TCP connections (the requests).", 4},
	}
	for _, tt := range tests {
		want := "# HELP " + tt.name + " " + tt.help + "\n# TYPE " + tt.name + " counter\n" + tt.name + "{" + labels + "} " + strconv.FormatFloat(tt.want, 'f', -1, 64) + "\n"
		got, err := testutil.GatherAndLint(reg, tt.name)
		if err != nil || len(got) > 0 {
			t.Errorf("%s lint: %v %v", tt.name, got, err)
		}
		if err := testutil.GatherAndCompare(reg, strings.NewReader(want), tt.name); err != nil {
			t.Errorf("%s: %v", tt.name, err)
		}
	}
}
