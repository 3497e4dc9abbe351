package hbone_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/weftmesh/weft/internal/hbone"
)

func TestEchoIntegrity(t *testing.T) {
	closed := make(chan *hbone.Inbound, 1)
	e := newEnv(t, nil, func(s *hbone.Server, _ *hbone.PoolConfig) {
		s.StreamClosed = func(in *hbone.Inbound) { closed <- in }
	})
	up := upstream(t, echo)
	s := e.dial(t, up)

	const size = 8 << 20
	payload := make([]byte, size)
	_, _ = rand.Read(payload)
	want := sha256.Sum256(payload)

	writeErr := make(chan error, 1)
	go func() {
		// Uneven writes, then half-close.
		var err error
		for p := payload; len(p) > 0 && err == nil; {
			n := min(len(p), 1+len(p)%77777)
			_, err = s.Write(p[:n])
			p = p[n:]
		}
		if err == nil {
			err = s.CloseWrite()
		}
		writeErr <- err
	}()
	h := sha256.New()
	n, err := io.Copy(h, s)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	if err := <-writeErr; err != nil {
		t.Fatalf("write: %v", err)
	}
	if n != size || !bytes.Equal(h.Sum(nil), want[:]) {
		t.Fatalf("echoed %d bytes with a different digest, want %d identical bytes", n, size)
	}
	if got := s.Counters(); got.Sent() != size || got.Received() != size {
		t.Errorf("client counters sent %d received %d, want %d each", got.Sent(), got.Received(), size)
	}
	if s.PeerID() != serverID {
		t.Errorf("PeerID = %v, want %v", s.PeerID(), serverID)
	}
	select {
	case in := <-closed:
		if in.Counters.Received() != size || in.Counters.Sent() != size {
			t.Errorf("server counters received %d sent %d, want %d each", in.Counters.Received(), in.Counters.Sent(), size)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("StreamClosed not called")
	}
}

func TestHalfCloseClientFirst(t *testing.T) {
	e := newEnv(t, nil)
	up := upstream(t, func(c *net.TCPConn) {
		// Read the whole request, then answer after the client's half-close.
		req, _ := io.ReadAll(c)
		_, _ = c.Write(append([]byte("got "), req...))
		time.Sleep(50 * time.Millisecond)
		_, _ = c.Write([]byte(", bye"))
	})
	s := e.dial(t, up)
	if _, err := s.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	if err := s.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Write([]byte("x")); err == nil {
		t.Error("Write after CloseWrite succeeded")
	}
	if got := string(readAll(t, s, 5*time.Second)); got != "got ping, bye" {
		t.Fatalf("read %q, want %q", got, "got ping, bye")
	}
}

// TestHalfClose checks that each direction of a stream ends on its own, as TCP half-close
// does: after one side has ended its direction (and the other has read EOF), the other side
// still sends, and its data and its own EOF arrive.
func TestHalfClose(t *testing.T) {
	tests := []struct {
		name          string
		upstreamFirst bool
	}{
		{"upstream first", true},
		{"client first", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, nil)
			upstreamGot := make(chan string, 1)
			up := upstream(t, func(c *net.TCPConn) {
				if tt.upstreamFirst {
					_, _ = c.Write([]byte("banner"))
					_ = c.CloseWrite()
					b, _ := io.ReadAll(c)
					upstreamGot <- string(b)
					return
				}
				b, _ := io.ReadAll(c)
				upstreamGot <- string(b)
				time.Sleep(50 * time.Millisecond)
				_, _ = c.Write([]byte("late data"))
				_ = c.CloseWrite()
			})
			s := e.dial(t, up)
			if tt.upstreamFirst {
				if got := string(readAll(t, s, 5*time.Second)); got != "banner" {
					t.Fatalf("read %q, want banner", got)
				}
				time.Sleep(50 * time.Millisecond) // the client keeps its direction open a while
				if _, err := s.Write([]byte("late data")); err != nil {
					t.Fatalf("write after the upstream's EOF: %v", err)
				}
				if err := s.CloseWrite(); err != nil {
					t.Fatal(err)
				}
			} else {
				if _, err := s.Write([]byte("request")); err != nil {
					t.Fatal(err)
				}
				if err := s.CloseWrite(); err != nil {
					t.Fatal(err)
				}
				if _, err := s.Write([]byte("x")); err == nil {
					t.Error("Write after CloseWrite succeeded")
				}
			}
			want := "late data"
			if !tt.upstreamFirst {
				want = "request"
			}
			select {
			case got := <-upstreamGot:
				if got != want {
					t.Errorf("upstream read %q, want %q", got, want)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("upstream's read did not end")
			}
			if !tt.upstreamFirst {
				if got := string(readAll(t, s, 5*time.Second)); got != "late data" {
					t.Fatalf("read %q after the client's EOF, want %q", got, "late data")
				}
			}
		})
	}
}

