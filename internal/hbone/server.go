package hbone

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// Handler decides what an inbound stream connects to. It returns the upstream connection, or a
// status for the client and the reason: 401 when policy denies, 503 when the upstream cannot be
// reached (a zero status with a nil upstream means 503). The context ends with the stream.
//
// The handler is where the node agent checks policy, that in.Authority belongs to the pod the
// listener serves (or that the pod is the waypoint for it), and connects to the application.
type Handler func(ctx context.Context, in *Inbound) (upstream net.Conn, status int, err error)

// Terminator decides whether the server itself consumes an inbound stream, as a waypoint does
// (it serves HTTP on the tunnelled bytes instead of relaying them). It returns the function that
// takes over the stream once 200 has been sent, or nil and the status to refuse it with. serve
// owns the stream: it runs in the stream's goroutine and must close the stream when done.
type Terminator func(ctx context.Context, in *Inbound) (serve func(stream net.Conn), status int, err error)

// Inbound describes an inbound stream.
type Inbound struct {
	// PeerID is the verified identity of the client, in the server's trust domain.
	PeerID spiffeid.ID
	// PeerCert is the client's leaf certificate.
	PeerCert *x509.Certificate
	// Authority is the :authority of the CONNECT request.
	Authority netip.AddrPort
	// LocalAddr and RemoteAddr are the addresses of the TCP connection that carries the stream.
	LocalAddr, RemoteAddr netip.AddrPort
	// ForwardedFor is the for= address of the forwarded header (zero when absent or
	// obfuscated); ForwardedHost its host= parameter. ztunnel trusts them only from waypoints.
	ForwardedFor  netip.AddrPort
	ForwardedHost string
	// Baggage is the parsed baggage header.
	Baggage Baggage
	// Header holds all request headers (traceparent, for example).
	Header http.Header
	// Counters counts the stream's payload: Sent is what went to the client, Received what came
	// from it. They grow while the stream is open.
	Counters *Counters
}

// Server serves HBONE on listeners, one per pod: each listener presents the certificate of
// Identity, the pod's identity. The zero value is not usable: set Identity, Certs and Handler.
// Exported fields must not be changed after the first Serve.
type Server struct {
	// Identity is the identity whose SVID the server presents; clients must be in its trust
	// domain.
	Identity spiffeid.ID
	// Certs supplies the SVID (fetched per handshake, so renewals are picked up) and the
	// trust bundle that client chains must verify against.
	Certs Certificates
	// Handler connects accepted streams to their upstream. Exactly one of Handler and
	// Terminate is set.
	Handler Handler
	// Terminate consumes accepted streams in the server's process.
	Terminate Terminator
	// MaxConcurrentStreams is the SETTINGS_MAX_CONCURRENT_STREAMS advertised to clients; zero
	// means DefaultServerMaxStreams.
	MaxConcurrentStreams int
	// KeepAliveInterval and KeepAliveTimeout: as PoolConfig's; zero means the defaults.
	KeepAliveInterval, KeepAliveTimeout time.Duration
	// HandshakeTimeout bounds the TLS handshake; zero means DefaultHandshakeTimeout.
	HandshakeTimeout time.Duration
	// StreamClosed, if set, is called once both directions of an accepted stream (one that got
	// 200) have ended, with its final counters.
	StreamClosed func(in *Inbound)
	// Logger receives the server's logs; nil means slog.Default().
	Logger *slog.Logger

	once      sync.Once
	initErr   error
	tls       *tls.Config
	log       *slog.Logger
	conf      connConfig
	handshake time.Duration

	mu        sync.Mutex
	listeners map[net.Listener]struct{}
	conns     map[net.Conn]*conn // by TCP connection; nil while the handshake runs
	closing   bool
}

// drainGrace is how long a server connection that drained after GOAWAY waits for the client to
// close it before closing it itself.
const drainGrace = time.Second

func (s *Server) init() error {
	s.once.Do(func() {
		switch {
		case s.Identity.IsZero():
			s.initErr = errors.New("hbone: server without identity")
			return
		case s.Certs == nil:
			s.initErr = errors.New("hbone: server without certificates")
			return
		case (s.Handler == nil) == (s.Terminate == nil):
			s.initErr = errors.New("hbone: a server needs exactly one of Handler and Terminate")
			return
		}
		log := s.Logger
		if log == nil {
			log = slog.Default()
		}
		s.log = log.With("component", "hbone-server", "id", s.Identity.String())
		maxStreams := s.MaxConcurrentStreams
		if maxStreams <= 0 {
			maxStreams = DefaultServerMaxStreams
		}
		interval, timeout, handshake := s.KeepAliveInterval, s.KeepAliveTimeout, s.HandshakeTimeout
		if interval <= 0 {
			interval = DefaultKeepAliveInterval
		}
		if timeout <= 0 {
			timeout = DefaultKeepAliveTimeout
		}
		if handshake <= 0 {
			handshake = DefaultHandshakeTimeout
		}
		s.handshake = handshake
		s.tls = serverTLS(s.Certs, s.Identity)
		s.conf = connConfig{
			server:            true,
			maxStreams:        uint32(maxStreams),
			maxHeaderListSize: 64 << 10, // ztunnel's max_header_list_size
			keepAliveInterval: interval,
			keepAliveTimeout:  timeout,
			drainGrace:        drainGrace,
			log:               s.log,
		}
		s.listeners = make(map[net.Listener]struct{})
		s.conns = make(map[net.Conn]*conn)
	})
	return s.initErr
}

