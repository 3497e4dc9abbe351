package route

import (
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	commonfaultv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/common/fault/v3"
	corsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/cors/v3"
	faultv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/fault/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

func anyOf(t testing.TB, m proto.Message) *anypb.Any {
	t.Helper()
	a, err := anypb.New(m)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func hv(key, value string, action corev3.HeaderValueOption_HeaderAppendAction) *corev3.HeaderValueOption {
	return &corev3.HeaderValueOption{Header: &corev3.HeaderValue{Key: key, Value: value}, AppendAction: action}
}

// oneRoute wraps a route into a route configuration with a catch-all virtual host.
func oneRoute(r *routev3.Route) *routev3.RouteConfiguration {
	return &routev3.RouteConfiguration{Name: "rc", VirtualHosts: []*routev3.VirtualHost{{Name: "vh", Domains: []string{"*"}, Routes: []*routev3.Route{r}}}}
}

func TestWeightedPick(t *testing.T) {
	r := prefixRoute("w", "/")
	r.Action = &routev3.Route_Route{Route: &routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_WeightedClusters{WeightedClusters: &routev3.WeightedCluster{Clusters: []*routev3.WeightedCluster_ClusterWeight{
		{Name: "a", Weight: wrapperspb.UInt32(90)},
		{Name: "zero", Weight: wrapperspb.UInt32(0)},
		{Name: "b", Weight: wrapperspb.UInt32(10)},
	}}}}}
	for _, tc := range []struct {
		draw uint64
		want string
	}{{0, "a"}, {89, "a"}, {90, "b"}, {99, "b"}} {
		rt, _, _ := mustCompile(t, oneRoute(r), WithRand(fixedRand(tc.draw))).Match(get("h", "/"))
		if c := rt.Pick(); c.Name != tc.want {
			t.Errorf("draw %d: %s, want %s", tc.draw, c.Name, tc.want)
		}
	}
	if rt, _, _ := mustCompile(t, oneRoute(r)).Match(get("h", "/")); rt.Forward.Timeout != 15*time.Second {
		t.Errorf("default timeout %v, want Envoy's 15s", rt.Forward.Timeout)
	}
}

func TestHeaderMutations(t *testing.T) {
	r := prefixRoute("r", "/")
	r.Action = &routev3.Route_Route{Route: &routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_WeightedClusters{WeightedClusters: &routev3.WeightedCluster{Clusters: []*routev3.WeightedCluster_ClusterWeight{
		{Name: "a", Weight: wrapperspb.UInt32(1), RequestHeadersToAdd: []*corev3.HeaderValueOption{hv("x-level", "cluster", corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD)}},
	}}}}}
	r.RequestHeadersToAdd = []*corev3.HeaderValueOption{
		hv("x-level", "route", corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD),
		hv("x-append", "r", corev3.HeaderValueOption_APPEND_IF_EXISTS_OR_ADD),
		hv("x-absent", "r", corev3.HeaderValueOption_ADD_IF_ABSENT),
		hv("x-only-existing", "r", corev3.HeaderValueOption_OVERWRITE_IF_EXISTS),
		hv("x-empty", "", corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD),
		{Header: &corev3.HeaderValue{Key: "x-legacy", Value: "1"}, Append: wrapperspb.Bool(false)},
		hv("x-pct", "100%%", corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD),
	}
	r.RequestHeadersToRemove = []string{"x-gone"}
	rc := oneRoute(r)
	rc.VirtualHosts[0].RequestHeadersToAdd = []*corev3.HeaderValueOption{hv("x-level", "vhost", corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD)}
	rc.RequestHeadersToAdd = []*corev3.HeaderValueOption{hv("x-level", "config", corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD), hv("x-last", "config", corev3.HeaderValueOption_ADD_IF_ABSENT)}
	rc.ResponseHeadersToRemove = []string{"server"}
	for _, tc := range []struct {
		mostSpecificWins bool
		want             string
	}{{false, "config"}, {true, "cluster"}} {
		rc.MostSpecificHeaderMutationsWins = tc.mostSpecificWins
		tbl := mustCompile(t, rc)
		req := get("h", "/", "x-append", "0", "x-absent", "0", "x-gone", "1", "x-legacy", "0")
		rt, _, _ := tbl.Match(req)
		c := rt.Pick()
		c.PrepareRequest(req)
		h := req.Header
		if got := h.Get("x-level"); got != tc.want {
			t.Errorf("most_specific_header_mutations_wins %v: x-level %q, want %q", tc.mostSpecificWins, got, tc.want)
		}
		if got := h.Values("x-append"); len(got) != 2 || got[1] != "r" {
			t.Errorf("append: %v", got)
		}
		if h.Get("x-absent") != "0" || h.Get("x-only-existing") != "" || h.Get("x-gone") != "" || h.Get("x-legacy") != "1" || h.Get("x-pct") != "100%" || h.Get("x-last") != "config" {
			t.Errorf("headers %v", h)
		}
		if _, ok := h["X-Empty"]; ok {
			t.Error("an empty value was added without keep_empty_value")
		}
		resp := http.Header{"Server": {"upstream"}}
		c.ApplyResponseHeaders(resp)
		if resp.Get("server") != "" {
			t.Errorf("response %v", resp)
		}
	}
}

