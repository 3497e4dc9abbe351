package ca_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"github.com/weftmesh/weft/controller/ca"
	"github.com/weftmesh/weft/nodeagent/identity"
)

// serve serves c's CertificateService over TLS on loopback until the test ends and returns
// its address.
func serve(t testing.TB, c *ca.CA) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(grpc.Creds(credentials.NewTLS(c.ServerTLSConfig())))
	c.Register(srv)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	return lis.Addr().String()
}

// dial connects to the CA at addr as a node agent would: the controller's TLS verified with
// roots (the root ConfigMap's content) and the token read from tokenFile on every call.
func dial(t testing.TB, addr string, roots []*x509.Certificate, tokenFile string) *grpc.ClientConn {
	t.Helper()
	pool := x509.NewCertPool()
	for _, r := range roots {
		pool.AddCert(r)
	}
	conn, err := grpc.NewClient("passthrough:///"+addr,
		grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{
			RootCAs: pool, ServerName: "weft-controller.weft-system.svc", MinVersion: tls.VersionTLS13,
		})),
		grpc.WithPerRPCCredentials(identity.TokenCredentials{File: tokenFile}),
	)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

func writeToken(t testing.TB, file, token string) {
	t.Helper()
	// Replace atomically, as the kubelet does.
	tmp := file + ".tmp"
	if err := os.WriteFile(tmp, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, file); err != nil {
		t.Fatal(err)
	}
}

// TestGRPCEndToEnd has a node agent's identity.Manager obtain SVIDs from the CA over gRPC with
// TLS on loopback, with GRPCCA and TokenCredentials.
func TestGRPCEndToEnd(t *testing.T) {
	e := newEnv(t, ca.Options{}, testPods()...)
	addr := serve(t, e.ca)
	tokenFile := filepath.Join(t.TempDir(), "token")
	writeToken(t, tokenFile, tokAgentA)
	conn := dial(t, addr, publishedRoots(t, e), tokenFile)
	client := identity.NewGRPCCA(conn)

	m, err := identity.NewManager(client, identity.Options{
		TrustDomain: testTD,
		MinBackoff:  10 * time.Millisecond,
		MaxBackoff:  50 * time.Millisecond,
		Logger:      slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	books := spiffeid.RequireFromString("spiffe://cluster.local/ns/shop/sa/books")
	svid, err := m.Get(ctx, books)
	if err != nil {
		t.Fatalf("Manager.Get(%s): %v", books, err)
	}
	if got, _, err := x509svid.Verify(svid.Certificates, m.Bundle()); err != nil || got != books {
		t.Fatalf("SVID %s does not verify against the Manager's bundle: %v", got, err)
	}
	if life := svid.Certificates[0].NotAfter.Sub(svid.Certificates[0].NotBefore); life < 23*time.Hour || life > 25*time.Hour {
		t.Errorf("SVID valid for %s, want 24 h", life)
	}

	// Refusals reach the agent with their code and reason.
	reviewsID := spiffeid.RequireFromString("spiffe://cluster.local/ns/shop/sa/reviews")
	_, err = client.Sign(ctx, csrFor(t, mustKey(t), reviewsID.String()), time.Hour)
	if status.Code(err) != codes.PermissionDenied {
		t.Errorf("identity of a pod on another node: %v, want PermissionDenied", err)
	}

	// The token file is read on every call: a rotated token is used at once.
	writeToken(t, tokenFile, tokWaypoint)
	chain, err := client.Sign(ctx, csrFor(t, mustKey(t), "spiffe://cluster.local/ns/shop/sa/waypoint"), time.Hour)
	if err != nil {
		t.Fatalf("Sign as the waypoint after the token changed: %v", err)
	}
	if life := chain[0].NotAfter.Sub(chain[0].NotBefore); life > time.Hour+time.Minute {
		t.Errorf("asked for 1 h, got %s", life)
	}
	writeToken(t, tokenFile, tokBad)
	if _, err := client.Bundle(ctx); status.Code(err) != codes.Unauthenticated {
		t.Errorf("Bundle with a bad token: %v, want Unauthenticated", err)
	}
}
