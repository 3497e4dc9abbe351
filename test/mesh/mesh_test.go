package mesh

import "testing"

func TestCounterSum(t *testing.T) {
	const text = `# HELP istio_tcp_connections_opened_total TCP connections opened.
# TYPE istio_tcp_connections_opened_total counter
istio_tcp_connections_opened_total{connection_security_policy="mutual_tls",destination_workload_namespace="bench",reporter="destination"} 12
istio_tcp_connections_opened_total{connection_security_policy="none",destination_workload_namespace="bench",reporter="destination"} 3
istio_tcp_connections_opened_total{connection_security_policy="mutual_tls",destination_workload_namespace="bench",reporter="source"} 5
istio_tcp_connections_opened_total{connection_security_policy="mutual_tls",destination_workload_namespace="other",reporter="destination"} 100
istio_tcp_connections_closed_total{connection_security_policy="mutual_tls",destination_workload_namespace="bench",reporter="destination"} 1000
istio_tcp_connections_opened_total{a="b"} NaN-ish
`
	const metric = "istio_tcp_connections_opened_total"
	for _, tt := range []struct {
		name  string
		parts []string
		want  float64
	}{
		{"all series of the metric, malformed value skipped", nil, 120},
		{"destination in bench", []string{`reporter="destination"`, `destination_workload_namespace="bench"`}, 15},
		{"mTLS only", []string{`reporter="destination"`, `destination_workload_namespace="bench"`, `connection_security_policy="mutual_tls"`}, 12},
		{"no match", []string{`reporter="waypoint"`}, 0},
	} {
		if got := CounterSum(text, metric, tt.parts...); got != tt.want {
			t.Errorf("%s: CounterSum = %v, want %v", tt.name, got, tt.want)
		}
	}
}