func TestRewrites(t *testing.T) {
	for _, tc := range []struct {
		name   string
		match  *routev3.RouteMatch
		action *routev3.RouteAction
		in     string
		want   string
		host   string
	}{
		{"prefix", &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/api/"}}, &routev3.RouteAction{PrefixRewrite: "/v2/"}, "/api/x?q=1", "/v2/x?q=1", "h"},
		{"prefix insensitive", &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/api"}, CaseSensitive: wrapperspb.Bool(false)}, &routev3.RouteAction{PrefixRewrite: "/v2"}, "/API/x", "/v2/x", "h"},
		{"path", &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Path{Path: "/old"}}, &routev3.RouteAction{PrefixRewrite: "/new"}, "/old?a", "/new?a", "h"},
		{"regex", &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}}, &routev3.RouteAction{RegexRewrite: &matcherv3.RegexMatchAndSubstitute{Pattern: &matcherv3.RegexMatcher{Regex: "^/service/([^/]+)(/.*)$"}, Substitution: "\\2/instance/\\1"}}, "/service/foo/v1/api", "/v1/api/instance/foo", "h"},
		{"regex all", &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}}, &routev3.RouteAction{RegexRewrite: &matcherv3.RegexMatchAndSubstitute{Pattern: &matcherv3.RegexMatcher{Regex: "a"}, Substitution: "$b"}}, "/aXa", "/$bX$b", "h"},
		{"host", &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}}, &routev3.RouteAction{HostRewriteSpecifier: &routev3.RouteAction_HostRewriteLiteral{HostRewriteLiteral: "new.host"}, AppendXForwardedHost: true}, "/", "/", "new.host"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.action.ClusterSpecifier = &routev3.RouteAction_Cluster{Cluster: "c"}
			rc := oneRoute(&routev3.Route{Match: tc.match, Action: &routev3.Route_Route{Route: tc.action}})
			req := get("h", tc.in)
			rt, _, ok := mustCompile(t, rc).Match(req)
			if !ok {
				t.Fatal("no match")
			}
			rt.Pick().PrepareRequest(req)
			if got := req.URL.RequestURI(); got != tc.want || req.Host != tc.host {
				t.Errorf("%s %s, want %s %s", req.Host, got, tc.host, tc.want)
			}
			if tc.name == "host" && req.Header.Get("X-Forwarded-Host") != "h" {
				t.Errorf("x-forwarded-host %q", req.Header.Get("X-Forwarded-Host"))
			}
		})
	}
}

