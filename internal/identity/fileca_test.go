package identity_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/weftmesh/weft/internal/identity"
)

var testTD = spiffeid.RequireTrustDomainFromString("cluster.local")

// newFileCA creates a root CA for td in a temporary directory and returns a FileCA using it.
func newFileCA(t testing.TB, td spiffeid.TrustDomain) (*identity.FileCA, *x509.Certificate) {
	t.Helper()
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "ca.pem"), filepath.Join(dir, "ca-key.pem")
	root, err := identity.CreateRootCA(td, certFile, keyFile, 0)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := identity.NewFileCA(identity.FileCAConfig{TrustDomain: td, CertFile: certFile, KeyFile: keyFile})
	if err != nil {
		t.Fatal(err)
	}
	return ca, root
}

func mustKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func mustCSR(t testing.TB, key crypto.Signer, tmpl *x509.CertificateRequest) []byte {
	t.Helper()
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func mustURL(t testing.TB, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func TestFileCASign(t *testing.T) {
	ca, root := newFileCA(t, testTD)
	id := spiffeid.RequireFromString("spiffe://cluster.local/ns/shop/sa/books")
	key := mustKey(t)
	csr := mustCSR(t, key, &x509.CertificateRequest{URIs: []*url.URL{id.URL()}})

	for _, tt := range []struct {
		ttl, want time.Duration
	}{
		{ttl: 0, want: identity.DefaultTTL},
		{ttl: time.Hour, want: time.Hour},
		{ttl: 1000 * 24 * time.Hour, want: identity.DefaultMaxTTL},
	} {
		chain, err := ca.Sign(t.Context(), csr, tt.ttl)
		if err != nil {
			t.Fatalf("Sign(ttl %v): %v", tt.ttl, err)
		}
		if len(chain) != 2 || !chain[1].Equal(root) {
			t.Fatalf("chain has %d certificates, want leaf and root", len(chain))
		}
		leaf := chain[0]
		if got := time.Until(leaf.NotAfter); got > tt.want || got < tt.want-2*time.Second {
			t.Errorf("ttl %v: leaf expires in %v, want about %v", tt.ttl, got, tt.want)
		}
		gotID, _, err := x509svid.Verify(chain, x509bundle.FromX509Authorities(testTD, []*x509.Certificate{root}))
		if err != nil || gotID != id {
			t.Fatalf("Verify = %v, %v; want %v", gotID, err, id)
		}
		if leaf.IsCA || len(leaf.DNSNames) > 0 || len(leaf.IPAddresses) > 0 || len(leaf.URIs) != 1 {
			t.Errorf("leaf: IsCA %v, DNS %v, IP %v, URIs %v", leaf.IsCA, leaf.DNSNames, leaf.IPAddresses, leaf.URIs)
		}
		if !leaf.PublicKey.(*ecdsa.PublicKey).Equal(key.Public()) {
			t.Error("leaf does not carry the CSR's key")
		}
	}
}

func TestFileCARejects(t *testing.T) {
	ca, _ := newFileCA(t, testTD)
	key := mustKey(t)
	good := mustURL(t, "spiffe://cluster.local/ns/shop/sa/books")

	badSig := mustCSR(t, key, &x509.CertificateRequest{URIs: []*url.URL{good}})
	badSig[len(badSig)-3] ^= 0xff

	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name string
		csr  []byte
	}{
		{"other trust domain", mustCSR(t, key, &x509.CertificateRequest{URIs: []*url.URL{mustURL(t, "spiffe://evil.example/ns/shop/sa/books")}})},
		{"bad signature", badSig},
		{"garbage", []byte("not a CSR")},
		{"no SAN", mustCSR(t, key, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "books"}})},
		{"two URI SANs", mustCSR(t, key, &x509.CertificateRequest{URIs: []*url.URL{good, mustURL(t, "spiffe://cluster.local/ns/shop/sa/other")}})},
		{"non-SPIFFE URI", mustCSR(t, key, &x509.CertificateRequest{URIs: []*url.URL{mustURL(t, "https://cluster.local/ns/shop/sa/books")}})},
		{"DNS SAN besides the ID", mustCSR(t, key, &x509.CertificateRequest{URIs: []*url.URL{good}, DNSNames: []string{"books.shop"}})},
		{"IP SAN besides the ID", mustCSR(t, key, &x509.CertificateRequest{URIs: []*url.URL{good}, IPAddresses: []net.IP{net.IPv4(10, 0, 0, 1)}})},
		{"email SAN besides the ID", mustCSR(t, key, &x509.CertificateRequest{URIs: []*url.URL{good}, EmailAddresses: []string{"a@b.c"}})},
		{"not a workload path", mustCSR(t, key, &x509.CertificateRequest{URIs: []*url.URL{mustURL(t, "spiffe://cluster.local/ns/shop/sa/books/x")}})},
		{"trust domain ID", mustCSR(t, key, &x509.CertificateRequest{URIs: []*url.URL{mustURL(t, "spiffe://cluster.local")}})},
		{"RSA key", mustCSR(t, rsaKey, &x509.CertificateRequest{URIs: []*url.URL{good}})},
		{"P-384 key", mustCSR(t, p384, &x509.CertificateRequest{URIs: []*url.URL{good}})},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if chain, err := ca.Sign(t.Context(), tt.csr, time.Hour); err == nil {
				t.Fatalf("Sign succeeded for %s", chain[0].URIs)
			}
		})
	}

	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := ca.Sign(ctx, mustCSR(t, key, &x509.CertificateRequest{URIs: []*url.URL{good}}), time.Hour); err == nil {
		t.Error("Sign with a cancelled context succeeded")
	}
}

