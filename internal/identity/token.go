package identity

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"

	"google.golang.org/grpc/credentials"
)

// TokenCredentials are gRPC per-RPC credentials that send the service-account token in File as
// "authorization: Bearer <token>". The file is read on every call, so a token the kubelet
// rotates is picked up; it is sent only over connections with privacy and integrity (TLS).
type TokenCredentials struct {
	// File is the projected service-account token, e.g. a volume with audience
	// api.TokenAudience.
	File string
}

var _ credentials.PerRPCCredentials = TokenCredentials{}

// GetRequestMetadata implements credentials.PerRPCCredentials.
func (t TokenCredentials) GetRequestMetadata(ctx context.Context, _ ...string) (map[string]string, error) {
	if ri, ok := credentials.RequestInfoFromContext(ctx); ok {
		if err := credentials.CheckSecurityLevel(ri.AuthInfo, credentials.PrivacyAndIntegrity); err != nil {
			return nil, fmt.Errorf("token credentials: refusing to send the token: %w", err)
		}
	}
	b, err := os.ReadFile(t.File)
	if err != nil {
		return nil, fmt.Errorf("token credentials: %w", err)
	}
	token := bytes.TrimSpace(b)
	if len(token) == 0 {
		return nil, errors.New("token credentials: " + t.File + " is empty")
	}
	return map[string]string{"authorization": "Bearer " + string(token)}, nil
}

// RequireTransportSecurity implements credentials.PerRPCCredentials: the token is never sent
// in plaintext.
func (TokenCredentials) RequireTransportSecurity() bool { return true }
