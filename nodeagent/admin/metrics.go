package admin

import (
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/weftmesh/weft/nodeagent/state"
)

// Reporter says which end of a connection reports it.
type Reporter uint8

// Reporters.
const (
	ReporterSource      Reporter = iota // source: the client's agent, outbound
	ReporterDestination                 // destination: the server's agent, inbound
)

func (r Reporter) String() string {
	if r == ReporterDestination {
		return "destination"
	}
	return "source"
}

// SecurityPolicy is the connection_security_policy label.
type SecurityPolicy uint8

// Security policies.
const (
	// SecurityUnknown: the reporter cannot tell (Istio's value for reporter="source" on plain
	// TCP, and ztunnel's for plaintext).
	SecurityUnknown SecurityPolicy = iota
	// SecurityMutualTLS: the connection is carried over mutual TLS (HBONE).
	SecurityMutualTLS
	// SecurityNone: the destination accepted the connection in plaintext (Istio sidecars'
	// value; ztunnel reports unknown).
	SecurityNone
)

func (p SecurityPolicy) String() string {
	switch p {
	case SecurityMutualTLS:
		return "mutual_tls"
	case SecurityNone:
		return "none"
	default:
		return "unknown"
	}
}

// ResponseFlag is the response_flags label of a closed connection: why it failed, with
// ztunnel's values.
type ResponseFlag uint8

// Response flags.
const (
	FlagNone                  ResponseFlag = iota // "-": no failure
	FlagDenied                                    // "DENY": denied by policy
	FlagConnectFailure                            // "CONNECT": the upstream connection failed
	FlagTLSFailure                                // "TLS_FAILURE": the TLS handshake failed
	FlagHTTP2HandshakeFailure                     // "H2_HANDSHAKE_FAILURE": the HTTP/2 handshake failed
	FlagNetworkPolicy                             // "NETWORK_POLICY": likely blocked by a NetworkPolicy (no answer on 15008)
	FlagIdentityError                             // "IDENTITY_ERROR": no certificate for the identity, or the peer's identity is wrong
	numFlags
)

var flagNames = [numFlags]string{"-", "DENY", "CONNECT", "TLS_FAILURE", "H2_HANDSHAKE_FAILURE", "NETWORK_POLICY", "IDENTITY_ERROR"}

func (f ResponseFlag) String() string {
	if f < numFlags {
		return flagNames[f]
	}
	return fmt.Sprintf("ResponseFlag(%d)", f)
}

// The label names of Istio's standard TCP metrics, in the order of ztunnel's
// CommonTrafficLabels (src/proxy/metrics.rs) and as listed by Istio's "Istio Standard
// Metrics" reference.
const (
	lReporter = iota
	lSourceWorkload
	lSourceCanonicalService
	lSourceCanonicalRevision
	lSourceWorkloadNamespace
	lSourcePrincipal
	lSourceApp
	lSourceVersion
	lSourceCluster
	lDestinationService
	lDestinationServiceNamespace
	lDestinationServiceName
	lDestinationWorkload
	lDestinationCanonicalService
	lDestinationCanonicalRevision
	lDestinationWorkloadNamespace
	lDestinationPrincipal
	lDestinationApp
	lDestinationVersion
	lDestinationCluster
	lRequestProtocol
	lResponseFlags
	lConnectionSecurityPolicy
	numLabels
)

// TCPLabelNames returns the labels of the istio_tcp_* metrics, in order.
func TCPLabelNames() []string {
	return []string{
		"reporter",
		"source_workload", "source_canonical_service", "source_canonical_revision",
		"source_workload_namespace", "source_principal", "source_app", "source_version", "source_cluster",
		"destination_service", "destination_service_namespace", "destination_service_name",
		"destination_workload", "destination_canonical_service", "destination_canonical_revision",
		"destination_workload_namespace", "destination_principal", "destination_app", "destination_version",
		"destination_cluster",
		"request_protocol", "response_flags", "connection_security_policy",
	}
}

// unknown is the value of a label whose information is missing, as Istio writes it.
const unknown = "unknown"

