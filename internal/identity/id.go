// Package identity obtains and rotates the X.509 SVIDs of the workloads that run on one node.
//
// A workload identity is the SPIFFE ID of a Kubernetes service account,
// spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>. The [Manager] generates an ECDSA
// P-256 key for every identity it is asked for, sends a certificate signing request to a
// [CAClient], caches the signed SVID, renews it at half of its lifetime and keeps serving it while
// renewals fail, and tracks the CA's trust bundle. Private keys stay inside the process: the
// [crypto.Signer] of a returned SVID can sign but cannot be marshalled, printed or logged.
//
// [FileCA] is a CAClient that signs locally with a CA certificate and key read from PEM files,
// for tests, the demo and a node agent running without a controller; [CreateRootCA] writes a
// self-signed root for it. [GRPCCA] is the CAClient of the controller's CA over gRPC, with
// [TokenCredentials] sending the node agent's service-account token on every call.
package identity

import (
	"errors"
	"fmt"
	"strings"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// FromNamespaceSA returns the identity of service account sa in namespace ns:
// spiffe://<td>/ns/<ns>/sa/<sa>.
func FromNamespaceSA(td spiffeid.TrustDomain, ns, sa string) (spiffeid.ID, error) {
	if td.IsZero() {
		return spiffeid.ID{}, errors.New("identity: empty trust domain")
	}
	id, err := spiffeid.FromSegments(td, "ns", ns, "sa", sa)
	if err != nil {
		return spiffeid.ID{}, fmt.Errorf("identity: namespace %q, service account %q: %w", ns, sa, err)
	}
	return id, nil
}

// Parse parses a workload identity. It accepts exactly spiffe://<td>/ns/<ns>/sa/<sa>: any other
// path, including one with trailing segments, is an error.
//
// Unlike ztunnel, which accepts an empty namespace or service account, Parse follows the SPIFFE
// ID rules and rejects empty path segments.
func Parse(s string) (spiffeid.ID, error) {
	id, err := spiffeid.FromString(s)
	if err != nil {
		return spiffeid.ID{}, fmt.Errorf("identity: parse %q: %w", s, err)
	}
	if _, _, err := NamespaceSA(id); err != nil {
		return spiffeid.ID{}, err
	}
	return id, nil
}

// NamespaceSA returns the namespace and service account of a workload identity, or an error when
// the ID's path is not exactly /ns/<ns>/sa/<sa>.
func NamespaceSA(id spiffeid.ID) (ns, sa string, err error) {
	if id.IsZero() {
		return "", "", errors.New("identity: empty SPIFFE ID")
	}
	seg := strings.Split(id.Path(), "/")
	// A valid SPIFFE path starts with "/" and has no empty segments, so seg[0] is "".
	if len(seg) != 5 || seg[1] != "ns" || seg[3] != "sa" {
		return "", "", fmt.Errorf("identity: %q is not of the form spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>", id)
	}
	return seg[2], seg[4], nil
}
