//lint:file-ignore SA1019 Envoy still accepts the deprecated matchers, so the waypoint implements them as Envoy does.

package route

import (
	"net/http"
	"sync"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

func fwd(cluster string) *routev3.Route_Route {
	return &routev3.Route_Route{Route: &routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: cluster}}}
}

func prefixRoute(name, prefix string) *routev3.Route {
	return &routev3.Route{Name: name, Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: prefix}}, Action: fwd(name)}
}

func mustCompile(t testing.TB, rc *routev3.RouteConfiguration, opts ...Option) *Table {
	t.Helper()
	tbl, err := Compile(rc, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return tbl
}

func TestVirtualHostDomains(t *testing.T) {
	vh := func(name string, domains ...string) *routev3.VirtualHost {
		return &routev3.VirtualHost{Name: name, Domains: domains, Routes: []*routev3.Route{prefixRoute(name, "/")}}
	}
	rc := &routev3.RouteConfiguration{VirtualHosts: []*routev3.VirtualHost{
		vh("exact", "www.example.com", "www.example.com:8080"),
		vh("suffix", "*.example.com"),
		vh("longsuffix", "*-bar.foo.example.com"),
		vh("prefix", "api.*"),
		vh("longprefix", "api.internal.*"),
		vh("default", "*"),
	}}
	tbl := mustCompile(t, rc)
	for _, tc := range []struct{ host, want string }{
		{"www.example.com", "exact"},
		{"WWW.Example.COM", "exact"},
		{"www.example.com:8080", "exact"},
		{"www.example.com:9090", "default"}, // the port is part of the host: "*.example.com" does not match it
		{"a.example.com", "suffix"},
		{"baz-bar.foo.example.com", "longsuffix"},
		{"-bar.foo.example.com", "suffix"}, // wildcards never match an empty string
		{"api.foo", "prefix"},
		{"api.internal.x", "longprefix"},
		{"other", "default"},
		{"", "default"},
	} {
		r := get(tc.host, "/")
		rt, v, ok := tbl.Match(r)
		if !ok || v.Name != tc.want || rt.Name != tc.want {
			t.Errorf("%q: %v %v, want %s", tc.host, v, ok, tc.want)
		}
	}
	// Without *: no virtual host.
	rc.VirtualHosts = rc.VirtualHosts[:5]
	if _, v, ok := mustCompile(t, rc).Match(get("other", "/")); ok || v != nil {
		t.Error("an unknown host matched")
	}
	// ignore_port_in_host_matching.
	rc.IgnorePortInHostMatching = true
	if _, v, _ := mustCompile(t, rc).Match(get("a.example.com:1234", "/")); v == nil || v.Name != "suffix" {
		t.Errorf("port not ignored: %v", v)
	}
	// vhost_header selects by another header.
	rc.IgnorePortInHostMatching, rc.VhostHeader = false, "x-host"
	if _, v, _ := mustCompile(t, rc).Match(get("nothing", "/", "x-host", "api.z")); v == nil || v.Name != "prefix" {
		t.Errorf("vhost_header: %v", v)
	}
}

func TestRouteMatch(t *testing.T) {
	sm := func(m *matcherv3.StringMatcher) *routev3.HeaderMatcher_StringMatch {
		return &routev3.HeaderMatcher_StringMatch{StringMatch: m}
	}
	exact := func(v string) *matcherv3.StringMatcher {
		return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: v}}
	}
	re := func(v string) *matcherv3.RegexMatcher { return &matcherv3.RegexMatcher{Regex: v} }
	for _, tc := range []struct {
		name  string
		match *routev3.RouteMatch
		req   *http.Request
		want  bool
	}{
		{"prefix", &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/api"}}, get("h", "/apix?q=1"), true},
		{"prefix case", &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/api"}}, get("h", "/API"), false},
		{"prefix insensitive", &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/api"}, CaseSensitive: wrapperspb.Bool(false)}, get("h", "/API/x"), true},
		{"path ignores query", &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Path{Path: "/a"}}, get("h", "/a?x=1"), true},
		{"path exact", &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Path{Path: "/a"}}, get("h", "/a/"), false},
		{"regex full match", &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_SafeRegex{SafeRegex: re("/r/[0-9]+")}}, get("h", "/r/12"), true},
		{"regex not partial", &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_SafeRegex{SafeRegex: re("/r/[0-9]+")}}, get("h", "/r/12/x"), false},
		{"separated equal", &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_PathSeparatedPrefix{PathSeparatedPrefix: "/foo"}}, get("h", "/foo?x"), true},
		{"separated slash", &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_PathSeparatedPrefix{PathSeparatedPrefix: "/foo"}}, get("h", "/foo/bar"), true},
		{"separated word", &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_PathSeparatedPrefix{PathSeparatedPrefix: "/foo"}}, get("h", "/foobar"), false},
		{"method", &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}, Headers: []*routev3.HeaderMatcher{{Name: ":method", HeaderMatchSpecifier: sm(exact("POST"))}}}, get("h", "/"), false},
		{"authority", &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}, Headers: []*routev3.HeaderMatcher{{Name: ":authority", HeaderMatchSpecifier: sm(exact("h"))}}}, get("h", "/"), true},
		{"multi-value joined", &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}, Headers: []*routev3.HeaderMatcher{{Name: "x", HeaderMatchSpecifier: sm(exact("a,b"))}}}, get("h", "/", "x", "a", "x", "b"), true},
		{"ignore case", &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}, Headers: []*routev3.HeaderMatcher{{Name: "x", HeaderMatchSpecifier: sm(&matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Suffix{Suffix: "END"}, IgnoreCase: true})}}}, get("h", "/", "x", "the-end"), true},
		{"contains", &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}, Headers: []*routev3.HeaderMatcher{{Name: "x", HeaderMatchSpecifier: sm(&matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Contains{Contains: "mid"}})}}}, get("h", "/", "x", "amidb"), true},
		{"header regex", &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}, Headers: []*routev3.HeaderMatcher{{Name: "x", HeaderMatchSpecifier: sm(&matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_SafeRegex{SafeRegex: re("v[0-9]")}})}}}, get("h", "/", "x", "v12"), false},
		{"present", &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}, Headers: []*routev3.HeaderMatcher{{Name: "x", HeaderMatchSpecifier: &routev3.HeaderMatcher_PresentMatch{PresentMatch: true}}}}, get("h", "/", "x", ""), true},
		{"absent", &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}, Headers: []*routev3.HeaderMatcher{{Name: "x", HeaderMatchSpecifier: &routev3.HeaderMatcher_PresentMatch{PresentMatch: false}}}}, get("h", "/"), true},
		{"present inverted", &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}, Headers: []*routev3.HeaderMatcher{{Name: "x", HeaderMatchSpecifier: &routev3.HeaderMatcher_PresentMatch{PresentMatch: true}, InvertMatch: true}}}, get("h", "/"), true},
		{"inverted value", &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}, Headers: []*routev3.HeaderMatcher{{Name: "x", HeaderMatchSpecifier: sm(exact("a")), InvertMatch: true}}}, get("h", "/", "x", "b"), true},
		{"inverted missing", &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}, Headers: []*routev3.HeaderMatcher{{Name: "x", HeaderMatchSpecifier: sm(exact("a")), InvertMatch: true}}}, get("h", "/"), false},
		{"missing as empty", &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}, Headers: []*routev3.HeaderMatcher{{Name: "x", HeaderMatchSpecifier: sm(exact("a")), InvertMatch: true, TreatMissingHeaderAsEmpty: true}}}, get("h", "/"), true},
		{"range", &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}, Headers: []*routev3.HeaderMatcher{{Name: "x", HeaderMatchSpecifier: &routev3.HeaderMatcher_RangeMatch{RangeMatch: &typev3.Int64Range{Start: -10, End: 10}}}}}, get("h", "/", "x", "-3"), true},
		{"range end excluded", &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}, Headers: []*routev3.HeaderMatcher{{Name: "x", HeaderMatchSpecifier: &routev3.HeaderMatcher_RangeMatch{RangeMatch: &typev3.Int64Range{Start: -10, End: 10}}}}}, get("h", "/", "x", "10"), false},
		{"query exact decoded", &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}, QueryParameters: []*routev3.QueryParameterMatcher{{Name: "q", QueryParameterMatchSpecifier: &routev3.QueryParameterMatcher_StringMatch{StringMatch: exact("a b")}}}}, get("h", "/?q=a%20b"), true},
		{"query first value", &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}, QueryParameters: []*routev3.QueryParameterMatcher{{Name: "q", QueryParameterMatchSpecifier: &routev3.QueryParameterMatcher_StringMatch{StringMatch: exact("2")}}}}, get("h", "/?q=1&q=2"), false},
		{"query present", &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}, QueryParameters: []*routev3.QueryParameterMatcher{{Name: "q", QueryParameterMatchSpecifier: &routev3.QueryParameterMatcher_PresentMatch{PresentMatch: true}}}}, get("h", "/?q"), true},
		{"query missing", &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}, QueryParameters: []*routev3.QueryParameterMatcher{{Name: "q", QueryParameterMatchSpecifier: &routev3.QueryParameterMatcher_PresentMatch{PresentMatch: true}}}}, get("h", "/?qq=1"), false},
		{"legacy prefix_match", &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}, Headers: []*routev3.HeaderMatcher{{Name: "x", HeaderMatchSpecifier: &routev3.HeaderMatcher_PrefixMatch{PrefixMatch: "ab"}}}}, get("h", "/", "x", "abc"), true},
		{"legacy empty exact_match", &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}, Headers: []*routev3.HeaderMatcher{{Name: "x", HeaderMatchSpecifier: &routev3.HeaderMatcher_ExactMatch{ExactMatch: ""}}}}, get("h", "/", "x", "any"), true},
		{"no specifier needs presence", &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}, Headers: []*routev3.HeaderMatcher{{Name: "x"}}}, get("h", "/"), false},
		{"grpc", &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}, Grpc: &routev3.RouteMatch_GrpcRouteMatchOptions{}}, get("h", "/", "content-type", "application/grpc+proto"), true},
		{"not grpc", &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}, Grpc: &routev3.RouteMatch_GrpcRouteMatchOptions{}}, get("h", "/", "content-type", "application/json"), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rc := &routev3.RouteConfiguration{VirtualHosts: []*routev3.VirtualHost{{Name: "v", Domains: []string{"*"}, Routes: []*routev3.Route{{Name: "r", Match: tc.match, Action: fwd("c")}}}}}
			_, _, ok := mustCompile(t, rc).Match(tc.req)
			if ok != tc.want {
				t.Errorf("matched %v, want %v", ok, tc.want)
			}
		})
	}
}