// Labels are the labels of one connection's istio_tcp_* series. Empty strings are exported as
// "unknown". request_protocol is always "tcp"; response_flags is "-" except on the closed
// counter of a failed connection (see [ConnMetrics.Closed]).
type Labels struct {
	Reporter Reporter

	SourceWorkload          string // the source's workload (owner) name
	SourceCanonicalService  string
	SourceCanonicalRevision string
	SourceWorkloadNamespace string
	// SourcePrincipal is the source's SPIFFE ID, set only when it is authenticated: by the
	// destination from the client certificate, by the source for its own workload.
	SourcePrincipal string
	SourceApp       string // Istio and ztunnel: the canonical service
	SourceVersion   string // Istio and ztunnel: the canonical revision
	SourceCluster   string

	DestinationService          string // the service's hostname
	DestinationServiceNamespace string
	DestinationServiceName      string

	DestinationWorkload          string
	DestinationCanonicalService  string
	DestinationCanonicalRevision string
	DestinationWorkloadNamespace string
	DestinationPrincipal         string
	DestinationApp               string
	DestinationVersion           string
	DestinationCluster           string

	SecurityPolicy SecurityPolicy
}

// SetSource fills the source labels from w, except SourcePrincipal, which only an
// authenticated identity may set.
func (l *Labels) SetSource(w *state.Workload) {
	if w == nil {
		return
	}
	l.SourceWorkload = w.WorkloadName
	l.SourceCanonicalService = w.CanonicalName
	l.SourceCanonicalRevision = w.CanonicalRevision
	l.SourceWorkloadNamespace = w.Namespace
	l.SourceApp = w.CanonicalName
	l.SourceVersion = w.CanonicalRevision
	l.SourceCluster = w.ClusterID
}

// SetDestination fills the destination labels from w, principal included: the destination's
// identity is what the source verified, or the agent's own workload.
func (l *Labels) SetDestination(w *state.Workload) {
	if w == nil {
		return
	}
	l.DestinationWorkload = w.WorkloadName
	l.DestinationCanonicalService = w.CanonicalName
	l.DestinationCanonicalRevision = w.CanonicalRevision
	l.DestinationWorkloadNamespace = w.Namespace
	if id := w.Identity(); !id.IsZero() {
		l.DestinationPrincipal = id.String()
	}
	l.DestinationApp = w.CanonicalName
	l.DestinationVersion = w.CanonicalRevision
	l.DestinationCluster = w.ClusterID
}

// SetDestinationService fills the destination service labels from s.
func (l *Labels) SetDestinationService(s *state.Service) {
	if s == nil {
		return
	}
	l.DestinationService = s.Hostname
	l.DestinationServiceNamespace = s.Namespace
	l.DestinationServiceName = s.Name
}

// values writes the label values in TCPLabelNames order.
func (l *Labels) values(v *[numLabels]string) {
	v[lReporter] = l.Reporter.String()
	v[lSourceWorkload] = orUnknown(l.SourceWorkload)
	v[lSourceCanonicalService] = orUnknown(l.SourceCanonicalService)
	v[lSourceCanonicalRevision] = orUnknown(l.SourceCanonicalRevision)
	v[lSourceWorkloadNamespace] = orUnknown(l.SourceWorkloadNamespace)
	v[lSourcePrincipal] = orUnknown(l.SourcePrincipal)
	v[lSourceApp] = orUnknown(l.SourceApp)
	v[lSourceVersion] = orUnknown(l.SourceVersion)
	v[lSourceCluster] = orUnknown(l.SourceCluster)
	v[lDestinationService] = orUnknown(l.DestinationService)
	v[lDestinationServiceNamespace] = orUnknown(l.DestinationServiceNamespace)
	v[lDestinationServiceName] = orUnknown(l.DestinationServiceName)
	v[lDestinationWorkload] = orUnknown(l.DestinationWorkload)
	v[lDestinationCanonicalService] = orUnknown(l.DestinationCanonicalService)
	v[lDestinationCanonicalRevision] = orUnknown(l.DestinationCanonicalRevision)
	v[lDestinationWorkloadNamespace] = orUnknown(l.DestinationWorkloadNamespace)
	v[lDestinationPrincipal] = orUnknown(l.DestinationPrincipal)
	v[lDestinationApp] = orUnknown(l.DestinationApp)
	v[lDestinationVersion] = orUnknown(l.DestinationVersion)
	v[lDestinationCluster] = orUnknown(l.DestinationCluster)
	v[lRequestProtocol] = "tcp"
	v[lResponseFlags] = FlagNone.String()
	v[lConnectionSecurityPolicy] = l.SecurityPolicy.String()
}

func orUnknown(s string) string {
	if s == "" {
		return unknown
	}
	return s
}

// Direction is the direction of a connection through the agent.
type Direction uint8

// Directions.
const (
	Outbound Direction = iota // from a local workload
	Inbound                   // to a local workload
	numDirections
)

func (d Direction) String() string {
	if d == Inbound {
		return "inbound"
	}
	return "outbound"
}

// PassthroughReason is why the agent let a connection through without the tunnel.
type PassthroughReason uint8

