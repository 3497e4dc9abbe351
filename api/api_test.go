package api

import (
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

func TestWorkloadID(t *testing.T) {
	td := spiffeid.RequireTrustDomainFromString("cluster.local")
	id, err := WorkloadID(td, "shop", "web")
	if err != nil || id.String() != "spiffe://cluster.local/ns/shop/sa/web" {
		t.Fatalf("WorkloadID = %v, %v", id, err)
	}
	for _, tc := range []struct {
		id     string
		ns, sa string
		ok     bool
	}{
		{"spiffe://cluster.local/ns/shop/sa/web", "shop", "web", true},
		{"spiffe://cluster.local/ns/shop", "", "", false},
		{"spiffe://cluster.local/ns/shop/sa/web/x", "", "", false},
		{"spiffe://cluster.local/sa/web/ns/shop", "", "", false},
		{"spiffe://cluster.local", "", "", false},
	} {
		ns, sa, ok := ParseWorkloadID(spiffeid.RequireFromString(tc.id))
		if ns != tc.ns || sa != tc.sa || ok != tc.ok {
			t.Errorf("ParseWorkloadID(%s) = %q, %q, %v; want %q, %q, %v", tc.id, ns, sa, ok, tc.ns, tc.sa, tc.ok)
		}
	}
}