func TestRedirect(t *testing.T) {
	for _, tc := range []struct {
		name   string
		prefix string
		rd     *routev3.RedirectAction
		host   string
		target string
		want   string
		status int
	}{
		{"https strips :80", "/", &routev3.RedirectAction{SchemeRewriteSpecifier: &routev3.RedirectAction_HttpsRedirect{HttpsRedirect: true}}, "a.com:80", "/p?q=1", "https://a.com/p?q=1", 301},
		{"https keeps other port", "/", &routev3.RedirectAction{SchemeRewriteSpecifier: &routev3.RedirectAction_HttpsRedirect{HttpsRedirect: true}}, "a.com:8080", "/p", "https://a.com:8080/p", 301},
		{"port redirect", "/", &routev3.RedirectAction{PortRedirect: 9443, ResponseCode: routev3.RedirectAction_TEMPORARY_REDIRECT}, "a.com:8080", "/p", "http://a.com:9443/p", 307},
		{"host and path", "/", &routev3.RedirectAction{HostRedirect: "b.com", PathRewriteSpecifier: &routev3.RedirectAction_PathRedirect{PathRedirect: "/n"}, ResponseCode: routev3.RedirectAction_SEE_OTHER}, "a.com", "/p?q=1", "http://b.com/n?q=1", 303},
		{"path with query wins", "/", &routev3.RedirectAction{PathRewriteSpecifier: &routev3.RedirectAction_PathRedirect{PathRedirect: "/n?z=2"}, StripQuery: true}, "a.com", "/p?q=1", "http://a.com/n?z=2", 301},
		{"strip query", "/", &routev3.RedirectAction{StripQuery: true, ResponseCode: routev3.RedirectAction_FOUND}, "a.com", "/p?q=1", "http://a.com/p", 302},
		{"prefix", "/a", &routev3.RedirectAction{PathRewriteSpecifier: &routev3.RedirectAction_PrefixRewrite{PrefixRewrite: "/b"}, ResponseCode: routev3.RedirectAction_PERMANENT_REDIRECT}, "a.com", "/a/x", "http://a.com/b/x", 308},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rc := oneRoute(&routev3.Route{Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: tc.prefix}}, Action: &routev3.Route_Redirect{Redirect: tc.rd}})
			req := get(tc.host, tc.target)
			rt, _, ok := mustCompile(t, rc).Match(req)
			if !ok || rt.Kind != KindRedirect {
				t.Fatal("no redirect route")
			}
			if got := rt.Redirect.Location(req); got != tc.want || rt.Redirect.Status != tc.status {
				t.Errorf("%d %s, want %d %s", rt.Redirect.Status, got, tc.status, tc.want)
			}
		})
	}
}

func TestRetryPolicy(t *testing.T) {
	r := prefixRoute("r", "/")
	r.GetRoute().RetryPolicy = &routev3.RetryPolicy{
		RetryOn:              "retriable-4xx,reset-before-request,retriable-status-codes,deadline-exceeded",
		RetriableStatusCodes: []uint32{418},
		RetryBackOff:         &routev3.RetryPolicy_RetryBackOff{BaseInterval: durationpb.New(100 * time.Millisecond), MaxInterval: durationpb.New(250 * time.Millisecond)},
		RetryHostPredicate:   []*routev3.RetryPolicy_RetryHostPredicate{{Name: "envoy.retry_host_predicates.previous_hosts"}},
	}
	rt, _, _ := mustCompile(t, oneRoute(r)).Match(get("h", "/"))
	p := rt.Forward.Retry
	if p.NumRetries != 1 || !p.PreviousHosts {
		t.Errorf("policy %+v", p)
	}
	for _, tc := range []struct {
		status int
		grpc   string
		want   bool
	}{{409, "", true}, {418, "", true}, {503, "", false}, {200, "4", true}, {200, "14", false}} {
		h := http.Header{}
		if tc.grpc != "" {
			h.Set("grpc-status", tc.grpc)
		}
		if got := p.RetriableResponse(tc.status, h); got != tc.want {
			t.Errorf("%d %q: %v, want %v", tc.status, tc.grpc, got, tc.want)
		}
	}
	if !p.RetriableFailure(FailureReset, false) || p.RetriableFailure(FailureReset, true) || p.RetriableFailure(FailurePerTryTimeout, false) {
		t.Error("reset-before-request")
	}
	// Back-off: below base × (2^n − 1), capped at max.
	for _, tc := range []struct {
		n    int
		draw uint64
		want time.Duration
	}{{1, uint64(99 * time.Millisecond), 99 * time.Millisecond}, {1, uint64(100 * time.Millisecond), 0}, {2, uint64(200 * time.Millisecond), 200 * time.Millisecond}, {3, uint64(600 * time.Millisecond), 250 * time.Millisecond}} {
		if got := p.BackOff(tc.n, fixedRand(tc.draw)); got != tc.want {
			t.Errorf("backoff %d draw %d: %v, want %v", tc.n, tc.draw, got, tc.want)
		}
	}
}

