package ca_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	cav1 "github.com/weftmesh/weft/api/ca/v1"
	"github.com/weftmesh/weft/controller/ca"
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

// tokenFileCredentials are per-RPC credentials that send the token in file as
// "authorization: Bearer <token>", as a node agent does. The file is read on every call, so a
// rotated token is used at once; the token is sent only over TLS.
type tokenFileCredentials struct{ file string }

func (c tokenFileCredentials) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	b, err := os.ReadFile(c.file)
	if err != nil {
		return nil, err
	}
	token := bytes.TrimSpace(b)
	if len(token) == 0 {
		return nil, errors.New(c.file + " is empty")
	}
	return map[string]string{"authorization": "Bearer " + string(token)}, nil
}

func (tokenFileCredentials) RequireTransportSecurity() bool { return true }

// dial connects to the CA at addr as a node agent would: the controller's TLS verified with
// roots (the root ConfigMap's content) and the token read from tokenFile on every call.
func dial(t testing.TB, addr string, roots []*x509.Certificate, tokenFile string) cav1.CertificateServiceClient {
	t.Helper()
	pool := x509.NewCertPool()
	for _, r := range roots {
		pool.AddCert(r)
	}
	conn, err := grpc.NewClient("passthrough:///"+addr,
		grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{
			RootCAs: pool, ServerName: "weft-controller.weft-system.svc", MinVersion: tls.VersionTLS13,
		})),
		grpc.WithPerRPCCredentials(tokenFileCredentials{file: tokenFile}),
	)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return cav1.NewCertificateServiceClient(conn)
}

// createSVID asks the CA for an SVID for id valid for ttl (zero: the CA's default) as a node
// agent would: a fresh P-256 key and a CSR with id as its only URI SAN. An error is the RPC's;
// an answer that is not a valid X509-SVID for id with that key fails the test.
func createSVID(ctx context.Context, t testing.TB, client cav1.CertificateServiceClient, id string, ttl time.Duration) (*x509svid.SVID, error) {
	t.Helper()
	key := mustKey(t)
	resp, err := client.CreateCertificate(ctx, &cav1.CreateCertificateRequest{
		Csr:             csrFor(t, key, id),
		ValiditySeconds: int64(ttl / time.Second),
	})
	if err != nil {
		return nil, err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	svid, err := x509svid.ParseRaw(bytes.Join(resp.GetCertChain(), nil), keyDER)
	if err != nil {
		t.Fatalf("CreateCertificate for %s: %v", id, err)
	}
	if svid.ID.String() != id {
		t.Fatalf("CreateCertificate for %s returned an SVID for %s", id, svid.ID)
	}
	return svid, nil
}

// trustBundle returns the CA's roots from GetTrustBundle as the bundle of testTD.
func trustBundle(ctx context.Context, t testing.TB, client cav1.CertificateServiceClient) *x509bundle.Bundle {
	t.Helper()
	resp, err := client.GetTrustBundle(ctx, &cav1.GetTrustBundleRequest{})
	if err != nil {
		t.Fatalf("GetTrustBundle: %v", err)
	}
	if len(resp.GetRoots()) == 0 {
		t.Fatal("GetTrustBundle returned no root")
	}
	return x509bundle.FromX509Authorities(testTD, parseChain(t, resp.GetRoots()))
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

// TestGRPCEndToEnd has a node agent's client obtain SVIDs from the CA over gRPC with TLS on
// loopback, with the token read from its file on every call.
func TestGRPCEndToEnd(t *testing.T) {
	e := newEnv(t, ca.Options{}, testPods()...)
	addr := serve(t, e.ca)
	tokenFile := filepath.Join(t.TempDir(), "token")
	writeToken(t, tokenFile, tokAgentA)
	client := dial(t, addr, publishedRoots(t, e), tokenFile)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	books := spiffeid.RequireFromString("spiffe://cluster.local/ns/shop/sa/books")
	svid, err := createSVID(ctx, t, client, books.String(), 24*time.Hour)
	if err != nil {
		t.Fatalf("CreateCertificate(%s): %v", books, err)
	}
	if got, _, err := x509svid.Verify(svid.Certificates, trustBundle(ctx, t, client)); err != nil || got != books {
		t.Fatalf("SVID %s does not verify against the CA's trust bundle: %v", got, err)
	}
	if life := svid.Certificates[0].NotAfter.Sub(svid.Certificates[0].NotBefore); life < 23*time.Hour || life > 25*time.Hour {
		t.Errorf("SVID valid for %s, want 24 h", life)
	}

	// Refusals reach the agent with their code and reason.
	_, err = createSVID(ctx, t, client, "spiffe://cluster.local/ns/shop/sa/reviews", time.Hour)
	if status.Code(err) != codes.PermissionDenied {
		t.Errorf("identity of a pod on another node: %v, want PermissionDenied", err)
	}

	// The token file is read on every call: a rotated token is used at once.
	writeToken(t, tokenFile, tokWaypoint)
	svid, err = createSVID(ctx, t, client, "spiffe://cluster.local/ns/shop/sa/waypoint", time.Hour)
	if err != nil {
		t.Fatalf("CreateCertificate as the waypoint after the token changed: %v", err)
	}
	if life := svid.Certificates[0].NotAfter.Sub(svid.Certificates[0].NotBefore); life > time.Hour+time.Minute {
		t.Errorf("asked for 1 h, got %s", life)
	}
	writeToken(t, tokenFile, tokBad)
	if _, err := client.GetTrustBundle(ctx, &cav1.GetTrustBundleRequest{}); status.Code(err) != codes.Unauthenticated {
		t.Errorf("GetTrustBundle with a bad token: %v, want Unauthenticated", err)
	}
}