func TestHalfCloseBothDirectionsConcurrently(t *testing.T) {
	const size = 4 << 20
	e := newEnv(t, nil)
	upstreamGot := make(chan int, 1)
	up := upstream(t, func(c *net.TCPConn) {
		done := make(chan struct{})
		go func() {
			_, _ = c.Write(bytes.Repeat([]byte("s"), size))
			_ = c.CloseWrite()
			close(done)
		}()
		b, _ := io.ReadAll(c)
		<-done
		upstreamGot <- len(b)
	})
	s := e.dial(t, up)
	go func() {
		_, _ = s.Write(bytes.Repeat([]byte("c"), size))
		_ = s.CloseWrite()
	}()
	if got := readAll(t, s, 10*time.Second); len(got) != size {
		t.Fatalf("read %d bytes, want %d", len(got), size)
	}
	select {
	case n := <-upstreamGot:
		if n != size {
			t.Fatalf("upstream read %d bytes, want %d", n, size)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("upstream's read did not end")
	}
}

func TestCloseResetsUpstream(t *testing.T) {
	e := newEnv(t, nil)
	ended := make(chan error, 1)
	up := upstream(t, func(c *net.TCPConn) {
		_, err := io.Copy(io.Discard, c)
		ended <- err
	})
	s := e.dial(t, up)
	if _, err := s.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	_ = s.Close()
	select {
	case <-ended:
	case <-time.After(5 * time.Second):
		t.Fatal("upstream connection not closed after the client closed the stream")
	}
	if _, err := s.Read(make([]byte, 1)); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Read after Close = %v, want net.ErrClosed", err)
	}
	if _, err := s.Write([]byte("x")); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Write after Close = %v, want net.ErrClosed", err)
	}
}

