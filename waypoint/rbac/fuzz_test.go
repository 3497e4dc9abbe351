package rbac

import (
	"net/netip"
	"path/filepath"
	"testing"

	rbacv3 "github.com/envoyproxy/go-control-plane/envoy/config/rbac/v3"
	rbachttpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/rbac/v3"
	"google.golang.org/protobuf/proto"
)

// FuzzCompile feeds arbitrary filter configs (in protobuf wire form) to Compile: it must never
// panic, and a compiled filter must decide requests without panicking and consistently with
// its action.
func FuzzCompile(f *testing.F) {
	for _, file := range []string{"actions", "fields", "invalid", "order", "seed"} {
		g := loadGoldenF(f, filepath.Join(goldenDir, file+".golden"))
		for _, cfg := range g {
			b, err := proto.Marshal(cfg)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(b, "GET", "/admin/x?y", "x-user", "alice", uint16(80))
		}
	}
	f.Add([]byte{}, "", "", "", "", uint16(0))
	f.Fuzz(func(t *testing.T, b []byte, method, path, hname, hvalue string, port uint16) {
		cfg := &rbachttpv3.RBAC{}
		if err := proto.Unmarshal(b, cfg); err != nil {
			return
		}
		flt, err := Compile(cfg)
		if err != nil {
			return
		}
		reqs := []*Request{
			{Method: method, Path: path, Header: map[string][]string{hname: {hvalue}}, DestinationPort: port},
			{
				Principal: "spiffe://cluster.local/ns/foo/sa/" + hvalue, SourceIP: netip.MustParseAddr("10.1.2.3"),
				DestinationIP: netip.MustParseAddr("2001:db8::1"), DestinationPort: port, Method: method, Host: hvalue, Path: path,
				Header: map[string][]string{hname: {hvalue, hvalue}},
			},
		}
		for _, r := range reqs {
			d := flt.Evaluate(r)
			switch {
			case cfg.GetRules() == nil && (!d.Allowed || d.Policy != "" || d.Logged):
				t.Fatalf("no rules but decision %+v", d)
			case cfg.GetRules().GetAction() == rbacv3.RBAC_LOG && !d.Allowed:
				t.Fatalf("LOG denied: %+v", d)
			case d.Logged && d.Policy == "":
				t.Fatalf("logged without a policy: %+v", d)
			case cfg.GetShadowRules() == nil && d.Shadow != (ShadowResult{}):
				t.Fatalf("no shadow rules but shadow result %+v", d.Shadow)
			}
			if d2 := flt.Evaluate(r); d2 != d {
				t.Fatalf("Evaluate not deterministic: %+v then %+v", d, d2)
			}
		}
	})
}

// loadGoldenF is loadGolden's filter list for a fuzz seed corpus.
func loadGoldenF(f *testing.F, file string) []*rbachttpv3.RBAC {
	g := loadGolden(f, file)
	out := g.gateway
	for _, cfgs := range g.services {
		out = append(out, cfgs...)
	}
	return out
}
