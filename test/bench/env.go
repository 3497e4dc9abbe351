package bench

import (
	"bufio"
	"context"
	"io"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"
)

// CollectEnv describes this machine: kernel release, CPU model and count, the Go version
// weft-bench was built with and the short git revision of repoRoot (empty when git fails, e.g.
// outside a checkout or before the first commit). The fortio version comes from the results.
func CollectEnv(ctx context.Context, repoRoot string) Env {
	e := Env{GoVersion: runtime.Version()}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil { // what uname -r prints
		e.Kernel = strings.TrimSpace(string(b))
	}
	if f, err := os.Open("/proc/cpuinfo"); err == nil {
		e.CPUModel, e.CPUs = ParseCPUInfo(f)
		f.Close()
	}
	if e.CPUs == 0 {
		e.CPUs = runtime.NumCPU()
	}
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		e.LoadAvg = ParseLoadAvg(string(b))
	}
	e.GitRevision = gitRevision(ctx, repoRoot)
	return e
}

// ParseLoadAvg returns the 1-minute load average of a /proc/loadavg line (0 if malformed).
func ParseLoadAvg(s string) float64 {
	f := strings.Fields(s)
	if len(f) == 0 {
		return 0
	}
	v, err := strconv.ParseFloat(f[0], 64)
	if err != nil {
		return 0
	}
	return v
}

// ParseCPUInfo returns the model name of the first processor in /proc/cpuinfo and the number
// of processors. Several distinct models are joined with " + ".
func ParseCPUInfo(r io.Reader) (model string, cpus int) {
	var models []string
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		switch strings.TrimSpace(k) {
		case "processor":
			cpus++
		case "model name":
			v = strings.Join(strings.Fields(v), " ")
			if !slices.Contains(models, v) {
				models = append(models, v)
			}
		}
	}
	return strings.Join(models, " + "), cpus
}

func gitRevision(ctx context.Context, dir string) string {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "git", "rev-parse", "--short", "HEAD")
	cmd.Dir = dir
	out, err := cmd.Output()
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(out))
}
