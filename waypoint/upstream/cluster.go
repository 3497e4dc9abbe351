package upstream

import (
	"container/list"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"sync"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
)

// Cluster is one upstream cluster: its endpoints, load balancer, connection pools, circuit
// breakers and outlier detector. It is safe for concurrent use.
type Cluster struct {
	cfg    *config
	proto  *clusterv3.Cluster
	dialer Dialer
	log    *slog.Logger
	now    func() time.Time
	tr     *http.Transport

	mu       sync.Mutex
	rng      *rand.Rand
	hosts    []*host            // every configured (or resolved) host, in configuration order
	byKey    map[Endpoint]*host // the same, by endpoint; ORIGINAL_DST hosts are here only
	version  uint64             // bumped when the set of hosts or their health changes
	lbCache  lbCache
	rr       uint64
	conns    uint64 // open and connecting connections
	active   uint64 // requests on a connection
	pending  uint64 // requests waiting for a connection
	retries  uint64 // active retries
	ejected  int    // hosts ejected by outlier detection
	stats    counters
	draining bool // removed by an update or closed: connections close when idle
	closed   bool // the manager was closed
	// outlier detection interval
	nextInterval time.Time
	// DNS clusters: closed after the first resolution; stop ends the resolver.
	resolved chan struct{}
	stop     chan struct{}
}

type counters struct {
	connectionsTotal, connectFailures, connectionOverflows uint64
	pendingOverflows, requestOverflows, retryOverflows     uint64
	ejectionsTotal, requestsTotal                          uint64
}

// host is an endpoint with its pool and outlier state; guarded by Cluster.mu.
type host struct {
	ep         *Endpoint
	unhealthy  bool // from the load assignment's health_status
	removed    bool
	active     int // requests picked for this host and not finished (pending included)
	conns      []*pconn
	connecting int
	tcpConns   int       // raw connections open by DialTCP
	waiting    list.List // of *waiter
	lastUsed   time.Time
	od         hostOutlier
}

type pconn struct {
	h         *host
	cc        *http.ClientConn
	inflight  int
	served    uint64
	created   time.Time
	idleSince time.Time
	draining  bool
	dead      bool
}

type waiter struct {
	ch   chan waitResult
	elem *list.Element
}

type waitResult struct {
	pc  *pconn
	err error
}

// Pick says how to choose the endpoint of a request.
type Pick struct {
	// HashKey is the request's hash (route hash_policy) for RING_HASH and MAGLEV; without
	// HasHash those pick at random, as Envoy does.
	HashKey uint64
	HasHash bool
	// Exclude lists endpoints already tried (retry host predicate previous_hosts); they are
	// avoided unless nothing else is left.
	Exclude []*Endpoint
	// OriginalDst is the request's original destination, the endpoint of ORIGINAL_DST
	// clusters; ignored by the others.
	OriginalDst *Endpoint
}

// Stats is a snapshot of a cluster's gauges and counters, named after Envoy's.
type Stats struct {
	ActiveConnections   uint64 // upstream_cx_active (connecting included)
	ActiveRequests      uint64 // upstream_rq_active
	PendingRequests     uint64 // upstream_rq_pending_active
	ActiveRetries       uint64
	Endpoints           int    // membership_total
	HealthyEndpoints    int    // membership_healthy (not ejected, not unhealthy)
	EjectionsActive     int    // outlier_detection.ejections_active
	RequestsTotal       uint64 // upstream_rq_total
	ConnectionsTotal    uint64 // upstream_cx_total
	ConnectFailures     uint64 // upstream_cx_connect_fail
	ConnectionOverflows uint64 // upstream_cx_overflow (max_connections reached; the request waits)
	PendingOverflows    uint64 // upstream_rq_pending_overflow (max_pending_requests)
	RequestOverflows    uint64 // max_requests
	RetryOverflows      uint64 // upstream_rq_retry_overflow (max_retries)
	EjectionsTotal      uint64 // outlier_detection.ejections_enforced_total
}

// Overflows is the number of requests refused by a circuit breaker (response flag UO).
func (s Stats) Overflows() uint64 { return s.PendingOverflows + s.RequestOverflows }

type hostKey struct{}

