package identity_test

import (
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/weftmesh/weft/internal/identity"
)

func TestParse(t *testing.T) {
	tests := []struct {
		in      string
		wantNS  string
		wantSA  string
		wantErr bool
	}{
		{in: "spiffe://cluster.local/ns/shop/sa/books", wantNS: "shop", wantSA: "books"},
		{in: "spiffe://example.org/ns/default/sa/default", wantNS: "default", wantSA: "default"},
		{in: "spiffe://cluster.local/ns/a.b/sa/c-d_e", wantNS: "a.b", wantSA: "c-d_e"},
		{in: "spiffe://cluster.local/ns/shop/sa/books/extra", wantErr: true},
		{in: "spiffe://cluster.local/ns/shop/sa/books/", wantErr: true},
		{in: "spiffe://cluster.local/ns/shop/sa", wantErr: true},
		{in: "spiffe://cluster.local/ns/shop", wantErr: true},
		{in: "spiffe://cluster.local/sa/books/ns/shop", wantErr: true},
		{in: "spiffe://cluster.local/ns//sa/books", wantErr: true},
		{in: "spiffe://cluster.local", wantErr: true},
		{in: "spiffe://cluster.local/x/ns/shop/sa/books", wantErr: true},
		{in: "https://cluster.local/ns/shop/sa/books", wantErr: true},
		{in: "spiffe://Cluster.Local/ns/shop/sa/books", wantErr: true},
		{in: "spiffe://cluster.local/ns/shop/sa/books?x=1", wantErr: true},
		{in: "", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			id, err := identity.Parse(tt.in)
			if tt.wantErr {
				if err == nil {
					t.Fatalf("Parse(%q) = %v, want error", tt.in, id)
				}
				return
			}
			if err != nil {
				t.Fatalf("Parse(%q): %v", tt.in, err)
			}
			ns, sa, err := identity.NamespaceSA(id)
			if err != nil || ns != tt.wantNS || sa != tt.wantSA {
				t.Fatalf("NamespaceSA(%v) = %q, %q, %v; want %q, %q", id, ns, sa, err, tt.wantNS, tt.wantSA)
			}
			if id.String() != tt.in {
				t.Fatalf("String() = %q, want %q", id, tt.in)
			}
		})
	}
}

func TestFromNamespaceSA(t *testing.T) {
	td := spiffeid.RequireTrustDomainFromString("cluster.local")
	tests := []struct {
		td      spiffeid.TrustDomain
		ns, sa  string
		want    string
		wantErr bool
	}{
		{td: td, ns: "shop", sa: "books", want: "spiffe://cluster.local/ns/shop/sa/books"},
		{td: td, ns: "", sa: "books", wantErr: true},
		{td: td, ns: "shop", sa: "", wantErr: true},
		{td: td, ns: "a/b", sa: "books", wantErr: true},
		{td: td, ns: "..", sa: "books", wantErr: true},
		{td: td, ns: "Shop!", sa: "books", wantErr: true},
		{td: spiffeid.TrustDomain{}, ns: "shop", sa: "books", wantErr: true},
	}
	for _, tt := range tests {
		id, err := identity.FromNamespaceSA(tt.td, tt.ns, tt.sa)
		if tt.wantErr {
			if err == nil {
				t.Errorf("FromNamespaceSA(%v, %q, %q) = %v, want error", tt.td, tt.ns, tt.sa, id)
			}
			continue
		}
		if err != nil || id.String() != tt.want {
			t.Errorf("FromNamespaceSA(%v, %q, %q) = %v, %v; want %s", tt.td, tt.ns, tt.sa, id, err, tt.want)
		}
	}
}

func TestNamespaceSARejectsOtherPaths(t *testing.T) {
	td := spiffeid.RequireTrustDomainFromString("cluster.local")
	for _, path := range []string{"/ns/a/sa/b/c", "/ns/a", "/workload/x", "/ns/a/xx/b"} {
		id := spiffeid.RequireFromPath(td, path)
		if _, _, err := identity.NamespaceSA(id); err == nil {
			t.Errorf("NamespaceSA(%v) succeeded, want error", id)
		}
	}
	if _, _, err := identity.NamespaceSA(spiffeid.ID{}); err == nil {
		t.Error("NamespaceSA(zero ID) succeeded, want error")
	}
}
