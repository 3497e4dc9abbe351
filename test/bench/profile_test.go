package bench

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestProfiler(t *testing.T) {
	var mu sync.Mutex
	var got []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		got = append(got, r.URL.String())
		mu.Unlock()
		if strings.Contains(r.URL.Path, "allocs") && r.Host == "broken" {
			http.Error(w, "no", http.StatusInternalServerError)
			return
		}
		w.Write([]byte("profile of " + r.URL.Path))
	}))
	defer srv.Close()
	dial := func(ctx context.Context, network, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, network, srv.Listener.Addr().String())
	}
	dir := t.TempDir()
	p := &Profiler{Dir: dir, Targets: []ProfileTarget{
		{Name: "agent@node-1", Paths: []string{PathAgents, PathWaypoint}, BaseURL: "http://agent", Dial: dial},
		{Name: "waypoint", Paths: []string{PathWaypoint}, BaseURL: "http://broken", Dial: dial},
	}}
	http1k := Workload{ID: "http-1000rps", Kind: HTTP}
	bulk := Workload{ID: "tcp-1stream", Kind: Bulk}

	// weft-l4's path has the agent only: two profiles of the repetition's length.
	if err := p.Start(context.Background(), Scenario{Name: "weft-l4", Path: PathAgents}, http1k, 5*time.Second)(); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"weft-l4-http-1000rps-agent@node-1.cpu.pprof", "weft-l4-http-1000rps-agent@node-1.allocs.pprof"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Error(err)
		}
	}
	if len(got) != 2 || !strings.Contains(strings.Join(got, " "), "seconds=5") {
		t.Errorf("requests %q, want the agent's profile and allocs for 5 s", got)
	}

	// weft-l7 adds the waypoint, whose failing endpoint is reported; bulk profiles last 3 s.
	got = nil
	err := p.Start(context.Background(), Scenario{Name: "weft-l7", Path: PathWaypoint}, bulk, 5*time.Second)()
	if err == nil || !strings.Contains(err.Error(), "weft-l7-tcp-1stream-waypoint.allocs.pprof") {
		t.Errorf("error %v, want the waypoint's allocation profile to fail", err)
	}
	if len(got) != 4 || !strings.Contains(strings.Join(got, " "), "seconds=3") || strings.Contains(strings.Join(got, " "), "seconds=5") {
		t.Errorf("requests %q, want 4 of 3 s", got)
	}

	// A path without mesh processes profiles nothing.
	got = nil
	if err := p.Start(context.Background(), Scenario{Name: "no-mesh", Path: PathNone}, http1k, time.Second)(); err != nil || len(got) != 0 {
		t.Errorf("no-mesh: %v, requests %q", err, got)
	}
}
