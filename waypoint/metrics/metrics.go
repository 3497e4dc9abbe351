// Package metrics holds the waypoint's Istio standard request metrics (istio_requests_total,
// istio_request_duration_milliseconds, istio_request_bytes, istio_response_bytes) and TCP
// metrics (istio_tcp_connections_opened_total, istio_tcp_connections_closed_total,
// istio_tcp_sent_bytes_total, istio_tcp_received_bytes_total; bytes added when the connection
// closes) with Istio's labels and buckets, reported as reporter="waypoint", so dashboards built for Istio's
// waypoints (Kiali, Grafana's Istio dashboards) work unchanged.
package metrics

import (
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Labels describe one request. Empty labels are exported as "unknown", as Istio does.
type Labels struct {
	SourceWorkload, SourceWorkloadNamespace, SourcePrincipal string
	SourceCanonicalService, SourceCanonicalRevision          string

	DestinationWorkload, DestinationWorkloadNamespace, DestinationPrincipal string
	DestinationCanonicalService, DestinationCanonicalRevision               string
	DestinationService, DestinationServiceName, DestinationServiceNamespace string
	DestinationCluster                                                      string

	RequestProtocol    string // http or grpc
	ResponseCode       int
	GRPCResponseStatus string
	ResponseFlags      string // Envoy's short flags ("-" for none)
}

var names = []string{
	"reporter",
	"source_workload", "source_workload_namespace", "source_principal",
	"source_canonical_service", "source_canonical_revision", "source_app", "source_version",
	"destination_workload", "destination_workload_namespace", "destination_principal",
	"destination_canonical_service", "destination_canonical_revision", "destination_app", "destination_version",
	"destination_service", "destination_service_name", "destination_service_namespace", "destination_cluster",
	"request_protocol", "response_code", "grpc_response_status", "response_flags", "connection_security_policy",
}

func or(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}

func (l *Labels) values() []string {
	flags := l.ResponseFlags
	if flags == "" {
		flags = "-"
	}
	return []string{
		"waypoint",
		or(l.SourceWorkload), or(l.SourceWorkloadNamespace), or(l.SourcePrincipal),
		or(l.SourceCanonicalService), or(l.SourceCanonicalRevision), or(l.SourceCanonicalService), or(l.SourceCanonicalRevision),
		or(l.DestinationWorkload), or(l.DestinationWorkloadNamespace), or(l.DestinationPrincipal),
		or(l.DestinationCanonicalService), or(l.DestinationCanonicalRevision), or(l.DestinationCanonicalService), or(l.DestinationCanonicalRevision),
		or(l.DestinationService), or(l.DestinationServiceName), or(l.DestinationServiceNamespace), or(l.DestinationCluster),
		or(l.RequestProtocol), strconv.Itoa(l.ResponseCode), l.GRPCResponseStatus, flags, "mutual_tls",
	}
}

// Metrics are the waypoint's request metrics.
type Metrics struct {
	requests      *prometheus.CounterVec
	duration      *prometheus.HistogramVec
	requestBytes  *prometheus.HistogramVec
	responseBytes *prometheus.HistogramVec
	tcp           tcpMetrics
	// series caches the four series of each label set (Labels → *series): looking them up in
	// the vectors hashes and validates 24 label values four times per request. The vectors keep
	// every series anyway, so the cache holds no more than they do.
	series sync.Map
}

// series are the request metrics of one label set.
type series struct {
	requests                              prometheus.Counter
	duration, requestBytes, responseBytes prometheus.Observer
}

// New returns the metrics registered on r.
func New(r prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "istio_requests_total", Help: "Requests served by the waypoint."}, names),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "istio_request_duration_milliseconds", Help: "Time from the request's arrival to the end of its response, in milliseconds.",
			Buckets: []float64{0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 300000, 600000, 1800000, 3600000}}, names),
		requestBytes: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "istio_request_bytes", Help: "Request sizes (headers and body), in bytes.",
			Buckets: prometheus.ExponentialBuckets(1, 10, 9)}, names),
		responseBytes: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "istio_response_bytes", Help: "Response sizes (headers and body), in bytes.",
			Buckets: prometheus.ExponentialBuckets(1, 10, 9)}, names),
		tcp: newTCPMetrics(),
	}
	for _, c := range append([]prometheus.Collector{m.requests, m.duration, m.requestBytes, m.responseBytes}, m.tcp.collectors()...) {
		if err := r.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// Observe records one finished request.
func (m *Metrics) Observe(l *Labels, d time.Duration, requestBytes, responseBytes int64) {
	if m == nil {
		return
	}
	s := m.seriesOf(l)
	s.requests.Inc()
	s.duration.Observe(float64(d) / float64(time.Millisecond))
	s.requestBytes.Observe(float64(requestBytes))
	s.responseBytes.Observe(float64(responseBytes))
}

func (m *Metrics) seriesOf(l *Labels) *series {
	if s, ok := m.series.Load(*l); ok {
		return s.(*series)
	}
	v := l.values()
	s, _ := m.series.LoadOrStore(*l, &series{
		requests:      m.requests.WithLabelValues(v...),
		duration:      m.duration.WithLabelValues(v...),
		requestBytes:  m.requestBytes.WithLabelValues(v...),
		responseBytes: m.responseBytes.WithLabelValues(v...),
	})
	return s.(*series)
}
