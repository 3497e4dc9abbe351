package ca

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
)

// GetCertificate returns the controller's current TLS serving certificate, for
// tls.Config.GetCertificate. Its chain (without the root) leads to a root of the bundle
// published in the ConfigMap api.RootCertConfigMap.
func (c *CA) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	cert := c.serving.Load()
	if cert == nil {
		return nil, errors.New("ca: no serving certificate")
	}
	return cert, nil
}

// ServerTLSConfig returns a TLS configuration for the controller's gRPC server (TLS 1.3, the
// serving certificate renewed in place). Clients authenticate with tokens, not certificates.
func (c *CA) ServerTLSConfig() *tls.Config {
	return &tls.Config{
		MinVersion:     tls.VersionTLS13,
		GetCertificate: c.GetCertificate,
	}
}

// renewServing issues a new serving certificate.
func (c *CA) renewServing() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.renewServingLocked()
}

// renewServingLocked issues a new serving certificate with a new ECDSA P-256 key; c.mu is held.
func (c *CA) renewServingLocked() error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fmt.Errorf("ca: serving certificate: generate key: %w", err)
	}
	cn := "weft-controller"
	if len(c.opts.ServingDNSNames) > 0 {
		cn = c.opts.ServingDNSNames[0]
	}
	tmpl := &x509.Certificate{
		Subject:     pkix.Name{CommonName: cn},
		DNSNames:    c.opts.ServingDNSNames,
		IPAddresses: c.opts.ServingIPs,
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	chain, err := c.issue(tmpl, key.Public(), c.opts.ServingTTL)
	if err != nil {
		return fmt.Errorf("ca: serving certificate: %w", err)
	}
	cert := &tls.Certificate{PrivateKey: key, Leaf: chain[0]}
	for _, x := range chain {
		if len(cert.Certificate) > 0 && selfSigned(x) {
			break // peers have the root
		}
		cert.Certificate = append(cert.Certificate, x.Raw)
	}
	c.serving.Store(cert)
	c.log.Info("serving certificate issued", "names", c.opts.ServingDNSNames, "ips", c.opts.ServingIPs,
		"serial", chain[0].SerialNumber.String(), "expires", chain[0].NotAfter, "refresh", refreshAt(chain[0]))
	return nil
}