func newCluster(cfg *config, pb *clusterv3.Cluster, d Dialer, opts *Options) *Cluster {
	c := &Cluster{
		cfg:    cfg,
		proto:  pb,
		dialer: d,
		log:    opts.Logger.With("cluster", cfg.name),
		now:    opts.Now,
		rng:    rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64())),
		byKey:  map[Endpoint]*host{},
	}
	c.rr = c.rng.Uint64()
	if cfg.outlier != nil {
		c.nextInterval = c.now().Add(cfg.outlier.interval)
	}
	c.tr = &http.Transport{
		Proxy:              nil,
		DisableCompression: true,
		DialContext:        c.dialContext,
		Protocols:          new(http.Protocols),
	}
	if cfg.http2 {
		c.tr.Protocols.SetUnencryptedHTTP2(true)
	} else {
		c.tr.Protocols.SetHTTP1(true)
	}
	return c
}

// Name is the cluster's name.
func (c *Cluster) Name() string { return c.cfg.name }

// HTTP2 reports whether the cluster speaks HTTP/2 (h2c) to its endpoints.
func (c *Cluster) HTTP2() bool { return c.cfg.http2 }

// Stats returns the cluster's current statistics.
func (c *Cluster) Stats() Stats {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := Stats{
		ActiveConnections: c.conns, ActiveRequests: c.active, PendingRequests: c.pending,
		ActiveRetries: c.retries, Endpoints: len(c.hosts), EjectionsActive: c.ejected,
		RequestsTotal: c.stats.requestsTotal, ConnectionsTotal: c.stats.connectionsTotal,
		ConnectFailures: c.stats.connectFailures, ConnectionOverflows: c.stats.connectionOverflows,
		PendingOverflows: c.stats.pendingOverflows, RequestOverflows: c.stats.requestOverflows,
		RetryOverflows: c.stats.retryOverflows, EjectionsTotal: c.stats.ejectionsTotal,
	}
	for _, h := range c.hosts {
		if !h.unhealthy && !h.od.ejected {
			s.HealthyEndpoints++
		}
	}
	return s
}

// Endpoints returns the cluster's current endpoints.
func (c *Cluster) Endpoints() []*Endpoint {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]*Endpoint, len(c.hosts))
	for i, h := range c.hosts {
		out[i] = h.ep
	}
	return out
}

// TryRetry takes a slot of the max_retries circuit breaker: the router calls it before
// each retry and done when the retry finished. When the breaker is full it returns an
// *OverflowError and the retry must not happen (upstream_rq_retry_overflow).
func (c *Cluster) TryRetry() (done func(), err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.retries >= c.cfg.maxRetries {
		c.stats.retryOverflows++
		return nil, &OverflowError{Cluster: c.cfg.name, Limit: "max_retries", Max: c.cfg.maxRetries}
	}
	c.retries++
	var once sync.Once
	return func() {
		once.Do(func() {
			c.mu.Lock()
			c.retries--
			c.mu.Unlock()
		})
	}, nil
}

// setEndpoints replaces the cluster's hosts, keeping the state (pools, outlier state) of
// the endpoints that stay. Removed hosts close their idle connections.
func (c *Cluster) setEndpoints(specs []endpointSpec) {
	var toClose []*pconn
	c.mu.Lock()
	now := c.now()
	next := make([]*host, 0, len(specs))
	keep := make(map[Endpoint]*host, len(specs))
	for _, s := range specs {
		if _, dup := keep[s.ep]; dup {
			continue
		}
		h := c.byKey[s.ep]
		if h == nil || h.removed {
			h = &host{ep: new(Endpoint), lastUsed: now}
			*h.ep = s.ep
		}
		h.unhealthy = s.unhealthy
		keep[s.ep] = h
		next = append(next, h)
	}
	for k, h := range c.byKey {
		if keep[k] == nil {
			h.removed = true
			if h.od.ejected {
				c.ejected--
			}
			toClose = append(toClose, c.idleConnsLocked(h, true)...)
		}
	}
	c.hosts, c.byKey = next, keep
	c.version++
	c.mu.Unlock()
	closeConns(toClose)
}

// idleConnsLocked marks h's connections draining (when drain) and detaches the idle ones,
// which the caller closes after unlocking.
func (c *Cluster) idleConnsLocked(h *host, drain bool) []*pconn {
	var out []*pconn
	for _, pc := range h.conns {
		if drain {
			pc.draining = true
		}
		if pc.inflight == 0 && pc.draining && !pc.dead {
			out = append(out, pc)
		}
	}
	for _, pc := range out {
		c.forgetLocked(pc)
	}
	return out
}

// forgetLocked removes a connection from its host's pool and from the count.
func (c *Cluster) forgetLocked(pc *pconn) {
	if pc.dead {
		return
	}
	pc.dead = true
	h := pc.h
	for i, x := range h.conns {
		if x == pc {
			h.conns = append(h.conns[:i], h.conns[i+1:]...)
			break
		}
	}
	c.conns--
}

func closeConns(pcs []*pconn) {
	for _, pc := range pcs {
		pc.cc.Close()
	}
}

