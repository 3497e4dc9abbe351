package hbone

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"golang.org/x/net/http2/hpack"
)

// PoolConfig configures a Pool. Only Certs is required.
type PoolConfig struct {
	// Certs supplies the source workloads' SVIDs and the trust bundle.
	Certs Certificates
	// DialContext opens the TCP connections; nil means a net.Dialer with TCP keep-alive as
	// ztunnel sets it. The node agent dials from inside the source pod's network namespace
	// with SO_MARK set: DialContext receives the context of the Dial call that opens the
	// connection, and connections are keyed by source IP too, so a function that picks the
	// namespace from a context value never mixes pods.
	DialContext func(ctx context.Context, network, addr string) (net.Conn, error)
	// MaxStreamsPerConn caps the streams on one connection; a connection also never carries
	// more than the server's SETTINGS_MAX_CONCURRENT_STREAMS. Zero or more than
	// DefaultMaxStreamsPerConn means DefaultMaxStreamsPerConn.
	MaxStreamsPerConn int
	// IdleTimeout closes a connection that has carried no stream for this long; zero means
	// DefaultIdleTimeout.
	IdleTimeout time.Duration
	// KeepAliveInterval and KeepAliveTimeout: a connection that received no frame for
	// KeepAliveInterval is sent a PING and closed if the answer takes longer than
	// KeepAliveTimeout. Zero means DefaultKeepAliveInterval and DefaultKeepAliveTimeout.
	KeepAliveInterval, KeepAliveTimeout time.Duration
	// ConnectTimeout bounds opening a connection (TCP and TLS); zero means
	// DefaultHandshakeTimeout.
	ConnectTimeout time.Duration
	// Logger receives the pool's logs; nil means slog.Default().
	Logger *slog.Logger
}

// Pool opens HBONE streams over pooled HTTP/2 connections. Connections are keyed by source
// identity, destination identities, dial address and source IP; a connection takes new streams
// until it carries MaxStreamsPerConn (or the server's limit), then another connection is opened.
// Unused connections are closed after IdleTimeout; PING keep-alives close dead ones.
//
// The server's limit is known once its SETTINGS frame has been read, which the server sends
// first on a new connection: until then the first stream starts at once and the others wait
// for the SETTINGS, so a connection is never asked for more streams than the server allows.
// Streams the server refuses anyway (REFUSED_STREAM, or beyond the last stream of a GOAWAY)
// are retried on another connection. ztunnel and Server announce 200, above the cap of 100.
//
// A Pool is safe for concurrent use.
type Pool struct {
	cfg        PoolConfig
	log        *slog.Logger
	conf       connConfig
	maxStreams int

	mu     sync.Mutex
	keys   map[poolKey]*keyConns
	closed bool
}

type poolKey struct {
	src   spiffeid.ID
	dst   string // sorted destination identities, space separated
	addr  netip.AddrPort
	srcIP netip.Addr
}

// keyConns are the connections of one key and the dial in progress, if any.
type keyConns struct {
	conns   []*poolConn
	dialing *dialCall
}

type poolConn struct {
	key poolKey
	c   *conn
}

type dialCall struct {
	done    chan struct{}
	err     error
	evicted bool // Evict or Close ran while dialing: do not pool the result
}

