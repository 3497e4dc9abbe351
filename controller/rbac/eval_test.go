package rbac

import (
	"net/netip"
	"regexp"
	"strconv"
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	rbacv3 "github.com/envoyproxy/go-control-plane/envoy/config/rbac/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	rbachttpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/rbac/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
)

// request is what a waypoint presents to the RBAC filters (see the package doc).
type request struct {
	principal        string // "" when the peer is not authenticated
	source, remote   string // direct_remote_ip, remote_ip; remote defaults to source
	dest             string
	port             uint32
	method, path     string
	authority        string            // without the port
	headers          map[string]string // lower-case names, repeated values joined with ","
	name, service    string            // the test's name; the Service ("" or unknown: the waypoint chain)
	wantAllowed      bool
	checkAuditResult bool // also compare audited with expectedAudited
	expectedAudited  bool
}

// decide evaluates a filter chain as Envoy does: a LOG filter marks, a DENY filter denies on a
// match, an ALLOW filter denies without one; shadow rules never decide.
func decide(fs []*rbachttpv3.RBAC, r *request) (allowed, audited bool) {
	for _, f := range fs {
		rules := f.GetRules()
		if rules == nil {
			continue
		}
		matched := false
		for _, p := range rules.GetPolicies() {
			if matchPolicy(p, r) {
				matched = true
				break
			}
		}
		switch rules.GetAction() {
		case rbacv3.RBAC_LOG:
			audited = audited || matched
		case rbacv3.RBAC_DENY:
			if matched {
				return false, audited
			}
		case rbacv3.RBAC_ALLOW:
			if !matched {
				return false, audited
			}
		}
	}
	return true, audited
}

func matchPolicy(p *rbacv3.Policy, r *request) bool {
	anyOf := func(n int, f func(int) bool) bool {
		for i := range n {
			if f(i) {
				return true
			}
		}
		return false
	}
	return anyOf(len(p.GetPermissions()), func(i int) bool { return matchPermission(p.GetPermissions()[i], r) }) &&
		anyOf(len(p.GetPrincipals()), func(i int) bool { return matchPrincipal(p.GetPrincipals()[i], r) })
}

func matchPermission(p *rbacv3.Permission, r *request) bool {
	switch x := p.GetRule().(type) {
	case *rbacv3.Permission_Any:
		return x.Any
	case *rbacv3.Permission_AndRules:
		for _, q := range x.AndRules.GetRules() {
			if !matchPermission(q, r) {
				return false
			}
		}
		return true
	case *rbacv3.Permission_OrRules:
		for _, q := range x.OrRules.GetRules() {
			if matchPermission(q, r) {
				return true
			}
		}
		return false
	case *rbacv3.Permission_NotRule:
		return !matchPermission(x.NotRule, r)
	case *rbacv3.Permission_Header:
		return matchHeader(x.Header, r)
	case *rbacv3.Permission_UrlPath:
		path, _, _ := strings.Cut(r.path, "?")
		return matchString(x.UrlPath.GetPath(), path, true)
	case *rbacv3.Permission_DestinationIp:
		return matchCIDR(x.DestinationIp, r.dest)
	case *rbacv3.Permission_DestinationPort:
		return x.DestinationPort == r.port
	}
	panic("unexpected permission " + p.String())
}

func matchPrincipal(p *rbacv3.Principal, r *request) bool {
	switch x := p.GetIdentifier().(type) {
	case *rbacv3.Principal_Any:
		return x.Any
	case *rbacv3.Principal_AndIds:
		for _, q := range x.AndIds.GetIds() {
			if !matchPrincipal(q, r) {
				return false
			}
		}
		return true
	case *rbacv3.Principal_OrIds:
		for _, q := range x.OrIds.GetIds() {
			if matchPrincipal(q, r) {
				return true
			}
		}
		return false
	case *rbacv3.Principal_NotId:
		return !matchPrincipal(x.NotId, r)
	case *rbacv3.Principal_Authenticated_:
		if r.principal == "" {
			return false // Envoy: no peer certificate
		}
		return matchString(x.Authenticated.GetPrincipalName(), r.principal, true)
	case *rbacv3.Principal_DirectRemoteIp:
		return matchCIDR(x.DirectRemoteIp, r.source)
	case *rbacv3.Principal_RemoteIp:
		remote := r.remote
		if remote == "" {
			remote = r.source
		}
		return matchCIDR(x.RemoteIp, remote)
	case *rbacv3.Principal_Header:
		return matchHeader(x.Header, r)
	}
	panic("unexpected principal " + p.String())
}