func TestHashKey(t *testing.T) {
	r := prefixRoute("r", "/")
	pol := func(p *routev3.RouteAction_HashPolicy) *Route {
		r.GetRoute().HashPolicy = []*routev3.RouteAction_HashPolicy{p}
		rt, _, _ := mustCompile(t, oneRoute(r)).Match(get("h", "/"))
		return rt
	}
	client := netip.MustParseAddrPort("10.0.0.1:4000")
	other := netip.MustParseAddrPort("10.0.0.2:4000")
	header := pol(&routev3.RouteAction_HashPolicy{PolicySpecifier: &routev3.RouteAction_HashPolicy_Header_{Header: &routev3.RouteAction_HashPolicy_Header{HeaderName: "x-user"}}})
	k1, ok1, _ := header.HashKey(get("h", "/", "x-user", "a"), client)
	k2, ok2, _ := header.HashKey(get("h", "/", "x-user", "a"), other)
	k3, _, _ := header.HashKey(get("h", "/", "x-user", "b"), client)
	if !ok1 || !ok2 || k1 != k2 || k1 == k3 {
		t.Errorf("header hash: %x %x %x", k1, k2, k3)
	}
	if _, ok, _ := header.HashKey(get("h", "/"), client); ok {
		t.Error("a missing header yielded a hash")
	}
	src := pol(&routev3.RouteAction_HashPolicy{PolicySpecifier: &routev3.RouteAction_HashPolicy_ConnectionProperties_{ConnectionProperties: &routev3.RouteAction_HashPolicy_ConnectionProperties{SourceIp: true}}})
	s1, _, _ := src.HashKey(get("h", "/"), client)
	s2, _, _ := src.HashKey(get("h", "/"), netip.MustParseAddrPort("10.0.0.1:5000"))
	s3, _, _ := src.HashKey(get("h", "/"), other)
	if s1 != s2 || s1 == s3 {
		t.Errorf("source ip hash: %x %x %x", s1, s2, s3)
	}
	q := pol(&routev3.RouteAction_HashPolicy{PolicySpecifier: &routev3.RouteAction_HashPolicy_QueryParameter_{QueryParameter: &routev3.RouteAction_HashPolicy_QueryParameter{Name: "id"}}})
	if a, ok, _ := q.HashKey(get("h", "/?id=7"), client); !ok || a == s1 {
		t.Error("query hash")
	}
	cookie := pol(&routev3.RouteAction_HashPolicy{PolicySpecifier: &routev3.RouteAction_HashPolicy_Cookie_{Cookie: &routev3.RouteAction_HashPolicy_Cookie{Name: "sid", Ttl: durationpb.New(time.Hour), Path: "/"}}})
	req := get("h", "/")
	req.AddCookie(&http.Cookie{Name: "sid", Value: "abc"})
	if _, ok, set := cookie.HashKey(req, client); !ok || set != nil {
		t.Error("existing cookie")
	}
	k, ok, set := cookie.HashKey(get("h", "/"), client)
	if !ok || set == nil || set.Name != "sid" || set.MaxAge != 3600 || set.Path != "/" {
		t.Fatalf("generated cookie %v", set)
	}
	again := get("h", "/")
	again.AddCookie(set)
	if k2, _, _ := cookie.HashKey(again, client); k2 != k {
		t.Error("the generated cookie does not hash like the first request")
	}
}