// NewPool returns a Pool.
func NewPool(cfg PoolConfig) (*Pool, error) {
	if cfg.Certs == nil {
		return nil, errors.New("hbone: pool needs Certs")
	}
	if cfg.DialContext == nil {
		d := &net.Dialer{KeepAliveConfig: net.KeepAliveConfig{
			Enable: true, Idle: 180 * time.Second, Interval: 180 * time.Second, Count: 9,
		}}
		cfg.DialContext = d.DialContext
	}
	if cfg.MaxStreamsPerConn <= 0 || cfg.MaxStreamsPerConn > DefaultMaxStreamsPerConn {
		cfg.MaxStreamsPerConn = DefaultMaxStreamsPerConn
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = DefaultIdleTimeout
	}
	if cfg.KeepAliveInterval <= 0 {
		cfg.KeepAliveInterval = DefaultKeepAliveInterval
	}
	if cfg.KeepAliveTimeout <= 0 {
		cfg.KeepAliveTimeout = DefaultKeepAliveTimeout
	}
	if cfg.ConnectTimeout <= 0 {
		cfg.ConnectTimeout = DefaultHandshakeTimeout
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	p := &Pool{
		cfg:        cfg,
		log:        cfg.Logger.With("component", "hbone-pool"),
		maxStreams: cfg.MaxStreamsPerConn,
		keys:       make(map[poolKey]*keyConns),
	}
	p.conf = connConfig{
		maxHeaderListSize: 16 << 10, // ztunnel's client max_header_list_size
		keepAliveInterval: cfg.KeepAliveInterval,
		keepAliveTimeout:  cfg.KeepAliveTimeout,
		idleTimeout:       cfg.IdleTimeout,
		log:               p.log,
	}
	return p, nil
}

// Dial opens a stream to req.Authority through the server at req.Addr, which must present one of
// req.Destination, and returns it once the server answered 200. The returned net.Conn is a
// *Stream. A refusal is a *StatusError. Cancelling ctx aborts the dial but not a stream it
// returned.
func (p *Pool) Dial(ctx context.Context, req Request) (net.Conn, error) {
	if err := req.validate(); err != nil {
		return nil, err
	}
	// Fail early, and clearly, when the source has no certificate.
	if _, err := p.cfg.Certs.Get(ctx, req.Source); err != nil {
		return nil, fmt.Errorf("hbone: certificate of %s: %w", req.Source, err)
	}
	dst := make([]string, len(req.Destination))
	for i, id := range req.Destination {
		dst[i] = id.String()
	}
	slices.Sort(dst)
	key := poolKey{src: req.Source, dst: strings.Join(dst, " "), addr: req.Addr, srcIP: req.ForwardedFor.Addr()}

	// A connection can die between the reservation and the request (GOAWAY, idle close, a
	// dead peer); no payload has been sent yet, so the request is retried on another.
	for attempt := 0; ; attempt++ {
		pc, err := p.reserve(ctx, key, req)
		if err != nil {
			return nil, err
		}
		s, err := p.open(ctx, pc, req)
		if err == nil {
			return s, nil
		}
		var se *StatusError
		retry := errors.Is(err, errStreamRefused) || pc.c.isClosed()
		if attempt < 2 && ctx.Err() == nil && !errors.As(err, &se) && retry {
			continue
		}
		return nil, err
	}
}

func (r *Request) validate() error {
	switch {
	case r.Source.IsZero():
		return errors.New("hbone: request without source identity")
	case len(r.Destination) == 0:
		return errors.New("hbone: request without destination identity")
	case !r.Addr.IsValid() || r.Addr.Port() == 0:
		return fmt.Errorf("hbone: invalid dial address %v", r.Addr)
	case !r.Authority.IsValid() || r.Authority.Port() == 0:
		return fmt.Errorf("hbone: invalid authority %v", r.Authority)
	}
	for _, id := range r.Destination {
		if id.IsZero() {
			return errors.New("hbone: empty destination identity")
		}
	}
	return nil
}

// reserve returns a connection of key with a stream slot reserved, opening one if needed.
// Concurrent callers that find no free slot share one dial.
func (p *Pool) reserve(ctx context.Context, key poolKey, req Request) (*poolConn, error) {
	for {
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			return nil, errors.New("hbone: pool closed")
		}
		kc := p.keys[key]
		if kc == nil {
			kc = &keyConns{}
			p.keys[key] = kc
		}
		var idle []*poolConn
		kc.conns = slices.DeleteFunc(kc.conns, func(pc *poolConn) bool {
			// Closed, or draining (GOAWAY received) with no stream left: drop it.
			if pc.c.unusable() {
				idle = append(idle, pc)
				return true
			}
			return false
		})
		var (
			found *poolConn
			wait  <-chan struct{} // a new connection whose stream limit is not known yet
		)
		for _, pc := range kc.conns {
			ok, w := pc.c.reserve(p.maxStreams)
			if ok {
				found = pc
				break
			}
			if wait == nil {
				wait = w
			}
		}
		d := kc.dialing
		if found == nil && d == nil && wait == nil {
			d = &dialCall{done: make(chan struct{})}
			kc.dialing = d
			go p.dial(context.WithoutCancel(ctx), key, req, kc, d)
		}
		p.mu.Unlock()
		for _, pc := range idle {
			pc.c.close(errConnClosed)
		}
		if found != nil {
			return found, nil
		}
		var dialDone <-chan struct{}
		if d != nil {
			dialDone = d.done
		}
		select {
		case <-dialDone:
			if d.err != nil {
				return nil, d.err
			}
		case <-wait:
		case <-ctx.Done():
			return nil, fmt.Errorf("hbone: dial %v: %w", key.addr, ctx.Err())
		}
	}
}

// dial opens a connection for key and adds it to kc; waiters then reserve on it.
func (p *Pool) dial(ctx context.Context, key poolKey, req Request, kc *keyConns, d *dialCall) {
	ctx, cancel := context.WithTimeout(ctx, p.cfg.ConnectTimeout)
	defer cancel()
	pc := &poolConn{key: key}
	c, err := p.connect(ctx, key, req, func(*conn) { p.drop(pc) })
	if err == nil {
		pc.c = c
	} else {
		err = fmt.Errorf("hbone: connect %v: %w", key.addr, err)
		p.log.Debug("connect failed", "addr", key.addr, "src", key.src, "err", err)
	}

	p.mu.Lock()
	if kc.dialing == d {
		kc.dialing = nil
	}
	keep := err == nil && !d.evicted && !p.closed
	if keep {
		kc.conns = append(kc.conns, pc)
	} else if len(kc.conns) == 0 && kc.dialing == nil && p.keys[key] == kc {
		delete(p.keys, key) // nothing left for this key
	}
	d.err = err
	close(d.done)
	p.mu.Unlock()
	if err == nil && !keep {
		c.close(errConnClosed)
	}
}