func TestDeadlines(t *testing.T) {
	blocked := make(chan struct{})
	e := newEnv(t, nil)
	up := upstream(t, func(c *net.TCPConn) {
		<-blocked // neither reads nor writes until released
		_, _ = c.Write([]byte("late"))
		_, _ = io.Copy(io.Discard, c)
	})
	defer close(blocked)
	s := e.dial(t, up)

	start := time.Now()
	_ = s.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	if _, err := s.Read(make([]byte, 10)); !isTimeout(err) || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Read past the deadline = %v, want a timeout", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("read deadline honoured after %v", d)
	}

	// A deadline set while a Read is blocked interrupts it.
	_ = s.SetReadDeadline(time.Time{})
	readErr := make(chan error, 1)
	go func() {
		_, err := s.Read(make([]byte, 10))
		readErr <- err
	}()
	time.Sleep(50 * time.Millisecond)
	_ = s.SetReadDeadline(time.Now())
	select {
	case err := <-readErr:
		if !isTimeout(err) {
			t.Fatalf("interrupted Read = %v, want a timeout", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("setting a deadline did not interrupt a blocked Read")
	}

	// Writes block once flow control and socket buffers are full; the deadline ends them.
	_ = s.SetWriteDeadline(time.Now().Add(300 * time.Millisecond))
	chunk := make([]byte, 1<<20)
	var err error
	for i := 0; i < 256 && err == nil; i++ {
		_, err = s.Write(chunk)
	}
	if !isTimeout(err) {
		t.Fatalf("Write past the deadline = %v, want a timeout", err)
	}

	// The stream still works after the deadlines are cleared.
	_ = s.SetDeadline(time.Time{})
	blocked <- struct{}{}
	buf := make([]byte, 4)
	if _, err := io.ReadFull(s, buf); err != nil || string(buf) != "late" {
		t.Fatalf("read after clearing deadlines = %q, %v", buf, err)
	}
}

func TestServerIdentityMismatch(t *testing.T) {
	e := newEnv(t, nil)
	up := upstream(t, echo)
	req := e.request(up)
	req.Destination = []spiffeid.ID{otherID}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if c, err := e.pool.Dial(ctx, req); err == nil {
		_ = c.Close()
		t.Fatal("Dial accepted a server presenting an unexpected identity")
	} else if !strings.Contains(err.Error(), "unexpected ID") {
		t.Logf("error: %v", err)
	}
	// One of several expected identities is enough.
	req.Destination = []spiffeid.ID{otherID, serverID}
	c, err := e.pool.Dial(ctx, req)
	if err != nil {
		t.Fatalf("Dial with the server among the expected identities: %v", err)
	}
	_ = c.Close()
	if n := e.calls.Load(); n != 1 {
		t.Errorf("handler called %d times, want 1", n)
	}
}

func TestClientFromOtherTrustDomain(t *testing.T) {
	e := newEnv(t, nil)
	foreign := newManager(t, "evil.example")
	// The foreign client trusts our server, so only the server's check can stop it.
	pool, err := hbone.NewPool(hbone.PoolConfig{Certs: mixedCerts{svids: foreign, trusts: []hbone.Certificates{foreign, e.certs}}, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	req := e.request(upstream(t, echo))
	req.Source = spiffeid.RequireFromString("spiffe://evil.example/ns/shop/sa/productpage")
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if c, err := pool.Dial(ctx, req); err == nil {
		_ = c.Close()
		t.Fatal("server accepted a client from another trust domain")
	}
	if n := e.calls.Load(); n != 0 {
		t.Errorf("handler called %d times, want 0", n)
	}
}

func TestRejectsNonHBONEClients(t *testing.T) {
	e := newEnv(t, nil)
	svid, err := e.certs.Get(t.Context(), clientID)
	if err != nil {
		t.Fatal(err)
	}
	cert := tls.Certificate{PrivateKey: svid.PrivateKey, Leaf: svid.Certificates[0]}
	for _, c := range svid.Certificates {
		cert.Certificate = append(cert.Certificate, c.Raw)
	}
	base := func() *tls.Config {
		cfg := tlsconfig.TLSClientConfig(e.certs.Bundle(), tlsconfig.AuthorizeID(serverID))
		cfg.Certificates = []tls.Certificate{cert}
		cfg.MinVersion = tls.VersionTLS12
		return cfg
	}
	tests := []struct {
		name string
		cfg  func() *tls.Config // nil: plaintext
	}{
		{"plaintext", nil},
		{"TLS 1.2", func() *tls.Config {
			c := base()
			c.MaxVersion = tls.VersionTLS12
			c.NextProtos = []string{"h2"}
			return c
		}},
		{"no ALPN", func() *tls.Config { c := base(); c.NextProtos = nil; return c }},
		{"ALPN http/1.1", func() *tls.Config { c := base(); c.NextProtos = []string{"http/1.1"}; return c }},
		{"no client certificate", func() *tls.Config { c := base(); c.Certificates = nil; c.NextProtos = []string{"h2"}; return c }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			raw, err := net.Dial("tcp", e.addr.String())
			if err != nil {
				t.Fatal(err)
			}
			defer raw.Close()
			_ = raw.SetDeadline(time.Now().Add(5 * time.Second))
			conn := raw
			if tt.cfg != nil {
				tc := tls.Client(raw, tt.cfg())
				if err := tc.Handshake(); err != nil {
					t.Logf("refused during the handshake: %v", err)
					return
				}
				conn = tc
			}
			// Whatever got through must not be served: send a CONNECT in both HTTP
			// versions' clothes and expect the connection to end without a 200.
			_, _ = io.WriteString(conn, "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\nCONNECT 127.0.0.1:1 HTTP/1.1\r\nHost: 127.0.0.1:1\r\n\r\n")
			b, err := io.ReadAll(conn)
			t.Logf("server answered %q, then %v", b, err)
			if isTimeout(err) {
				t.Fatal("the server kept the connection open")
			}
			if bytes.Contains(b, []byte(" 200 ")) {
				t.Fatalf("the server answered 200: %q", b)
			}
		})
	}
	if n := e.calls.Load(); n != 0 {
		t.Errorf("handler called %d times, want 0", n)
	}
}

func TestStatusErrors(t *testing.T) {
	errDenied := errors.New("denied by policy")
	closedPort := func() netip.AddrPort {
		ln, _ := listen(t)
		addr := ln.Addr().(*net.TCPAddr).AddrPort()
		_ = ln.Close()
		return addr
	}()
	tests := []struct {
		name    string
		handler hbone.Handler
		want    int
	}{
		{"denied", func(context.Context, *hbone.Inbound) (net.Conn, int, error) { return nil, 401, errDenied }, 401},
		{"upstream refused", dialAuthority, 503},
		{"no status", func(context.Context, *hbone.Inbound) (net.Conn, int, error) { return nil, 0, errDenied }, 503},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, tt.handler)
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()
			c, err := e.pool.Dial(ctx, e.request(closedPort))
			if err == nil {
				_ = c.Close()
				t.Fatal("Dial succeeded")
			}
			var se *hbone.StatusError
			if !errors.As(err, &se) || se.Code != tt.want {
				t.Fatalf("Dial error %v, want StatusError %d", err, tt.want)
			}
			// The connection stays usable for other streams.
			if n := e.ln.accepted.Load(); n != 1 {
				t.Errorf("%d connections, want 1", n)
			}
		})
	}
}

