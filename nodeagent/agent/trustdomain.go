package agent

import (
	"fmt"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

func trustDomain(s string) (spiffeid.TrustDomain, error) {
	if s == "" {
		s = "cluster.local"
	}
	td, err := spiffeid.TrustDomainFromString(s)
	if err != nil {
		return td, fmt.Errorf("agent: trust domain %q: %w", s, err)
	}
	return td, nil
}
