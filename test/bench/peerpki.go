package bench

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"time"
)

// PeerPKI is the certificate authority and the node certificates of the peers' mTLS tunnels:
// ECDSA P-256 keys, a self-signed CA, and per node a certificate whose DNS name is the node's
// name, valid for client and server authentication.
type PeerPKI struct {
	CAPEM []byte
	// NodePEM holds per node name its certificate followed by its PKCS#8 private key, in one
	// PEM file as HAProxy's crt and stunnel's cert expect.
	NodePEM map[string][]byte
}

// NewPeerPKI issues the CA and one certificate per node, valid from now-1h for validity.
func NewPeerPKI(nodes []string, now time.Time, validity time.Duration) (*PeerPKI, error) {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("peer PKI: CA key: %w", err)
	}
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "weft-bench peer CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(validity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, fmt.Errorf("peer PKI: CA: %w", err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return nil, fmt.Errorf("peer PKI: CA: %w", err)
	}
	pki := &PeerPKI{CAPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), NodePEM: map[string][]byte{}}
	for i, node := range nodes {
		if node == "" {
			return nil, fmt.Errorf("peer PKI: node %d: empty name", i)
		}
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, fmt.Errorf("peer PKI: %s key: %w", node, err)
		}
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(int64(i) + 2),
			Subject:      pkix.Name{CommonName: node},
			DNSNames:     []string{node},
			NotBefore:    now.Add(-time.Hour),
			NotAfter:     now.Add(validity),
			KeyUsage:     x509.KeyUsageDigitalSignature,
			ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
		if err != nil {
			return nil, fmt.Errorf("peer PKI: %s certificate: %w", node, err)
		}
		keyDER, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			return nil, fmt.Errorf("peer PKI: %s key: %w", node, err)
		}
		b := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
		b = append(b, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})...)
		pki.NodePEM[node] = b
	}
	return pki, nil
}

// Files returns the PEM files by name: ca.pem and <node>.pem, as the tunnels' CertDir holds them.
func (p *PeerPKI) Files() map[string][]byte {
	out := map[string][]byte{"ca.pem": p.CAPEM}
	for n, b := range p.NodePEM {
		out[n+".pem"] = b
	}
	return out
}
