package bench

import (
	"fmt"
	"strings"
	"testing"
)

// agentScrape renders node agent metrics: one istio_tcp_connections_opened_total series per
// (reporter, policy, namespace) with its count, and unrelated series around them.
func agentScrape(series map[[3]string]int) string {
	var b strings.Builder
	b.WriteString("# HELP istio_tcp_connections_opened_total TCP connections opened.\n")
	b.WriteString("# TYPE istio_tcp_connections_opened_total counter\n")
	for k, n := range series {
		reporter, policy, ns := k[0], k[1], k[2]
		fmt.Fprintf(&b, `istio_tcp_connections_opened_total{connection_security_policy=%q,destination_workload="bench-server",`+
			`destination_workload_namespace=%q,reporter=%q,source_workload="bench-client"} %d`+"\n", policy, ns, reporter, n)
	}
	b.WriteString(`istio_tcp_connections_closed_total{connection_security_policy="mutual_tls",destination_workload_namespace="bench",reporter="destination"} 1000` + "\n")
	b.WriteString(`weft_nodeagent_passthrough_connections_total{direction="outbound",reason="not_mesh"} 7` + "\n")
	return b.String()
}

func TestDestinationConns(t *testing.T) {
	before := map[[3]string]int{{"destination", "mutual_tls", "bench"}: 10, {"destination", "none", "bench"}: 2}
	tests := []struct {
		name         string
		after        map[[3]string]int
		opened, mtls float64
	}{
		{"one tunnelled", map[[3]string]int{{"destination", "mutual_tls", "bench"}: 11, {"destination", "none", "bench"}: 2}, 1, 1},
		{"one plaintext", map[[3]string]int{{"destination", "mutual_tls", "bench"}: 10, {"destination", "none", "bench"}: 3}, 1, 0},
		{"not captured", before, 0, 0},
		{"other namespace and source side do not count", map[[3]string]int{
			{"destination", "mutual_tls", "bench"}: 10, {"destination", "none", "bench"}: 2,
			{"destination", "mutual_tls", "other"}: 4, {"source", "mutual_tls", "bench"}: 9,
		}, 0, 0},
		// the first connection of a new series: the series did not exist before
		{"new series", map[[3]string]int{{"destination", "mutual_tls", "bench"}: 10, {"destination", "none", "bench"}: 2, {"destination", "mutual_tls", "bench2"}: 1}, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opened, mtls := DestinationConns(agentScrape(before), agentScrape(tt.after), "bench")
			if opened != tt.opened || mtls != tt.mtls {
				t.Errorf("DestinationConns = %v opened, %v mTLS; want %v, %v", opened, mtls, tt.opened, tt.mtls)
			}
		})
	}
	// An agent that has seen no connection yet has no series at all.
	opened, mtls := DestinationConns("", agentScrape(map[[3]string]int{{"destination", "mutual_tls", "bench"}: 1}), "bench")
	if opened != 1 || mtls != 1 {
		t.Errorf("first connection: %v opened, %v mTLS", opened, mtls)
	}
}
