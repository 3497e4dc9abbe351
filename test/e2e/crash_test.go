package e2e

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/weftmesh/weft/test/controlplane"
	"github.com/weftmesh/weft/test/harness"
	"github.com/weftmesh/weft/test/privileged"
)

// TestPrivilegedCleanAfterCrash kills a running harness with SIGKILL, as a crash would, and checks
// that Clean (make clean-harness) removes every namespace, cgroup, pin, process and directory the
// dead run left.
func TestPrivilegedCleanAfterCrash(t *testing.T) {
	privileged.Require(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	root, err := controlplane.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(ctx, "go", "run", "./test/harness/cmd/weft-harness", "up", "-nodes", "1")
	cmd.Dir = root
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // so the kill reaches the harness, not just go run
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	runRE := regexp.MustCompile(`cluster ([0-9a-f]{6}) ready`)
	var run string
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		line := sc.Text()
		t.Log(line)
		if m := runRE.FindStringSubmatch(line); m != nil {
			run = m[1]
		}
		if strings.TrimSpace(line) == "WEFT-HARNESS-READY" {
			break
		}
	}
	if run == "" {
		_ = cmd.Wait()
		t.Fatal("harness did not come up")
	}
	if left := harness.Leftovers(run); len(left) == 0 {
		t.Fatalf("run %s shows nothing on the host while up", run)
	}
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	_ = cmd.Wait()
	// cmd is `go run`; the harness is its child, killed too but possibly still dying (or not yet
	// reaped) when Wait returns. Clean skips runs whose owner lives, so wait for it to be gone.
	waitOwnerGone(t, run)

	removed, err := harness.Clean("", false)
	if err != nil {
		t.Fatalf("clean: %v", err)
	}
	t.Logf("clean removed: %v", removed)
	if left := harness.Leftovers(run); len(left) > 0 {
		t.Errorf("after clean, run %s left: %v", run, left)
	}
	if out, _ := exec.Command("pgrep", "-f", filepath.Join("/run/weft-harness", run)).Output(); len(out) > 0 {
		t.Errorf("processes of run %s still running: %s", run, out)
	}
}

// waitOwnerGone waits up to 10 s until the process named in run's owner.pid has exited (gone or
// a zombie), as Clean judges it.
func waitOwnerGone(t *testing.T, run string) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("/run/weft-harness", run, "owner.pid"))
	if err != nil {
		return
	}
	pid := strings.TrimSpace(string(b))
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		stat, err := os.ReadFile("/proc/" + pid + "/stat")
		if err != nil {
			return
		}
		if rest := string(stat[strings.LastIndexByte(string(stat), ')')+1:]); strings.HasPrefix(strings.TrimSpace(rest), "Z") {
			return
		}
	}
	t.Fatalf("the killed harness (pid %s) is still running after 10 s", pid)
}
