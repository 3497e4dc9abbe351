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
)

// Handler decides what an inbound stream connects to. It returns the upstream connection, or a
// status for the client and the reason: 401 when policy denies, 503 when the upstream cannot be
// reached (a zero status with a nil upstream means 503). The context ends with the stream.
//
// The handler is where the node agent checks policy, that in.Authority belongs to the pod the
// listener serves (or that the pod is the waypoint for it), and connects to the application.
type Handler func(ctx context.Context, in *Inbound) (upstream net.Conn, status int, err error)

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
	// Handler connects accepted streams to their upstream.
	Handler Handler
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

	once    sync.Once
	initErr error
	http    *http.Server
	tls     *tls.Config
	log     *slog.Logger
}

func (s *Server) init() error {
	s.once.Do(func() {
		switch {
		case s.Identity.IsZero():
			s.initErr = errors.New("hbone: server without identity")
			return
		case s.Certs == nil:
			s.initErr = errors.New("hbone: server without certificates")
			return
		case s.Handler == nil:
			s.initErr = errors.New("hbone: server without handler")
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
		var protocols http.Protocols
		protocols.SetHTTP2(true)
		s.tls = serverTLS(s.Certs, s.Identity)
		s.http = &http.Server{
			Handler:   http.HandlerFunc(s.serveHTTP),
			Protocols: &protocols,
			// For HTTP/2 only the TLS handshake is subject to this timeout.
			ReadHeaderTimeout: handshake,
			MaxHeaderBytes:    64 << 10, // ztunnel's max_header_list_size
			HTTP2: &http.HTTP2Config{
				MaxConcurrentStreams:          maxStreams,
				MaxReadFrameSize:              MaxFrameSize,
				MaxReceiveBufferPerConnection: ConnectionWindow,
				MaxReceiveBufferPerStream:     StreamWindow,
				SendPingTimeout:               interval,
				PingTimeout:                   timeout,
			},
			// Failed handshakes (wrong trust domain, no ALPN h2, TLS 1.2...) are expected.
			ErrorLog: slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
		}
	})
	return s.initErr
}

// Serve accepts HBONE connections on ln until Shutdown or Close, and returns
// http.ErrServerClosed then. ln yields plain TCP connections; Serve runs TLS.
func (s *Server) Serve(ln net.Listener) error {
	if err := s.init(); err != nil {
		return err
	}
	return s.http.Serve(tls.NewListener(ln, s.tls))
}

// Shutdown stops accepting, sends GOAWAY and waits for the open streams to end or ctx to be
// done, then closes what is left.
func (s *Server) Shutdown(ctx context.Context) error {
	if err := s.init(); err != nil {
		return err
	}
	err := s.http.Shutdown(ctx)
	if err != nil {
		_ = s.http.Close()
	}
	return err
}

// Close closes the listeners and all connections at once.
func (s *Server) Close() error {
	if err := s.init(); err != nil {
		return err
	}
	return s.http.Close()
}

func (s *Server) serveHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodConnect || r.Header.Get(":protocol") != "" {
		s.refuse(w, r, http.StatusBadRequest, fmt.Errorf("method %s, want CONNECT", r.Method))
		return
	}
	authority, err := netip.ParseAddrPort(r.Host)
	if err != nil || authority.Port() == 0 || authority.Addr().Zone() != "" {
		s.refuse(w, r, http.StatusBadRequest, fmt.Errorf("authority %q is not an ip:port", r.Host))
		return
	}
	if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
		s.refuse(w, r, http.StatusUnauthorized, errors.New("no client certificate"))
		return
	}
	peerCert := r.TLS.PeerCertificates[0]
	peer, err := x509svid.IDFromCert(peerCert)
	if err != nil {
		s.refuse(w, r, http.StatusUnauthorized, err)
		return
	}
	in := &Inbound{
		PeerID:    peer,
		PeerCert:  peerCert,
		Authority: authority,
		Baggage:   parseBaggage(r.Header.Get("Baggage")),
		Header:    r.Header,
		Counters:  new(Counters),
	}
	in.ForwardedFor, in.ForwardedHost = parseForwarded(r.Header.Get("Forwarded"))
	if la, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr); ok {
		in.LocalAddr = addrPort(la)
	}
	in.RemoteAddr, _ = netip.ParseAddrPort(r.RemoteAddr)

	upstream, status, err := s.Handler(r.Context(), in)
	if upstream == nil {
		if status == 0 || status == http.StatusOK {
			status = http.StatusServiceUnavailable
		}
		s.refuse(w, r, status, err)
		return
	}
	rc := http.NewResponseController(w)
	w.WriteHeader(http.StatusOK)
	if err := rc.Flush(); err != nil {
		_ = upstream.Close()
		s.log.Debug("stream closed before 200 was sent", "peer", peer, "authority", authority, "err", err)
		return
	}
	s.relay(r, &flushWriter{w: w, rc: rc}, upstream, in)
}

// refuse answers a stream with status.
func (s *Server) refuse(w http.ResponseWriter, r *http.Request, status int, err error) {
	s.log.Debug("stream refused", "status", status, "remote", r.RemoteAddr, "authority", r.Host, "err", err)
	w.WriteHeader(status)
}

// relay copies between the stream and upstream. The client-to-upstream direction ends with
// CloseWrite on the upstream when the client sends END_STREAM. When the upstream ends its
// direction, the handler returns, which ends the response with END_STREAM; net/http then
// resets the request side if the client has not finished it (see the package documentation).
func (s *Server) relay(r *http.Request, w io.Writer, upstream net.Conn, in *Inbound) {
	var clientErr error
	clientDone := make(chan struct{})
	go func() {
		defer close(clientDone)
		_, clientErr = copyBuffered(upstream, r.Body, &in.Counters.received)
		if clientErr != nil {
			_ = upstream.Close() // the client reset the stream: abort the upstream too
		} else {
			closeWrite(upstream)
		}
	}()
	_, upstreamErr := copyBuffered(w, upstream, &in.Counters.sent)
	if upstreamErr != nil {
		_ = upstream.Close()
	}
	finish := func() {
		<-clientDone
		_ = upstream.Close()
		s.log.Debug("stream closed", "peer", in.PeerID, "authority", in.Authority,
			"sent", in.Counters.Sent(), "received", in.Counters.Received(),
			"upstream_err", upstreamErr, "client_err", clientErr)
		if s.StreamClosed != nil {
			s.StreamClosed(in)
		}
	}
	if isClosed(clientDone) {
		finish()
		return
	}
	// The client is still sending: returning lets net/http end the stream, which in turn
	// ends the copy from the client.
	go finish()
}

// flushWriter flushes after every write so interactive traffic is not held back.
type flushWriter struct {
	w  io.Writer
	rc *http.ResponseController
}

func (f *flushWriter) Write(p []byte) (int, error) {
	n, err := f.w.Write(p)
	if err != nil {
		return n, err
	}
	return n, f.rc.Flush()
}

func addrPort(a net.Addr) netip.AddrPort {
	if ta, ok := a.(*net.TCPAddr); ok {
		return ta.AddrPort()
	}
	ap, _ := netip.ParseAddrPort(a.String())
	return ap
}
