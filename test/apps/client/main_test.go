package main

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/weftmesh/weft/test/apps/client/report"
	"github.com/weftmesh/weft/test/apps/echo/echoserver"
)

func env(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

func echoServer(t *testing.T, cfg echoserver.Config) string {
	t.Helper()
	logger := slog.New(slog.NewJSONHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
	srv := httptest.NewServer(echoserver.New(cfg, logger, nil))
	t.Cleanup(srv.Close)
	return srv.URL
}

func TestRunHTTP(t *testing.T) {
	ok := echoServer(t, echoserver.Config{Name: "books", Version: "v2"})
	failing := echoServer(t, echoserver.Config{Name: "books", Version: "v1", FailPattern: []int{503, 200}})
	tests := []struct {
		name      string
		args      []string
		env       map[string]string
		wantCode  int
		wantCount int
		wantOK    int
	}{
		{"json report", []string{"http", ok + "/x", "-n", "20", "-c", "4", "-H", "End-User: jason", "-json"}, nil, exitOK, 20, 20},
		{"flags before target", []string{"http", "-n", "3", "-json", ok}, nil, exitOK, 3, 3},
		{"env settings", []string{"http"}, map[string]string{"CLIENT_TARGET": ok, "CLIENT_N": "7", "CLIENT_JSON": "true", "CLIENT_HEADERS": "A: 1\nB: 2"}, exitOK, 7, 7},
		{"failures exit 1", []string{"http", failing, "-n", "10", "-json"}, nil, exitFailed, 10, 5},
		{"allow-fail", []string{"http", failing, "-n", "10", "-json", "-allow-fail"}, nil, exitOK, 10, 5},
		{"h2c to HTTP/1-only server fails", []string{"http", ok, "-h2c", "-n", "2", "-json"}, nil, exitFailed, 2, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(t.Context(), tt.args, &stdout, &stderr, env(tt.env))
			if code != tt.wantCode {
				t.Fatalf("exit %d, want %d; stderr: %s", code, tt.wantCode, stderr.String())
			}
			var r report.Report
			if err := json.Unmarshal(stdout.Bytes(), &r); err != nil {
				t.Fatalf("decode report %q: %v", stdout.String(), err)
			}
			if r.Count != tt.wantCount || r.OK != tt.wantOK {
				t.Errorf("count=%d ok=%d, want %d/%d", r.Count, r.OK, tt.wantCount, tt.wantOK)
			}
			if tt.wantOK > 0 && r.Names["books"] != tt.wantCount {
				t.Errorf("names = %v", r.Names)
			}
			if !strings.Contains(stderr.String(), "requests") {
				t.Errorf("summary missing from stderr: %s", stderr.String())
			}
		})
	}
}

func TestRunSummaryAndUsage(t *testing.T) {
	ok := echoServer(t, echoserver.Config{Name: "books", Version: "v1"})
	tests := []struct {
		name     string
		args     []string
		wantCode int
		wantOut  string
	}{
		{"summary line", []string{"http", ok, "-n", "2"}, exitOK, "versions v1=2"},
		{"no mode", nil, exitUsage, ""},
		{"bad mode", []string{"udp", "x"}, exitUsage, ""},
		{"no target", []string{"http"}, exitUsage, ""},
		{"two targets", []string{"http", ok, ok}, exitUsage, ""},
		{"bad header", []string{"http", ok, "-H", "nocolon"}, exitUsage, ""},
		{"bad concurrency", []string{"http", ok, "-c", "0"}, exitUsage, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			if code := run(t.Context(), tt.args, &stdout, &stderr, env(nil)); code != tt.wantCode {
				t.Fatalf("exit %d, want %d; stderr: %s", code, tt.wantCode, stderr.String())
			}
			if lines := strings.Count(stdout.String(), "\n"); tt.wantOut != "" && (lines != 1 || !strings.Contains(stdout.String(), tt.wantOut)) {
				t.Errorf("stdout %q lacks one line with %q", stdout.String(), tt.wantOut)
			}
		})
	}
}

func TestRunTCPAndGRPC(t *testing.T) {
	var lc net.ListenConfig
	tcpLn, err := lc.Listen(t.Context(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	grpcLn, err := lc.Listen(t.Context(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	logger := slog.New(slog.DiscardHandler)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { _ = echoserver.ServeTCPEcho(ctx, tcpLn, time.Second, logger); close(done) }()
	defer func() { cancel(); <-done }()
	gs, _ := echoserver.NewGRPCServer(echoserver.Config{Name: "ratings", Version: "v1"}, logger)
	go func() { _ = gs.Serve(grpcLn) }()
	defer gs.Stop()

	var stdout, stderr bytes.Buffer
	if code := run(t.Context(), []string{"tcp", tcpLn.Addr().String(), "-send", "ping mesh"}, &stdout, &stderr, env(nil)); code != exitOK {
		t.Fatalf("tcp exit %d: %s", code, stderr.String())
	}
	if first, _, _ := strings.Cut(stdout.String(), "\n"); first != "ping mesh" {
		t.Errorf("tcp reply line %q", first)
	}

	stdout.Reset()
	if code := run(t.Context(), []string{"grpc", grpcLn.Addr().String(), "-n", "5", "-json"}, &stdout, &stderr, env(nil)); code != exitOK {
		t.Fatalf("grpc exit %d: %s", code, stderr.String())
	}
	var r report.Report
	if err := json.Unmarshal(stdout.Bytes(), &r); err != nil {
		t.Fatal(err)
	}
	if r.Status["SERVING"] != 5 || r.Versions["v1"] != 5 {
		t.Errorf("grpc report status=%v versions=%v", r.Status, r.Versions)
	}
}
