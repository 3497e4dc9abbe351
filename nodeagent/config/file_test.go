package config

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/weftmesh/weft/nodeagent/state"
)

// agent is a fake agent: it applies snapshots to a store, and rejects those with a workload
// named "reject-me".
type agent struct {
	store state.Store
	mu    sync.Mutex
	calls []string // versions delivered
}

func (a *agent) apply(s *state.Snapshot) error {
	a.mu.Lock()
	a.calls = append(a.calls, s.Version())
	a.mu.Unlock()
	for _, w := range s.Workloads() {
		if w.Name == "reject-me" {
			return errors.New("workload reject-me is not welcome")
		}
	}
	return a.store.Replace(s)
}

func (a *agent) delivered() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]string(nil), a.calls...)
}

func workloadFile(names ...string) string {
	var b strings.Builder
	b.WriteString("workloads:\n")
	for i, n := range names {
		fmt.Fprintf(&b, "- {uid: u%d, name: %s, namespace: ns, addresses: [10.0.0.%d]}\n", i, n, i+1)
	}
	return b.String()
}

// writeAtomic replaces the file as a careful writer (or a ConfigMap volume) does.
func writeAtomic(t *testing.T, path, content string) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// waitFor polls cond for up to 5 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// startSource runs a FileSource on path in the background; the test's end stops it.
func startSource(t *testing.T, path string, a *agent) (*FileSource, <-chan error) {
	t.Helper()
	src := NewFileSource(path, FileOptions{Interval: 10 * time.Millisecond, Logger: quietLogger()})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- src.Run(ctx, a.apply) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Error("Run did not return after cancel")
		}
	})
	return src, done
}

func TestFileSourceMissingAtStart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "mesh.yaml")
	src := NewFileSource(path, FileOptions{Logger: quietLogger()})
	var a agent
	err := src.Run(context.Background(), a.apply)
	want := "config: open " + path + ": no such file or directory"
	if err == nil || err.Error() != want {
		t.Errorf("Run() = %v, want %q", err, want)
	}
	if len(a.delivered()) != 0 {
		t.Error("apply called")
	}
}

func TestFileSourceReload(t *testing.T) {
	path := filepath.Join(t.TempDir(), "mesh.yaml")
	v1, v2 := workloadFile("a"), workloadFile("a", "b")
	writeAtomic(t, path, v1)
	var a agent
	src, _ := startSource(t, path, &a)

	waitFor(t, "first snapshot", a.store.Applied)
	if got := src.Status(); got.Version != Version([]byte(v1)) || got.LastError != nil || got.Source != "file:"+path {
		t.Errorf("status after start = %+v", got)
	}

	// A change is delivered: by rename...
	writeAtomic(t, path, v2)
	waitFor(t, "second snapshot", func() bool { return len(a.store.Load().Workloads()) == 2 })
	// ...and by writing in place, even with the same size and within the same second.
	v3 := strings.Replace(v2, "name: b", "name: c", 1)
	if err := os.WriteFile(path, []byte(v3), 0o644); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "third snapshot", func() bool {
		w, ok := a.store.Load().WorkloadByUID("u1")
		return ok && w.Name == "c"
	})
	if got, want := a.store.Load().Version(), Version([]byte(v3)); got != want {
		t.Errorf("version = %s, want %s", got, want)
	}

	// Touching the file without changing it delivers nothing.
	n := len(a.delivered())
	now := time.Now()
	if err := os.Chtimes(path, now, now); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	if got := len(a.delivered()); got != n {
		t.Errorf("unchanged content delivered again (%d deliveries, want %d)", got, n)
	}
}

func TestFileSourceBadFileKeepsLastGood(t *testing.T) {
	path := filepath.Join(t.TempDir(), "mesh.yaml")
	good := workloadFile("a")
	writeAtomic(t, path, good)
	var a agent
	src, _ := startSource(t, path, &a)
	waitFor(t, "first snapshot", a.store.Applied)
	goodVersion := a.store.Load().Version()

	bad := "workloads:\n- {uid: u1, name: a, namespace: ns, addresses: [10.0.0.x]}\n"
	writeAtomic(t, path, bad)
	waitFor(t, "the error", func() bool { return src.Status().LastError != nil })
	st := src.Status()
	want := "config: " + path + `: workloads[0].addresses[0]: "10.0.0.x" is not an IP address; write an IPv4 or IPv6 address`
	if st.LastError.Error() != want {
		t.Errorf("LastError = %q, want %q", st.LastError, want)
	}
	if st.Version != goodVersion || st.Rejected != Version([]byte(bad)) || st.Failed.IsZero() {
		t.Errorf("status = %+v", st)
	}
	if a.store.Load().Version() != goodVersion {
		t.Error("the last good snapshot is no longer in force")
	}
	var ve *state.ValidationError
	if !errors.As(st.LastError, &ve) || ve.Errors[0].Field != "workloads[0].addresses[0]" {
		t.Errorf("LastError does not carry the field: %#v", st.LastError)
	}

	// Fixing the file recovers.
	fixed := workloadFile("a", "b")
	writeAtomic(t, path, fixed)
	waitFor(t, "recovery", func() bool { return src.Status().LastError == nil })
	if got := a.store.Load().Version(); got != Version([]byte(fixed)) {
		t.Errorf("version after fix = %s", got)
	}
}

