package proxy

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/weftmesh/weft/internal/hbone"
)

// ServerOptions configure a Server.
type ServerOptions struct {
	// Identity is the waypoint's identity: its SVID is presented to the node agents.
	Identity spiffeid.ID
	Certs    hbone.Certificates
	// Accept decides whether a tunnel is served: it returns 0 to serve it, or the status to
	// refuse it with (400 for a port the waypoint has no listener for).
	Accept func(in *hbone.Inbound) (status int, err error)
	// Relay, if set, may take over an accepted tunnel before it is served as HTTP
	// ([Handler.Relay]: TCP chains): it returns the function that consumes the stream, or the
	// status to refuse the tunnel with, or nil and 0 to serve it as HTTP.
	Relay func(ctx context.Context, in *hbone.Inbound) (serve func(stream net.Conn), status int, err error)
	// Handler serves the requests carried by accepted tunnels; the request's context holds the
	// tunnel ([Tunnel]).
	Handler http.Handler
	Logger  *slog.Logger
}

// Server terminates HBONE tunnels and serves HTTP/1.1 and HTTP/2 (prior knowledge, as gRPC
// clients send it) on each tunnel with net/http.
type Server struct {
	hbone *hbone.Server
	http  *http.Server
	ln    *streamListener
}

type tunnelKey struct{}

// Tunnel returns the HBONE tunnel a request arrived on, or nil.
func Tunnel(ctx context.Context) *hbone.Inbound {
	in, _ := ctx.Value(tunnelKey{}).(*hbone.Inbound)
	return in
}

// WithTunnel returns ctx carrying in, as the server sets it (for tests of handlers).
func WithTunnel(ctx context.Context, in *hbone.Inbound) context.Context {
	return context.WithValue(ctx, tunnelKey{}, in)
}

// NewServer returns a server; Serve starts it.
func NewServer(o ServerOptions) *Server {
	log := o.Logger
	if log == nil {
		log = slog.Default()
	}
	s := &Server{ln: newStreamListener(&net.TCPAddr{Port: hbone.Port})}
	var protocols http.Protocols
	protocols.SetHTTP1(true)
	protocols.SetUnencryptedHTTP2(true)
	s.http = &http.Server{
		Handler:           o.Handler,
		Protocols:         &protocols,
		ReadHeaderTimeout: 30 * time.Second,
		IdleTimeout:       time.Hour, // as Envoy's downstream idle timeout
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			if tc, ok := c.(*tunnelConn); ok {
				return WithTunnel(ctx, tc.in)
			}
			return ctx
		},
	}
	s.hbone = &hbone.Server{
		Identity: o.Identity,
		Certs:    o.Certs,
		Logger:   log,
		Terminate: func(ctx context.Context, in *hbone.Inbound) (func(net.Conn), int, error) {
			if o.Accept != nil {
				if status, err := o.Accept(in); status != 0 {
					return nil, status, err
				}
			}
			if o.Relay != nil {
				if serve, status, err := o.Relay(ctx, in); serve != nil || status != 0 {
					return serve, status, err
				}
			}
			return func(st net.Conn) { s.ln.serve(ctx, newTunnelConn(st, in)) }, 0, nil
		},
	}
	return s
}

// Serve accepts HBONE connections on ln (plain TCP; the server runs TLS) until Shutdown.
func (s *Server) Serve(ln net.Listener) error {
	go func() { _ = s.http.Serve(s.ln) }() // ends when s.ln is closed
	err := s.hbone.Serve(ln)
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// Shutdown stops accepting tunnels, lets requests in flight finish (bounded by ctx) and closes.
func (s *Server) Shutdown(ctx context.Context) error {
	err := s.http.Shutdown(ctx) // closes idle tunnels, waits for requests in flight
	return errors.Join(err, s.ln.Close(), s.hbone.Shutdown(ctx))
}