// rawClient returns an HTTP/2 client that speaks to the server as clientID, for requests the
// pool does not make.
func rawClient(t testing.TB, e *env) *http.Client {
	t.Helper()
	var protocols http.Protocols
	protocols.SetHTTP2(true)
	tr := &http.Transport{
		Protocols: &protocols,
		DialTLSContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			cfg := tlsconfig.MTLSClientConfig(svidSource{e.certs}, e.certs.Bundle(), tlsconfig.AuthorizeID(serverID))
			cfg.NextProtos = []string{"h2"}
			cfg.MinVersion = tls.VersionTLS13
			var d tls.Dialer
			d.Config = cfg
			return d.DialContext(ctx, network, e.addr.String())
		},
	}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

type svidSource struct{ certs hbone.Certificates }

func (s svidSource) GetX509SVID() (*x509svid.SVID, error) {
	return s.certs.Get(context.Background(), clientID)
}

func TestBadRequests(t *testing.T) {
	e := newEnv(t, nil)
	c := rawClient(t, e)
	tests := []struct {
		name, method, host string
	}{
		{"GET", http.MethodGet, "127.0.0.1:80"},
		{"POST", http.MethodPost, "127.0.0.1:80"},
		{"hostname authority", http.MethodConnect, "books.shop:80"},
		{"port zero", http.MethodConnect, "127.0.0.1:0"},
		{"no port", http.MethodConnect, "127.0.0.1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, err := http.NewRequestWithContext(t.Context(), tt.method, "https://"+tt.host+"/", nil)
			if err != nil {
				t.Fatal(err)
			}
			req.Host = tt.host
			resp, err := c.Do(req)
			if err != nil {
				t.Fatalf("request: %v", err)
			}
			_ = resp.Body.Close()
			if resp.StatusCode != http.StatusBadRequest {
				t.Fatalf("status %d, want 400", resp.StatusCode)
			}
		})
	}
	if n := e.calls.Load(); n != 0 {
		t.Errorf("handler called %d times, want 0", n)
	}
}