func matchHeader(h *routev3.HeaderMatcher, r *request) bool {
	var v string
	var ok bool
	switch h.GetName() {
	case ":method":
		v, ok = r.method, r.method != ""
	case ":authority":
		v, ok = r.authority, r.authority != ""
	default:
		v, ok = r.headers[h.GetName()]
	}
	switch x := h.GetHeaderMatchSpecifier().(type) {
	case *routev3.HeaderMatcher_PresentMatch:
		return ok == x.PresentMatch
	case *routev3.HeaderMatcher_StringMatch:
		return ok && matchString(x.StringMatch, v, true)
	}
	panic("unexpected header matcher " + h.String())
}

func matchString(m *matcherv3.StringMatcher, v string, present bool) bool {
	if !present {
		return false
	}
	cmp := func(s string) string {
		if m.GetIgnoreCase() {
			return strings.ToLower(s)
		}
		return s
	}
	switch x := m.GetMatchPattern().(type) {
	case *matcherv3.StringMatcher_Exact:
		return cmp(v) == cmp(x.Exact)
	case *matcherv3.StringMatcher_Prefix:
		return strings.HasPrefix(cmp(v), cmp(x.Prefix))
	case *matcherv3.StringMatcher_Suffix:
		return strings.HasSuffix(cmp(v), cmp(x.Suffix))
	case *matcherv3.StringMatcher_SafeRegex:
		return regexp.MustCompile(`^(?:` + x.SafeRegex.GetRegex() + `)$`).MatchString(v) // RE2 full match
	}
	panic("unexpected string matcher " + m.String())
}

func matchCIDR(c *corev3.CidrRange, ip string) bool {
	a, err := netip.ParseAddr(ip)
	if err != nil {
		return false
	}
	p, err := netip.ParsePrefix(c.GetAddressPrefix() + "/" + strconv.FormatUint(uint64(c.GetPrefixLen().GetValue()), 10))
	return err == nil && p.Contains(a)
}

const (
	sleep = "spiffe://cluster.local/ns/foo/sa/sleep"
	other = "spiffe://cluster.local/ns/foo/sa/other"
)

