package report

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"net"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

func TestPercentile(t *testing.T) {
	hundred := make([]time.Duration, 100)
	for i := range hundred {
		hundred[i] = time.Duration(i+1) * time.Millisecond
	}
	tests := []struct {
		name   string
		sorted []time.Duration
		p      float64
		want   time.Duration
	}{
		{"empty", nil, 50, 0},
		{"single p50", []time.Duration{7}, 50, 7},
		{"single p99", []time.Duration{7}, 99, 7},
		{"hundred p50", hundred, 50, 50 * time.Millisecond},
		{"hundred p90", hundred, 90, 90 * time.Millisecond},
		{"hundred p99", hundred, 99, 99 * time.Millisecond},
		{"hundred p100", hundred, 100, 100 * time.Millisecond},
		{"four p50", []time.Duration{1, 2, 3, 4}, 50, 2},
		{"four p90", []time.Duration{1, 2, 3, 4}, 90, 4},
		{"tiny p", []time.Duration{1, 2, 3}, 0.0001, 1},
	}
	for _, tt := range tests {
		if got := Percentile(tt.sorted, tt.p); got != tt.want {
			t.Errorf("%s: got %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestSummarize(t *testing.T) {
	ds := []time.Duration{4 * time.Millisecond, 1 * time.Millisecond, 3 * time.Millisecond, 2 * time.Millisecond}
	got := Summarize(ds)
	want := Latency{Min: 1, Mean: 2.5, P50: 2, P90: 4, P99: 4, Max: 4}
	if got != want {
		t.Errorf("got %+v, want %+v", got, want)
	}
	if (Summarize(nil) != Latency{}) {
		t.Error("empty input should give zero Latency")
	}
}

func svc(name, version string) []Service { return []Service{{Name: name, Version: version}} }

func TestRecorderAggregation(t *testing.T) {
	refused := &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}
	samples := []Sample{
		{Status: "200", OK: true, Services: svc("books", "v1"), Latency: 10 * time.Millisecond},
		{Status: "200", OK: true, Services: svc("books", "v2"), Latency: 20 * time.Millisecond},
		{Status: "200", OK: true, Services: svc("books", "v2"), Latency: 30 * time.Millisecond},
		{Status: "200", OK: true, Services: svc("books", "v2"), Latency: 40 * time.Millisecond},
		{Status: "503", OK: false, Services: svc("books", "v1"), Latency: 50 * time.Millisecond},
		{OK: false, Err: fmt.Errorf("get: %w", context.DeadlineExceeded), Latency: 60 * time.Millisecond},
		{OK: false, Err: refused, Latency: 70 * time.Millisecond},
		{OK: false, Err: refused, Latency: 80 * time.Millisecond},
		{Status: "200", OK: true, Services: []Service{{Name: "gw", Version: "v1"}, {Name: "books", Version: "v2"}, {Name: "ratings", Version: "v1"}}, Latency: 90 * time.Millisecond},
		{Status: "200", OK: true, Services: []Service{{Name: "", Version: ""}}, Latency: 100 * time.Millisecond},
	}
	rec := NewRecorder("http", "http://books/")
	for _, s := range samples {
		rec.Add(s)
	}
	r := rec.Report(2 * time.Second)

	if r.Count != 10 || r.OK != 6 || r.Failed != 4 {
		t.Errorf("count/ok/failed = %d/%d/%d, want 10/6/4", r.Count, r.OK, r.Failed)
	}
	if r.RPS != 5 || r.Seconds != 2 {
		t.Errorf("rps=%v seconds=%v", r.RPS, r.Seconds)
	}
	checks := []struct {
		name      string
		got, want map[string]int
	}{
		{"status", r.Status, map[string]int{"200": 6, "503": 1}},
		{"versions", r.Versions, map[string]int{"v1": 3, "v2": 3, "unknown": 1}},
		{"names", r.Names, map[string]int{"books": 5, "gw": 1, "unknown": 1}},
		{"errors", r.Errors, map[string]int{"timeout": 1, "connection_refused": 2}},
		{"services books", r.Services["books"], map[string]int{"v1": 2, "v2": 4}},
		{"services ratings", r.Services["ratings"], map[string]int{"v1": 1}},
	}
	for _, c := range checks {
		if !maps.Equal(c.got, c.want) {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}
	if got := r.ServiceShare("books", "v2"); math.Abs(got-4.0/6) > 1e-9 {
		t.Errorf("ServiceShare(books, v2) = %v", got)
	}
	if got := r.Share("v2"); math.Abs(got-3.0/7) > 1e-9 {
		t.Errorf("Share(v2) = %v", got)
	}
	if got := r.Share("v9"); got != 0 {
		t.Errorf("Share(v9) = %v", got)
	}
	if want := (Latency{Min: 10, Mean: 55, P50: 50, P90: 90, P99: 100, Max: 100}); r.Latency != want {
		t.Errorf("latency = %+v, want %+v", r.Latency, want)
	}
	if len(r.ErrorSamples) != 2 {
		t.Errorf("error samples = %q, want 2 distinct", r.ErrorSamples)
	}
	sum := r.Summary()
	for _, want := range []string{"10 requests", "6 ok", "4 failed", "status 200=6 503=1", "versions unknown=1 v1=3 v2=3", "connection_refused=2", "p99=100.00ms"} {
		if !strings.Contains(sum, want) {
			t.Errorf("summary %q lacks %q", sum, want)
		}
	}

	// The report survives a JSON round trip (the -json output).
	data, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	var back Report
	if err := json.Unmarshal(data, &back); err != nil {
		t.Fatal(err)
	}
	if back.Count != r.Count || !maps.Equal(back.Versions, r.Versions) || back.Latency != r.Latency {
		t.Errorf("round trip mismatch: %s", data)
	}

	// Later Adds do not change an earlier Report.
	rec.Add(Sample{Status: "200", OK: true, Services: svc("books", "v1")})
	if r.Versions["v1"] != 3 || r.Count != 10 {
		t.Error("report aliased recorder state")
	}
}

func TestRecorderConcurrent(t *testing.T) {
	rec := NewRecorder("http", "x")
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := range 250 {
				v := "v1"
				if (w+i)%4 == 0 {
					v = "v2"
				}
				rec.Add(Sample{Status: "200", OK: true, Services: svc("b", v), Latency: time.Millisecond})
			}
		})
	}
	wg.Wait()
	r := rec.Report(time.Second)
	if r.Count != 1000 || r.Versions["v1"] != 750 || r.Versions["v2"] != 250 || r.Share("v2") != 0.25 {
		t.Errorf("count=%d versions=%v", r.Count, r.Versions)
	}
}

func TestErrorKind(t *testing.T) {
	tests := []struct {
		err  error
		want string
	}{
		{nil, ""},
		{context.DeadlineExceeded, "timeout"},
		{fmt.Errorf("x: %w", os.ErrDeadlineExceeded), "timeout"},
		{context.Canceled, "canceled"},
		{&net.OpError{Op: "dial", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}, "connection_refused"},
		{&net.OpError{Op: "read", Err: os.NewSyscallError("read", syscall.ECONNRESET)}, "connection_reset"},
		{syscall.EPIPE, "broken_pipe"},
		{syscall.EHOSTUNREACH, "unreachable"},
		{&net.DNSError{Err: "no such host", Name: "x"}, "dns"},
		{io.ErrUnexpectedEOF, "eof"},
		{fmt.Errorf("read: %w", io.EOF), "eof"},
		{&KindError{Kind: "mismatch", Err: io.EOF}, "mismatch"},
		{errors.New("boom"), "other"},
	}
	for _, tt := range tests {
		if got := ErrorKind(tt.err); got != tt.want {
			t.Errorf("ErrorKind(%v) = %q, want %q", tt.err, got, tt.want)
		}
	}
}
