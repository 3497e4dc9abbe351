package privileged

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TempCgroupAndPins creates a cgroup v2 directory and a bpffs directory for t, both removed at
// cleanup (pins first, then the cgroup once empty).
func TempCgroupAndPins(t testing.TB) (cgroup, pins string) {
	t.Helper()
	root, err := Cgroup2Root()
	if err != nil {
		t.Fatal(err)
	}
	bpffs, err := BPFFSRoot()
	if err != nil {
		t.Fatal(err)
	}
	name := fmt.Sprintf("weft-test-%d-%s", os.Getpid(), strings.NewReplacer("/", "-").Replace(t.Name()))
	cgroup, pins = filepath.Join(root, name), filepath.Join(bpffs, name)
	for _, d := range []string{cgroup, pins} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		if err := os.RemoveAll(pins); err != nil {
			t.Errorf("remove pins: %v", err)
		}
		if err := os.Remove(cgroup); err != nil {
			t.Errorf("remove cgroup: %v", err)
		}
	})
	return cgroup, pins
}

// InCgroup moves the whole test process into the cgroup v2 directory dir, runs fn, and moves it
// back to the cgroup it was in.
func InCgroup(t testing.TB, dir string, fn func()) {
	t.Helper()
	root, err := Cgroup2Root()
	if err != nil {
		t.Fatal(err)
	}
	orig, err := currentCgroup()
	if err != nil {
		t.Fatal(err)
	}
	pid := []byte(strconv.Itoa(os.Getpid()))
	if err := os.WriteFile(filepath.Join(dir, "cgroup.procs"), pid, 0o644); err != nil {
		t.Fatalf("enter cgroup %s: %v", dir, err)
	}
	defer func() {
		if err := os.WriteFile(filepath.Join(root, orig, "cgroup.procs"), pid, 0o644); err != nil {
			t.Fatalf("leave cgroup %s: %v", dir, err)
		}
	}()
	fn()
}

// currentCgroup returns this process's cgroup v2 path relative to the cgroup2 mount.
func currentCgroup() (string, error) {
	b, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return "", err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if p, ok := strings.CutPrefix(line, "0::"); ok {
			return p, nil
		}
	}
	return "", fmt.Errorf("no cgroup v2 entry in /proc/self/cgroup")
}