// TestDecisions evaluates the generated filters of some testdata for requests whose outcome
// Istio documents.
func TestDecisions(t *testing.T) {
	cases := map[string][]request{
		"seed": {
			{name: "GET from sleep", service: "foo/httpbin", principal: sleep, method: "GET", path: "/get", wantAllowed: true},
			{name: "POST from sleep", service: "foo/httpbin", principal: sleep, method: "POST", path: "/post"},
			{name: "GET from another principal", service: "foo/httpbin", principal: other, method: "GET", path: "/get"},
			{name: "GET unauthenticated", service: "foo/httpbin", method: "GET", path: "/get"},
			{name: "POST to reviews (no policy)", service: "foo/reviews", principal: other, method: "POST", path: "/", wantAllowed: true},
		},
		"order": {
			{name: "bar GET httpbin", service: "foo/httpbin", principal: "spiffe://cluster.local/ns/bar/sa/x", method: "GET", path: "/x", wantAllowed: true},
			{name: "foo POST httpbin (waypoint policy)", service: "foo/httpbin", principal: sleep, method: "POST", path: "/x", wantAllowed: true},
			{name: "bar POST httpbin", service: "foo/httpbin", principal: "spiffe://cluster.local/ns/bar/sa/x", method: "POST", path: "/x"},
			{name: "foo GET httpbin admin (DENY first)", service: "foo/httpbin", principal: sleep, method: "GET", path: "/admin/users?x=1"},
			{name: "quarantine denied on reviews", service: "foo/reviews", principal: "spiffe://cluster.local/ns/quarantine/sa/foo", method: "GET", path: "/"},
			{name: "bar not allowed on reviews", service: "foo/reviews", principal: "spiffe://cluster.local/ns/bar/sa/x", method: "GET", path: "/"},
			{name: "foo allowed on reviews", service: "foo/reviews", principal: sleep, method: "GET", path: "/", wantAllowed: true},
			{name: "namespace regex does not match a lookalike", service: "foo/reviews", principal: "spiffe://cluster.local/ns/fooo/sa/x", method: "GET", path: "/"},
		},
		"actions": {
			{name: "POST audited and allowed", service: "foo/httpbin", method: "POST", path: "/", wantAllowed: true, checkAuditResult: true, expectedAudited: true},
			{name: "dry-run DENY does not deny", service: "foo/httpbin", method: "DELETE", path: "/", wantAllowed: true, checkAuditResult: true},
			{name: "CUSTOM denies what it matches", service: "foo/reviews", method: "GET", path: "/private/x"},
			{name: "CUSTOM leaves the rest", service: "foo/reviews", method: "GET", path: "/public", wantAllowed: true},
		},
		"invalid": {
			{name: "good ALLOW rule still allows", service: "foo/httpbin", principal: sleep, method: "GET", path: "/", port: 80, wantAllowed: true},
			{name: "dropped ALLOW rules allow nothing more", service: "foo/httpbin", principal: sleep, source: "10.1.2.3", method: "PUT", path: "/", port: 80},
			{name: "reviews allows nothing", service: "foo/reviews", principal: sleep, method: "GET", path: "/", port: 80},
			{name: "DENY without its bad principal denies every POST", service: "foo/httpbin", principal: other, method: "POST", path: "/", port: 80},
			{name: "DENY keeps its ports", service: "foo/httpbin", principal: other, method: "GET", path: "/", port: 8080},
		},
		"fields": {
			{name: "header element match", principal: "spiffe://cluster.local/ns/foo/sa/sleep", source: "10.10.10.10", remote: "10.1.1.1", dest: "10.96.1.1", port: 80,
				method: "GET", path: "/exact", authority: "HTTPBIN.foo.svc.cluster.local", headers: map[string]string{"x-user": "bob,team-a"}, wantAllowed: true},
			{name: "header exact value only as a whole element", principal: "spiffe://cluster.local/ns/foo/sa/sleep", source: "10.10.10.10", remote: "10.1.1.1", dest: "10.96.1.1", port: 80,
				method: "GET", path: "/exact", authority: "httpbin.foo.svc.cluster.local", headers: map[string]string{"x-user": "mallory,bob"}},
			{name: "notPorts", principal: "spiffe://cluster.local/ns/foo/sa/sleep", source: "10.10.10.10", remote: "10.1.1.1", dest: "10.96.1.1", port: 9090,
				method: "GET", path: "/exact", authority: "httpbin.foo.svc.cluster.local", headers: map[string]string{"x-user": "alice"}},
		},
	}
	for file, reqs := range cases {
		out := Build(testInput(readPolicies(t, "testdata/"+file+".yaml")))
		for _, r := range reqs {
			t.Run(file+"/"+r.name, func(t *testing.T) {
				fs, ok := out.Services[r.service]
				if !ok {
					fs = out.Gateway
				}
				allowed, audited := decide(fs, &r)
				if allowed != r.wantAllowed {
					t.Errorf("allowed = %v, want %v", allowed, r.wantAllowed)
				}
				if r.checkAuditResult && audited != r.expectedAudited {
					t.Errorf("audited = %v, want %v", audited, r.expectedAudited)
				}
			})
		}
	}
}