// Passthrough reasons.
const (
	// PassthroughNotInMesh: the destination workload is not enrolled (tunnel protocol NONE).
	PassthroughNotInMesh PassthroughReason = iota
	// PassthroughUnknownDestination: the destination is neither a known workload nor a
	// service VIP.
	PassthroughUnknownDestination
	// PassthroughExcludedPort: the port is excluded from capture by annotation.
	PassthroughExcludedPort
	// PassthroughPermissive: inbound plaintext accepted by a PERMISSIVE port.
	PassthroughPermissive
	// PassthroughMTLSDisabled: inbound plaintext on a port whose mode is DISABLE.
	PassthroughMTLSDisabled
	numPassthroughReasons
)

var passthroughNames = [numPassthroughReasons]string{
	"destination_not_in_mesh", "unknown_destination", "excluded_port", "permissive_plaintext", "mtls_disabled",
}

func (r PassthroughReason) String() string {
	if r < numPassthroughReasons {
		return passthroughNames[r]
	}
	return fmt.Sprintf("PassthroughReason(%d)", r)
}

// DenyReason is why the agent refused a connection.
type DenyReason uint8

// Deny reasons.
const (
	// DenyAuthorizationPolicy: an authorization policy denied the connection.
	DenyAuthorizationPolicy DenyReason = iota
	// DenyStrictPlaintext: plaintext to a port whose PeerAuthentication mode is STRICT.
	DenyStrictPlaintext
	// DenySelfCall: a connection to one of the agent's own ports (15001, 15006, 15008),
	// which would loop.
	DenySelfCall
	// DenyUnknownWorkload: a connection to or from a pod the agent has no workload for.
	DenyUnknownWorkload
	// DenyWaypointUnavailable: the destination's traffic must traverse a waypoint that is
	// missing or has no healthy pod (its L7 policies are never bypassed, unless the user
	// opted into weft.dev/waypoint-fallback=direct).
	DenyWaypointUnavailable
	numDenyReasons
)

var denyNames = [numDenyReasons]string{
	"authorization_policy", "strict_mtls_plaintext", "self_call", "unknown_workload", "waypoint_unavailable",
}

func (r DenyReason) String() string {
	if r < numDenyReasons {
		return denyNames[r]
	}
	return fmt.Sprintf("DenyReason(%d)", r)
}

// Metrics are the node agent's traffic metrics: Istio's standard TCP metrics, with the names
// and labels Istio's dashboards use, and Weft's counters of capture decisions.
//
// A nil *Metrics is valid and records nothing.
type Metrics struct {
	opened, closed, sent, received *prometheus.CounterVec

	// series caches the four counters of a label set: one map lookup per connection
	// instead of four label hashes in the vectors.
	mu     sync.RWMutex
	series map[[numLabels]string]*tcpSeries

	passthrough [numDirections][numPassthroughReasons]prometheus.Counter
	denied      [numDirections][numDenyReasons]prometheus.Counter
	authz       *prometheus.CounterVec
}

// NewMetrics creates the metrics and registers them with reg (the agent's own registry, never
// the global default one).
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	names := TCPLabelNames()
	m := &Metrics{
		opened: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "istio_tcp_connections_opened_total",
			Help: "TCP connections opened.",
		}, names),
		closed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "istio_tcp_connections_closed_total",
			Help: "TCP connections closed.",
		}, names),
		sent: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "istio_tcp_sent_bytes_total",
			Help: "Bytes sent to the client of a TCP connection (the response direction).",
		}, names),
		received: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "istio_tcp_received_bytes_total",
			Help: "Bytes received from the client of a TCP connection (the request direction).",
		}, names),
		series: make(map[[numLabels]string]*tcpSeries),
	}
	passthrough := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "weft_nodeagent_passthrough_connections_total",
		Help: "Connections the node agent let through without the mTLS tunnel, by direction and reason.",
	}, []string{"direction", "reason"})
	denied := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "weft_nodeagent_denied_connections_total",
		Help: "Connections the node agent refused, by direction and reason.",
	}, []string{"direction", "reason"})
	m.authz = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "weft_nodeagent_authorization_decisions_total",
		Help: "AuthorizationPolicy decisions on inbound connections, by decision (allow, deny) and the policy that decided: \"\" for the default allow, the applying ALLOW policies (\"ns/a,ns/b\") when none matched.",
	}, []string{"decision", "policy"})
	for _, c := range []prometheus.Collector{m.opened, m.closed, m.sent, m.received, passthrough, denied, m.authz} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("admin: register metrics: %w", err)
		}
	}
	// Create every decision series up front: they are few, and rate() needs the zeros.
	for d := range numDirections {
		for r := range numPassthroughReasons {
			m.passthrough[d][r] = passthrough.WithLabelValues(d.String(), r.String())
		}
		for r := range numDenyReasons {
			m.denied[d][r] = denied.WithLabelValues(d.String(), r.String())
		}
	}
	return m, nil
}

