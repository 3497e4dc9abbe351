package metrics

import (
	"slices"

	"github.com/prometheus/client_golang/prometheus"
)

// tcpNames are Istio's TCP metric labels: the request labels without response_code and
// grpc_response_status.
var tcpNames = slices.DeleteFunc(slices.Clone(names), func(n string) bool {
	return n == "response_code" || n == "grpc_response_status"
})

func (l *Labels) tcpValues() []string {
	v := l.values()
	// values() ends with request_protocol, response_code, grpc_response_status, flags, security.
	n := len(v)
	return append(v[:n-4:n-4], v[n-2], v[n-1])
}

// tcpMetrics are Istio's TCP metrics, part of Metrics.
type tcpMetrics struct {
	opened, closed, sent, received *prometheus.CounterVec
}

func newTCPMetrics() tcpMetrics {
	counter := func(name, help string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, tcpNames)
	}
	return tcpMetrics{
		opened:   counter("istio_tcp_connections_opened_total", "TCP connections opened through the waypoint."),
		closed:   counter("istio_tcp_connections_closed_total", "TCP connections through the waypoint that closed."),
		sent:     counter("istio_tcp_sent_bytes_total", "Bytes sent to the clients of TCP connections (the responses)."),
		received: counter("istio_tcp_received_bytes_total", "Bytes received from the clients of TCP connections (the requests)."),
	}
}

func (t *tcpMetrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{t.opened, t.closed, t.sent, t.received}
}

// TCPOpened records a connection relayed to its upstream (istio_tcp_connections_opened_total).
// The labels' RequestProtocol is "tcp" when empty; ResponseCode and GRPCResponseStatus are not
// TCP labels and are ignored.
func (m *Metrics) TCPOpened(l *Labels) {
	if m == nil {
		return
	}
	m.tcp.opened.WithLabelValues(tcpLabels(l)...).Inc()
}

// TCPClosed records the end of a connection recorded by TCPOpened, with the bytes sent to the
// client (istio_tcp_sent_bytes_total) and received from it (istio_tcp_received_bytes_total).
func (m *Metrics) TCPClosed(l *Labels, sent, received int64) {
	if m == nil {
		return
	}
	v := tcpLabels(l)
	m.tcp.closed.WithLabelValues(v...).Inc()
	m.tcp.sent.WithLabelValues(v...).Add(float64(sent))
	m.tcp.received.WithLabelValues(v...).Add(float64(received))
}

func tcpLabels(l *Labels) []string {
	c := *l
	if c.RequestProtocol == "" {
		c.RequestProtocol = "tcp"
	}
	return c.tcpValues()
}