func TestFileSourceNACK(t *testing.T) {
	path := filepath.Join(t.TempDir(), "mesh.yaml")
	writeAtomic(t, path, workloadFile("a"))
	var a agent
	src, _ := startSource(t, path, &a)
	waitFor(t, "first snapshot", a.store.Applied)
	goodVersion := a.store.Load().Version()

	rejected := workloadFile("a", "reject-me")
	writeAtomic(t, path, rejected)
	waitFor(t, "the NACK", func() bool { return src.Status().LastError != nil })
	st := src.Status()
	rv := Version([]byte(rejected))
	want := "config: version " + rv + " rejected by the agent: workload reject-me is not welcome"
	if st.LastError.Error() != want || st.Rejected != rv || st.Version != goodVersion {
		t.Errorf("status = %+v, want error %q", st, want)
	}

	// The rejected content is not delivered again while it does not change.
	time.Sleep(100 * time.Millisecond)
	if got := a.delivered(); len(got) != 2 || got[1] != rv {
		t.Errorf("deliveries = %v, want [%s %s]", got, goodVersion, rv)
	}
	if a.store.Load().Version() != goodVersion {
		t.Error("the last good snapshot is no longer in force")
	}

	// The next change is delivered.
	writeAtomic(t, path, workloadFile("a", "b"))
	waitFor(t, "recovery", func() bool { return src.Status().LastError == nil })
	if len(a.store.Load().Workloads()) != 2 {
		t.Error("recovered snapshot not applied")
	}
}

func TestFileSourceRemovedAndRestored(t *testing.T) {
	path := filepath.Join(t.TempDir(), "mesh.yaml")
	content := workloadFile("a")
	writeAtomic(t, path, content)
	var a agent
	src, _ := startSource(t, path, &a)
	waitFor(t, "first snapshot", a.store.Applied)

	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the error", func() bool { return src.Status().LastError != nil })
	want := "config: stat " + path + ": no such file or directory; the last good configuration stays in force"
	if got := src.Status().LastError.Error(); got != want {
		t.Errorf("LastError = %q, want %q", got, want)
	}
	if !a.store.Applied() || len(a.store.Load().Workloads()) != 1 {
		t.Error("the last good snapshot is no longer in force")
	}

	writeAtomic(t, path, content)
	waitFor(t, "recovery", func() bool { return src.Status().LastError == nil })
}

func TestFileSourceInvalidAtStart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "mesh.yaml")
	writeAtomic(t, path, "workloads: [{nmae: a}]\n")
	var a agent
	src, _ := startSource(t, path, &a)
	waitFor(t, "the error", func() bool { return src.Status().LastError != nil })
	if got, want := src.Status().LastError.Error(), "config: "+path+`: workloads[0].nmae: unknown field; did you mean "name"?`; got != want {
		t.Errorf("LastError = %q, want %q", got, want)
	}
	if a.store.Applied() {
		t.Error("an invalid file was applied")
	}
	writeAtomic(t, path, workloadFile("a"))
	waitFor(t, "recovery", a.store.Applied)
}

func TestFileSourceInterval(t *testing.T) {
	tests := []struct {
		in, want time.Duration
	}{
		{0, DefaultPollInterval},
		{time.Nanosecond, MinPollInterval},
		{time.Second, time.Second},
		{time.Hour, MaxPollInterval},
	}
	for _, tt := range tests {
		if got := NewFileSource("x", FileOptions{Interval: tt.in}).interval; got != tt.want {
			t.Errorf("interval(%v) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

func TestLoadFile(t *testing.T) {
	dir := t.TempDir()
	if _, err := LoadFile(filepath.Join(dir, "none.yaml")); err == nil || !strings.HasPrefix(err.Error(), "config: open ") {
		t.Errorf("LoadFile(missing) = %v", err)
	}
	bad := filepath.Join(dir, "bad.yaml")
	writeAtomic(t, bad, "services: 3\n")
	want := "config: " + bad + ": services: expected a list, found the number 3; write a list, e.g. [a, b]"
	if _, err := LoadFile(bad); err == nil || err.Error() != want {
		t.Errorf("LoadFile(bad) = %v, want %q", err, want)
	}
}
