package load

import (
	"bufio"
	"context"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/weftmesh/weft/test/apps/client/report"
	"github.com/weftmesh/weft/test/apps/echo/echoserver"
)

func logger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewJSONHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
}

// roundRobin alternates requests between handlers, like a 50/50 canary.
func roundRobin(hs ...http.Handler) http.Handler {
	var n atomic.Uint64
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hs[(n.Add(1)-1)%uint64(len(hs))].ServeHTTP(w, r)
	})
}

func TestRun(t *testing.T) {
	tests := []struct{ n, c, want int }{{0, 4, 0}, {1, 8, 1}, {10, 1, 10}, {97, 7, 97}}
	for _, tt := range tests {
		var calls atomic.Int64
		rec := report.NewRecorder("test", "x")
		Run(t.Context(), tt.n, tt.c, func(context.Context) report.Sample {
			calls.Add(1)
			return report.Sample{OK: true, Status: "ok"}
		}, rec)
		if got := rec.Report(time.Second).Count; got != tt.want || calls.Load() != int64(tt.want) {
			t.Errorf("n=%d c=%d: count %d calls %d", tt.n, tt.c, got, calls.Load())
		}
	}
}

func TestRunStopsOnCancel(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	var calls atomic.Int64
	rec := report.NewRecorder("test", "x")
	Run(ctx, 1000, 2, func(context.Context) report.Sample {
		if calls.Add(1) == 10 {
			cancel()
		}
		return report.Sample{OK: true}
	}, rec)
	if n := calls.Load(); n < 10 || n > 12 {
		t.Errorf("calls after cancel = %d", n)
	}
}

func TestHTTPVersions(t *testing.T) {
	v1 := echoserver.New(echoserver.Config{Name: "books", Version: "v1"}, logger(t), nil)
	v2 := echoserver.New(echoserver.Config{Name: "books", Version: "v2", FailPattern: []int{200, 503}}, logger(t), nil)
	srv := httptest.NewServer(roundRobin(v1, v2))
	t.Cleanup(srv.Close)

	fn, client, err := HTTP(srv.URL+"/x?size=100", HTTPOptions{
		Header:      http.Header{"X-Request-Id": {"r"}, "Host": {"books.default"}},
		Timeout:     5 * time.Second,
		Concurrency: 4,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer client.CloseIdleConnections()
	rec := report.NewRecorder("http", srv.URL)
	// Concurrency 1 keeps the round robin deterministic.
	Run(t.Context(), 40, 1, fn, rec)
	r := rec.Report(time.Second)
	if want := map[string]int{"v1": 20, "v2": 20}; !maps.Equal(r.Versions, want) {
		t.Errorf("versions = %v, want %v", r.Versions, want)
	}
	if want := map[string]int{"200": 30, "503": 10}; !maps.Equal(r.Status, want) {
		t.Errorf("status = %v, want %v", r.Status, want)
	}
	if r.OK != 30 || r.Failed != 10 || len(r.Errors) != 0 || r.Share("v2") != 0.5 {
		t.Errorf("ok=%d failed=%d errors=%v share=%v", r.OK, r.Failed, r.Errors, r.Share("v2"))
	}
}

func TestHTTPH2CAndHost(t *testing.T) {
	var gotProto, gotHost atomic.Value
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gotProto.Store(r.Proto)
		gotHost.Store(r.Host)
		w.Header().Set(echoserver.HeaderName, "raw")
		w.Header().Set(echoserver.HeaderVersion, "v3")
		_, _ = w.Write([]byte("not json"))
	})
	srv := httptest.NewUnstartedServer(h)
	var p http.Protocols
	p.SetHTTP1(true)
	p.SetUnencryptedHTTP2(true)
	srv.Config.Protocols = &p
	srv.Start()
	t.Cleanup(srv.Close)

	fn, client, err := HTTP(srv.URL, HTTPOptions{H2C: true, Header: http.Header{"Host": {"example.test"}}, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer client.CloseIdleConnections()
	s := fn(t.Context())
	if !s.OK || s.Status != "200" || gotProto.Load() != "HTTP/2.0" || gotHost.Load() != "example.test" {
		t.Errorf("sample %+v proto %v host %v", s, gotProto.Load(), gotHost.Load())
	}
	// Non-JSON bodies are identified by the echo response headers.
	if len(s.Services) != 1 || s.Services[0] != (report.Service{Name: "raw", Version: "v3"}) {
		t.Errorf("services = %v", s.Services)
	}
}

func TestHTTPErrors(t *testing.T) {
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-time.After(5 * time.Second):
		}
	}))
	t.Cleanup(slow.Close)
	closed := httptest.NewServer(http.NotFoundHandler())
	closedURL := closed.URL
	closed.Close()

	tests := []struct {
		name, url, wantKind string
	}{
		{"timeout", slow.URL, "timeout"},
		{"refused", closedURL, "connection_refused"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fn, client, err := HTTP(tt.url, HTTPOptions{Timeout: 100 * time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			defer client.CloseIdleConnections()
			rec := report.NewRecorder("http", tt.url)
			Run(t.Context(), 3, 3, fn, rec)
			r := rec.Report(time.Second)
			if r.Failed != 3 || r.Errors[tt.wantKind] != 3 {
				t.Errorf("failed=%d errors=%v, want 3 %s", r.Failed, r.Errors, tt.wantKind)
			}
		})
	}
	if _, _, err := HTTP("://bad", HTTPOptions{}); err == nil {
		t.Error("bad URL accepted")
	}
}