func TestFaultAndFilterConfig(t *testing.T) {
	fault := func(status uint32, pct uint32) *anypb.Any {
		return anyOf(t, &faultv3.HTTPFault{
			Delay: &commonfaultv3.FaultDelay{FaultDelaySecifier: &commonfaultv3.FaultDelay_FixedDelay{FixedDelay: durationpb.New(time.Second)}, Percentage: &typev3.FractionalPercent{Numerator: pct}},
			Abort: &faultv3.FaultAbort{ErrorType: &faultv3.FaultAbort_HttpStatus{HttpStatus: status}, Percentage: &typev3.FractionalPercent{Numerator: pct}},
		})
	}
	r := prefixRoute("r", "/")
	r.Action = &routev3.Route_Route{Route: &routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_WeightedClusters{WeightedClusters: &routev3.WeightedCluster{Clusters: []*routev3.WeightedCluster_ClusterWeight{
		{Name: "a", Weight: wrapperspb.UInt32(1), TypedPerFilterConfig: map[string]*anypb.Any{FaultFilter: fault(500, 100)}},
		{Name: "b", Weight: wrapperspb.UInt32(1)},
	}}}}}
	r.TypedPerFilterConfig = map[string]*anypb.Any{FaultFilter: fault(503, 50)}
	rc := oneRoute(r)
	rbac := anyOf(t, wrapperspb.String("rbac placeholder"))
	rc.VirtualHosts[0].TypedPerFilterConfig = map[string]*anypb.Any{FaultFilter: fault(504, 100), RBACFilterPrefix + ".istio": rbac}
	rc.VirtualHosts[0].Routes = append(rc.VirtualHosts[0].Routes, prefixRoute("other", "/"))
	tbl := mustCompile(t, rc, WithRand(fixedRand(0)))
	rt, vh, _ := tbl.Match(get("h", "/"))
	a, b := rt.Forward.Clusters[0], rt.Forward.Clusters[1]
	for name, tc := range map[string]struct {
		f    *Fault
		want int
	}{"cluster": {rt.Fault(a), 500}, "route": {rt.Fault(b), 503}, "vhost": {vh.Routes[1].Fault(nil), 504}} {
		if _, st, _ := tc.f.Decide(fixedRand(0)); st != tc.want {
			t.Errorf("%s fault status %d, want %d", name, st, tc.want)
		}
	}
	// 50 %: draws 0..49 abort, 50..99 do not; the delay draws first.
	if d, st, g := rt.Fault(b).Decide(fixedRand(60)); d != 0 || st != 0 || g != -1 {
		t.Errorf("50%% fault at 60: %v %d %d", d, st, g)
	}
	if d, st, _ := rt.Fault(b).Decide(fixedRand(10)); d != time.Second || st != 503 {
		t.Errorf("50%% fault at 10: %v %d", d, st)
	}
	if a.FilterConfig(RBACFilterPrefix+".istio") != rbac || rt.FilterConfig(FaultFilter) == a.FilterConfig(FaultFilter) || rt.FilterConfig("nope") != nil {
		t.Error("filter config lookup order")
	}
}

