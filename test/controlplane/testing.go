package controlplane

import (
	"context"
	"log/slog"
	"testing"
	"time"
)

// StartForTest starts a control plane for t with cfg (Binaries, Dir and Logger filled in when
// empty), building or finding its binaries in the default cache, and stops it when t ends. It
// skips t under -short. Its context ends 20 s before t's deadline, to leave time to stop and
// report.
func StartForTest(t *testing.T, cfg Config) (context.Context, *ControlPlane) {
	t.Helper()
	if testing.Short() {
		t.Skip("starts a real control plane (and may build it); skipped with -short")
	}
	ctx := t.Context()
	if deadline, ok := t.Deadline(); ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, deadline.Add(-20*time.Second))
		t.Cleanup(cancel)
	}
	if cfg.Binaries == (Binaries{}) {
		cacheDir, err := DefaultCacheDir()
		if err != nil {
			t.Fatal(err)
		}
		if cfg.Binaries, err = Ensure(ctx, cacheDir, t.Output()); err != nil {
			t.Fatalf("Ensure: %v\n(a cold build takes ~10 minutes on 2 cores: run `make deps` first or use go test -timeout 30m)", err)
		}
	}
	if cfg.Dir == "" {
		cfg.Dir = t.TempDir()
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(t.Output(), nil))
	}
	cp, err := Start(ctx, cfg)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() {
		if err := cp.Stop(); err != nil {
			t.Errorf("Stop: %v", err)
		}
	})
	return ctx, cp
}
