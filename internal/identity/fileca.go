package identity

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"os"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/weftmesh/weft/internal/pki"
)

const (
	// DefaultTTL is the lifetime of a workload certificate when none is requested (istiod's
	// DEFAULT_WORKLOAD_CERT_TTL).
	DefaultTTL = 24 * time.Hour
	// DefaultMaxTTL caps the lifetime FileCA grants (istiod's MAX_WORKLOAD_CERT_TTL).
	DefaultMaxTTL = 90 * 24 * time.Hour
	// DefaultRootTTL is the lifetime of a root created by CreateRootCA (istiod's
	// CITADEL_SELF_SIGNED_CA_CERT_TTL).
	DefaultRootTTL = 3650 * 24 * time.Hour
)

// FileCAConfig configures a FileCA.
type FileCAConfig struct {
	// TrustDomain is the only trust domain FileCA signs identities in.
	TrustDomain spiffeid.TrustDomain
	// CertFile holds the PEM certificate FileCA signs with, optionally followed by the
	// certificates that issued it, root last (an intermediate CA, like Istio's cacerts).
	CertFile string
	// KeyFile holds the PEM private key of the first certificate of CertFile (PKCS#8, SEC 1 or
	// PKCS#1).
	KeyFile string
	// BundleFile optionally holds the PEM roots of the trust bundle. Bundle reads it on every
	// call, so a root appended to it during a rotation is picked up. When empty, the bundle is
	// the last certificate of CertFile.
	BundleFile string
	// MaxTTL caps the lifetime of a signed certificate; zero means DefaultMaxTTL.
	MaxTTL time.Duration
}

// FileCA is a CAClient that signs certificate signing requests locally with a CA certificate and
// key read from PEM files. It signs only CSRs whose signature is valid, whose key is ECDSA P-256
// and whose only subject alternative name is a workload identity
// (spiffe://<td>/ns/<ns>/sa/<sa>) in its trust domain.
//
// FileCA does not know which node asks: it is for tests, the demo and single-node local
// configurations. The controller's CA enforces that a node agent obtains only the identities
// of its own pods.
type FileCA struct {
	td         spiffeid.TrustDomain
	chain      []*x509.Certificate // chain[0] signs; the rest issued it, root last
	key        crypto.Signer
	bundleFile string
	maxTTL     time.Duration
}

var _ CAClient = (*FileCA)(nil)

// NewFileCA loads the CA certificate and key named by cfg.
func NewFileCA(cfg FileCAConfig) (*FileCA, error) {
	if cfg.TrustDomain.IsZero() {
		return nil, errors.New("fileca: empty trust domain")
	}
	certPEM, err := os.ReadFile(cfg.CertFile)
	if err != nil {
		return nil, fmt.Errorf("fileca: %w", err)
	}
	chain, err := pki.ParseCertificates(certPEM)
	if err != nil {
		return nil, fmt.Errorf("fileca: %s: %w", cfg.CertFile, err)
	}
	keyPEM, err := os.ReadFile(cfg.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("fileca: %w", err)
	}
	key, err := pki.ParsePrivateKey(keyPEM)
	if err != nil {
		return nil, fmt.Errorf("fileca: %s: %w", cfg.KeyFile, err)
	}
	ca := chain[0]
	if !ca.IsCA || ca.KeyUsage&x509.KeyUsageCertSign == 0 {
		return nil, fmt.Errorf("fileca: %s: first certificate is not a CA allowed to sign certificates", cfg.CertFile)
	}
	if pub, ok := ca.PublicKey.(interface{ Equal(crypto.PublicKey) bool }); !ok || !pub.Equal(key.Public()) {
		return nil, fmt.Errorf("fileca: %s does not match the certificate in %s", cfg.KeyFile, cfg.CertFile)
	}
	maxTTL := cfg.MaxTTL
	if maxTTL <= 0 {
		maxTTL = DefaultMaxTTL
	}
	return &FileCA{td: cfg.TrustDomain, chain: chain, key: key, bundleFile: cfg.BundleFile, maxTTL: maxTTL}, nil
}