// drain is called when the cluster leaves the configuration: idle connections close now,
// the others when their requests finish.
func (c *Cluster) drain(closed bool) {
	c.mu.Lock()
	stop := c.stop
	c.stop = nil
	c.mu.Unlock()
	if stop != nil {
		close(stop)
	}
	var toClose []*pconn
	c.mu.Lock()
	c.draining = true
	c.closed = c.closed || closed
	for _, h := range c.byKey {
		toClose = append(toClose, c.idleConnsLocked(h, true)...)
		if closed {
			for e := h.waiting.Front(); e != nil; e = h.waiting.Front() {
				w := h.waiting.Remove(e).(*waiter)
				w.elem = nil
				c.pending--
				w.ch <- waitResult{err: ErrClosed}
			}
		}
	}
	c.mu.Unlock()
	closeConns(toClose)
}

// RoundTrip sends req to an endpoint of the cluster chosen by its load balancer, over the
// endpoint's connection pool, and returns the response with the endpoint. The caller must
// close the response body: that ends the request for the circuit breakers and returns the
// connection to the pool. On error the endpoint is returned when one was chosen.
//
// Errors: *OverflowError (a circuit breaker, UO), ErrNoHealthyUpstream (UH),
// *ConnectError (UF), or the transport's error (reset before headers, or the context's).
func (c *Cluster) RoundTrip(req *http.Request, p Pick) (*http.Response, *Endpoint, error) {
	ctx := req.Context()
	if c.resolved != nil {
		select {
		case <-c.resolved:
		case <-ctx.Done():
			return nil, nil, ctx.Err()
		}
	}
	h, err := c.pick(&p)
	if err != nil {
		return nil, nil, err
	}
	out := req
	if req.URL.Host == "" || req.URL.Scheme != "http" {
		out = req.WithContext(ctx)
		u := *req.URL
		u.Scheme = "http"
		if u.Host == "" {
			u.Host = h.ep.Addr.String()
		}
		out.URL = &u
	}
	for attempt := 0; ; attempt++ {
		pc, err := c.acquire(ctx, h)
		if err != nil {
			c.mu.Lock()
			h.active--
			c.mu.Unlock()
			return nil, h.ep, err
		}
		resp, err := pc.cc.RoundTrip(out)
		if err != nil {
			c.mu.Lock()
			reused := pc.served > 1
			c.mu.Unlock()
			c.finish(pc, false)
			// A reused HTTP/1.1 connection the server closed while idle: replay a request
			// without body once on a new connection, as net/http's Transport does.
			if attempt == 0 && reused && replayable(req) && pc.cc.Err() != nil && ctx.Err() == nil {
				continue
			}
			c.mu.Lock()
			h.active--
			c.recordLocalLocked(h, ctx.Err())
			c.mu.Unlock()
			return nil, h.ep, fmt.Errorf("cluster %s: upstream %s: %w", c.cfg.name, h.ep, err)
		}
		c.mu.Lock()
		c.recordHTTPLocked(h, resp.StatusCode)
		if resp.Close && !c.cfg.http2 {
			pc.draining = true
		}
		c.mu.Unlock()
		resp.Body = &body{rc: resp.Body, c: c, pc: pc, empty: resp.Body == http.NoBody}
		return resp, h.ep, nil
	}
}

func replayable(req *http.Request) bool {
	switch req.Method {
	case "", http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace:
	default:
		return false
	}
	return req.Body == nil || req.Body == http.NoBody
}

// acquire returns a connection of h with a request slot taken, waiting (as a pending
// request) for one when none is free.
func (c *Cluster) acquire(ctx context.Context, h *host) (*pconn, error) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil, ErrClosed
	}
	now := c.now()
	var toClose []*pconn
	if pc := c.readyLocked(h, now, &toClose); pc != nil {
		if c.active >= c.cfg.maxRequests {
			c.stats.requestOverflows++
			c.mu.Unlock()
			closeConns(toClose)
			return nil, &OverflowError{Cluster: c.cfg.name, Limit: "max_requests", Max: c.cfg.maxRequests}
		}
		c.assignLocked(pc)
		c.mu.Unlock()
		closeConns(toClose)
		return pc, nil
	}
	if c.pending >= c.cfg.maxPending {
		c.stats.pendingOverflows++
		c.mu.Unlock()
		closeConns(toClose)
		return nil, &OverflowError{Cluster: c.cfg.name, Limit: "max_pending_requests", Max: c.cfg.maxPending}
	}
	w := &waiter{ch: make(chan waitResult, 1)}
	w.elem = h.waiting.PushBack(w)
	c.pending++
	c.connectLocked(h)
	c.mu.Unlock()
	closeConns(toClose)
	select {
	case r := <-w.ch:
		return r.pc, r.err
	case <-ctx.Done():
		c.mu.Lock()
		if w.elem != nil {
			h.waiting.Remove(w.elem)
			w.elem = nil
			c.pending--
			c.mu.Unlock()
			return nil, ctx.Err()
		}
		c.mu.Unlock()
		if r := <-w.ch; r.pc != nil {
			c.finish(r.pc, true)
		}
		return nil, ctx.Err()
	}
}

