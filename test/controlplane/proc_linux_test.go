package controlplane

import (
	"bufio"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// cgroup2Mount returns the mount point of the cgroup v2 hierarchy, if any.
func cgroup2Mount(t *testing.T) string {
	t.Helper()
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// ... mountpoint ... - fstype source options
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		if !ok || !strings.HasPrefix(post, "cgroup2 ") {
			continue
		}
		if fields := strings.Fields(pre); len(fields) > 4 {
			return fields[4]
		}
	}
	return ""
}

func TestStartProcessInCgroup(t *testing.T) {
	mnt := cgroup2Mount(t)
	if mnt == "" || os.Geteuid() != 0 {
		t.Skip("needs root and a cgroup v2 hierarchy")
	}
	name := fmt.Sprintf("weft-controlplane-test-%d", os.Getpid())
	dir := filepath.Join(mnt, name)
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Skipf("cannot create a cgroup: %v", err)
	}
	t.Cleanup(func() {
		if err := os.Remove(dir); err != nil {
			t.Errorf("remove cgroup: %v", err)
		}
	})
	cg, err := os.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer cg.Close()

	p, err := startProcess(slog.New(slog.DiscardHandler), t.TempDir(), "sleeper", "/bin/sh", []string{"-c", "exec sleep 60"}, cg)
	if err != nil {
		t.Fatal(err)
	}
	defer p.stop()
	data, err := os.ReadFile("/proc/" + strconv.Itoa(p.cmd.Process.Pid) + "/cgroup")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(data), "0::/"+name+"\n") {
		t.Errorf("process not in cgroup %s:\n%s", name, data)
	}
	if err := p.stop(); err != nil {
		t.Fatal(err)
	}
}
