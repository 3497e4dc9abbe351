package identity

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"time"

	"google.golang.org/grpc"
	grpcbackoff "google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"
)

// DialOptions says how the agent reaches the controller.
type DialOptions struct {
	// Target is the controller's address, e.g. "weft-controller.weft-system.svc:15012".
	Target string
	// ServerName is the name the controller's certificate must carry; empty means Target's
	// host.
	ServerName string
	// RootFile holds the PEM roots that verify the controller's certificate (the ConfigMap
	// weft-ca-root-cert). It is read at every handshake, so a rotated root takes effect
	// without a restart.
	RootFile string
	// PerRPC authenticates every call (identity.TokenCredentials).
	PerRPC credentials.PerRPCCredentials
}

// Dial returns the agent's connection to the controller, shared by workload discovery and the
// CA. It connects lazily and reconnects by itself.
func Dial(o DialOptions) (*grpc.ClientConn, error) {
	if o.Target == "" || o.RootFile == "" {
		return nil, errors.New("identity: the controller's address and root file are required")
	}
	tc := &tls.Config{
		MinVersion: tls.VersionTLS13,
		ServerName: o.ServerName,
		// The roots are read per handshake (see DialOptions.RootFile), so verification is done
		// here rather than with a fixed RootCAs pool.
		InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			return verifyServer(cs, o.RootFile)
		},
	}
	if tc.ServerName == "" {
		host, _, err := net.SplitHostPort(o.Target)
		if err != nil {
			return nil, err
		}
		tc.ServerName = host
	}
	opts := []grpc.DialOption{
		grpc.WithTransportCredentials(credentials.NewTLS(tc)),
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: 30 * time.Second, Timeout: 10 * time.Second, PermitWithoutStream: true}),
		// gRPC's default reconnect back-off grows to 120 s; an agent should be back within
		// seconds of the controller.
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           grpcbackoff.Config{BaseDelay: 100 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: 5 * time.Second},
			MinConnectTimeout: 20 * time.Second,
		}),
	}
	if o.PerRPC != nil {
		opts = append(opts, grpc.WithPerRPCCredentials(o.PerRPC))
	}
	return grpc.NewClient(o.Target, opts...)
}

func verifyServer(cs tls.ConnectionState, rootFile string) error {
	pemRoots, err := os.ReadFile(rootFile)
	if err != nil {
		return fmt.Errorf("controller roots: %w", err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(pemRoots) {
		return fmt.Errorf("controller roots: %s holds no PEM certificate", rootFile)
	}
	if len(cs.PeerCertificates) == 0 {
		return errors.New("controller presented no certificate")
	}
	inter := x509.NewCertPool()
	for _, c := range cs.PeerCertificates[1:] {
		inter.AddCert(c)
	}
	_, err = cs.PeerCertificates[0].Verify(x509.VerifyOptions{
		DNSName: cs.ServerName, Roots: roots, Intermediates: inter,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	})
	return err
}
