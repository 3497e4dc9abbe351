package route

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"google.golang.org/protobuf/encoding/protojson"
)

// goldenDir holds the controller's translation results; the files are read, the package is
// not imported (controller and waypoint stay apart).
const goldenDir = "../../controller/envoy/testdata"

// loadGolden returns the RouteConfigurations of one golden file, by name.
func loadGolden(t testing.TB, name string) map[string]*routev3.RouteConfiguration {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(goldenDir, name+".golden"))
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Routes []json.RawMessage `json:"routes"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	out := map[string]*routev3.RouteConfiguration{}
	for _, raw := range doc.Routes {
		rc := &routev3.RouteConfiguration{}
		if err := protojson.Unmarshal(raw, rc); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		out[rc.GetName()] = rc
	}
	return out
}

func compileGolden(t testing.TB, name, rc string, rnd Rand) *Table {
	t.Helper()
	cfg := loadGolden(t, name)[rc]
	if cfg == nil {
		t.Fatalf("%s: no route configuration %q", name, rc)
	}
	tbl, err := Compile(cfg, WithRand(rnd))
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return tbl
}

// TestGoldenCompile compiles every RouteConfiguration the controller's golden files hold:
// whatever the controller emits, the waypoint must accept.
func TestGoldenCompile(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(goldenDir, "*.golden"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no golden files: %v", err)
	}
	n := 0
	for _, f := range files {
		name := filepath.Base(f)
		name = name[:len(name)-len(".golden")]
		for rcName, rc := range loadGolden(t, name) {
			if _, err := Compile(rc); err != nil {
				t.Errorf("%s %s: %v", name, rcName, err)
			}
			n++
		}
	}
	if n < 10 {
		t.Errorf("only %d route configurations compiled", n)
	}
}

func get(host, target string, hdr ...string) *http.Request {
	r := httptest.NewRequest(http.MethodGet, target, nil)
	r.Host = host
	for i := 0; i+1 < len(hdr); i += 2 {
		r.Header.Add(hdr[i], hdr[i+1])
	}
	return r
}

// clusterOf matches r and picks its cluster, failing the test when nothing forwards it.
func clusterOf(t *testing.T, tbl *Table, r *http.Request) *Cluster {
	t.Helper()
	rt, _, ok := tbl.Match(r)
	if !ok || rt.Kind != KindForward {
		t.Fatalf("%s %s%s: no forwarding route (ok %v)", r.Method, r.Host, r.URL, ok)
	}
	return rt.Pick()
}

const (
	reviewsV1 = "outbound|9080|v1|reviews.default.svc.cluster.local"
	reviewsV2 = "outbound|9080|v2|reviews.default.svc.cluster.local"
	reviewsV3 = "outbound|9080|v3|reviews.default.svc.cluster.local"
)

func TestSeedAllV1(t *testing.T) {
	tbl := compileGolden(t, "seed-all-v1", "9080", &seqRand{})
	for _, host := range []string{"reviews", "reviews:9080", "REVIEWS.default.svc.cluster.local:9080", "10.96.0.20:9080"} {
		for _, path := range []string{"/", "/reviews/1", "/x?y=1"} {
			if c := clusterOf(t, tbl, get(host, path, "end-user", "jason")); c.Name != reviewsV1 {
				t.Errorf("%s%s: %s, want %s", host, path, c.Name, reviewsV1)
			}
		}
	}
	if _, _, ok := tbl.Match(get("unknown:9080", "/")); ok {
		t.Error("an unknown authority matched")
	}
	if c := clusterOf(t, tbl, get("ratings:9080", "/")); c.Name != "outbound|9080||ratings.default.svc.cluster.local" {
		t.Errorf("ratings: %s", c.Name)
	}
}

// shares picks n times and returns the share of each cluster.
func shares(t *testing.T, tbl *Table, r *http.Request, n int) map[string]float64 {
	t.Helper()
	rt, _, ok := tbl.Match(r)
	if !ok {
		t.Fatal("no route")
	}
	out := map[string]float64{}
	for range n {
		out[rt.Pick().Name] += 1 / float64(n)
	}
	return out
}

func TestSeedWeights(t *testing.T) {
	for _, tc := range []struct{ file, a, b string }{
		{"seed-weights-50-50", reviewsV1, reviewsV3},
		{"httproute-weights-50-50", "outbound|9080||reviews-v1.default.svc.cluster.local", "outbound|9080||reviews-v3.default.svc.cluster.local"},
	} {
		t.Run(tc.file, func(t *testing.T) {
			tbl := compileGolden(t, tc.file, "9080", &seqRand{})
			// The sequential source walks every value of the total weight: exactly 50/50.
			s := shares(t, tbl, get("reviews:9080", "/"), 400)
			if len(s) != 2 || s[tc.a] < 0.499 || s[tc.b] < 0.499 {
				t.Errorf("shares %v", s)
			}
		})
	}
}

func TestSeedHeaderMatch(t *testing.T) {
	tbl := compileGolden(t, "seed-header-match", "9080", &seqRand{})
	for _, tc := range []struct {
		hdr  []string
		want string
	}{
		{[]string{"end-user", "jason"}, reviewsV2},
		{[]string{"End-User", "jason"}, reviewsV2},
		{[]string{"end-user", "Jason"}, reviewsV1},
		{[]string{"end-user", "jason2"}, reviewsV1},
		{nil, reviewsV1},
	} {
		if c := clusterOf(t, tbl, get("reviews:9080", "/reviews/0", tc.hdr...)); c.Name != tc.want {
			t.Errorf("%v: %s, want %s", tc.hdr, c.Name, tc.want)
		}
	}
}

func TestSeedDelayTimeout(t *testing.T) {
	tbl := compileGolden(t, "seed-delay-timeout", "9080", &seqRand{})
	rt, _, ok := tbl.Match(get("ratings:9080", "/ratings/0"))
	if !ok {
		t.Fatal("no ratings route")
	}
	for range 10 {
		delay, abort, grpc := rt.Fault(rt.Pick()).Decide(tbl.Rand())
		if delay != 2*time.Second || abort != 0 || grpc != -1 {
			t.Fatalf("fault = %v %d %d, want 2s delay, no abort", delay, abort, grpc)
		}
	}
	if rt.Forward.Timeout != 0 {
		t.Errorf("ratings timeout %v, want none", rt.Forward.Timeout)
	}
	rv, _, _ := tbl.Match(get("reviews:9080", "/"))
	if rv.Forward.Timeout != 500*time.Millisecond || rv.Pick().Name != reviewsV2 {
		t.Errorf("reviews: timeout %v cluster %s", rv.Forward.Timeout, rv.Pick().Name)
	}
	if rv.Fault(nil) != nil {
		t.Error("reviews has a fault")
	}
}

func TestSeedRetries(t *testing.T) {
	tbl := compileGolden(t, "seed-retries", "9080", &seqRand{})
	rt, _, _ := tbl.Match(get("reviews:9080", "/"))
	p := rt.Forward.Retry
	if p == nil || p.NumRetries != 3 || p.PerTryTimeout != 2*time.Second {
		t.Fatalf("retry policy %+v", p)
	}
	for status, want := range map[int]bool{500: true, 502: true, 503: true, 504: true, 404: false, 200: false} {
		if got := p.RetriableResponse(status, http.Header{}); got != want {
			t.Errorf("status %d retried %v, want %v", status, got, want)
		}
	}
	if !p.RetriableFailure(FailurePerTryTimeout, true) || !p.RetriableFailure(FailureReset, true) {
		t.Error("5xx must retry per-try timeouts and resets")
	}
	// The default policy of other routes: connect-failure, refused-stream, unavailable,
	// cancelled and 503, twice.
	d, _, _ := tbl.Match(get("ratings:9080", "/"))
	dp := d.Forward.Retry
	if dp.NumRetries != 2 || !dp.RetriableResponse(503, nil) || dp.RetriableResponse(500, http.Header{}) ||
		!dp.RetriableResponse(200, http.Header{"Grpc-Status": {"14"}}) || !dp.RetriableFailure(FailureConnect, false) ||
		dp.RetriableFailure(FailureReset, true) || dp.RetriableFailure(FailurePerTryTimeout, true) {
		t.Errorf("default policy %+v behaves wrongly", dp)
	}
}

func TestSeedMirror(t *testing.T) {
	tbl := compileGolden(t, "seed-mirror", "9080", &seqRand{})
	rt, _, _ := tbl.Match(get("reviews:9080", "/"))
	if rt.Pick().Name != reviewsV1 {
		t.Errorf("primary %s", rt.Pick().Name)
	}
	if len(rt.Forward.Mirrors) != 1 {
		t.Fatalf("mirrors %v", rt.Forward.Mirrors)
	}
	m := rt.Forward.Mirrors[0]
	if m.Cluster != reviewsV2 || !m.Share.Hit(tbl.Rand()) || m.Host("reviews:9080") != "reviews-shadow:9080" {
		t.Errorf("mirror %+v, host %s", m, m.Host("reviews:9080"))
	}
}

func TestFieldsRoutes(t *testing.T) {
	tbl := compileGolden(t, "fields-routes", "9080", &seqRand{})
	host := "reviews:9080"
	exact := get(host, "/reviews/1?debug=1&q&r=xyz", "x-re", "aaa", "x-trace", "1", "x-version", "beta2", "x-skip", "no")
	rt, _, ok := tbl.Match(exact)
	if !ok || rt.Name != "matches.exact" {
		t.Fatalf("exact: %v %v", rt, ok)
	}
	for name, r := range map[string]*http.Request{
		"inverted header": get(host, "/reviews/1?debug=1&q&r=xyz", "x-re", "aaa", "x-trace", "1", "x-version", "beta2", "x-skip", "yes"),
		"missing query":   get(host, "/reviews/1?debug=1&r=xyz", "x-re", "aaa", "x-trace", "1", "x-version", "beta2", "x-skip", "no"),
		// Envoy: an inverted string match fails on a missing header.
		"missing inverted": get(host, "/reviews/1?debug=1&q&r=xyz", "x-re", "aaa", "x-trace", "1", "x-version", "beta2"),
		"regex header":     get(host, "/reviews/1?debug=1&q&r=xyz", "x-re", "aab", "x-trace", "1", "x-version", "beta2", "x-skip", "no"),
	} {
		if rt, _, _ := tbl.Match(r); rt != nil && rt.Name == "matches.exact" {
			t.Errorf("%s: matched matches.exact", name)
		}
	}
	// The weighted clusters' and route's header mutations, the rewrites.
	c := rt.Forward.Clusters[0]
	req := exact.Clone(exact.Context())
	req.Header.Set("x-remove", "1")
	req.Header.Set("x-add", "0")
	c.PrepareRequest(req)
	if req.URL.Path != "/v2/reviews" || req.URL.RawQuery != "debug=1&q&r=xyz" || req.Host != "reviews-new" {
		t.Errorf("rewritten to %s %s", req.Host, req.URL)
	}
	if req.Header.Get("x-dest") != "v1" || req.Header.Get("x-set") != "1" || len(req.Header.Values("x-add")) != 2 || req.Header.Get("x-remove") != "" {
		t.Errorf("request headers %v", req.Header)
	}
	resp := http.Header{"X-Internal": {"1"}}
	c.ApplyResponseHeaders(resp)
	if resp.Get("x-internal") != "" || resp.Get("x-resp") != "1" {
		t.Errorf("response headers %v", resp)
	}
	// CORS of the route.
	pre := get("reviews", "/api/x", "Origin", "https://a.example.org", "Access-Control-Request-Method", "POST")
	pre.Method = http.MethodOptions
	prt, _, ok := tbl.Match(pre)
	if !ok || prt.Name != "matches.prefix" {
		t.Fatalf("prefix route: %v", prt)
	}
	res := prt.CORS(nil).Evaluate(pre, tbl.Rand())
	if !res.Preflight || res.Header.Get("Access-Control-Allow-Origin") != "https://a.example.org" || res.Header.Get("Access-Control-Allow-Methods") != "GET,POST" || res.Header.Get("Access-Control-Max-Age") != "86400" {
		t.Errorf("preflight %+v", res)
	}
	// Case-insensitive prefix, and the :authority header match.
	if rt, _, _ := tbl.Match(get("reviews", "/API/v")); rt == nil || rt.Name != "matches.prefix" {
		t.Errorf("/API/v with authority reviews: %v", rt)
	}
	if rt, _, _ := tbl.Match(get(host, "/API/v")); rt == nil || rt.Name != "default.reviews.8" {
		t.Errorf("/API/v with authority reviews:9080: %v", rt)
	}
	// Faults, gRPC abort, redirects, direct response, regex rewrite.
	frt, _, _ := tbl.Match(get(host, "/fault"))
	f := frt.Fault(nil)
	if f == nil || f.Delay != 5*time.Second || f.DelayShare != (Fraction{25, 100}) || f.AbortHTTP != 503 || f.AbortShare != (Fraction{125000, 1000000}) {
		t.Errorf("fault %+v", f)
	}
	if len(frt.Forward.Mirrors) != 2 || frt.Forward.Mirrors[0].Share != (Fraction{100000, 1000000}) {
		t.Errorf("mirrors %+v", frt.Forward.Mirrors)
	}
	grt, _, _ := tbl.Match(get(host, "/grpc"))
	if _, st, code := grt.Fault(nil).Decide(tbl.Rand()); st != 200 || code != 14 {
		t.Errorf("grpc abort %d %d", st, code)
	}
	rrt, _, _ := tbl.Match(get(host, "/old?a=1"))
	if rrt.Kind != KindRedirect || rrt.Redirect.Status != 302 || rrt.Redirect.Location(get(host, "/old?a=1")) != "https://ratings:8080/new?a=1" {
		t.Errorf("redirect %v", rrt.Redirect.Location(get(host, "/old?a=1")))
	}
	lrt, _, _ := tbl.Match(get(host, "/legacy/a/b"))
	if lrt.Redirect.Status != 308 || lrt.Redirect.Location(get(host, "/legacy/a/b")) != "http://reviews:9080/modern/a/b" {
		t.Errorf("prefix redirect %d %s", lrt.Redirect.Status, lrt.Redirect.Location(get(host, "/legacy/a/b")))
	}
	drt, _, _ := tbl.Match(get(host, "/health"))
	if drt.Kind != KindDirect || drt.Direct.Status != 200 || string(drt.Direct.Body) != "ok" {
		t.Errorf("direct %+v", drt.Direct)
	}
	xr := get(host, "/rx/a/b?z=1")
	xrt, _, _ := tbl.Match(xr)
	xrt.Pick().PrepareRequest(xr)
	if xr.URL.Path != "/a/b" || xr.URL.RawQuery != "z=1" {
		t.Errorf("regex rewrite %s", xr.URL)
	}
}

func TestHTTPRouteFields(t *testing.T) {
	tbl := compileGolden(t, "httproute-fields", "9080", &seqRand{})
	host := "reviews:9080"
	for path, want := range map[string]string{
		"/api":               "default.reviews.12.0", // needs end-user and the query parameters
		"/v1/x":              "default.reviews.1.0",
		"/v1x":               "default.reviews.12.0", // path-separated prefix
		"/api/longer/prefix": "default.reviews-extra.0.0",
		// The controller orders the PathPrefix "/" rule before the regex one: first match wins.
		"/static/a.css": "default.reviews.12.0",
	} {
		if rt, _, ok := tbl.Match(get(host, path)); !ok || rt.Name != want {
			t.Errorf("%s: %v, want %s", path, rt, want)
		}
	}
	r := get(host, "/api/x?debug=1&v=12", "end-user", "jason", "x-canary", "yes")
	rt, _, _ := tbl.Match(r)
	if rt.Name != "default.reviews.0.1" {
		t.Fatalf("api match: %s", rt.Name)
	}
	v1 := get(host, "/v1/a/b")
	rt, _, _ = tbl.Match(v1)
	rt.Pick().PrepareRequest(v1)
	if v1.URL.Path != "/a/b" || v1.Host != "reviews.internal" {
		t.Errorf("/v1 rewrite: %s %s", v1.Host, v1.URL)
	}
	zero, _, _ := tbl.Match(get(host, "/zero"))
	if zero.Kind != KindDirect || zero.Direct.Status != 500 {
		t.Errorf("/zero %+v", zero.Direct)
	}
	b, _, _ := tbl.Match(get(host, "/broken"))
	if b.Forward.NotFoundStatus != 500 {
		t.Errorf("not found status %d", b.Forward.NotFoundStatus)
	}
	mv, _, _ := tbl.Match(get(host, "/moved"))
	if mv.Redirect.Status != 301 || mv.Redirect.Location(get(host, "/moved")) != "http://reviews:8443/here" {
		t.Errorf("moved: %d %s", mv.Redirect.Status, mv.Redirect.Location(get(host, "/moved")))
	}
}