// readyLocked returns a connection of h that can take a request now. Connections past
// max_connection_duration start draining; idle draining ones are detached into toClose.
func (c *Cluster) readyLocked(h *host, now time.Time, toClose *[]*pconn) *pconn {
	for i := 0; i < len(h.conns); i++ {
		pc := h.conns[i]
		if !pc.draining && c.cfg.maxConnDuration > 0 && now.Sub(pc.created) >= c.cfg.maxConnDuration {
			pc.draining = true
		}
		if pc.draining {
			if pc.inflight == 0 {
				c.forgetLocked(pc)
				*toClose = append(*toClose, pc)
				i--
			}
			continue
		}
		if pc.cc.Err() != nil {
			continue // the state hook removes it
		}
		limit := 1
		if c.cfg.http2 {
			limit = max(1, pc.cc.Available()+pc.cc.InFlight())
		}
		if pc.inflight < limit {
			return pc
		}
	}
	return nil
}

func (c *Cluster) assignLocked(pc *pconn) {
	pc.inflight++
	pc.served++
	c.active++
	c.stats.requestsTotal++
	if c.cfg.maxRequestsPerConn > 0 && pc.served >= c.cfg.maxRequestsPerConn {
		pc.draining = true // max_requests_per_connection: no further request on it
	}
	if c.draining && c.cfg.http2 {
		pc.draining = true
	}
}

// connectLocked opens connections for h's waiting requests while the max_connections
// circuit breaker allows; a host without any connection always gets one, as in Envoy, so
// its requests are not stuck behind other hosts' connections.
func (c *Cluster) connectLocked(h *host) {
	for {
		n := h.waiting.Len()
		if n == 0 || (c.cfg.http2 && h.connecting > 0) || (!c.cfg.http2 && n <= h.connecting) {
			return
		}
		if c.conns >= c.cfg.maxConnections {
			c.stats.connectionOverflows++
			if len(h.conns) > 0 || h.connecting > 0 {
				return
			}
		}
		c.conns++
		h.connecting++
		go c.dial(h)
	}
}

func (c *Cluster) dialContext(ctx context.Context, _, _ string) (net.Conn, error) {
	h, _ := ctx.Value(hostKey{}).(*host)
	if h == nil {
		return nil, fmt.Errorf("cluster %s: dial without an endpoint", c.cfg.name)
	}
	conn, err := c.dialer.Dial(ctx, h.ep)
	if err != nil {
		return nil, err
	}
	if ka := c.cfg.keepalive; ka != nil {
		if k, ok := conn.(interface {
			SetKeepAliveConfig(net.KeepAliveConfig) error
		}); ok {
			if err := k.SetKeepAliveConfig(*ka); err != nil {
				c.log.Debug("tcp keepalive not set", "endpoint", h.ep.String(), "error", err)
			}
		}
	}
	return conn, nil
}

func (c *Cluster) dial(h *host) {
	ctx, cancel := context.WithTimeout(context.WithValue(context.Background(), hostKey{}, h), c.cfg.connectTimeout)
	cc, err := c.tr.NewClientConn(ctx, "http", h.ep.Addr.String())
	cancel()
	c.mu.Lock()
	h.connecting--
	if err != nil {
		c.conns--
		c.stats.connectFailures++
		c.recordConnectLocked(h, false)
		cerr := &ConnectError{Cluster: c.cfg.name, Endpoint: h.ep, Err: err}
		// As Envoy: a connect failure fails the host's waiting requests, so the router
		// can retry elsewhere instead of waiting behind a broken host.
		for e := h.waiting.Front(); e != nil; e = h.waiting.Front() {
			w := h.waiting.Remove(e).(*waiter)
			w.elem = nil
			c.pending--
			w.ch <- waitResult{err: cerr}
		}
		c.mu.Unlock()
		c.log.Debug("upstream connect failed", "endpoint", h.ep.String(), "error", err)
		return
	}
	now := c.now()
	pc := &pconn{h: h, cc: cc, created: now, idleSince: now}
	h.conns = append(h.conns, pc)
	c.stats.connectionsTotal++
	c.recordConnectLocked(h, true)
	if c.closed {
		pc.draining = true
	}
	var toClose []*pconn
	c.dispatchLocked(h, &toClose)
	if h.removed || c.draining {
		pc.draining = true
		if pc.inflight == 0 {
			c.forgetLocked(pc)
			toClose = append(toClose, pc)
		}
	}
	c.mu.Unlock()
	closeConns(toClose)
	cc.SetStateHook(func(*http.ClientConn) { c.onState(pc) })
}

