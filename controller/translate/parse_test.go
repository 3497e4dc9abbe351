package translate

import "testing"

func TestParseCIDRAndServiceAccount(t *testing.T) {
	for _, tc := range []struct {
		in, want string
		ok       bool
	}{
		{"10.0.0.5", "10.0.0.5/32", true},
		{"10.0.0.7/8", "10.0.0.0/8", true},
		{"fd00::1", "fd00::1/128", true},
		{"fe80::1%eth0", "", false},
		{"10.0.0.0/33", "", false},
		{"host", "", false},
	} {
		p, ok := ParseCIDR(tc.in)
		if ok != tc.ok || ok && p.String() != tc.want {
			t.Errorf("ParseCIDR(%q) = %v, %v; want %s, %v", tc.in, p, ok, tc.want, tc.ok)
		}
	}
	for _, tc := range []struct {
		in, ns, sa string
		ok         bool
	}{
		{"shop/web", "shop", "web", true},
		{"web", "default", "web", true},
		{"shop/*", "", "", false},
		{"a/b/c", "", "", false},
		{"/web", "", "", false},
	} {
		ns, sa, ok := ParseServiceAccount(tc.in, "default")
		if ns != tc.ns || sa != tc.sa || ok != tc.ok {
			t.Errorf("ParseServiceAccount(%q) = %q, %q, %v", tc.in, ns, sa, ok)
		}
	}
}