// Serve accepts HBONE connections on ln until Shutdown or Close, and returns
// http.ErrServerClosed then. ln yields plain TCP connections; Serve runs TLS.
func (s *Server) Serve(ln net.Listener) error {
	if err := s.init(); err != nil {
		return err
	}
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		return http.ErrServerClosed
	}
	s.listeners[ln] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.listeners, ln)
		s.mu.Unlock()
	}()
	var backoff time.Duration
	for {
		raw, err := ln.Accept()
		if err != nil {
			if s.isClosing() {
				return http.ErrServerClosed
			}
			var te interface{ Temporary() bool }
			if errors.As(err, &te) && te.Temporary() {
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				s.log.Debug("accept failed, retrying", "err", err, "delay", backoff)
				time.Sleep(backoff)
				continue
			}
			return fmt.Errorf("hbone: accept: %w", err)
		}
		backoff = 0
		go s.serveConn(raw)
	}
}

func (s *Server) isClosing() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closing
}

// track records raw (and its HTTP/2 connection once there is one); it reports false when the
// server is closing.
func (s *Server) track(raw net.Conn, c *conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		return false
	}
	s.conns[raw] = c
	return true
}

func (s *Server) untrack(raw net.Conn) {
	s.mu.Lock()
	delete(s.conns, raw)
	s.mu.Unlock()
}

// serveConn runs the TLS handshake and the HTTP/2 connection on raw until it ends.
func (s *Server) serveConn(raw net.Conn) {
	if !s.track(raw, nil) {
		_ = raw.Close()
		return
	}
	defer s.untrack(raw)
	// The handshake and the client's preface must arrive within the handshake timeout.
	_ = raw.SetDeadline(time.Now().Add(s.handshake))
	tc := tls.Server(newBatchConn(raw), s.tls)
	if err := tc.Handshake(); err != nil {
		// Wrong trust domain, no ALPN h2, TLS 1.2...: expected from strangers.
		s.log.Debug("TLS handshake failed", "remote", raw.RemoteAddr(), "err", err)
		_ = raw.Close()
		return
	}
	var preface [len(http2.ClientPreface)]byte
	if _, err := io.ReadFull(tc, preface[:]); err != nil || string(preface[:]) != http2.ClientPreface {
		s.log.Debug("no HTTP/2 preface", "remote", raw.RemoteAddr(), "err", err)
		_ = raw.Close()
		return
	}
	_ = raw.SetDeadline(time.Time{})
	cfg := s.conf
	var c *conn
	cfg.onStream = func(st *Stream, fields []hpack.HeaderField, truncated bool) {
		s.serveStream(c, st, fields, truncated)
	}
	c = newConn(tc, cfg)
	if !s.track(raw, c) {
		_ = raw.Close()
		return
	}
	if err := c.start(); err != nil {
		return
	}
	<-c.done
	s.log.Debug("connection closed", "remote", c.remote, "err", c.err)
}

// Shutdown stops accepting, sends GOAWAY and waits for the open streams to end or ctx to be
// done, then closes what is left.
func (s *Server) Shutdown(ctx context.Context) error {
	if err := s.init(); err != nil {
		return err
	}
	s.mu.Lock()
	s.closing = true
	for ln := range s.listeners {
		_ = ln.Close()
	}
	for raw, c := range s.conns {
		if c == nil {
			_ = raw.Close() // still in the handshake
		} else {
			c.goAway(http2.ErrCodeNo)
		}
	}
	s.mu.Unlock()
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for {
		s.mu.Lock()
		n := len(s.conns)
		s.mu.Unlock()
		if n == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			_ = s.Close()
			return ctx.Err()
		case <-t.C:
		}
	}
}

// Close closes the listeners and all connections at once.
func (s *Server) Close() error {
	if err := s.init(); err != nil {
		return err
	}
	s.mu.Lock()
	s.closing = true
	for ln := range s.listeners {
		_ = ln.Close()
	}
	var conns []*conn
	for raw, c := range s.conns {
		if c == nil {
			_ = raw.Close()
		} else {
			conns = append(conns, c)
		}
	}
	s.mu.Unlock()
	for _, c := range conns {
		c.close(http.ErrServerClosed)
	}
	return nil
}

