package main

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/weftmesh/weft/test/apps/bulk/transfer"
	"github.com/weftmesh/weft/test/apps/internal/testlog"
)

func env(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

func TestSendRecv(t *testing.T) {
	var logs testlog.Buffer
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"recv"}, nil, &logs, env(map[string]string{"BULK_LISTEN": "127.0.0.1:0"}))
	}()
	addr := logs.WaitAttr(t, "listening", "addr")

	tests := []struct {
		name    string
		args    []string
		env     map[string]string
		streams int
		bytes   int64
	}{
		{"flags", []string{"send", "-to", addr, "-bytes", "10M", "-streams", "2", "-marker", "PLAINTEXT", "-json"}, nil, 2, 10e6},
		{"env", []string{"send"}, map[string]string{"BULK_TO": addr, "BULK_BYTES": "1MiB", "BULK_JSON": "1", "BULK_SEED": "77"}, 1, 1 << 20},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			if code := run(t.Context(), tt.args, &stdout, &stderr, env(tt.env)); code != exitOK {
				t.Fatalf("exit %d: %s", code, stderr.String())
			}
			var rep transfer.SendReport
			if err := json.Unmarshal(stdout.Bytes(), &rep); err != nil {
				t.Fatalf("decode %q: %v", stdout.String(), err)
			}
			if !rep.Match || len(rep.Streams) != tt.streams || rep.Bytes != tt.bytes*int64(tt.streams) || rep.Gbps <= 0 {
				t.Errorf("report %+v", rep)
			}
			if !strings.Contains(stderr.String(), "digest match") {
				t.Errorf("summary missing: %s", stderr.String())
			}
		})
	}

	cancel() // as SIGTERM would
	select {
	case code := <-done:
		if code != exitOK {
			t.Errorf("recv exit %d", code)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("recv did not stop")
	}
	var received int
	for _, rec := range logs.Records() {
		if rec["msg"] == "received" {
			received++
		}
	}
	if received != 3 {
		t.Errorf("recv logged %d transfers, want 3", received)
	}
}

func TestUsage(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want int
	}{
		{"no mode", nil, exitUsage},
		{"bad mode", []string{"push"}, exitUsage},
		{"send without -to", []string{"send"}, exitUsage},
		{"bad bytes", []string{"send", "-to", "127.0.0.1:1", "-bytes", "lots"}, exitUsage},
		{"bad streams", []string{"send", "-to", "127.0.0.1:1", "-streams", "0"}, exitUsage},
		{"long marker", []string{"send", "-to", "127.0.0.1:1", "-marker", strings.Repeat("m", 300)}, exitUsage},
		{"stray argument", []string{"recv", "extra"}, exitUsage},
		{"connection refused", []string{"send", "-to", "127.0.0.1:1", "-bytes", "1K"}, exitFailed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			if code := run(t.Context(), tt.args, &stdout, &stderr, env(nil)); code != tt.want {
				t.Errorf("exit %d, want %d; stderr: %s", code, tt.want, stderr.String())
			}
		})
	}
}