// drop removes a closed connection.
func (p *Pool) drop(pc *poolConn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	kc := p.keys[pc.key]
	if kc == nil {
		return
	}
	kc.conns = slices.DeleteFunc(kc.conns, func(other *poolConn) bool { return other == pc })
	if len(kc.conns) == 0 && kc.dialing == nil {
		delete(p.keys, pc.key)
	}
}

// connect opens a connection for key: TCP through cfg.DialContext, the mTLS handshake, then
// HTTP/2. onClose is called once the connection has closed.
func (p *Pool) connect(ctx context.Context, key poolKey, req Request, onClose func(*conn)) (*conn, error) {
	raw, err := p.cfg.DialContext(ctx, "tcp", key.addr.String())
	if err != nil {
		return nil, err
	}
	tc := tls.Client(newBatchConn(raw), clientTLS(p.cfg.Certs, req.Source, req.Destination))
	if err := tc.HandshakeContext(ctx); err != nil {
		_ = raw.Close()
		return nil, fmt.Errorf("tls handshake: %w", err)
	}
	if err := requireH2(tc.ConnectionState()); err != nil {
		_ = raw.Close()
		return nil, err
	}
	cfg := p.conf
	cfg.onClose = onClose
	c := newConn(tc, cfg)
	if d, ok := ctx.Deadline(); ok {
		_ = raw.SetWriteDeadline(d)
	}
	if err := c.start(); err != nil {
		return nil, err
	}
	_ = raw.SetWriteDeadline(time.Time{})
	return c, nil
}

// open sends the CONNECT request on pc, which holds a reservation for it, and waits for the
// answer.
func (p *Pool) open(ctx context.Context, pc *poolConn, req Request) (*Stream, error) {
	authority := req.Authority.String()
	fields := make([]hpack.HeaderField, 2, 4)
	fields[0] = hpack.HeaderField{Name: ":method", Value: http.MethodConnect}
	fields[1] = hpack.HeaderField{Name: ":authority", Value: authority}
	if req.ForwardedFor.IsValid() {
		fields = append(fields, hpack.HeaderField{Name: "forwarded", Value: formatForwarded(req.ForwardedFor, req.ForwardedHost)})
	}
	if b := req.Baggage.String(); b != "" {
		fields = append(fields, hpack.HeaderField{Name: "baggage", Value: b})
	}
	s, err := pc.c.open(fields)
	if err != nil {
		return nil, fmt.Errorf("hbone: CONNECT %s via %v: %w", authority, req.Addr, err)
	}
	s.remote = net.TCPAddrFromAddrPort(req.Authority)
	if certs := pc.c.tlsState.PeerCertificates; len(certs) > 0 {
		s.peer, _ = x509svid.IDFromCert(certs[0])
	}
	select {
	case <-s.respReady:
	case <-ctx.Done():
		_ = s.Close() // resets the stream
		return nil, fmt.Errorf("hbone: CONNECT %s via %v: %w", authority, req.Addr, ctx.Err())
	}
	pc.c.mu.Lock()
	status, err := s.status, s.respErr
	pc.c.mu.Unlock()
	if err != nil {
		_ = s.Close()
		return nil, fmt.Errorf("hbone: CONNECT %s via %v: %w", authority, req.Addr, err)
	}
	if status != http.StatusOK {
		_ = s.Close()
		return nil, &StatusError{Code: status}
	}
	return s, nil
}

// Evict closes every pooled connection to ip, whatever its port and key, interrupting the
// streams they carry, and makes connections being opened to ip unusable. Call it when the
// workload at ip changes, so that no connection to the previous workload is reused. It returns
// the number of connections closed.
func (p *Pool) Evict(ip netip.Addr) int {
	p.mu.Lock()
	var victims []*poolConn
	for key, kc := range p.keys {
		if key.addr.Addr() != ip {
			continue
		}
		victims = append(victims, kc.conns...)
		kc.conns = nil
		if kc.dialing != nil {
			kc.dialing.evicted = true
			kc.dialing = nil
		}
		delete(p.keys, key)
	}
	p.mu.Unlock()
	for _, pc := range victims {
		pc.c.close(errConnClosed)
	}
	if len(victims) > 0 {
		p.log.Debug("evicted connections", "ip", ip, "count", len(victims))
	}
	return len(victims)
}

// Close closes all connections and makes Dial fail.
func (p *Pool) Close() error {
	p.mu.Lock()
	p.closed = true
	var all []*poolConn
	for key, kc := range p.keys {
		all = append(all, kc.conns...)
		if kc.dialing != nil {
			kc.dialing.evicted = true
		}
		delete(p.keys, key)
	}
	p.mu.Unlock()
	for _, pc := range all {
		pc.c.close(errConnClosed)
	}
	return nil
}
