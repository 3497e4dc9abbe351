package controlplane

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"
)

func TestProcessFailureIncludesLogTail(t *testing.T) {
	dir := t.TempDir()
	logger := slog.New(slog.DiscardHandler)
	script := "for i in $(seq 1 100); do echo line $i; done; echo fatal: bad flag >&2; exit 3"
	p, err := startProcess(logger, dir, "broken", "/bin/sh", []string{"-c", script}, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = p.waitReady(t.Context(), 10*time.Second, func(context.Context) error { return errors.New("not yet") })
	if err == nil {
		t.Fatal("waitReady succeeded for a process that exited")
	}
	msg := err.Error()
	for _, want := range []string{"broken: exited before becoming ready", "exit status 3", "fatal: bad flag", "line 100", "broken.log"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error lacks %q:\n%s", want, msg)
		}
	}
	if strings.Contains(msg, "line 10\n") {
		t.Errorf("error has more than the tail of the log:\n%s", msg)
	}
}

func TestProcessWaitReadyAndStop(t *testing.T) {
	tests := []struct {
		name    string
		check   func(calls int) error
		timeout time.Duration
		wantErr string
	}{
		{name: "ready after retries", timeout: 10 * time.Second, check: func(calls int) error {
			if calls < 3 {
				return fmt.Errorf("attempt %d", calls)
			}
			return nil
		}},
		{name: "deadline", timeout: 500 * time.Millisecond, wantErr: "not ready after 500ms", check: func(int) error {
			return errors.New("still starting")
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := startProcess(slog.New(slog.DiscardHandler), t.TempDir(), "sleeper", "/bin/sh", []string{"-c", "echo up; exec sleep 60"}, nil)
			if err != nil {
				t.Fatal(err)
			}
			calls := 0
			err = p.waitReady(t.Context(), tt.timeout, func(context.Context) error {
				calls++
				return tt.check(calls)
			})
			switch {
			case tt.wantErr == "" && err != nil:
				t.Errorf("waitReady: %v", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Errorf("waitReady = %v, want error containing %q", err, tt.wantErr)
			}
			start := time.Now()
			if err := p.stop(); err != nil {
				t.Fatalf("stop: %v", err)
			}
			if !p.exited() || time.Since(start) > 5*time.Second {
				t.Errorf("process not reaped promptly")
			}
			if err := p.stop(); err != nil {
				t.Errorf("second stop: %v", err)
			}
		})
	}
}

func TestStopPartialControlPlane(t *testing.T) {
	cp := &ControlPlane{logger: slog.New(slog.DiscardHandler)}
	if err := cp.Stop(); err != nil {
		t.Errorf("Stop of an empty control plane: %v", err)
	}
	p, err := startProcess(slog.New(slog.DiscardHandler), t.TempDir(), "sleeper", "/bin/sh", []string{"-c", "exec sleep 60"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	cp.procs = append(cp.procs, p)
	if err := cp.Stop(); err != nil {
		t.Errorf("Stop: %v", err)
	}
	if !p.exited() {
		t.Error("process still running after Stop")
	}
	if err := cp.Stop(); err != nil {
		t.Errorf("second Stop: %v", err)
	}
}

func TestFreePorts(t *testing.T) {
	ports, err := freePorts(5)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[int]bool{}
	for _, p := range ports {
		if p <= 0 || seen[p] {
			t.Errorf("bad or duplicate port %d in %v", p, ports)
		}
		seen[p] = true
	}
}

func TestStartValidatesConfig(t *testing.T) {
	tests := []struct {
		name    string
		cfg     Config
		wantErr string
	}{
		{name: "no dir", cfg: Config{}, wantErr: "Dir is required"},
		{name: "no binaries", cfg: Config{Dir: t.TempDir()}, wantErr: "is required"},
		{name: "bad service cidr", cfg: Config{Dir: t.TempDir(), ServiceCIDR: "nope", Binaries: Binaries{
			Etcd: "/bin/true", KubeAPIServer: "/bin/true", KubeControllerManager: "/bin/true", KubeScheduler: "/bin/true",
		}}, wantErr: "service cidr"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cp, err := Start(t.Context(), tt.cfg)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("Start = %v, %v; want error containing %q", cp, err, tt.wantErr)
			}
		})
	}
}

func TestStartReportsEtcdFailure(t *testing.T) {
	// A fake etcd that exits at once: Start must fail with its log tail.
	dir := t.TempDir()
	cfg := Config{Dir: dir, Binaries: Binaries{
		Etcd: "/bin/false", KubeAPIServer: "/bin/false", KubeControllerManager: "/bin/false", KubeScheduler: "/bin/false",
	}}
	_, err := Start(t.Context(), cfg)
	if err == nil || !strings.Contains(err.Error(), "etcd: exited before becoming ready") || !strings.Contains(err.Error(), "etcd.log") {
		t.Errorf("Start = %v; want an etcd failure with its log", err)
	}
}
