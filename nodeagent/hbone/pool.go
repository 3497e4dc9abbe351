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
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
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
// The server's limit is known once its SETTINGS frame has been read, which happens while the
// first stream of a connection is set up. Streams assigned to a brand-new connection before
// that, beyond a server limit lower than MaxStreamsPerConn, wait for a free slot on it instead
// of opening another connection. ztunnel and Server announce 200, above the cap of 100.
//
// A Pool is safe for concurrent use.
type Pool struct {
	cfg        PoolConfig
	log        *slog.Logger
	transport  *http.Transport
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
	key   poolKey
	cc    *http.ClientConn
	local net.Addr
}

type dialCall struct {
	done    chan struct{}
	err     error
	evicted bool // Evict or Close ran while dialing: do not pool the result
}

// dialParams travel from Pool.dial to the transport's DialTLSContext in the context.
type dialParams struct {
	key   poolKey
	src   spiffeid.ID
	dst   []spiffeid.ID
	local net.Addr // set by dialTLS
}

type dialParamsKey struct{}

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
	var protocols http.Protocols
	protocols.SetHTTP2(true)
	p.transport = &http.Transport{
		DialTLSContext:         p.dialTLS,
		Protocols:              &protocols,
		DisableCompression:     true, // no accept-encoding on CONNECT
		IdleConnTimeout:        cfg.IdleTimeout,
		MaxResponseHeaderBytes: 16 << 10, // ztunnel's client max_header_list_size
		HTTP2: &http.HTTP2Config{
			MaxReadFrameSize:              MaxFrameSize,
			MaxReceiveBufferPerConnection: ConnectionWindow,
			MaxReceiveBufferPerStream:     StreamWindow,
			SendPingTimeout:               cfg.KeepAliveInterval,
			PingTimeout:                   cfg.KeepAliveTimeout,
		},
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
		if attempt < 2 && ctx.Err() == nil && !errors.As(err, &se) && pc.cc.Err() != nil {
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
			if pc.cc.Err() != nil {
				return true
			}
			// Unusable (GOAWAY received) and no stream left: close it.
			if pc.cc.Available() == 0 && pc.cc.InFlight() == 0 {
				idle = append(idle, pc)
				return true
			}
			return false
		})
		var found *poolConn
		for _, pc := range kc.conns {
			// Reserve runs the state hook synchronously only on a state change our hook
			// ignores or handles without p.mu, so it is safe under the lock.
			if pc.cc.InFlight() < p.maxStreams && pc.cc.Reserve() == nil {
				found = pc
				break
			}
		}
		d := kc.dialing
		if found == nil && d == nil {
			d = &dialCall{done: make(chan struct{})}
			kc.dialing = d
			go p.dial(context.WithoutCancel(ctx), key, req, kc, d)
		}
		p.mu.Unlock()
		for _, pc := range idle {
			_ = pc.cc.Close()
		}
		if found != nil {
			return found, nil
		}
		select {
		case <-d.done:
			if d.err != nil {
				return nil, d.err
			}
		case <-ctx.Done():
			return nil, fmt.Errorf("hbone: dial %v: %w", key.addr, ctx.Err())
		}
	}
}

// dial opens a connection for key and adds it to kc; waiters then reserve on it.
func (p *Pool) dial(ctx context.Context, key poolKey, req Request, kc *keyConns, d *dialCall) {
	ctx, cancel := context.WithTimeout(ctx, p.cfg.ConnectTimeout)
	defer cancel()
	params := &dialParams{key: key, src: req.Source, dst: req.Destination}
	cc, err := p.transport.NewClientConn(context.WithValue(ctx, dialParamsKey{}, params), "https", key.addr.String())
	var pc *poolConn
	if err == nil {
		pc = &poolConn{key: key, cc: cc, local: params.local}
		cc.SetStateHook(func(cc *http.ClientConn) {
			if cc.Err() != nil {
				go p.drop(pc)
			}
		})
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
		_ = cc.Close()
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
	kc.conns = slices.DeleteFunc(kc.conns, func(c *poolConn) bool { return c == pc })
	if len(kc.conns) == 0 && kc.dialing == nil {
		delete(p.keys, pc.key)
	}
}

// dialTLS is the transport's DialTLSContext: TCP through cfg.DialContext, then the mTLS
// handshake for the key in ctx.
func (p *Pool) dialTLS(ctx context.Context, network, addr string) (net.Conn, error) {
	params, ok := ctx.Value(dialParamsKey{}).(*dialParams)
	if !ok {
		return nil, errors.New("hbone: connection not opened by the pool")
	}
	raw, err := p.cfg.DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	c := tls.Client(raw, clientTLS(p.cfg.Certs, params.src, params.dst))
	if err := c.HandshakeContext(ctx); err != nil {
		_ = raw.Close()
		return nil, fmt.Errorf("tls handshake: %w", err)
	}
	if err := requireH2(c.ConnectionState()); err != nil {
		_ = raw.Close()
		return nil, err
	}
	params.local = raw.LocalAddr()
	return c, nil
}

// open sends the CONNECT request on pc, which holds a reservation for it.
func (p *Pool) open(ctx context.Context, pc *poolConn, req Request) (*Stream, error) {
	streamCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	body := newBodyPipe(streamCtx.Done())
	authority := req.Authority.String()
	h := http.Header{
		"User-Agent": {""}, // sends no user-agent, as ztunnel
	}
	if req.ForwardedFor.IsValid() {
		h.Set("Forwarded", formatForwarded(req.ForwardedFor, req.ForwardedHost))
	}
	if b := req.Baggage.String(); b != "" {
		h.Set("Baggage", b)
	}
	hreq := (&http.Request{
		Method:        http.MethodConnect,
		URL:           &url.URL{Host: authority},
		Host:          authority,
		Header:        h,
		Body:          body,
		ContentLength: -1,
	}).WithContext(streamCtx)

	stop := context.AfterFunc(ctx, cancel)
	resp, err := pc.cc.RoundTrip(hreq)
	if !stop() {
		// ctx ended while waiting for the answer; the stream, if any, is reset.
		if err == nil {
			_ = resp.Body.Close()
		}
		return nil, fmt.Errorf("hbone: CONNECT %s via %v: %w", authority, req.Addr, ctx.Err())
	}
	if err != nil {
		cancel()
		return nil, fmt.Errorf("hbone: CONNECT %s via %v: %w", authority, req.Addr, err)
	}
	if resp.StatusCode != http.StatusOK {
		_ = resp.Body.Close()
		cancel()
		return nil, &StatusError{Code: resp.StatusCode}
	}
	return newStream(resp, body, cancel, pc.local, net.TCPAddrFromAddrPort(req.Authority)), nil
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
		_ = pc.cc.Close()
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
		_ = pc.cc.Close()
	}
	return nil
}