func TestCreateRootCA(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "ca.pem"), filepath.Join(dir, "ca-key.pem")
	root, err := identity.CreateRootCA(testTD, certFile, keyFile, 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if !root.IsCA || root.KeyUsage&x509.KeyUsageCertSign == 0 || root.CheckSignatureFrom(root) != nil {
		t.Error("root is not a self-signed CA")
	}
	if len(root.URIs) != 1 || root.URIs[0].String() != "spiffe://cluster.local" {
		t.Errorf("root URIs = %v, want the trust domain ID", root.URIs)
	}
	if _, ok := root.PublicKey.(*ecdsa.PublicKey); !ok {
		t.Errorf("root key is %T, want ECDSA", root.PublicKey)
	}
	fi, err := os.Stat(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("key file mode %v, want 0600", fi.Mode().Perm())
	}
	if _, err := identity.CreateRootCA(testTD, certFile, filepath.Join(dir, "other-key.pem"), 0); err == nil {
		t.Error("CreateRootCA overwrote an existing certificate")
	}
	if _, err := identity.CreateRootCA(testTD, filepath.Join(dir, "other.pem"), keyFile, 0); err == nil {
		t.Error("CreateRootCA overwrote an existing key")
	}

	// A key that does not belong to the certificate is refused.
	other := filepath.Join(t.TempDir(), "x")
	if _, err := identity.CreateRootCA(testTD, other+".pem", other+"-key.pem", 0); err != nil {
		t.Fatal(err)
	}
	if _, err := identity.NewFileCA(identity.FileCAConfig{TrustDomain: testTD, CertFile: certFile, KeyFile: other + "-key.pem"}); err == nil {
		t.Error("NewFileCA accepted a key of another certificate")
	}
}

func TestFileCABundleFile(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "ca.pem"), filepath.Join(dir, "ca-key.pem")
	root1, err := identity.CreateRootCA(testTD, certFile, keyFile, 0)
	if err != nil {
		t.Fatal(err)
	}
	root2, err := identity.CreateRootCA(testTD, filepath.Join(dir, "ca2.pem"), filepath.Join(dir, "ca2-key.pem"), 0)
	if err != nil {
		t.Fatal(err)
	}
	bundleFile := filepath.Join(dir, "bundle.pem")
	writePEM(t, bundleFile, root1)
	ca, err := identity.NewFileCA(identity.FileCAConfig{TrustDomain: testTD, CertFile: certFile, KeyFile: keyFile, BundleFile: bundleFile})
	if err != nil {
		t.Fatal(err)
	}
	roots, err := ca.Bundle(t.Context())
	if err != nil || len(roots) != 1 || !roots[0].Equal(root1) {
		t.Fatalf("Bundle = %d roots, %v; want root1", len(roots), err)
	}
	writePEM(t, bundleFile, root1, root2)
	roots, err = ca.Bundle(t.Context())
	if err != nil || len(roots) != 2 || !roots[0].Equal(root1) || !roots[1].Equal(root2) {
		t.Fatalf("after append: Bundle = %d roots, %v; want root1, root2", len(roots), err)
	}
}

func writePEM(t testing.TB, name string, certs ...*x509.Certificate) {
	t.Helper()
	var b []byte
	for _, c := range certs {
		b = append(b, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	if err := os.WriteFile(name, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestFileCAIntermediate(t *testing.T) {
	dir := t.TempDir()
	rootCert, rootKey := filepath.Join(dir, "root.pem"), filepath.Join(dir, "root-key.pem")
	root, err := identity.CreateRootCA(testTD, rootCert, rootKey, 0)
	if err != nil {
		t.Fatal(err)
	}
	rootSigner := loadKey(t, rootKey)
	interKey := mustKey(t)
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(2),
		Subject:               pkix.Name{CommonName: "intermediate"},
		NotBefore:             time.Now().Add(-time.Minute),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, root, interKey.Public(), rootSigner)
	if err != nil {
		t.Fatal(err)
	}
	inter, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile := filepath.Join(dir, "ca-cert.pem"), filepath.Join(dir, "ca-key.pem")
	writePEM(t, certFile, inter, root)
	keyDER, err := x509.MarshalPKCS8PrivateKey(interKey)
	if err != nil {
		t.Fatal(err)
	}
	writePEMRaw(t, keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}))

	ca, err := identity.NewFileCA(identity.FileCAConfig{TrustDomain: testTD, CertFile: certFile, KeyFile: keyFile})
	if err != nil {
		t.Fatal(err)
	}
	m := newManager(t, ca, identity.Options{})
	svid, err := m.Get(t.Context(), books)
	if err != nil {
		t.Fatal(err)
	}
	if len(svid.Certificates) != 2 || !svid.Certificates[1].Equal(inter) {
		t.Fatalf("SVID chain has %d certificates, want the leaf and the intermediate", len(svid.Certificates))
	}
	b, err := m.Bundle().GetX509BundleForTrustDomain(testTD)
	if err != nil || len(b.X509Authorities()) != 1 || !b.HasX509Authority(root) {
		t.Fatalf("bundle = %v, %v; want the root only", b, err)
	}
	if _, _, err := x509svid.Verify(svid.Certificates, m.Bundle()); err != nil {
		t.Fatalf("SVID does not verify: %v", err)
	}
}

func loadKey(t testing.TB, name string) crypto.Signer {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(b)
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return k.(crypto.Signer)
}
