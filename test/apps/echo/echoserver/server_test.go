package echoserver

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewJSONHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
}

func newTestServer(t *testing.T, cfg Config) (*httptest.Server, *Server) {
	t.Helper()
	h := New(cfg, testLogger(t), &http.Client{Timeout: 5 * time.Second})
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv, h
}

// get performs a GET and decodes the echo Response.
func get(t *testing.T, c *http.Client, url string, hdr http.Header) (*http.Response, Response, []byte) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	var r Response
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		if err := json.Unmarshal(body, &r); err != nil {
			t.Fatalf("decode %q: %v", body, err)
		}
	}
	return resp, r, body
}

func TestEchoFields(t *testing.T) {
	cfg := Config{Name: "books", Version: "v2", PodName: "books-v2-abc", PodNamespace: "default", PodIP: "10.0.0.7", Hostname: "host1"}
	srv, _ := newTestServer(t, cfg)
	resp, r, _ := get(t, srv.Client(), srv.URL+"/some/path?a=1&b=two", http.Header{
		"X-Test":       {"one", "two"},
		"X-Request-Id": {"rid-1"},
	})
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status = %d", resp.StatusCode)
	}
	checks := []struct{ field, got, want string }{
		{"name", r.Name, "books"},
		{"version", r.Version, "v2"},
		{"pod_name", r.PodName, "books-v2-abc"},
		{"pod_namespace", r.PodNamespace, "default"},
		{"pod_ip", r.PodIP, "10.0.0.7"},
		{"hostname", r.Hostname, "host1"},
		{"method", r.Method, http.MethodGet},
		{"host", r.Host, strings.TrimPrefix(srv.URL, "http://")},
		{"path", r.Path, "/some/path"},
		{"query", r.Query, "a=1&b=two"},
		{"proto", r.Proto, "HTTP/1.1"},
		{"header X-Request-Id", r.Headers.Get("X-Request-Id"), "rid-1"},
		{"response header name", resp.Header.Get(HeaderName), "books"},
		{"response header version", resp.Header.Get(HeaderVersion), "v2"},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %q, want %q", c.field, c.got, c.want)
		}
	}
	if got := r.Headers.Values("X-Test"); !slices.Equal(got, []string{"one", "two"}) {
		t.Errorf("X-Test = %q", got)
	}
	if host, _, err := net.SplitHostPort(r.RemoteAddr); err != nil || host != "127.0.0.1" {
		t.Errorf("remote_addr = %q", r.RemoteAddr)
	}
	if r.Status != http.StatusOK || r.Fault != "" || r.Padding != "" {
		t.Errorf("status=%d fault=%q padding=%d", r.Status, r.Fault, len(r.Padding))
	}
}

func TestH2C(t *testing.T) {
	h := New(Config{Name: "echo", Version: "v1"}, testLogger(t), nil)
	srv := httptest.NewUnstartedServer(h)
	var p http.Protocols
	p.SetHTTP1(true)
	p.SetUnencryptedHTTP2(true)
	srv.Config.Protocols = &p
	srv.Start()
	t.Cleanup(srv.Close)

	var cp http.Protocols
	cp.SetUnencryptedHTTP2(true)
	c := &http.Client{Transport: &http.Transport{Protocols: &cp}, Timeout: 5 * time.Second}
	defer c.CloseIdleConnections()
	_, r, _ := get(t, c, srv.URL+"/h2", nil)
	if r.Proto != "HTTP/2.0" {
		t.Errorf("proto = %q, want HTTP/2.0", r.Proto)
	}
	_, r, _ = get(t, srv.Client(), srv.URL+"/h1", nil)
	if r.Proto != "HTTP/1.1" {
		t.Errorf("proto = %q, want HTTP/1.1", r.Proto)
	}
}

func TestProbes(t *testing.T) {
	srv, h := newTestServer(t, Config{Name: "e", FailPattern: []int{503}})
	tests := []struct {
		path     string
		draining bool
		want     int
	}{
		{PathHealthz, false, 200},
		{PathReadyz, false, 200},
		{PathHealthz, true, 200},
		{PathReadyz, true, 503},
	}
	for _, tt := range tests {
		h.SetDraining(tt.draining)
		resp, _, _ := get(t, srv.Client(), srv.URL+tt.path, nil)
		if resp.StatusCode != tt.want {
			t.Errorf("%s draining=%v: status %d, want %d", tt.path, tt.draining, resp.StatusCode, tt.want)
		}
	}
	// Probes must not advance the fail pattern nor be failed by it.
	if n := h.pattern.n.Load(); n != 0 {
		t.Errorf("probes advanced the fail pattern to %d", n)
	}
}