// onState is the connection's state hook: it forgets closed connections and hands freed
// capacity to waiting requests.
func (c *Cluster) onState(pc *pconn) {
	var toClose []*pconn
	c.mu.Lock()
	h := pc.h
	if pc.cc.Err() != nil && !pc.dead {
		c.forgetLocked(pc)
	}
	c.dispatchLocked(h, &toClose)
	c.mu.Unlock()
	closeConns(toClose)
}

// dispatchLocked gives free connections of h to its waiting requests, and opens new
// connections for the rest.
func (c *Cluster) dispatchLocked(h *host, toClose *[]*pconn) {
	now := c.now()
	for h.waiting.Len() > 0 {
		pc := c.readyLocked(h, now, toClose)
		if pc == nil {
			break
		}
		w := h.waiting.Remove(h.waiting.Front()).(*waiter)
		w.elem = nil
		c.pending--
		if c.active >= c.cfg.maxRequests {
			c.stats.requestOverflows++
			w.ch <- waitResult{err: &OverflowError{Cluster: c.cfg.name, Limit: "max_requests", Max: c.cfg.maxRequests}}
			continue
		}
		c.assignLocked(pc)
		w.ch <- waitResult{pc: pc}
	}
	c.connectLocked(h)
}

// finish ends a request on pc; reusable is false when the connection's state is unknown
// (an HTTP/1.1 body not read to its end, an error).
func (c *Cluster) finish(pc *pconn, reusable bool) {
	var toClose []*pconn
	c.mu.Lock()
	pc.inflight--
	c.active--
	if !reusable && !c.cfg.http2 {
		pc.draining = true
	}
	if pc.inflight == 0 {
		pc.idleSince = c.now()
		if (pc.draining || c.draining) && !pc.dead {
			c.forgetLocked(pc)
			toClose = append(toClose, pc)
		}
	}
	c.dispatchLocked(pc.h, &toClose)
	c.mu.Unlock()
	closeConns(toClose)
}

// tick runs the periodic work: the outlier detection interval, idle connections past
// idle_timeout, ORIGINAL_DST hosts unused for cleanup_interval.
func (c *Cluster) tick(now time.Time) {
	var toClose []*pconn
	c.mu.Lock()
	if c.cfg.outlier != nil && !now.Before(c.nextInterval) {
		c.nextInterval = now.Add(c.cfg.outlier.interval)
		c.outlierIntervalLocked(now)
	}
	for _, h := range c.byKey {
		for i := 0; i < len(h.conns); i++ {
			pc := h.conns[i]
			if c.cfg.maxConnDuration > 0 && now.Sub(pc.created) >= c.cfg.maxConnDuration {
				pc.draining = true // max_connection_duration: closes once idle
			}
			if pc.inflight == 0 && (pc.draining || now.Sub(pc.idleSince) >= c.cfg.idleTimeout) {
				c.forgetLocked(pc)
				toClose = append(toClose, pc)
				i--
			}
		}
	}
	if c.cfg.discovery == discoveryOriginalDst {
		for k, h := range c.byKey {
			if h.active == 0 && len(h.conns) == 0 && h.connecting == 0 && h.waiting.Len() == 0 && now.Sub(h.lastUsed) >= c.cfg.cleanupInterval {
				h.removed = true
				delete(c.byKey, k)
			}
		}
	}
	c.mu.Unlock()
	closeConns(toClose)
}

// body ends its request when read to the end, on error, or when closed.
type body struct {
	rc    io.ReadCloser
	c     *Cluster
	pc    *pconn
	empty bool // http.NoBody: nothing to read, the connection is reusable
	once  sync.Once
}

func (b *body) Read(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	if err != nil {
		b.done(errors.Is(err, io.EOF))
	}
	return n, err
}

func (b *body) Close() error {
	err := b.rc.Close()
	b.done(b.empty)
	return err
}

func (b *body) done(eof bool) {
	b.once.Do(func() {
		b.c.mu.Lock()
		b.pc.h.active--
		b.c.mu.Unlock()
		b.c.finish(b.pc, eof)
	})
}