func TestIdentifyEcho(t *testing.T) {
	tests := []struct {
		name string
		body string
		want []report.Service
	}{
		{"not json", "hello", nil},
		{"other json", `{"a":1}`, nil},
		{"leaf", `{"name":"ratings","version":"v1","padding":"xxxx"}`, []report.Service{{Name: "ratings", Version: "v1"}}},
		{"pod and peer", `{"name":"books","version":"v2","pod_name":"books-v2-1","remote_addr":"198.18.1.5:40112"}`,
			[]report.Service{{Name: "books", Version: "v2", Pod: "books-v2-1", Peer: "198.18.1.5"}}},
		{"chain", `{"name":"gw","version":"v1","upstreams":[{"url":"u","response":{"name":"books","version":"v2","upstreams":[{"response":{"name":"ratings","version":"v1"}},{"error":"x"}]}}]}`,
			[]report.Service{{Name: "gw", Version: "v1"}, {Name: "books", Version: "v2"}, {Name: "ratings", Version: "v1"}}},
	}
	for _, tt := range tests {
		got := IdentifyEcho([]byte(tt.body))
		if len(got) != len(tt.want) {
			t.Errorf("%s: got %v, want %v", tt.name, got, tt.want)
			continue
		}
		for i := range got {
			if got[i] != tt.want[i] {
				t.Errorf("%s: got %v, want %v", tt.name, got, tt.want)
			}
		}
	}
}

func TestParseHeader(t *testing.T) {
	tests := []struct {
		in, k, v string
		wantErr  bool
	}{
		{in: "X-A: b", k: "X-A", v: "b"},
		{in: "end-user:jason", k: "end-user", v: "jason"},
		{in: "X: a:b:c", k: "X", v: "a:b:c"},
		{in: "nocolon", wantErr: true},
		{in: ": v", wantErr: true},
	}
	for _, tt := range tests {
		k, v, err := ParseHeader(tt.in)
		if (err != nil) != tt.wantErr || k != tt.k || v != tt.v {
			t.Errorf("ParseHeader(%q) = %q, %q, %v", tt.in, k, v, err)
		}
	}
}

func listen(t *testing.T) net.Listener {
	t.Helper()
	var lc net.ListenConfig
	ln, err := lc.Listen(t.Context(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	return ln
}

func TestGRPC(t *testing.T) {
	ln := listen(t)
	srv, _ := echoserver.NewGRPCServer(echoserver.Config{Name: "ratings", Version: "v2"}, logger(t))
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(srv.Stop)

	tests := []struct {
		name       string
		opts       GRPCOptions
		wantStatus string
		wantKind   string
	}{
		{"serving", GRPCOptions{Timeout: 5 * time.Second}, "SERVING", ""},
		{"named service", GRPCOptions{Service: "ratings", Timeout: 5 * time.Second, NewConn: true}, "SERVING", ""},
		{"unknown service", GRPCOptions{Service: "nope", Timeout: 5 * time.Second}, "NotFound", "grpc_not_found"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fn, closeFn, err := GRPC(ln.Addr().String(), tt.opts)
			if err != nil {
				t.Fatal(err)
			}
			defer closeFn()
			rec := report.NewRecorder("grpc", ln.Addr().String())
			Run(t.Context(), 5, 2, fn, rec)
			r := rec.Report(time.Second)
			if r.Status[tt.wantStatus] != 5 {
				t.Errorf("status = %v", r.Status)
			}
			if tt.wantKind == "" && (r.OK != 5 || r.Versions["v2"] != 5) {
				t.Errorf("ok=%d versions=%v errors=%v", r.OK, r.Versions, r.ErrorSamples)
			}
			if tt.wantKind != "" && r.Errors[tt.wantKind] != 5 {
				t.Errorf("errors = %v", r.Errors)
			}
		})
	}
}

func TestTCP(t *testing.T) {
	echoLn := listen(t)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { _ = echoserver.ServeTCPEcho(ctx, echoLn, time.Second, logger(t)); close(done) }()
	t.Cleanup(func() { cancel(); <-done })

	// upper replies in upper case, so the client must flag a mismatch.
	upperLn := listen(t)
	go func() {
		for {
			c, err := upperLn.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				line, _ := bufio.NewReader(c).ReadString('\n')
				_, _ = c.Write([]byte(strings.ToUpper(line)))
			}()
		}
	}()

	tests := []struct {
		name, addr string
		wantOK     bool
		wantReply  string
	}{
		{"echo", echoLn.Addr().String(), true, "hello mesh"},
		{"mismatch", upperLn.Addr().String(), false, "HELLO MESH"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := report.NewRecorder("tcp", tt.addr)
			Run(t.Context(), 4, 2, TCP(tt.addr, TCPOptions{Send: "hello mesh", Timeout: 5 * time.Second}), rec)
			r := rec.Report(time.Second)
			if tt.wantOK && (r.OK != 4 || r.Status["ok"] != 4) {
				t.Errorf("ok=%d status=%v errors=%v", r.OK, r.Status, r.ErrorSamples)
			}
			if !tt.wantOK && (r.Failed != 4 || r.Errors["mismatch"] != 4) {
				t.Errorf("failed=%d errors=%v", r.Failed, r.Errors)
			}
			if r.Reply != tt.wantReply {
				t.Errorf("reply = %q, want %q", r.Reply, tt.wantReply)
			}
		})
	}
}