func TestHandlerSeesRequest(t *testing.T) {
	got := make(chan *hbone.Inbound, 1)
	up := upstream(t, echo)
	e := newEnv(t, func(ctx context.Context, in *hbone.Inbound) (net.Conn, int, error) {
		got <- in
		return dialAuthority(ctx, in)
	})
	tests := []struct {
		name string
		edit func(*hbone.Request)
	}{
		{"ipv4", func(*hbone.Request) {}},
		{"ipv6 source and host", func(r *hbone.Request) {
			r.ForwardedFor = netip.MustParseAddrPort("[2001:db8::7]:40000")
			r.ForwardedHost = "books.shop.svc.cluster.local"
			r.Baggage = hbone.Baggage{Cluster: "c1", Namespace: "shop", WorkloadKind: "cronjob", WorkloadName: "nightly",
				ServiceName: "nightly", ServiceVersion: "2026-08", Region: "r", Zone: "z"}
		}},
		{"no forwarded, no baggage", func(r *hbone.Request) {
			r.ForwardedFor = netip.AddrPort{}
			r.Baggage = hbone.Baggage{}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := e.request(up)
			tt.edit(&req)
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()
			c, err := e.pool.Dial(ctx, req)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			in := <-got
			if in.PeerID != clientID {
				t.Errorf("PeerID = %v, want %v", in.PeerID, clientID)
			}
			if in.PeerCert == nil || in.PeerCert.URIs[0].String() != clientID.String() {
				t.Errorf("PeerCert does not belong to %v", clientID)
			}
			if in.Authority != req.Authority {
				t.Errorf("Authority = %v, want %v", in.Authority, req.Authority)
			}
			if in.ForwardedFor != req.ForwardedFor || in.ForwardedHost != req.ForwardedHost {
				t.Errorf("Forwarded = %v, %q; want %v, %q", in.ForwardedFor, in.ForwardedHost, req.ForwardedFor, req.ForwardedHost)
			}
			wantBaggage := req.Baggage
			if wantBaggage.WorkloadName != "" && wantBaggage.WorkloadKind == "" {
				wantBaggage.WorkloadKind = "deployment"
			}
			if in.Baggage != wantBaggage {
				t.Errorf("Baggage = %+v, want %+v", in.Baggage, wantBaggage)
			}
			if in.LocalAddr != e.addr {
				t.Errorf("LocalAddr = %v, want %v", in.LocalAddr, e.addr)
			}
			if in.RemoteAddr.String() != c.LocalAddr().String() {
				t.Errorf("RemoteAddr = %v, want the client's %v", in.RemoteAddr, c.LocalAddr())
			}
			if c.RemoteAddr().String() != req.Authority.String() {
				t.Errorf("stream RemoteAddr = %v, want %v", c.RemoteAddr(), req.Authority)
			}
			for _, h := range []string{"User-Agent", "Accept-Encoding", "Content-Length"} {
				if v, ok := in.Header[h]; ok {
					t.Errorf("request carries %s: %q", h, v)
				}
			}
		})
	}
}

func TestRelay(t *testing.T) {
	// a ⇄ Relay ⇄ b, each side a real TCP connection, with half-close in both orders.
	pair := func() (*net.TCPConn, *net.TCPConn) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		s, err := ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		return c.(*net.TCPConn), s.(*net.TCPConn)
	}
	left, relayA := pair()
	relayB, right := pair()
	type counts struct{ aToB, bToA int64 }
	done := make(chan counts, 1)
	go func() {
		a, b, _ := hbone.Relay(relayA, relayB)
		done <- counts{a, b}
	}()
	payload := bytes.Repeat([]byte("x"), 3<<20)
	go func() {
		_, _ = left.Write(payload)
		_ = left.CloseWrite()
	}()
	got, err := io.ReadAll(right)
	if err != nil || len(got) != len(payload) {
		t.Fatalf("right read %d bytes, %v; want %d", len(got), err, len(payload))
	}
	// The left→right direction ended; right→left still works.
	if _, err := right.Write([]byte("reply")); err != nil {
		t.Fatal(err)
	}
	_ = right.CloseWrite()
	back, err := io.ReadAll(left)
	if err != nil || string(back) != "reply" {
		t.Fatalf("left read %q, %v", back, err)
	}
	select {
	case c := <-done:
		if c.aToB != int64(len(payload)) || c.bToA != 5 {
			t.Errorf("Relay counted %d and %d bytes, want %d and 5", c.aToB, c.bToA, len(payload))
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Relay did not return")
	}
}