func TestParseFailPattern(t *testing.T) {
	tests := []struct {
		in      string
		want    []int
		wantErr bool
	}{
		{in: "", want: nil},
		{in: "503,503,200", want: []int{503, 503, 200}},
		{in: " 500 , 200 ", want: []int{500, 200}},
		{in: "abc", wantErr: true},
		{in: "503,,200", wantErr: true},
		{in: "99", wantErr: true},
		{in: "101", wantErr: true},
		{in: "600", wantErr: true},
	}
	for _, tt := range tests {
		got, err := ParseFailPattern(tt.in)
		if (err != nil) != tt.wantErr {
			t.Errorf("%q: err = %v, wantErr %v", tt.in, err, tt.wantErr)
			continue
		}
		if !slices.Equal(got, tt.want) {
			t.Errorf("%q = %v, want %v", tt.in, got, tt.want)
		}
	}
}

func TestFailPatternCycling(t *testing.T) {
	tests := []struct {
		name  string
		codes []int
		want  []int // statuses of consecutive requests
	}{
		{"none", nil, []int{200, 200, 200}},
		{"two of three fail", []int{503, 503, 200}, []int{503, 503, 200, 503, 503, 200, 503}},
		{"every third", FailEvery(3), []int{200, 200, 503, 200, 200, 503}},
		{"every request", FailEvery(1), []int{503, 503}},
		{"custom codes", []int{500, 200, 429}, []int{500, 200, 429, 500}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, _ := newTestServer(t, Config{Name: "e", FailPattern: tt.codes})
			for i, want := range tt.want {
				resp, r, _ := get(t, srv.Client(), srv.URL+"/", nil)
				if resp.StatusCode != want || r.Status != want {
					t.Fatalf("request %d: status %d (json %d), want %d", i, resp.StatusCode, r.Status, want)
				}
				if wantFault := want != 200; wantFault != (r.Fault == "pattern") {
					t.Errorf("request %d: fault = %q", i, r.Fault)
				}
			}
		})
	}
}

func TestFailPatternConcurrent(t *testing.T) {
	p := NewFailPattern([]int{503, 503, 200})
	const workers, per = 8, 300
	var mu sync.Mutex
	fails := 0
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			n := 0
			for range per {
				if p.Next() != 0 {
					n++
				}
			}
			mu.Lock()
			fails += n
			mu.Unlock()
		})
	}
	wg.Wait()
	if want := workers * per * 2 / 3; fails != want {
		t.Errorf("fails = %d, want %d", fails, want)
	}
}

func TestSizePadding(t *testing.T) {
	srv, _ := newTestServer(t, Config{Name: "e", MaxSize: 1 << 20})
	for _, size := range []int{0, 1, 1000, 1024, padChunk, padChunk*3 + 7, 1 << 20} {
		t.Run(strconv.Itoa(size), func(t *testing.T) {
			resp, r, body := get(t, srv.Client(), srv.URL+"/?size="+strconv.Itoa(size), nil)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("status %d: %s", resp.StatusCode, body)
			}
			if len(r.Padding) != size || strings.Trim(r.Padding, "x") != "" {
				t.Errorf("padding length %d, want %d of 'x'", len(r.Padding), size)
			}
			if resp.ContentLength != int64(len(body)) {
				t.Errorf("content-length %d, body %d", resp.ContentLength, len(body))
			}
			if r.Name != "e" || r.Query != "size="+strconv.Itoa(size) {
				t.Errorf("name=%q query=%q", r.Name, r.Query)
			}
		})
	}
}

func TestQueryOptions(t *testing.T) {
	srv, _ := newTestServer(t, Config{Name: "e", MaxDelay: time.Second, MaxSize: 100})
	tests := []struct {
		query     string
		want      int
		wantFault string
		minDelay  time.Duration
	}{
		{query: "status=418", want: 418, wantFault: "query"},
		{query: "status=503&size=10", want: 503, wantFault: "query"},
		{query: "delay=30ms", want: 200, minDelay: 30 * time.Millisecond},
		{query: "delay=20", want: 200, minDelay: 20 * time.Millisecond},
		{query: "status=abc", want: 400},
		{query: "status=42", want: 400},
		{query: "status=100", want: 400},
		{query: "delay=2s", want: 400},
		{query: "delay=-1s", want: 400},
		{query: "delay=soon", want: 400},
		{query: "size=101", want: 400},
		{query: "size=-1", want: 400},
	}
	for _, tt := range tests {
		t.Run(tt.query, func(t *testing.T) {
			start := time.Now()
			resp, r, _ := get(t, srv.Client(), srv.URL+"/x?"+tt.query, nil)
			if resp.StatusCode != tt.want || r.Status != tt.want {
				t.Errorf("status %d (json %d), want %d", resp.StatusCode, r.Status, tt.want)
			}
			if r.Fault != tt.wantFault {
				t.Errorf("fault = %q, want %q", r.Fault, tt.wantFault)
			}
			if tt.want == 400 && r.Error == "" {
				t.Error("400 without error message")
			}
			if el := time.Since(start); el < tt.minDelay {
				t.Errorf("elapsed %v < %v", el, tt.minDelay)
			}
		})
	}
}

