package hbone

import (
	"crypto/tls"
	"errors"
	"fmt"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

const alpnH2 = "h2"

// tlsCertificate converts an SVID for crypto/tls.
func tlsCertificate(svid *x509svid.SVID) (*tls.Certificate, error) {
	if svid == nil || len(svid.Certificates) == 0 || svid.PrivateKey == nil {
		return nil, errors.New("hbone: empty SVID")
	}
	c := &tls.Certificate{
		Certificate: make([][]byte, len(svid.Certificates)),
		PrivateKey:  svid.PrivateKey,
		Leaf:        svid.Certificates[0],
	}
	for i, cert := range svid.Certificates {
		c.Certificate[i] = cert.Raw
	}
	return c, nil
}

// baseTLS returns the settings both sides share: TLS 1.3 only with Go's TLS 1.3 cipher suites,
// ALPN h2 and no session resumption.
func baseTLS() *tls.Config {
	return &tls.Config{
		MinVersion:             tls.VersionTLS13,
		MaxVersion:             tls.VersionTLS13,
		NextProtos:             []string{alpnH2},
		SessionTicketsDisabled: true,
	}
}

// clientTLS returns the configuration of a connection that presents src's SVID and accepts a
// server presenting one of dst. ServerName stays empty, so no SNI is sent.
func clientTLS(certs Certificates, src spiffeid.ID, dst []spiffeid.ID) *tls.Config {
	cfg := baseTLS()
	// Chain verification and the SAN check are go-spiffe's; it sets InsecureSkipVerify only
	// to switch off hostname verification.
	tlsconfig.HookTLSClientConfig(cfg, certs.Bundle(), tlsconfig.AuthorizeOneOf(dst...))
	cfg.GetClientCertificate = func(info *tls.CertificateRequestInfo) (*tls.Certificate, error) {
		svid, err := certs.Get(info.Context(), src)
		if err != nil {
			return nil, err
		}
		return tlsCertificate(svid)
	}
	return cfg
}

// serverTLS returns the configuration of a listener that presents id's SVID and accepts clients
// whose chain verifies and whose identity is in id's trust domain. Which identities may call is
// left to policy.
func serverTLS(certs Certificates, id spiffeid.ID) *tls.Config {
	cfg := baseTLS()
	cfg.ClientAuth = tls.RequireAnyClientCert
	cfg.GetCertificate = func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
		svid, err := certs.Get(hello.Context(), id)
		if err != nil {
			return nil, err
		}
		return tlsCertificate(svid)
	}
	cfg.VerifyPeerCertificate = tlsconfig.VerifyPeerCertificate(certs.Bundle(), tlsconfig.AuthorizeMemberOf(id.TrustDomain()))
	cfg.VerifyConnection = requireH2
	return cfg
}

// requireH2 refuses a handshake that did not negotiate ALPN h2; crypto/tls lets a client that
// offers no ALPN at all through otherwise.
func requireH2(cs tls.ConnectionState) error {
	if cs.NegotiatedProtocol != alpnH2 {
		return fmt.Errorf("hbone: ALPN %q negotiated, want %q", cs.NegotiatedProtocol, alpnH2)
	}
	return nil
}
