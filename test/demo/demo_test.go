package demo

import "testing"

func TestConnections(t *testing.T) {
	const metrics = `# HELP istio_tcp_connections_opened_total x
istio_tcp_connections_opened_total{connection_security_policy="mutual_tls",destination_principal="spiffe://cluster.local/ns/mesh/sa/books",destination_workload="books-v1",reporter="source",source_principal="spiffe://cluster.local/ns/mesh/sa/gw"} 27
istio_tcp_connections_opened_total{connection_security_policy="mutual_tls",destination_principal="spiffe://cluster.local/ns/mesh/sa/books",destination_workload="books-v2",reporter="source",source_principal="spiffe://cluster.local/ns/mesh/sa/gw"} 23
istio_tcp_connections_opened_total{connection_security_policy="mutual_tls",destination_principal="spiffe://cluster.local/ns/mesh/sa/books",reporter="destination",source_principal="spiffe://cluster.local/ns/mesh/sa/gw"} 9
istio_tcp_connections_opened_total{connection_security_policy="unknown",destination_principal="unknown",reporter="source",source_principal="spiffe://cluster.local/ns/mesh/sa/gw"} 2
`
	got := connections("node-2", metrics)
	want := []Connection{
		{Node: "node-2", Source: "spiffe://cluster.local/ns/mesh/sa/gw", Destination: "spiffe://cluster.local/ns/mesh/sa/books", Security: "mutual_tls", Count: 50},
		{Node: "node-2", Source: "spiffe://cluster.local/ns/mesh/sa/gw", Destination: "unknown", Security: "unknown", Count: 2},
	}
	if len(got) != len(want) {
		t.Fatalf("got %+v, want %+v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("row %d = %+v, want %+v", i, got[i], want[i])
		}
	}
	r := &Result{Connections: got}
	if r.Failed() {
		t.Error("mTLS inside the mesh and passthrough outside it reported as failed")
	}
	r.Connections = append(r.Connections, Connection{Source: "spiffe://cluster.local/ns/mesh/sa/gw", Destination: "spiffe://cluster.local/ns/mesh/sa/ratings", Security: "unknown", Count: 1})
	if !r.Failed() {
		t.Error("a connection to a mesh workload without mTLS must fail the demo")
	}
}
