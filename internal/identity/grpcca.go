package identity

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"time"

	"google.golang.org/grpc"

	cav1 "github.com/weftmesh/weft/api/ca/v1"
)

// GRPCCA is a CAClient that asks the controller's CA (weft.ca.v1.CertificateService) over gRPC.
// The connection must use TLS and carry the node agent's token, e.g. with [TokenCredentials].
type GRPCCA struct {
	client cav1.CertificateServiceClient
}

var _ CAClient = (*GRPCCA)(nil)

// NewGRPCCA returns a GRPCCA that calls the CA over conn.
func NewGRPCCA(conn grpc.ClientConnInterface) *GRPCCA {
	return &GRPCCA{client: cav1.NewCertificateServiceClient(conn)}
}

// Sign implements CAClient with CreateCertificate. The CA may grant less than ttl.
func (c *GRPCCA) Sign(ctx context.Context, csrDER []byte, ttl time.Duration) ([]*x509.Certificate, error) {
	req := &cav1.CreateCertificateRequest{Csr: csrDER}
	if ttl > 0 {
		req.ValiditySeconds = int64((ttl + time.Second - 1) / time.Second)
	}
	resp, err := c.client.CreateCertificate(ctx, req)
	if err != nil {
		return nil, fmt.Errorf("grpcca: create certificate: %w", err)
	}
	chain, err := parseDER(resp.GetCertChain())
	if err != nil {
		return nil, fmt.Errorf("grpcca: certificate chain: %w", err)
	}
	return chain, nil
}

// Bundle implements CAClient with GetTrustBundle.
func (c *GRPCCA) Bundle(ctx context.Context) ([]*x509.Certificate, error) {
	resp, err := c.client.GetTrustBundle(ctx, &cav1.GetTrustBundleRequest{})
	if err != nil {
		return nil, fmt.Errorf("grpcca: trust bundle: %w", err)
	}
	roots, err := parseDER(resp.GetRoots())
	if err != nil {
		return nil, fmt.Errorf("grpcca: trust bundle: %w", err)
	}
	return roots, nil
}

// parseDER parses DER certificates; it needs at least one.
func parseDER(ders [][]byte) ([]*x509.Certificate, error) {
	if len(ders) == 0 {
		return nil, errors.New("no certificate")
	}
	certs := make([]*x509.Certificate, len(ders))
	for i, der := range ders {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, fmt.Errorf("certificate %d: %w", i, err)
		}
		certs[i] = c
	}
	return certs, nil
}