// serveStream answers a new stream and relays it to its upstream.
func (s *Server) serveStream(c *conn, st *Stream, fields []hpack.HeaderField, truncated bool) {
	in, status, err := s.inbound(c, st, fields, truncated)
	if in == nil {
		s.refuse(c, st, status, err)
		return
	}
	if s.Terminate != nil {
		s.terminate(c, st, in)
		return
	}
	upstream, status, err := s.Handler(st.ctx, in)
	if upstream == nil {
		if status == 0 || status == http.StatusOK {
			status = http.StatusServiceUnavailable
		}
		s.refuse(c, st, status, err)
		return
	}
	if err := c.respond(st, http.StatusOK, false); err != nil {
		_ = upstream.Close()
		_ = st.Close()
		s.log.Debug("stream closed before 200 was sent", "peer", in.PeerID, "authority", in.Authority, "err", err)
		return
	}
	// Each direction ends on its own: the upstream's EOF ends the server's direction with
	// END_STREAM while the client may go on sending, and the client's END_STREAM half-closes
	// the upstream. A reset or an error on either side ends both.
	_, _, err = Relay(st, upstream)
	s.log.Debug("stream closed", "peer", in.PeerID, "authority", in.Authority,
		"sent", in.Counters.Sent(), "received", in.Counters.Received(), "err", err)
	if s.StreamClosed != nil {
		s.StreamClosed(in)
	}
}

// terminate answers a stream that the server consumes itself.
func (s *Server) terminate(c *conn, st *Stream, in *Inbound) {
	serve, status, err := s.Terminate(st.ctx, in)
	if serve == nil {
		if status == 0 || status == http.StatusOK {
			status = http.StatusServiceUnavailable
		}
		s.refuse(c, st, status, err)
		return
	}
	if err := c.respond(st, http.StatusOK, false); err != nil {
		_ = st.Close()
		return
	}
	serve(st)
	if s.StreamClosed != nil {
		s.StreamClosed(in)
	}
}

// refuse answers a stream with status and ends it.
func (s *Server) refuse(c *conn, st *Stream, status int, err error) {
	s.log.Debug("stream refused", "status", status, "remote", c.remote, "err", err)
	if err := c.respond(st, status, true); err != nil {
		_ = st.Close()
	}
}

// inbound checks the request of a new stream and describes it. A nil Inbound comes with the
// status to refuse the stream with.
func (s *Server) inbound(c *conn, st *Stream, fields []hpack.HeaderField, truncated bool) (*Inbound, int, error) {
	if truncated {
		return nil, http.StatusBadRequest, errors.New("request header list too large")
	}
	var method, authority string
	var extra []string // pseudo-headers a CONNECT must not have
	header := make(http.Header, len(fields))
	for _, f := range fields {
		switch f.Name {
		case ":method":
			method = f.Value
		case ":authority":
			authority = f.Value
		default:
			if len(f.Name) > 0 && f.Name[0] == ':' {
				extra = append(extra, f.Name)
				continue
			}
			k := http.CanonicalHeaderKey(f.Name)
			header[k] = append(header[k], f.Value)
		}
	}
	if method != http.MethodConnect || len(extra) > 0 {
		return nil, http.StatusBadRequest, fmt.Errorf("method %s with %v, want a plain CONNECT", method, extra)
	}
	target, err := netip.ParseAddrPort(authority)
	if err != nil || target.Port() == 0 || target.Addr().Zone() != "" {
		return nil, http.StatusBadRequest, fmt.Errorf("authority %q is not an ip:port", authority)
	}
	if len(c.tlsState.PeerCertificates) == 0 {
		return nil, http.StatusUnauthorized, errors.New("no client certificate")
	}
	peerCert := c.tlsState.PeerCertificates[0]
	peer, err := x509svid.IDFromCert(peerCert)
	if err != nil {
		return nil, http.StatusUnauthorized, err
	}
	st.peer = peer
	in := &Inbound{
		PeerID:     peer,
		PeerCert:   peerCert,
		Authority:  target,
		LocalAddr:  addrPort(c.local),
		RemoteAddr: addrPort(c.remote),
		Baggage:    parseBaggage(header.Get("Baggage")),
		Header:     header,
		Counters:   &st.counters,
	}
	in.ForwardedFor, in.ForwardedHost = parseForwarded(header.Get("Forwarded"))
	return in, 0, nil
}

func addrPort(a net.Addr) netip.AddrPort {
	if ta, ok := a.(*net.TCPAddr); ok {
		return ta.AddrPort()
	}
	ap, _ := netip.ParseAddrPort(a.String())
	return ap
}