// Sign checks csrDER and returns the signed certificate followed by the CA's chain, root last
// (the order istiod returns). A ttl of zero or less means DefaultTTL; the lifetime is capped at
// the configured maximum and at the CA certificate's own expiry.
func (c *FileCA) Sign(ctx context.Context, csrDER []byte, ttl time.Duration) ([]*x509.Certificate, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("fileca: %w", err)
	}
	csr, err := x509.ParseCertificateRequest(csrDER)
	if err != nil {
		return nil, fmt.Errorf("fileca: parse CSR: %w", err)
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, fmt.Errorf("fileca: CSR signature: %w", err)
	}
	id, err := c.checkSAN(csr)
	if err != nil {
		return nil, err
	}
	pub, ok := csr.PublicKey.(*ecdsa.PublicKey)
	if !ok || pub.Curve != elliptic.P256() {
		return nil, fmt.Errorf("fileca: %s: key must be ECDSA P-256, got %T", id, csr.PublicKey)
	}

	if ttl <= 0 {
		ttl = DefaultTTL
	}
	ttl = min(ttl, c.maxTTL)
	now := time.Now()
	// Backdate a little for clocks that lag behind ours, without stretching short test TTLs.
	notBefore := now.Add(-min(time.Minute, ttl/10))
	notAfter := now.Add(ttl)
	if ca := c.chain[0]; notAfter.After(ca.NotAfter) {
		notAfter = ca.NotAfter
	}
	if !notAfter.After(now) {
		return nil, errors.New("fileca: CA certificate has expired")
	}
	serial, err := pki.RandomSerial()
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		URIs:                  []*url.URL{id.URL()},
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, c.chain[0], pub, c.key)
	if err != nil {
		return nil, fmt.Errorf("fileca: sign %s: %w", id, err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("fileca: parse signed certificate: %w", err)
	}
	return append([]*x509.Certificate{leaf}, c.chain...), nil
}

// checkSAN returns the CSR's identity if its only subject alternative name is a workload
// identity in the CA's trust domain.
func (c *FileCA) checkSAN(csr *x509.CertificateRequest) (spiffeid.ID, error) {
	if len(csr.DNSNames) > 0 || len(csr.EmailAddresses) > 0 || len(csr.IPAddresses) > 0 {
		return spiffeid.ID{}, errors.New("fileca: CSR has DNS, email or IP SANs; only one SPIFFE URI SAN is allowed")
	}
	if len(csr.URIs) != 1 {
		return spiffeid.ID{}, fmt.Errorf("fileca: CSR has %d URI SANs, want exactly one SPIFFE ID", len(csr.URIs))
	}
	id, err := spiffeid.FromURI(csr.URIs[0])
	if err != nil {
		return spiffeid.ID{}, fmt.Errorf("fileca: CSR SAN %q: %w", csr.URIs[0], err)
	}
	if !id.MemberOf(c.td) {
		return spiffeid.ID{}, fmt.Errorf("fileca: %s is not in trust domain %s", id, c.td)
	}
	if _, _, err := NamespaceSA(id); err != nil {
		return spiffeid.ID{}, fmt.Errorf("fileca: %w", err)
	}
	return id, nil
}

// Bundle returns the trust bundle: the roots of BundleFile, or the root of the CA's chain.
func (c *FileCA) Bundle(ctx context.Context) ([]*x509.Certificate, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("fileca: %w", err)
	}
	if c.bundleFile == "" {
		return []*x509.Certificate{c.chain[len(c.chain)-1]}, nil
	}
	b, err := os.ReadFile(c.bundleFile)
	if err != nil {
		return nil, fmt.Errorf("fileca: bundle: %w", err)
	}
	roots, err := pki.ParseCertificates(b)
	if err != nil {
		return nil, fmt.Errorf("fileca: bundle %s: %w", c.bundleFile, err)
	}
	return roots, nil
}

// CreateRootCA generates a self-signed root CA for trust domain td (ECDSA P-256, valid for ttl,
// or DefaultRootTTL when ttl is zero or less) and writes its certificate and key as PEM to
// certFile (mode 0644) and keyFile (mode 0600). It never overwrites an existing file.
func CreateRootCA(td spiffeid.TrustDomain, certFile, keyFile string, ttl time.Duration) (*x509.Certificate, error) {
	if td.IsZero() {
		return nil, errors.New("fileca: empty trust domain")
	}
	if ttl <= 0 {
		ttl = DefaultRootTTL
	}
	certPEM, keyPEM, err := pki.NewRoot(td, ttl)
	if err != nil {
		return nil, fmt.Errorf("fileca: %w", err)
	}
	certs, err := pki.ParseCertificates(certPEM)
	if err != nil {
		return nil, fmt.Errorf("fileca: parse root: %w", err)
	}
	cert := certs[0]
	if err := writeNew(keyFile, keyPEM, 0o600); err != nil {
		return nil, err
	}
	if err := writeNew(certFile, certPEM, 0o644); err != nil {
		_ = os.Remove(keyFile)
		return nil, err
	}
	return cert, nil
}

// writeNew creates name with data; it fails if name exists.
func writeNew(name string, data []byte, perm os.FileMode) error {
	f, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return fmt.Errorf("fileca: %w", err)
	}
	if _, err := f.Write(data); err != nil {
		_ = f.Close()
		_ = os.Remove(name)
		return fmt.Errorf("fileca: write %s: %w", name, err)
	}
	if err := f.Close(); err != nil {
		_ = os.Remove(name)
		return fmt.Errorf("fileca: close %s: %w", name, err)
	}
	return nil
}
