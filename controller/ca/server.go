package ca

import (
	"context"
	"errors"
	"log/slog"
	"math"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/weftmesh/weft/api"
	cav1 "github.com/weftmesh/weft/api/ca/v1"
)

var _ cav1.CertificateServiceServer = (*CA)(nil)

// Register registers the CA's CertificateService on s.
func (c *CA) Register(s grpc.ServiceRegistrar) {
	cav1.RegisterCertificateServiceServer(s, c)
}

// CreateCertificate implements cav1.CertificateServiceServer: it authenticates the caller,
// checks the CSR, authorizes the identity it names and signs it.
func (c *CA) CreateCertificate(ctx context.Context, req *cav1.CreateCertificateRequest) (*cav1.CreateCertificateResponse, error) {
	caller, err := c.authn.Authenticate(ctx)
	if err != nil {
		c.log.Warn("certificate request refused", "peer", peerAddr(ctx), "err", err)
		return nil, err
	}
	csr, id, err := c.parseCSR(req.GetCsr())
	if err != nil {
		c.log.Warn("certificate request refused", "caller", caller, "err", err)
		return nil, status.Errorf(codes.InvalidArgument, "%s: %v", caller, err)
	}
	ns, sa, _ := api.ParseWorkloadID(id) // parseCSR checked the form
	if err := c.authz.authorize(ctx, caller, ns, sa); err != nil {
		if d, ok := errors.AsType[*denial](err); ok {
			c.log.Warn("certificate request refused", "caller", caller, "id", id.String(), "reason", d.reason)
		} else {
			c.log.Warn("certificate request failed", "caller", caller, "id", id.String(), "err", err)
		}
		return nil, err
	}
	chain, err := c.sign(csr, id, validity(req.GetValiditySeconds()))
	if err != nil {
		c.log.Error("certificate signing failed", "caller", caller, "id", id.String(), "err", err)
		return nil, status.Errorf(codes.Internal, "%v", err)
	}
	c.log.Info("certificate issued", "caller", caller, "id", id.String(),
		"serial", chain[0].SerialNumber.String(), "expires", chain[0].NotAfter)
	resp := &cav1.CreateCertificateResponse{CertChain: make([][]byte, len(chain))}
	for i, x := range chain {
		resp.CertChain[i] = x.Raw
	}
	return resp, nil
}

// GetTrustBundle implements cav1.CertificateServiceServer: the roots, for any authenticated
// caller.
func (c *CA) GetTrustBundle(ctx context.Context, _ *cav1.GetTrustBundleRequest) (*cav1.GetTrustBundleResponse, error) {
	if _, err := c.authn.Authenticate(ctx); err != nil {
		c.log.Warn("trust bundle request refused", "peer", peerAddr(ctx), "err", err)
		return nil, err
	}
	roots := c.Bundle()
	resp := &cav1.GetTrustBundleResponse{Roots: make([][]byte, len(roots))}
	for i, r := range roots {
		resp.Roots[i] = r.Raw
	}
	return resp, nil
}

// validity converts a requested lifetime in seconds; zero or less means the default.
func validity(seconds int64) time.Duration {
	if seconds <= 0 {
		return 0
	}
	if seconds > math.MaxInt64/int64(time.Second) {
		return math.MaxInt64
	}
	return time.Duration(seconds) * time.Second
}

func peerAddr(ctx context.Context) slog.Value {
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
		return slog.StringValue(p.Addr.String())
	}
	return slog.StringValue("unknown")
}
