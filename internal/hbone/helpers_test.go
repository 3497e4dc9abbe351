package hbone_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/weftmesh/weft/internal/hbone"
	"github.com/weftmesh/weft/internal/identity"
)

var (
	clientID = spiffeid.RequireFromString("spiffe://cluster.local/ns/shop/sa/productpage")
	serverID = spiffeid.RequireFromString("spiffe://cluster.local/ns/shop/sa/books")
	otherID  = spiffeid.RequireFromString("spiffe://cluster.local/ns/shop/sa/ratings")
	quiet    = slog.New(slog.DiscardHandler)
)

// newManager returns an identity.Manager backed by a FileCA with a fresh root for td.
func newManager(t testing.TB, td string) *identity.Manager {
	t.Helper()
	trust := spiffeid.RequireTrustDomainFromString(td)
	dir := t.TempDir()
	cert, key := filepath.Join(dir, "ca.pem"), filepath.Join(dir, "ca-key.pem")
	if _, err := identity.CreateRootCA(trust, cert, key, 0); err != nil {
		t.Fatal(err)
	}
	ca, err := identity.NewFileCA(identity.FileCAConfig{TrustDomain: trust, CertFile: cert, KeyFile: key})
	if err != nil {
		t.Fatal(err)
	}
	m, err := identity.NewManager(ca, identity.Options{TrustDomain: trust, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Close)
	return m
}

// mixedCerts presents the SVIDs of one manager and trusts the bundles of several.
type mixedCerts struct {
	svids  hbone.Certificates
	trusts []hbone.Certificates
}

func (m mixedCerts) Get(ctx context.Context, id spiffeid.ID) (*x509svid.SVID, error) {
	return m.svids.Get(ctx, id)
}

func (m mixedCerts) Bundle() x509bundle.Source { return m }

func (m mixedCerts) GetX509BundleForTrustDomain(td spiffeid.TrustDomain) (*x509bundle.Bundle, error) {
	var last error
	for _, c := range m.trusts {
		b, err := c.Bundle().GetX509BundleForTrustDomain(td)
		if err == nil {
			return b, nil
		}
		last = err
	}
	return nil, last
}

// countingListener counts accepted connections and those still open.
type countingListener struct {
	net.Listener
	accepted atomic.Int32
	open     atomic.Int32
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	l.accepted.Add(1)
	l.open.Add(1)
	return &countedConn{Conn: c, l: l}, nil
}

type countedConn struct {
	net.Conn
	l    *countingListener
	once sync.Once
}

func (c *countedConn) Close() error {
	c.once.Do(func() { c.l.open.Add(-1) })
	return c.Conn.Close()
}

// env is a server for serverID with a pool for clientID, on loopback.
type env struct {
	certs  *identity.Manager
	server *hbone.Server
	ln     *countingListener
	addr   netip.AddrPort
	pool   *hbone.Pool
	calls  atomic.Int32 // handler invocations
}

type envOption func(*hbone.Server, *hbone.PoolConfig)

// newEnv starts a server whose handler dials in.Authority, unless handler is set.
func newEnv(t testing.TB, handler hbone.Handler, opts ...envOption) *env {
	t.Helper()
	e := &env{certs: newManager(t, "cluster.local")}
	if handler == nil {
		handler = dialAuthority
	}
	e.server = &hbone.Server{
		Identity: serverID,
		Certs:    e.certs,
		Logger:   quiet,
		Handler: func(ctx context.Context, in *hbone.Inbound) (net.Conn, int, error) {
			e.calls.Add(1)
			return handler(ctx, in)
		},
	}
	cfg := hbone.PoolConfig{Certs: e.certs, Logger: quiet}
	for _, o := range opts {
		o(e.server, &cfg)
	}
	e.ln, e.addr = listen(t)
	go func() { _ = e.server.Serve(e.ln) }()
	t.Cleanup(func() { _ = e.server.Close() })
	pool, err := hbone.NewPool(cfg)
	if err != nil {
		t.Fatal(err)
	}
	e.pool = pool
	t.Cleanup(func() { _ = pool.Close() })
	return e
}

func listen(t testing.TB) (*countingListener, netip.AddrPort) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return &countingListener{Listener: ln}, ln.Addr().(*net.TCPAddr).AddrPort()
}

func dialAuthority(ctx context.Context, in *hbone.Inbound) (net.Conn, int, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", in.Authority.String())
	if err != nil {
		return nil, 503, err
	}
	return c, 0, nil
}

// request returns a request from clientID to serverID for upstream.
func (e *env) request(upstream netip.AddrPort) hbone.Request {
	return hbone.Request{
		Source:       clientID,
		Destination:  []spiffeid.ID{serverID},
		Addr:         e.addr,
		Authority:    upstream,
		ForwardedFor: netip.MustParseAddrPort("10.1.2.3:4567"),
		Baggage:      hbone.Baggage{Namespace: "shop", WorkloadName: "productpage-v1", ServiceName: "productpage", ServiceVersion: "v1"},
	}
}

func (e *env) dial(t testing.TB, upstream netip.AddrPort) *hbone.Stream {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	c, err := e.pool.Dial(ctx, e.request(upstream))
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c.(*hbone.Stream)
}

// upstream starts a TCP server that runs serve for every connection.
func upstream(t testing.TB, serve func(c *net.TCPConn)) netip.AddrPort {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				serve(c.(*net.TCPConn))
			}()
		}
	}()
	return ln.Addr().(*net.TCPAddr).AddrPort()
}

// echo copies what it reads back, then half-closes.
func echo(c *net.TCPConn) {
	_, _ = io.Copy(c, c)
	_ = c.CloseWrite()
}

// discard reads everything and reports the byte count on n.
func discard(n chan<- int64) func(c *net.TCPConn) {
	return func(c *net.TCPConn) {
		got, _ := io.Copy(io.Discard, c)
		n <- got
	}
}

// waitFor polls cond every 10 ms until it holds, failing after timeout.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// readAll reads c to EOF within timeout.
func readAll(t testing.TB, c net.Conn, timeout time.Duration) []byte {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(timeout))
	b, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	_ = c.SetReadDeadline(time.Time{})
	return b
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func mustAddrPort(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }
