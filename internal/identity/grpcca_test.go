package identity_test

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	cav1 "github.com/weftmesh/weft/api/ca/v1"
	"github.com/weftmesh/weft/internal/identity"
)

// fakeCAServer is a CertificateService that signs with a FileCA and records what it received.
type fakeCAServer struct {
	cav1.UnimplementedCertificateServiceServer
	ca *identity.FileCA

	mu       sync.Mutex
	auth     []string // authorization metadata of every call
	validity []int64  // validity_seconds of every CreateCertificate
	empty    bool     // answer with no certificates
	deny     bool     // refuse with PERMISSION_DENIED
}

func (s *fakeCAServer) record(ctx context.Context) {
	md, _ := metadata.FromIncomingContext(ctx)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.auth = append(s.auth, strings.Join(md.Get("authorization"), ","))
}

func (s *fakeCAServer) CreateCertificate(ctx context.Context, req *cav1.CreateCertificateRequest) (*cav1.CreateCertificateResponse, error) {
	s.record(ctx)
	s.mu.Lock()
	s.validity = append(s.validity, req.ValiditySeconds)
	empty, deny := s.empty, s.deny
	s.mu.Unlock()
	if deny {
		return nil, status.Error(codes.PermissionDenied, "not on your node")
	}
	if empty {
		return &cav1.CreateCertificateResponse{}, nil
	}
	chain, err := s.ca.Sign(ctx, req.Csr, time.Duration(req.ValiditySeconds)*time.Second)
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	resp := &cav1.CreateCertificateResponse{}
	for _, c := range chain {
		resp.CertChain = append(resp.CertChain, c.Raw)
	}
	return resp, nil
}

func (s *fakeCAServer) GetTrustBundle(ctx context.Context, _ *cav1.GetTrustBundleRequest) (*cav1.GetTrustBundleResponse, error) {
	s.record(ctx)
	roots, err := s.ca.Bundle(ctx)
	if err != nil {
		return nil, err
	}
	resp := &cav1.GetTrustBundleResponse{}
	for _, c := range roots {
		resp.Roots = append(resp.Roots, c.Raw)
	}
	return resp, nil
}

// serverTLS returns a self-signed TLS certificate for 127.0.0.1 and a pool trusting it.
func serverTLS(t testing.TB) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	key := mustKey(t)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		NotBefore:    time.Now().Add(-time.Minute),
		NotAfter:     time.Now().Add(time.Hour),
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: cert}, pool
}

// startFakeCA serves srv over TLS on loopback and returns a client connection that sends the
// token in tokenFile.
func startFakeCA(t testing.TB, srv *fakeCAServer, tokenFile string) *grpc.ClientConn {
	t.Helper()
	cert, pool := serverTLS(t)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer(grpc.Creds(credentials.NewTLS(&tls.Config{Certificates: []tls.Certificate{cert}})))
	cav1.RegisterCertificateServiceServer(s, srv)
	go func() { _ = s.Serve(lis) }()
	t.Cleanup(s.Stop)
	conn, err := grpc.NewClient("passthrough:///"+lis.Addr().String(),
		grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: pool})),
		grpc.WithPerRPCCredentials(identity.TokenCredentials{File: tokenFile}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

func writeFile(t testing.TB, name, data string) {
	t.Helper()
	if err := os.WriteFile(name, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestGRPCCA(t *testing.T) {
	fileCA, root := newFileCA(t, testTD)
	srv := &fakeCAServer{ca: fileCA}
	tokenFile := filepath.Join(t.TempDir(), "token")
	writeFile(t, tokenFile, "token-1\n")
	client := identity.NewGRPCCA(startFakeCA(t, srv, tokenFile))
	ctx := context.Background()
	books := spiffeid.RequireFromString("spiffe://cluster.local/ns/shop/sa/books")
	csr := func() []byte {
		return mustCSR(t, mustKey(t), &x509.CertificateRequest{URIs: []*url.URL{books.URL()}})
	}

	tests := []struct {
		name     string
		ttl      time.Duration
		validity int64 // validity_seconds sent
	}{
		{"hours", 90 * time.Minute, 5400},
		{"rounded up", 1500 * time.Millisecond, 2},
		{"default", 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			chain, err := client.Sign(ctx, csr(), tt.ttl)
			if err != nil {
				t.Fatal(err)
			}
			if len(chain) != 2 || !chain[1].Equal(root) {
				t.Fatalf("chain of %d certificates, want leaf and root", len(chain))
			}
			if id, err := x509svid.IDFromCert(chain[0]); err != nil || id != books {
				t.Errorf("leaf for %v (%v), want %s", id, err, books)
			}
			srv.mu.Lock()
			got := srv.validity[len(srv.validity)-1]
			srv.mu.Unlock()
			if got != tt.validity {
				t.Errorf("validity_seconds %d, want %d", got, tt.validity)
			}
		})
	}

	roots, err := client.Bundle(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(roots) != 1 || !roots[0].Equal(root) {
		t.Errorf("bundle of %d roots, want the FileCA's root", len(roots))
	}

	// The token is read on every call.
	writeFile(t, tokenFile, "token-2")
	if _, err := client.Bundle(ctx); err != nil {
		t.Fatal(err)
	}
	srv.mu.Lock()
	auth := slices.Clone(srv.auth)
	srv.mu.Unlock()
	if want := []string{"Bearer token-1", "Bearer token-1", "Bearer token-1", "Bearer token-1", "Bearer token-2"}; !slices.Equal(auth, want) {
		t.Errorf("authorization metadata %q, want %q", auth, want)
	}

	srv.mu.Lock()
	srv.deny = true
	srv.mu.Unlock()
	if _, err := client.Sign(ctx, csr(), time.Hour); status.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), "not on your node") {
		t.Errorf("refused Sign: %v, want PermissionDenied with the reason", err)
	}
	srv.mu.Lock()
	srv.deny, srv.empty = false, true
	srv.mu.Unlock()
	if _, err := client.Sign(ctx, csr(), time.Hour); err == nil || !strings.Contains(err.Error(), "no certificate") {
		t.Errorf("empty answer: %v, want an error", err)
	}

	// A missing token fails the call before it is sent.
	if err := os.Remove(tokenFile); err != nil {
		t.Fatal(err)
	}
	if _, err := client.Bundle(ctx); err == nil {
		t.Error("Bundle without a token file succeeded")
	}
}

func TestTokenCredentials(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name    string
		content *string // nil: no file
		want    string  // authorization value; "" means an error
	}{
		{"token", new("abc.def.ghi\n"), "Bearer abc.def.ghi"},
		{"spaces", new("  tok  \n\n"), "Bearer tok"},
		{"empty", new("\n"), ""},
		{"missing", nil, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			file := filepath.Join(dir, tt.name)
			if tt.content != nil {
				writeFile(t, file, *tt.content)
			}
			creds := identity.TokenCredentials{File: file}
			if !creds.RequireTransportSecurity() {
				t.Error("RequireTransportSecurity is false")
			}
			md, err := creds.GetRequestMetadata(context.Background())
			if tt.want == "" {
				if err == nil {
					t.Errorf("metadata %v, want an error", md)
				}
				return
			}
			if err != nil || md["authorization"] != tt.want {
				t.Errorf("metadata %v (%v), want authorization %q", md, err, tt.want)
			}
		})
	}
}

// TestTokenCredentialsNeedTLS checks that gRPC refuses to send the token in plaintext.
func TestTokenCredentialsNeedTLS(t *testing.T) {
	tokenFile := filepath.Join(t.TempDir(), "token")
	writeFile(t, tokenFile, "secret-token")
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	fileCA, _ := newFileCA(t, testTD)
	srv := &fakeCAServer{ca: fileCA}
	s := grpc.NewServer()
	cav1.RegisterCertificateServiceServer(s, srv)
	go func() { _ = s.Serve(lis) }()
	t.Cleanup(s.Stop)
	conn, err := grpc.NewClient("passthrough:///"+lis.Addr().String(),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithPerRPCCredentials(identity.TokenCredentials{File: tokenFile}))
	if err == nil {
		defer conn.Close()
		_, err = identity.NewGRPCCA(conn).Bundle(context.Background())
	}
	if err == nil {
		t.Fatal("the token was sent over a plaintext connection")
	}
	srv.mu.Lock()
	defer srv.mu.Unlock()
	if len(srv.auth) != 0 {
		t.Errorf("the server received %q", srv.auth)
	}
}
