package ca_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"net"
	"net/url"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	cav1 "github.com/weftmesh/weft/api/ca/v1"
	"github.com/weftmesh/weft/controller/ca"
)

func TestCreateCertificateAuthorization(t *testing.T) {
	e := newEnv(t, ca.Options{}, testPods()...)
	key := mustKey(t)
	id := func(ns, sa string) string { return "spiffe://cluster.local/ns/" + ns + "/sa/" + sa }

	tests := []struct {
		name  string
		token string // "" sends no metadata
		want  string // requested SPIFFE ID
		code  codes.Code
		msg   []string // substrings of the refusal
	}{
		{name: "agent, pod on its node", token: tokAgentA, want: id("shop", "books"), code: codes.OK},
		{name: "agent, its own identity", token: tokAgentA, want: id("weft-system", "weft-nodeagent"), code: codes.OK},
		{name: "agent, pod without service account name", token: tokAgentA, want: id("shop", "default"), code: codes.OK},
		{name: "agent, pod deleted within its grace period", token: tokAgentA, want: id("shop", "leaving"), code: codes.OK},
		{name: "agent, node from the bound pod", token: tokAgentNoNode, want: id("shop", "books"), code: codes.OK},
		{name: "agent, pod on another node", token: tokAgentA, want: id("shop", "reviews"), code: codes.PermissionDenied,
			msg: []string{"weft-system/weft-nodeagent (pod weft-system/agent-a on node node-a)", "shop/reviews", "no pod of service account shop/reviews is scheduled on node node-a"}},
		{name: "agent, unknown service account", token: tokAgentA, want: id("shop", "nobody"), code: codes.PermissionDenied,
			msg: []string{"shop/nobody", "no pod"}},
		{name: "agent, unknown namespace", token: tokAgentA, want: id("elsewhere", "books"), code: codes.PermissionDenied,
			msg: []string{"elsewhere/books"}},
		{name: "agent, unscheduled pod", token: tokAgentA, want: id("shop", "pending"), code: codes.PermissionDenied},
		{name: "agent, succeeded pod", token: tokAgentA, want: id("shop", "batch"), code: codes.PermissionDenied,
			msg: []string{"terminated or are being deleted"}},
		{name: "agent, failed pod", token: tokAgentA, want: id("shop", "crashed"), code: codes.PermissionDenied},
		{name: "agent, pod deleted past its grace period", token: tokAgentA, want: id("shop", "gone"), code: codes.PermissionDenied},
		{name: "agent, token not bound to a pod", token: tokAgentUnbound, want: id("shop", "books"), code: codes.PermissionDenied,
			msg: []string{"does not name a node"}},
		{name: "waypoint, own identity", token: tokWaypoint, want: id("shop", "waypoint"), code: codes.OK},
		{name: "waypoint, other identity", token: tokWaypoint, want: id("shop", "books"), code: codes.PermissionDenied,
			msg: []string{"shop/waypoint may not obtain the identity of service account shop/books", "only its own identity"}},
		{name: "no token", token: "", want: id("shop", "books"), code: codes.Unauthenticated, msg: []string{"authorization"}},
		{name: "bad token", token: tokBad, want: id("shop", "books"), code: codes.Unauthenticated, msg: []string{"invalid bearer token"}},
		{name: "unknown token", token: "nobody-knows-me", want: id("shop", "books"), code: codes.Unauthenticated},
		{name: "wrong audience", token: tokWrongAud, want: id("shop", "books"), code: codes.Unauthenticated, msg: []string{`audience "weft-ca"`}},
		{name: "not a service account", token: tokUser, want: id("shop", "books"), code: codes.Unauthenticated, msg: []string{"not a service account"}},
		{name: "token review fails", token: tokReviewError, want: id("shop", "books"), code: codes.Unavailable, msg: []string{"token review failed"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			if tt.token != "" {
				ctx = withToken(tt.token)
			}
			resp, err := e.ca.CreateCertificate(ctx, &cav1.CreateCertificateRequest{Csr: csrFor(t, key, tt.want)})
			if got := status.Code(err); got != tt.code {
				t.Fatalf("code %v (%v), want %v", got, err, tt.code)
			}
			for _, m := range tt.msg {
				if !strings.Contains(status.Convert(err).Message(), m) {
					t.Errorf("message %q does not contain %q", status.Convert(err).Message(), m)
				}
			}
			if tt.code != codes.OK {
				return
			}
			chain := parseChain(t, resp.CertChain)
			if got := verifySVID(t, chain, e.ca.Bundle()); got.String() != tt.want {
				t.Errorf("SVID for %s, want %s", got, tt.want)
			}
		})
	}

	logs := e.logs.String()
	for _, want := range []string{
		`level=WARN msg="certificate request refused" component=ca caller.sa=weft-system/weft-nodeagent caller.pod=weft-system/agent-a caller.node=node-a id=spiffe://cluster.local/ns/shop/sa/reviews reason="no pod of service account shop/reviews is scheduled on node node-a"`,
		`level=WARN msg="certificate request refused" component=ca caller.sa=shop/waypoint id=spiffe://cluster.local/ns/shop/sa/books`,
		`level=WARN msg="certificate request refused" component=ca peer=unknown err="rpc error: code = Unauthenticated`,
	} {
		if !strings.Contains(logs, want) {
			t.Errorf("logs lack %q:\n%s", want, logs)
		}
	}
	for tok := range reviews {
		if strings.Contains(logs, tok) {
			t.Errorf("logs contain the token %q", tok)
		}
	}
}

