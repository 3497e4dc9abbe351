package identity

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"fmt"
	"io"
	"log/slog"
	"net/url"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

const redacted = "identity.privateKey{REDACTED}"

// privateKey is the workload key of one SVID. It is a crypto.Signer and nothing else: the
// ECDSA key inside cannot be reached from outside the package, so it cannot be marshalled (for
// example by x509.MarshalPKCS8PrivateKey or x509svid.SVID.Marshal), and every fmt verb and slog
// render it as a redacted placeholder.
type privateKey struct {
	k *ecdsa.PrivateKey
}

// newPrivateKey generates an ECDSA P-256 key.
func newPrivateKey() (*privateKey, error) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("identity: generate key: %w", err)
	}
	return &privateKey{k: k}, nil
}

// Public implements crypto.Signer.
func (p *privateKey) Public() crypto.PublicKey { return p.k.Public() }

// Sign implements crypto.Signer.
func (p *privateKey) Sign(r io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	return p.k.Sign(r, digest, opts)
}

// Format implements fmt.Formatter so that no verb prints the key.
func (p *privateKey) Format(f fmt.State, _ rune) { _, _ = io.WriteString(f, redacted) }

// LogValue implements slog.LogValuer so that structured logs never contain the key.
func (p *privateKey) LogValue() slog.Value { return slog.StringValue(redacted) }

// MarshalText keeps encoders that honour encoding.TextMarshaler away from the key.
func (p *privateKey) MarshalText() ([]byte, error) { return []byte(redacted), nil }

// newCSR returns a DER certificate signing request for id, signed by key: no subject, exactly one
// URI SAN (the SPIFFE ID) and nothing else.
func newCSR(id spiffeid.ID, key crypto.Signer) ([]byte, error) {
	tmpl := &x509.CertificateRequest{
		SignatureAlgorithm: x509.ECDSAWithSHA256,
		URIs:               []*url.URL{id.URL()},
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		return nil, fmt.Errorf("identity: create CSR for %s: %w", id, err)
	}
	return der, nil
}
