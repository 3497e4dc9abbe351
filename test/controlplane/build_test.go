package controlplane

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// fakeCache lays out a complete cache under root with executable stand-ins
// for every binary.
func fakeCache(t *testing.T, root string) {
	t.Helper()
	kube, coredns, fortio := newComponents(root)
	for _, c := range []*component{kube, coredns, fortio} {
		if err := os.MkdirAll(c.binDir(), 0o755); err != nil {
			t.Fatal(err)
		}
		for _, name := range c.bins {
			if err := os.WriteFile(c.bin(name), []byte("#!/bin/sh\n"), 0o755); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.WriteFile(filepath.Join(c.dir, markerName), []byte(c.stamp), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func TestEnsureCached(t *testing.T) {
	root := t.TempDir()
	fakeCache(t, root)
	// No go command may run: an empty PATH makes any attempt fail.
	t.Setenv("PATH", "")

	var progress bytes.Buffer
	start := time.Now()
	bins, err := Ensure(t.Context(), root, &progress)
	if err != nil {
		t.Fatalf("Ensure: %v", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("cached Ensure took %s", d)
	}
	for name, path := range map[string]string{
		"kube-apiserver":          bins.KubeAPIServer,
		"kube-controller-manager": bins.KubeControllerManager,
		"kube-scheduler":          bins.KubeScheduler,
		"kube-proxy":              bins.KubeProxy,
		"kubectl":                 bins.Kubectl,
		"etcd":                    bins.Etcd,
		"coredns":                 bins.CoreDNS,
		"fortio":                  bins.Fortio,
	} {
		if !filepath.IsAbs(path) || filepath.Base(path) != name || !strings.HasPrefix(path, root) {
			t.Errorf("%s path = %q", name, path)
		}
	}
	if !strings.Contains(bins.KubeAPIServer, "k8s-"+KubernetesVersion+"/bin/") {
		t.Errorf("kube-apiserver not in a version-keyed directory: %s", bins.KubeAPIServer)
	}
	lines := strings.Split(strings.TrimSpace(progress.String()), "\n")
	want := []string{
		"kubernetes " + KubernetesVersion + " binaries cached",
		"coredns " + CoreDNSVersion + " binaries cached",
		"fortio " + FortioVersion + " binaries cached",
	}
	if len(lines) != len(want) {
		t.Fatalf("progress:\n%s", progress.String())
	}
	for i, line := range lines {
		if !strings.HasPrefix(line, "[") || !strings.HasSuffix(line, "s] "+want[i]) {
			t.Errorf("progress line %d = %q, want %q", i, line, want[i])
		}
	}
}

func TestComponentCached(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(t *testing.T, c *component)
		want   bool
	}{
		{name: "complete", mutate: func(*testing.T, *component) {}, want: true},
		{name: "no marker", mutate: func(t *testing.T, c *component) {
			must(t, os.Remove(filepath.Join(c.dir, markerName)))
		}, want: false},
		{name: "stale recipe", mutate: func(t *testing.T, c *component) {
			must(t, os.WriteFile(filepath.Join(c.dir, markerName), []byte("old recipe\n"), 0o644))
		}, want: false},
		{name: "binary missing", mutate: func(t *testing.T, c *component) {
			must(t, os.Remove(c.bin("etcd")))
		}, want: false},
		{name: "binary not executable", mutate: func(t *testing.T, c *component) {
			must(t, os.Chmod(c.bin("kubectl"), 0o644))
		}, want: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			fakeCache(t, root)
			kube, _, _ := newComponents(root)
			tt.mutate(t, kube)
			if got := kube.cached(); got != tt.want {
				t.Errorf("cached() = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestEnsureLockWaitHonoursContext(t *testing.T) {
	root := t.TempDir()
	kube, _, _ := newComponents(root)
	must(t, os.MkdirAll(kube.dir, 0o755))
	b := &builder{progress: &bytes.Buffer{}, start: time.Now()}
	unlock, err := b.lock(t.Context(), kube)
	if err != nil {
		t.Fatal(err)
	}
	defer unlock()
	// A second lock (another open file description) must wait, then give
	// up when its context ends.
	ctx, cancel := context.WithTimeout(t.Context(), 700*time.Millisecond)
	defer cancel()
	if _, err := b.lock(ctx, kube); err == nil {
		t.Fatal("second lock succeeded while the first is held")
	}
	if !strings.Contains(b.progress.(*bytes.Buffer).String(), "waiting for another build") {
		t.Errorf("no waiting progress line: %q", b.progress.(*bytes.Buffer).String())
	}
}

func TestDefaultCacheDir(t *testing.T) {
	t.Run("env", func(t *testing.T) {
		dir := t.TempDir()
		t.Setenv("WEFT_TOOLS_CACHE", dir)
		got, err := DefaultCacheDir()
		if err != nil || got != dir {
			t.Errorf("DefaultCacheDir() = %q, %v; want %q", got, err, dir)
		}
	})
	t.Run("repo root", func(t *testing.T) {
		t.Setenv("WEFT_TOOLS_CACHE", "")
		got, err := DefaultCacheDir()
		if err != nil {
			t.Fatal(err)
		}
		// The test runs in test/controlplane of the repository.
		wd, err := os.Getwd()
		if err != nil {
			t.Fatal(err)
		}
		want := filepath.Join(filepath.Dir(filepath.Dir(wd)), ".cache", "tools")
		if got != want {
			t.Errorf("DefaultCacheDir() = %q, want %q", got, want)
		}
	})
}

func TestFindRepoRoot(t *testing.T) {
	root := t.TempDir()
	nested := filepath.Join(root, "a", "b")
	must(t, os.MkdirAll(nested, 0o755))
	must(t, os.WriteFile(filepath.Join(root, "go.mod"), []byte("module github.com/weftmesh/weft\n\ngo 1.26\n"), 0o644))
	// A nested module of another path must be skipped.
	must(t, os.WriteFile(filepath.Join(root, "a", "go.mod"), []byte("module example.com/other\n"), 0o644))

	got, err := findRepoRoot(nested)
	if err != nil || got != root {
		t.Errorf("findRepoRoot = %q, %v; want %q", got, err, root)
	}
	if _, err := findRepoRoot(t.TempDir()); err == nil {
		t.Error("findRepoRoot outside the repository succeeded")
	}
}

func TestTailBuffer(t *testing.T) {
	var tb tailBuffer
	for i := range 3 * tailSize {
		tb.Write([]byte{byte('a' + i%26)})
	}
	tb.Write([]byte("END"))
	s := tb.String()
	if !strings.HasSuffix(s, "END") || len(s) > tailSize+3 {
		t.Errorf("tail has %d bytes, suffix %q", len(s), s[len(s)-5:])
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