func TestCloseUnblocksReadAndWrite(t *testing.T) {
	e := newEnv(t, nil)
	hold := make(chan struct{})
	defer close(hold)
	up := upstream(t, func(*net.TCPConn) { <-hold }) // never reads, never writes
	s := e.dial(t, up)
	errs := make(chan error, 2)
	go func() {
		_, err := s.Read(make([]byte, 1))
		errs <- err
	}()
	go func() {
		var err error
		for err == nil {
			_, err = s.Write(make([]byte, 1<<20))
		}
		errs <- err
	}()
	time.Sleep(300 * time.Millisecond) // let the writer fill every buffer
	_ = s.Close()
	for range 2 {
		select {
		case err := <-errs:
			if !errors.Is(err, net.ErrClosed) {
				t.Errorf("blocked call ended with %v, want net.ErrClosed", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("Close did not unblock a pending call")
		}
	}
}

func TestDialCancel(t *testing.T) {
	handlerCtx := make(chan context.Context, 1)
	e := newEnv(t, func(ctx context.Context, in *hbone.Inbound) (net.Conn, int, error) {
		handlerCtx <- ctx
		<-ctx.Done() // an upstream that never answers
		return nil, 503, ctx.Err()
	})
	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	c, err := e.pool.Dial(ctx, e.request(mustAddrPort("127.0.0.1:9")))
	if err == nil {
		_ = c.Close()
		t.Fatal("Dial succeeded")
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Dial error %v, want the context's", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("Dial returned after %v", d)
	}
	// The server's handler sees the stream end.
	select {
	case <-(<-handlerCtx).Done():
	case <-time.After(5 * time.Second):
		t.Fatal("handler context not cancelled after the client gave up")
	}
}

func TestServerClose(t *testing.T) {
	certs := newManager(t, "cluster.local")
	srv := &hbone.Server{Identity: serverID, Certs: certs, Handler: dialAuthority, Logger: quiet}
	ln, _ := listen(t)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	time.Sleep(20 * time.Millisecond)
	ctx, cancel := context.WithTimeout(t.Context(), time.Second)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	select {
	case err := <-served:
		if !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("Serve returned %v, want http.ErrServerClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return")
	}
	if err := (&hbone.Server{}).Serve(ln); err == nil {
		t.Error("a Server without identity served")
	}
}

func TestStreamOutlivesHandshakeTimeout(t *testing.T) {
	e := newEnv(t, nil, func(s *hbone.Server, _ *hbone.PoolConfig) { s.HandshakeTimeout = 100 * time.Millisecond })
	s := e.dial(t, upstream(t, echo))
	time.Sleep(400 * time.Millisecond)
	if _, err := io.WriteString(s, "still alive"); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, len("still alive"))
	_ = s.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(s, buf); err != nil {
		t.Fatalf("stream died after the handshake timeout: %v", err)
	}
}

// A Terminate server consumes the stream itself (as the waypoint serves HTTP on it) and sees
// the stream's description; refusing returns the status to the client.
func TestServerTerminate(t *testing.T) {
	e := newEnv(t, nil, func(s *hbone.Server, _ *hbone.PoolConfig) {
		s.Handler = nil
		s.Terminate = func(_ context.Context, in *hbone.Inbound) (func(net.Conn), int, error) {
			if in.Authority.Port() == 81 {
				return nil, http.StatusBadRequest, errors.New("no such port")
			}
			return func(c net.Conn) {
				defer c.Close()
				r := bufio.NewReader(c)
				line, _ := r.ReadString('\n')
				fmt.Fprintf(c, "%s for %s via %s", strings.TrimSpace(line), in.PeerID, in.Authority)
				_ = c.(*hbone.Stream).CloseWrite()
				_, _ = io.Copy(io.Discard, r) // until the client ends its direction: no reset
			}, 0, nil
		}
	})
	authority := netip.MustParseAddrPort("198.51.100.1:80")
	s, err := e.pool.Dial(t.Context(), hbone.Request{Source: clientID, Destination: []spiffeid.ID{serverID}, Addr: e.addr, Authority: authority})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	_, _ = io.WriteString(s, "hello\n")
	_ = s.(*hbone.Stream).CloseWrite()
	_ = s.SetReadDeadline(time.Now().Add(5 * time.Second))
	got, err := io.ReadAll(s)
	if err != nil {
		t.Fatal(err)
	}
	if want := "hello for " + clientID.String() + " via " + authority.String(); string(got) != want {
		t.Errorf("got %q, want %q", got, want)
	}
	_, err = e.pool.Dial(t.Context(), hbone.Request{Source: clientID, Destination: []spiffeid.ID{serverID}, Addr: e.addr, Authority: netip.MustParseAddrPort("198.51.100.1:81")})
	var se *hbone.StatusError
	if !errors.As(err, &se) || se.Code != http.StatusBadRequest {
		t.Errorf("refused dial: %v, want status 400", err)
	}
}
