package rbac

import (
	"encoding/json"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	rbacv3 "github.com/envoyproxy/go-control-plane/envoy/config/rbac/v3"
	rbachttpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/rbac/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

// The controller's translation of AuthorizationPolicies (controller/rbac) records its output
// in testdata/*.golden: {"gateway": [filter...], "services": {"ns/name": [filter...]},
// "status": ...}, each filter an RBAC filter config in protojson. These tests read those
// files (not the package) and check that the waypoint compiles every config and decides
// requests as the policies in the matching *.yaml intend.
const goldenDir = "../../controller/rbac/testdata"

type goldenChains struct {
	gateway  []*rbachttpv3.RBAC
	services map[string][]*rbachttpv3.RBAC
}

func loadGolden(t testing.TB, file string) goldenChains {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Gateway  []json.RawMessage            `json:"gateway"`
		Services map[string][]json.RawMessage `json:"services"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	parse := func(raws []json.RawMessage) []*rbachttpv3.RBAC {
		var out []*rbachttpv3.RBAC
		for _, raw := range raws {
			f := &rbachttpv3.RBAC{}
			if err := protojson.Unmarshal(raw, f); err != nil {
				t.Fatalf("%s: %v", file, err)
			}
			out = append(out, f)
		}
		return out
	}
	g := goldenChains{gateway: parse(doc.Gateway), services: map[string][]*rbachttpv3.RBAC{}}
	for s, raws := range doc.Services {
		g.services[s] = parse(raws)
	}
	return g
}

func compileChain(t *testing.T, cfgs []*rbachttpv3.RBAC) []*Filter {
	t.Helper()
	var fs []*Filter
	for i, cfg := range cfgs {
		f, err := Compile(cfg)
		if err != nil {
			t.Fatalf("filter %d: %v", i, err)
		}
		fs = append(fs, f)
	}
	return fs
}

// chainResult is what a filter chain of RBAC filters does with a request, as Envoy runs
// it: in order, until one denies.
type chainResult struct {
	allowed      bool
	policy       string // the effective policy of the filter that denied
	logged       bool
	shadowDenied []string // effective policies of shadow engines that would deny
}

func runChain(fs []*Filter, r *Request) chainResult {
	var res chainResult
	for _, f := range fs {
		d := f.Evaluate(r)
		res.logged = res.logged || d.Logged
		if d.Shadow.Evaluated && !d.Shadow.Allowed {
			res.shadowDenied = append(res.shadowDenied, d.Shadow.Policy)
		}
		if !d.Allowed {
			res.policy = d.Policy
			return res
		}
	}
	res.allowed = true
	return res
}

// TestGoldenCompiles compiles every filter config the controller's golden files hold.
func TestGoldenCompiles(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(goldenDir, "*.golden"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no golden files in %s (%v)", goldenDir, err)
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			g := loadGolden(t, file)
			n := len(compileChain(t, g.gateway))
			for s, cfgs := range g.services {
				t.Run(s, func(t *testing.T) { n += len(compileChain(t, cfgs)) })
			}
			t.Logf("%d filters compiled", n)
		})
	}
}

type goldenCase struct {
	name      string
	service   string // "": the waypoint's own chain, also used for a Service without its own
	principal string
	source    string // default 10.0.0.1
	dest      string // default 10.96.0.10
	port      uint16 // default 80
	method    string
	path      string
	host      string // default httpbin.foo.svc.cluster.local
	headers   map[string][]string

	allowed      bool
	denyPolicy   string // the effective policy of the denying filter, when checked
	logged       bool
	shadowDenied []string
}

func (c goldenCase) request() *Request {
	def := func(v, d string) string {
		if v == "" {
			return d
		}
		return v
	}
	r := &Request{
		Principal:       c.principal,
		SourceIP:        netip.MustParseAddr(def(c.source, "10.0.0.1")),
		DestinationIP:   netip.MustParseAddr(def(c.dest, "10.96.0.10")),
		DestinationPort: c.port,
		Method:          c.method,
		Host:            def(c.host, "httpbin.foo.svc.cluster.local"),
		Path:            def(c.path, "/"),
		Header:          map[string][]string{},
	}
	if r.DestinationPort == 0 {
		r.DestinationPort = 80
	}
	for k, vs := range c.headers {
		r.Header[k] = vs
	}
	return r
}

func TestGoldenDecisions(t *testing.T) {
	const (
		other = "spiffe://cluster.local/ns/foo/sa/other"
		bar   = "spiffe://cluster.local/ns/bar/sa/x"
	)
	cases := map[string][]goldenCase{
		"seed": {
			{name: "GET from sleep", service: "foo/httpbin", principal: sleep, method: "GET", allowed: true},
			{name: "POST from sleep: DENY first", service: "foo/httpbin", principal: sleep, method: "POST",
				denyPolicy: "ns[foo]-policy[httpbin-no-post]-rule[0]"},
			{name: "GET from another principal", service: "foo/httpbin", principal: other, method: "GET"},
			{name: "GET unauthenticated", service: "foo/httpbin", method: "GET"},
			{name: "POST to reviews (no policy)", service: "foo/reviews", principal: other, method: "POST", allowed: true},
		},
		"order": {
			{name: "bar GET httpbin", service: "foo/httpbin", principal: bar, method: "GET", path: "/x", allowed: true},
			{name: "foo POST httpbin (waypoint policy)", service: "foo/httpbin", principal: sleep, method: "POST", path: "/x", allowed: true},
			{name: "bar POST httpbin", service: "foo/httpbin", principal: bar, method: "POST", path: "/x"},
			{name: "foo GET httpbin admin: DENY first", service: "foo/httpbin", principal: sleep, method: "GET", path: "/admin/users?x=1",
				denyPolicy: "ns[foo]-policy[httpbin-deny-admin]-rule[0]"},
			{name: "quarantine denied on reviews", service: "foo/reviews", principal: "spiffe://cluster.local/ns/quarantine/sa/foo", method: "GET",
				denyPolicy: "ns[istio-system]-policy[mesh-deny-bad-ns]-rule[0]"},
			{name: "bar not allowed on reviews", service: "foo/reviews", principal: bar, method: "GET"},
			{name: "foo allowed on reviews", service: "foo/reviews", principal: sleep, method: "GET", allowed: true},
			{name: "namespace regex does not match a lookalike", service: "foo/reviews", principal: "spiffe://cluster.local/ns/fooo/sa/x", method: "GET"},
		},
		"actions": {
			{name: "POST audited and allowed", service: "foo/httpbin", method: "POST", allowed: true, logged: true,
				shadowDenied: []string{""}}, // the dry-run ALLOW (/health only) would deny it
			{name: "dry-run DENY reported, not enforced", service: "foo/httpbin", method: "DELETE", path: "/health", allowed: true,
				shadowDenied: []string{"ns[foo]-policy[dry-deny]-rule[0]"}},
			{name: "dry-run ALLOW matches /health", service: "foo/httpbin", method: "GET", path: "/health", allowed: true},
			{name: "waypoint chain: dry-run DENY only reported", method: "DELETE", allowed: true,
				shadowDenied: []string{"ns[foo]-policy[dry-deny]-rule[0]"}},
			{name: "CUSTOM denies what it matches", service: "foo/reviews", method: "GET", path: "/private/x",
				denyPolicy: "ns[foo]-policy[custom]-rule[0]"},
			{name: "CUSTOM leaves the rest", service: "foo/reviews", method: "GET", path: "/public", allowed: true},
			{name: "dry-run annotation not a boolean: enforced", service: "foo/reviews", method: "PATCH",
				denyPolicy: "ns[foo]-policy[dry-not-bool]-rule[0]"},
		},
		"invalid": {
			{name: "good ALLOW rule still allows", service: "foo/httpbin", principal: sleep, method: "GET", allowed: true},
			{name: "dropped ALLOW rules allow nothing more", service: "foo/httpbin", principal: sleep, source: "10.1.2.3", method: "PUT"},
			{name: "reviews allows nothing", service: "foo/reviews", principal: sleep, method: "GET"},
			{name: "DENY without its bad principal denies every POST", service: "foo/httpbin", principal: other, method: "POST",
				denyPolicy: "ns[foo]-policy[deny-partly-bad]-rule[0]"},
			{name: "DENY keeps its ports", service: "foo/httpbin", principal: other, method: "GET", port: 8080,
				denyPolicy: "ns[foo]-policy[deny-partly-bad]-rule[1]"},
			{name: "AUDIT without its unsupported field logs bar", principal: bar, method: "GET", port: 81, allowed: true, logged: true},
			{name: "AUDIT does not log foo", principal: sleep, method: "GET", port: 81, allowed: true},
			{name: "DENY on reviews denies everything", service: "foo/reviews", principal: sleep, method: "GET", port: 81,
				denyPolicy: "ns[foo]-policy[deny-only-bad]-rule[0]"},
		},
		"fields": {
			// One client address serves source.ip and remote.ip, so the policy's source.ip
			// (10.10.10.10) and remote.ip (10.1.0.0/16) conditions never hold together.
			{name: "source.ip and remote.ip disjoint: denied", principal: sleep, source: "10.10.10.10", method: "GET", path: "/exact",
				headers: map[string][]string{"X-User": {"alice"}}},
		},
	}
	for file, reqs := range cases {
		g := loadGolden(t, filepath.Join(goldenDir, file+".golden"))
		for _, c := range reqs {
			t.Run(file+"/"+c.name, func(t *testing.T) {
				cfgs, ok := g.services[c.service]
				if !ok {
					cfgs = g.gateway
				}
				got := runChain(compileChain(t, cfgs), c.request())
				if got.allowed != c.allowed {
					t.Errorf("allowed = %v, want %v (%+v)", got.allowed, c.allowed, got)
				}
				if c.denyPolicy != "" && got.policy != c.denyPolicy {
					t.Errorf("denied by %q, want %q", got.policy, c.denyPolicy)
				}
				if got.logged != c.logged {
					t.Errorf("logged = %v, want %v", got.logged, c.logged)
				}
				if strings.Join(got.shadowDenied, "|") != strings.Join(c.shadowDenied, "|") || len(got.shadowDenied) != len(c.shadowDenied) {
					t.Errorf("shadow denials = %q, want %q", got.shadowDenied, c.shadowDenied)
				}
			})
		}
	}
}

// TestGoldenFields checks each side of fields.golden's everything-at-once policy on its own:
// its permissions with any principal, and its principals (without the remote.ip condition,
// which one client address cannot satisfy together with source.ip) with any permission.
func TestGoldenFields(t *testing.T) {
	g := loadGolden(t, filepath.Join(goldenDir, "fields.golden"))
	if len(g.gateway) != 1 || len(g.gateway[0].GetRules().GetPolicies()) != 1 {
		t.Fatalf("fields.golden: want one filter with one policy, got %v", g.gateway)
	}
	var pol *rbacv3.Policy
	for _, p := range g.gateway[0].GetRules().GetPolicies() {
		pol = p
	}
	anyPerm := []*rbacv3.Permission{{Rule: &rbacv3.Permission_Any{Any: true}}}
	anyID := []*rbacv3.Principal{{Identifier: &rbacv3.Principal_Any{Any: true}}}
	only := func(perms []*rbacv3.Permission, ids []*rbacv3.Principal) *Filter {
		f, err := Compile(&rbachttpv3.RBAC{Rules: &rbacv3.RBAC{Policies: map[string]*rbacv3.Policy{
			"p": {Permissions: perms, Principals: ids},
		}}})
		if err != nil {
			t.Fatal(err)
		}
		return f
	}
	permsOnly := only(pol.GetPermissions(), anyID)

	ids := proto.Clone(pol.GetPrincipals()[0]).(*rbacv3.Principal)
	var keep []*rbacv3.Principal
	for _, id := range ids.GetAndIds().GetIds() {
		if id.GetRemoteIp() == nil {
			keep = append(keep, id)
		}
	}
	if len(keep) != len(ids.GetAndIds().GetIds())-1 {
		t.Fatalf("fields.golden: expected one top-level remote_ip conjunct among the principals")
	}
	ids.GetAndIds().Ids = keep
	idsOnly := only(anyPerm, []*rbacv3.Principal{ids})

	perm := []goldenCase{
		{name: "GET /exact", method: "GET", path: "/exact", allowed: true},
		{name: "host is case-insensitive", method: "GET", host: "HTTPBIN.foo.svc.cluster.local", allowed: true},
		{name: "notHosts", method: "GET", host: "admin.example.com"},
		{name: "notHosts case-insensitive", method: "GET", host: "Admin.Example.com"},
		{name: "notMethods", method: "DELETE"},
		{name: "notPaths", method: "GET", path: "/admin/x"},
		{name: "OPTIONS operation skips the path rules", method: "OPTIONS", path: "/admin/x", allowed: true},
		{name: "notPorts", method: "GET", port: 9000},
		{name: "port not listed", method: "GET", port: 81},
		{name: "destination.ip excluded", method: "GET", dest: "10.96.0.1"},
		{name: "destination.ip outside", method: "GET", dest: "10.200.0.1"},
		{name: "destination.port notValues", method: "GET", port: 9090},
	}
	fooHeaders := map[string][]string{"X-User": {"bob", "team-a"}}
	id := []goldenCase{
		{name: "sleep from 10.10.10.10", principal: sleep, source: "10.10.10.10", headers: fooHeaders, allowed: true},
		{name: "header value only as a whole element", principal: sleep, source: "10.10.10.10",
			headers: map[string][]string{"X-User": {"mallory", "bob"}}},
		{name: "header missing", principal: sleep, source: "10.10.10.10"},
		{name: "unauthenticated", source: "10.10.10.10", headers: fooHeaders},
		{name: "source.ip notValues", principal: sleep, source: "192.168.10.66", headers: fooHeaders},
		{name: "another service account", principal: "spiffe://cluster.local/ns/foo/sa/other", source: "10.10.10.10", headers: fooHeaders},
	}
	for _, c := range perm {
		t.Run("permissions/"+c.name, func(t *testing.T) {
			if got := permsOnly.Evaluate(c.request()).Allowed; got != c.allowed {
				t.Errorf("matched = %v, want %v", got, c.allowed)
			}
		})
	}
	for _, c := range id {
		t.Run("principals/"+c.name, func(t *testing.T) {
			if got := idsOnly.Evaluate(c.request()).Allowed; got != c.allowed {
				t.Errorf("matched = %v, want %v", got, c.allowed)
			}
		})
	}
}