func TestRuntimeFraction(t *testing.T) {
	rc := &routev3.RouteConfiguration{VirtualHosts: []*routev3.VirtualHost{{Name: "v", Domains: []string{"*"}, Routes: []*routev3.Route{
		{Name: "canary", Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}, RuntimeFraction: &corev3.RuntimeFractionalPercent{DefaultValue: &typev3.FractionalPercent{Numerator: 25}, RuntimeKey: "ignored"}}, Action: fwd("canary")},
		prefixRoute("main", "/"),
	}}}}
	tbl := mustCompile(t, rc, WithRand(&seqRand{}))
	n := 0
	for range 100 {
		if rt, _, _ := tbl.Match(get("h", "/")); rt.Name == "canary" {
			n++
		}
	}
	if n != 25 {
		t.Errorf("canary matched %d of 100, want 25", n)
	}
}

// TestConcurrentMatch uses one table from several goroutines (run with -race).
func TestConcurrentMatch(t *testing.T) {
	tbl := compileGolden(t, "seed-weights-50-50", "9080", &seqRand{})
	var wg sync.WaitGroup
	counts := make([]map[string]int, 4)
	for g := range counts {
		counts[g] = map[string]int{}
		wg.Go(func() {
			for range 200 {
				rt, _, ok := tbl.Match(get("reviews:9080", "/"))
				if ok {
					counts[g][rt.Pick().Name]++
				}
			}
		})
	}
	wg.Wait()
	total := map[string]int{}
	for _, c := range counts {
		for k, v := range c {
			total[k] += v
		}
	}
	if total[reviewsV1] != 400 || total[reviewsV3] != 400 {
		t.Errorf("picks %v, want 400 each", total)
	}
}