// Passthrough counts a connection let through without the tunnel.
func (m *Metrics) Passthrough(d Direction, r PassthroughReason) {
	if m != nil && d < numDirections && r < numPassthroughReasons {
		m.passthrough[d][r].Inc()
	}
}

// Denied counts a refused connection. A plaintext connection refused by a STRICT
// PeerAuthentication is Denied(Inbound, DenyStrictPlaintext).
func (m *Metrics) Denied(d Direction, r DenyReason) {
	if m != nil && d < numDirections && r < numDenyReasons {
		m.denied[d][r].Inc()
	}
}

// Authorization counts an AuthorizationPolicy decision on an inbound connection: allowed or
// not, and the "<namespace>/<name>" of the policy that decided ("" for the default allow).
func (m *Metrics) Authorization(allowed bool, policy string) {
	if m == nil {
		return
	}
	decision := "deny"
	if allowed {
		decision = "allow"
	}
	m.authz.WithLabelValues(decision, policy).Inc()
}

// ConnOpened counts a connection opened with labels l and returns the handle through which the
// proxy reports the connection's bytes and its end. The series are looked up once here (one
// map lookup once a label set has been seen; the handle is the only allocation); the handle's
// methods are atomic additions and never allocate, except Closed with a failure flag, which
// looks up its series.
func (m *Metrics) ConnOpened(l *Labels) *ConnMetrics {
	if m == nil {
		return nil
	}
	c := &ConnMetrics{m: m}
	l.values(&c.values)
	c.series = m.lookup(&c.values)
	c.series.opened.Inc()
	return c
}

// tcpSeries are the counters of one label set, response_flags "-". As in ztunnel, the
// opened and byte counters exist from the first connection on; the closed counter appears at
// the first close without failure.
type tcpSeries struct {
	opened, sent, received prometheus.Counter
	closed                 atomic.Pointer[prometheus.Counter]
}

// closedCounter returns the closed counter of the series of label values v.
func (s *tcpSeries) closedCounter(m *Metrics, v *[numLabels]string) prometheus.Counter {
	if c := s.closed.Load(); c != nil {
		return *c
	}
	// Concurrent callers get the same counter from the vector; either may store it.
	c := m.closed.WithLabelValues(v[:]...)
	s.closed.Store(&c)
	return c
}

func (m *Metrics) lookup(v *[numLabels]string) *tcpSeries {
	m.mu.RLock()
	s := m.series[*v]
	m.mu.RUnlock()
	if s != nil {
		return s
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if s := m.series[*v]; s != nil {
		return s
	}
	s = &tcpSeries{
		opened:   m.opened.WithLabelValues(v[:]...),
		sent:     m.sent.WithLabelValues(v[:]...),
		received: m.received.WithLabelValues(v[:]...),
	}
	m.series[*v] = s
	return s
}

// ConnMetrics records the metrics of one connection. It is safe for concurrent use (both
// copy directions report to it); a nil *ConnMetrics records nothing.
type ConnMetrics struct {
	m      *Metrics
	values [numLabels]string
	series *tcpSeries
	closed atomic.Bool
}

// BytesSent counts n bytes sent to the connection's client: the response direction, from the
// upstream to the downstream (istio_tcp_sent_bytes_total, as ztunnel counts it).
func (c *ConnMetrics) BytesSent(n int64) {
	if c != nil && n > 0 {
		c.series.sent.Add(float64(n))
	}
}

// BytesReceived counts n bytes received from the connection's client: the request direction,
// from the downstream to the upstream (istio_tcp_received_bytes_total).
func (c *ConnMetrics) BytesReceived(n int64) {
	if c != nil && n > 0 {
		c.series.received.Add(float64(n))
	}
}

// Closed counts the connection closed, with flag telling why it failed (FlagNone when it did
// not). Only the first call counts.
func (c *ConnMetrics) Closed(flag ResponseFlag) {
	if c == nil || !c.closed.CompareAndSwap(false, true) {
		return
	}
	if flag == FlagNone || flag >= numFlags {
		c.series.closedCounter(c.m, &c.values).Inc()
		return
	}
	c.values[lResponseFlags] = flag.String()
	c.m.closed.WithLabelValues(c.values[:]...).Inc()
}