func TestCORS(t *testing.T) {
	policy := func(t *testing.T, p *corsv3.CorsPolicy) *CORS {
		r := prefixRoute("r", "/")
		r.TypedPerFilterConfig = map[string]*anypb.Any{CorsFilter: anyOf(t, p)}
		rc := oneRoute(r)
		rc.VirtualHosts[0].TypedPerFilterConfig = map[string]*anypb.Any{CorsFilter: anyOf(t, &corsv3.CorsPolicy{ExposeHeaders: "x-vhost", MaxAge: "60"})}
		rt, _, _ := mustCompile(t, rc).Match(get("h", "/"))
		return rt.CORS(nil)
	}
	origins := []*matcherv3.StringMatcher{{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: "https://ok.com"}}}
	preflight := func(origin string) *http.Request {
		r := get("h", "/", "Origin", origin, "Access-Control-Request-Method", "PUT", "Access-Control-Request-Headers", "x-a")
		r.Method = http.MethodOptions
		return r
	}
	for _, tc := range []struct {
		name      string
		p         *corsv3.CorsPolicy
		req       *http.Request
		preflight bool
		want      map[string]string
	}{
		{"no origin", &corsv3.CorsPolicy{AllowOriginStringMatch: origins}, get("h", "/"), false, nil},
		{"simple allowed", &corsv3.CorsPolicy{AllowOriginStringMatch: origins, AllowCredentials: wrapperspb.Bool(true)}, get("h", "/", "Origin", "https://ok.com"), false,
			map[string]string{"Access-Control-Allow-Origin": "https://ok.com", "Access-Control-Allow-Credentials": "true", "Access-Control-Expose-Headers": "x-vhost"}},
		{"simple refused", &corsv3.CorsPolicy{AllowOriginStringMatch: origins}, get("h", "/", "Origin", "https://evil.com"), false, nil},
		{"preflight", &corsv3.CorsPolicy{AllowOriginStringMatch: origins, AllowMethods: "GET,PUT", AllowHeaders: "*"}, preflight("https://ok.com"), true,
			map[string]string{"Access-Control-Allow-Origin": "https://ok.com", "Access-Control-Allow-Methods": "GET,PUT", "Access-Control-Allow-Headers": "x-a", "Access-Control-Max-Age": "60"}},
		{"preflight refused forwarded", &corsv3.CorsPolicy{AllowOriginStringMatch: origins}, preflight("https://evil.com"), false, nil},
		{"preflight refused answered", &corsv3.CorsPolicy{AllowOriginStringMatch: origins, ForwardNotMatchingPreflights: wrapperspb.Bool(false), AllowMethods: "GET"}, preflight("https://evil.com"), true,
			map[string]string{"Access-Control-Allow-Methods": "GET", "Access-Control-Max-Age": "60"}},
		{"disabled", &corsv3.CorsPolicy{AllowOriginStringMatch: origins, FilterEnabled: &corev3.RuntimeFractionalPercent{DefaultValue: &typev3.FractionalPercent{}}}, preflight("https://ok.com"), false, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := policy(t, tc.p).Evaluate(tc.req, fixedRand(0))
			if res.Preflight != tc.preflight || len(res.Header) != len(tc.want) {
				t.Fatalf("preflight %v headers %v, want %v %v", res.Preflight, res.Header, tc.preflight, tc.want)
			}
			for k, v := range tc.want {
				if res.Header.Get(k) != v {
					t.Errorf("%s = %q, want %q", k, res.Header.Get(k), v)
				}
			}
		})
	}
}

func TestMirrorHost(t *testing.T) {
	for _, tc := range []struct {
		m    Mirror
		in   string
		want string
	}{
		{Mirror{}, "reviews:9080", "reviews-shadow:9080"},
		{Mirror{}, "reviews", "reviews-shadow"},
		{Mirror{NoShadowSuffix: true}, "reviews", "reviews"},
		{Mirror{HostRewrite: "x"}, "reviews", "x"},
	} {
		if got := tc.m.Host(tc.in); got != tc.want {
			t.Errorf("%+v %s: %s, want %s", tc.m, tc.in, got, tc.want)
		}
	}
}

func TestStreamDuration(t *testing.T) {
	r := prefixRoute("r", "/")
	r.GetRoute().MaxStreamDuration = &routev3.RouteAction_MaxStreamDuration{MaxStreamDuration: durationpb.New(time.Minute), GrpcTimeoutHeaderMax: durationpb.New(10 * time.Second)}
	rt, _, _ := mustCompile(t, oneRoute(r)).Match(get("h", "/"))
	for hdr, want := range map[string]time.Duration{"": time.Minute, "500m": 500 * time.Millisecond, "1M": 10 * time.Second, "bad": time.Minute} {
		req := get("h", "/", "grpc-timeout", hdr)
		if d, ok := rt.Forward.StreamDuration(req); !ok || d != want {
			t.Errorf("grpc-timeout %q: %v, want %v", hdr, d, want)
		}
	}
}