func TestCreateCertificateRejectsCSRs(t *testing.T) {
	e := newEnv(t, ca.Options{}, testPods()...)
	books := "spiffe://cluster.local/ns/shop/sa/books"
	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	withDNS := func() []byte {
		u, _ := url.Parse(books)
		der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
			URIs: []*url.URL{u}, DNSNames: []string{"books.shop.svc"}, IPAddresses: []net.IP{net.IPv4(10, 0, 0, 1)},
		}, mustKey(t))
		if err != nil {
			t.Fatal(err)
		}
		return der
	}
	badSig := csrFor(t, mustKey(t), books)
	badSig[len(badSig)-3] ^= 0xff

	tests := []struct {
		name string
		csr  []byte
		msg  string
	}{
		{"two URIs", csrFor(t, mustKey(t), books, "spiffe://cluster.local/ns/shop/sa/reviews"), "2 URI SANs"},
		{"no URI", csrFor(t, mustKey(t)), "0 URI SANs"},
		{"wrong trust domain", csrFor(t, mustKey(t), "spiffe://example.org/ns/shop/sa/books"), "not in trust domain cluster.local"},
		{"not a workload identity", csrFor(t, mustKey(t), "spiffe://cluster.local/ns/shop/sa/books/extra"), "not of the form"},
		{"not SPIFFE", csrFor(t, mustKey(t), "https://cluster.local/ns/shop/sa/books"), "URI SAN"},
		{"RSA key", csrFor(t, rsaKey, books), "key must be ECDSA P-256, not *rsa.PublicKey"},
		{"P-384 key", csrFor(t, p384, books), "key must be ECDSA P-256, not ECDSA P-384"},
		{"DNS and IP SANs", withDNS(), "only one SPIFFE URI SAN"},
		{"bad signature", badSig, "signature"},
		{"garbage", []byte("not a CSR"), "parse"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := e.ca.CreateCertificate(withToken(tokAgentA), &cav1.CreateCertificateRequest{Csr: tt.csr})
			if status.Code(err) != codes.InvalidArgument {
				t.Fatalf("code %v (%v), want InvalidArgument", status.Code(err), err)
			}
			if !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("error %q does not contain %q", err, tt.msg)
			}
		})
	}
}

func TestCreateCertificateTTL(t *testing.T) {
	e := newEnv(t, ca.Options{MaxTTL: 12 * time.Hour, DefaultTTL: 6 * time.Hour}, testPods()...)
	tests := []struct {
		name    string
		seconds int64
		want    time.Duration
	}{
		{"default", 0, 6 * time.Hour},
		{"requested", 3600, time.Hour},
		{"capped", 48 * 3600, 12 * time.Hour},
		{"huge", 1 << 62, 12 * time.Hour},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			now := time.Now()
			resp, err := e.ca.CreateCertificate(withToken(tokAgentA), &cav1.CreateCertificateRequest{
				Csr: csrFor(t, mustKey(t), "spiffe://cluster.local/ns/shop/sa/books"), ValiditySeconds: tt.seconds,
			})
			if err != nil {
				t.Fatal(err)
			}
			leaf := parseChain(t, resp.CertChain)[0]
			if d := leaf.NotAfter.Sub(now) - tt.want; d < -5*time.Second || d > 5*time.Second {
				t.Errorf("leaf expires %s after issuance, want %s", leaf.NotAfter.Sub(now), tt.want)
			}
			if leaf.IsCA || leaf.KeyUsage&x509.KeyUsageCertSign != 0 {
				t.Error("leaf can sign certificates")
			}
		})
	}
}

func TestGetTrustBundleNeedsAuthentication(t *testing.T) {
	e := newEnv(t, ca.Options{}, testPods()...)
	if _, err := e.ca.GetTrustBundle(context.Background(), &cav1.GetTrustBundleRequest{}); status.Code(err) != codes.Unauthenticated {
		t.Errorf("without a token: %v, want Unauthenticated", err)
	}
	if _, err := e.ca.GetTrustBundle(withToken(tokBad), &cav1.GetTrustBundleRequest{}); status.Code(err) != codes.Unauthenticated {
		t.Errorf("bad token: %v, want Unauthenticated", err)
	}
	resp, err := e.ca.GetTrustBundle(withToken(tokWaypoint), &cav1.GetTrustBundleRequest{})
	if err != nil {
		t.Fatal(err)
	}
	roots := parseChain(t, resp.Roots)
	if len(roots) != 1 || !roots[0].Equal(e.ca.Bundle()[0]) {
		t.Errorf("bundle %d roots, want the CA's root", len(roots))
	}
}
