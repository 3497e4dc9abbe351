package hbone_test

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"

	"github.com/weftmesh/weft/internal/hbone"
)

// TestInteropNetHTTPClient: net/http's HTTP/2 client CONNECTs to the server, and half-close
// works in the order net/http's own server cannot do: the upstream ends its direction first,
// the client reads EOF and then goes on sending.
func TestInteropNetHTTPClient(t *testing.T) {
	e := newEnv(t, nil)
	upstreamGot := make(chan string, 1)
	up := upstream(t, func(c *net.TCPConn) {
		_, _ = c.Write([]byte("banner"))
		_ = c.CloseWrite()
		b, _ := io.ReadAll(c)
		upstreamGot <- string(b)
	})
	client := rawClient(t, e)
	pr, pw := io.Pipe()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodConnect, "https://"+up.String(), pr)
	if err != nil {
		t.Fatal(err)
	}
	req.Host = up.String()
	resp, err := client.Transport.RoundTrip(req)
	if err != nil {
		t.Fatalf("CONNECT: %v", err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d, want 200", resp.StatusCode)
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil || string(b) != "banner" {
		t.Fatalf("read %q, %v; want banner and EOF", b, err)
	}
	if _, err := pw.Write([]byte("late data")); err != nil {
		t.Fatalf("write after the server's END_STREAM: %v", err)
	}
	_ = pw.Close()
	select {
	case got := <-upstreamGot:
		if got != "late data" {
			t.Fatalf("upstream read %q, want %q", got, "late data")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("upstream's read did not end")
	}
	_ = resp.Body.Close()
}

// TestInteropNetHTTPServer: the pool CONNECTs to net/http's HTTP/2 server, whose handler echoes
// the request body.
func TestInteropNetHTTPServer(t *testing.T) {
	certs := newManager(t, "cluster.local")
	svid, err := certs.Get(t.Context(), serverID)
	if err != nil {
		t.Fatal(err)
	}
	cfg := tlsconfig.MTLSServerConfig(svid, certs.Bundle(), tlsconfig.AuthorizeAny())
	cfg.NextProtos = []string{"h2"}
	cfg.MinVersion = tls.VersionTLS13
	var protocols http.Protocols
	protocols.SetHTTP2(true)
	gotMethod := make(chan string, 1)
	srv := &http.Server{
		Protocols: &protocols,
		TLSConfig: cfg,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			gotMethod <- r.Method + " " + r.Host
			w.WriteHeader(http.StatusOK)
			rc := http.NewResponseController(w)
			_ = rc.Flush()
			buf := make([]byte, 32<<10)
			for {
				n, err := r.Body.Read(buf)
				if n > 0 {
					_, _ = w.Write(buf[:n])
					_ = rc.Flush()
				}
				if err != nil {
					return
				}
			}
		}),
	}
	ln, addr := listen(t)
	go func() { _ = srv.ServeTLS(ln, "", "") }()
	t.Cleanup(func() { _ = srv.Close() })

	pool, err := hbone.NewPool(hbone.PoolConfig{Certs: certs, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	c, err := pool.Dial(ctx, hbone.Request{
		Source:      clientID,
		Destination: []spiffeid.ID{serverID},
		Addr:        addr,
		Authority:   mustAddrPort("10.0.0.2:8080"),
	})
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	defer c.Close()
	if got := <-gotMethod; got != "CONNECT 10.0.0.2:8080" {
		t.Errorf("server saw %q", got)
	}
	payload := make([]byte, 3<<20)
	for i := range payload {
		payload[i] = byte(i * 7)
	}
	go func() {
		_, _ = c.Write(payload)
		_ = c.(*hbone.Stream).CloseWrite()
	}()
	got := readAll(t, c, 10*time.Second)
	if string(got) != string(payload) {
		t.Fatalf("echo of %d bytes came back as %d different bytes", len(payload), len(got))
	}
}