// TestCompileErrors checks that what the waypoint does not implement is refused with the
// field's path.
func TestCompileErrors(t *testing.T) {
	match := func(m *routev3.RouteMatch) *routev3.RouteConfiguration {
		return oneRoute(&routev3.Route{Match: m, Action: fwd("c")})
	}
	action := func(a *routev3.RouteAction) *routev3.RouteConfiguration {
		if a.ClusterSpecifier == nil {
			a.ClusterSpecifier = &routev3.RouteAction_Cluster{Cluster: "c"}
		}
		return oneRoute(&routev3.Route{Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}}, Action: &routev3.Route_Route{Route: a}})
	}
	slash := &routev3.RouteMatch_Prefix{Prefix: "/"}
	dup := oneRoute(prefixRoute("a", "/"))
	dup.VirtualHosts = append(dup.VirtualHosts, &routev3.VirtualHost{Name: "b", Domains: []string{"*"}})
	for _, tc := range []struct {
		name string
		rc   *routev3.RouteConfiguration
		want string
	}{
		{"dynamic metadata", match(&routev3.RouteMatch{PathSpecifier: slash, DynamicMetadata: []*matcherv3.MetadataMatcher{{}}}), "virtual_hosts[0].routes[0].match.dynamic_metadata"},
		{"tls context", match(&routev3.RouteMatch{PathSpecifier: slash, TlsContext: &routev3.RouteMatch_TlsContextMatchOptions{}}), "virtual_hosts[0].routes[0].match.tls_context"},
		{"bad regex", match(&routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: "(("}}}), "virtual_hosts[0].routes[0].match.safe_regex.regex"},
		{"no path", match(&routev3.RouteMatch{}), "virtual_hosts[0].routes[0].match"},
		{"custom string matcher", match(&routev3.RouteMatch{PathSpecifier: slash, Headers: []*routev3.HeaderMatcher{{Name: "x", HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{StringMatch: &matcherv3.StringMatcher{}}}}}), "virtual_hosts[0].routes[0].match.headers[0].string_match"},
		{"cluster header", action(&routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_ClusterHeader{ClusterHeader: "x"}}), "virtual_hosts[0].routes[0].route.cluster_header"},
		{"hedge", action(&routev3.RouteAction{HedgePolicy: &routev3.HedgePolicy{}}), "virtual_hosts[0].routes[0].route.hedge_policy"},
		{"upgrade", action(&routev3.RouteAction{UpgradeConfigs: []*routev3.RouteAction_UpgradeConfig{{UpgradeType: "websocket"}}}), "virtual_hosts[0].routes[0].route.upgrade_configs"},
		{"retry on", action(&routev3.RouteAction{RetryPolicy: &routev3.RetryPolicy{RetryOn: "5xx,bogus"}}), "virtual_hosts[0].routes[0].route.retry_policy.retry_on"},
		{"retry priority", action(&routev3.RouteAction{RetryPolicy: &routev3.RetryPolicy{RetryPriority: &routev3.RetryPolicy_RetryPriority{Name: "x"}}}), "virtual_hosts[0].routes[0].route.retry_policy.retry_priority"},
		//lint:ignore SA1019 the deprecated field is still checked
		{"total weight", action(&routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_WeightedClusters{WeightedClusters: &routev3.WeightedCluster{TotalWeight: wrapperspb.UInt32(3), Clusters: []*routev3.WeightedCluster_ClusterWeight{{Name: "a", Weight: wrapperspb.UInt32(1)}}}}}), "weighted_clusters.total_weight"},
		{"hash filter state", action(&routev3.RouteAction{HashPolicy: []*routev3.RouteAction_HashPolicy{{PolicySpecifier: &routev3.RouteAction_HashPolicy_FilterState_{FilterState: &routev3.RouteAction_HashPolicy_FilterState{Key: "k"}}}}}), "virtual_hosts[0].routes[0].route.hash_policy[0].filter_state"},
		{"header command", action(&routev3.RouteAction{}), ""},
		{"unknown filter", &routev3.RouteConfiguration{TypedPerFilterConfig: map[string]*anypb.Any{"envoy.filters.http.ext_authz": anyOf(t, wrapperspb.Bool(true))}}, "typed_per_filter_config[envoy.filters.http.ext_authz]"},
		{"header fault", &routev3.RouteConfiguration{TypedPerFilterConfig: map[string]*anypb.Any{FaultFilter: anyOf(t, &faultv3.HTTPFault{Delay: &commonfaultv3.FaultDelay{FaultDelaySecifier: &commonfaultv3.FaultDelay_HeaderDelay_{HeaderDelay: &commonfaultv3.FaultDelay_HeaderDelay{}}}})}}, "typed_per_filter_config[envoy.filters.http.fault].delay.header_delay"},
		{"fault type", &routev3.RouteConfiguration{TypedPerFilterConfig: map[string]*anypb.Any{FaultFilter: anyOf(t, &corsv3.CorsPolicy{})}}, "typed_per_filter_config[envoy.filters.http.fault]"},
		{"vhds", &routev3.RouteConfiguration{Vhds: &routev3.Vhds{}}, "vhds"},
		{"require tls", &routev3.RouteConfiguration{VirtualHosts: []*routev3.VirtualHost{{Name: "v", Domains: []string{"*"}, RequireTls: routev3.VirtualHost_ALL}}}, "virtual_hosts[0].require_tls"},
		{"duplicate domain", dup, "virtual_hosts[1].domains[0]"},
		{"direct body", &routev3.RouteConfiguration{MaxDirectResponseBodySizeBytes: wrapperspb.UInt32(2), VirtualHosts: []*routev3.VirtualHost{{Name: "v", Domains: []string{"*"}, Routes: []*routev3.Route{{Match: &routev3.RouteMatch{PathSpecifier: slash}, Action: &routev3.Route_DirectResponse{DirectResponse: &routev3.DirectResponseAction{Status: 200, Body: &corev3.DataSource{Specifier: &corev3.DataSource_InlineString{InlineString: "abc"}}}}}}}}}, "direct_response.body"},
		{"filter action", oneRoute(&routev3.Route{Match: &routev3.RouteMatch{PathSpecifier: slash}, Action: &routev3.Route_NonForwardingAction{NonForwardingAction: &routev3.NonForwardingAction{}}}), "virtual_hosts[0].routes[0].non_forwarding_action"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.name == "header command" {
				tc.rc.RequestHeadersToAdd = []*corev3.HeaderValueOption{hv("x-client", "%DOWNSTREAM_REMOTE_ADDRESS%", corev3.HeaderValueOption_APPEND_IF_EXISTS_OR_ADD)}
				tc.want = "request_headers_to_add[0].header.value"
			}
			_, err := Compile(tc.rc)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want one naming %s", err, tc.want)
			}
		})
	}
}

// BenchmarkMatch matches a request against the fields-routes configuration, whose matching
// route is near the end.
func BenchmarkMatch(b *testing.B) {
	tbl := compileGolden(b, "fields-routes", "9080", &seqRand{})
	req := get("reviews.default.svc.cluster.local:9080", "/health")
	b.ReportAllocs()
	for b.Loop() {
		if rt, _, ok := tbl.Match(req); !ok || rt.Kind != KindDirect {
			b.Fatal("no match")
		}
	}
}

// BenchmarkMatchWeighted matches and picks a weighted cluster of the seed configuration.
func BenchmarkMatchWeighted(b *testing.B) {
	tbl := compileGolden(b, "seed-weights-50-50", "9080", &seqRand{})
	req := get("reviews:9080", "/reviews/1", "end-user", "jason")
	b.ReportAllocs()
	for b.Loop() {
		rt, _, ok := tbl.Match(req)
		if !ok || rt.Pick() == nil {
			b.Fatal("no match")
		}
	}
}