func TestChain(t *testing.T) {
	ratings1, _ := newTestServer(t, Config{Name: "ratings", Version: "v1"})
	ratings2, _ := newTestServer(t, Config{Name: "ratings", Version: "v2"})
	books, _ := newTestServer(t, Config{Name: "books", Version: "v1", Calls: []string{ratings1.URL + "/r1", ratings2.URL + "/r2"}})
	gw, _ := newTestServer(t, Config{Name: "gw", Version: "v1", Calls: []string{books.URL + PathChain}})

	fwd := http.Header{
		"X-Request-Id": {"rid-42"},
		"End-User":     {"jason"},
		"Traceparent":  {"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"},
		"X-B3-Traceid": {"80f198ee56343ba864fe8b2a57d3eff7"},
		"X-B3-Spanid":  {"e457b5a2e4d86bd1"},
		"X-B3-Sampled": {"1"},
		"B3":           {"80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1"},
	}
	hdr := fwd.Clone()
	hdr.Set("X-Not-Forwarded", "secret")
	resp, r, body := get(t, gw.Client(), gw.URL+PathChain, hdr)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	if r.Name != "gw" || len(r.Upstreams) != 1 {
		t.Fatalf("gw response: name=%q upstreams=%d", r.Name, len(r.Upstreams))
	}
	var b Response
	if err := json.Unmarshal(r.Upstreams[0].Response, &b); err != nil {
		t.Fatalf("books response: %v", err)
	}
	if b.Name != "books" || b.Path != PathChain || len(b.Upstreams) != 2 {
		t.Fatalf("books: name=%q path=%q upstreams=%d", b.Name, b.Path, len(b.Upstreams))
	}
	for i, want := range []struct{ version, path string }{{"v1", "/r1"}, {"v2", "/r2"}} {
		u := b.Upstreams[i]
		var rr Response
		if err := json.Unmarshal(u.Response, &rr); err != nil {
			t.Fatalf("ratings %d: %v", i, err)
		}
		if u.Status != 200 || u.Failed() || rr.Name != "ratings" || rr.Version != want.version || rr.Path != want.path {
			t.Errorf("ratings %d: status=%d name=%q version=%q path=%q", i, u.Status, rr.Name, rr.Version, rr.Path)
		}
		for k := range fwd {
			if got, want := rr.Headers.Get(k), fwd.Get(k); got != want {
				t.Errorf("ratings %d header %s = %q, want %q", i, k, got, want)
			}
		}
		if got := rr.Headers.Get("X-Not-Forwarded"); got != "" {
			t.Errorf("ratings %d got non-forwarded header %q", i, got)
		}
	}
	// A non-chain path does not call upstreams.
	_, r, _ = get(t, gw.Client(), gw.URL+"/plain", nil)
	if len(r.Upstreams) != 0 {
		t.Errorf("/plain made %d upstream calls", len(r.Upstreams))
	}
}

func TestChainUpstreamFailure(t *testing.T) {
	failing, _ := newTestServer(t, Config{Name: "ratings", FailPattern: []int{503}})
	closed := httptest.NewServer(http.NotFoundHandler())
	closedURL := closed.URL
	closed.Close()
	tests := []struct {
		name      string
		calls     []string
		wantError bool
	}{
		{"status 503", []string{failing.URL}, false},
		{"connection refused", []string{closedURL}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, _ := newTestServer(t, Config{Name: "books", Calls: tt.calls})
			resp, r, _ := get(t, srv.Client(), srv.URL+PathChain, nil)
			if resp.StatusCode != http.StatusBadGateway || len(r.Upstreams) != 1 || !r.Upstreams[0].Failed() {
				t.Fatalf("status %d upstreams %+v", resp.StatusCode, r.Upstreams)
			}
			if (r.Upstreams[0].Error != "") != tt.wantError {
				t.Errorf("upstream error = %q", r.Upstreams[0].Error)
			}
		})
	}
}

func TestTCPEcho(t *testing.T) {
	var lc net.ListenConfig
	ln, err := lc.Listen(t.Context(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- ServeTCPEcho(ctx, ln, 100*time.Millisecond, testLogger(t)) }()

	var d net.Dialer
	c, err := d.DialContext(t.Context(), "tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	for _, msg := range []string{"hello\n", "world, again\n"} {
		if _, err := io.WriteString(c, msg); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, len(msg))
		if _, err := io.ReadFull(c, buf); err != nil {
			t.Fatal(err)
		}
		if string(buf) != msg {
			t.Errorf("echo %q, want %q", buf, msg)
		}
	}
	// Shutdown force-closes the idle connection after the grace period.
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("serve: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("ServeTCPEcho did not return after shutdown")
	}
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Error("connection still open after shutdown")
	}
}

func BenchmarkEchoPadding1K(b *testing.B) {
	h := New(Config{Name: "bench", Version: "v1"}, slog.New(slog.DiscardHandler), nil)
	req := httptest.NewRequest(http.MethodGet, "/bench?size=1024", nil)
	req.Header.Set("X-Request-Id", "abc")
	b.ReportAllocs()
	for b.Loop() {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
	}
}
