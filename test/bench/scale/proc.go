package scale

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/weftmesh/weft/test/bench"
)

// clockTicks is USER_HZ, the unit of utime and stime in /proc/<pid>/stat (100 on Linux).
const clockTicks = 100

// ProcCPU returns the user + system CPU time of process pid, all threads, from /proc.
func ProcCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	return ParseStatCPU(string(b))
}

// ParseStatCPU returns utime + stime of a /proc/<pid>/stat line.
func ParseStatCPU(stat string) (time.Duration, error) {
	f, err := statFields(stat)
	if err != nil {
		return 0, err
	}
	// After the command: state(3) ppid(4) … utime(14) stime(15).
	if len(f) < 13 {
		return 0, errors.New("/proc stat: too few fields")
	}
	u, err1 := strconv.ParseUint(f[11], 10, 64)
	s, err2 := strconv.ParseUint(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, fmt.Errorf("/proc stat: %w", err)
	}
	return time.Duration(u+s) * time.Second / clockTicks, nil
}

// statFields returns the fields of a /proc/<pid>/stat line after the command name (which
// may contain spaces and parentheses).
func statFields(stat string) ([]string, error) {
	i := strings.LastIndexByte(stat, ')')
	if i < 0 {
		return nil, errors.New("/proc stat: no command")
	}
	return strings.Fields(stat[i+1:]), nil
}

// ProcMem returns the resident set and its peak (VmRSS, VmHWM) of process pid in bytes.
func ProcMem(pid int) (rss, peak uint64, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, err
	}
	r, err1 := bench.ParseStatusKiB(string(b), "VmRSS")
	p, err2 := bench.ParseStatusKiB(string(b), "VmHWM")
	if err := errors.Join(err1, err2); err != nil {
		return 0, 0, err
	}
	return r << 10, p << 10, nil
}

// ChildPIDs returns the children of the current process whose command (comm) is one of names.
func ChildPIDs(names ...string) map[string][]int {
	out := map[string][]int{}
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return out
	}
	self := os.Getpid()
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue
		}
		s := string(b)
		open, close := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
		if open < 0 || close < open {
			continue
		}
		comm := s[open+1 : close]
		f, err := statFields(s)
		if err != nil || len(f) < 2 {
			continue
		}
		if ppid, _ := strconv.Atoi(f[1]); ppid != self {
			continue
		}
		for _, n := range names {
			if comm == n {
				out[n] = append(out[n], pid)
			}
		}
	}
	return out
}

// Sampler samples a process's resident set while it runs, to catch its peak between the
// reads of VmHWM, and keeps the time series' maximum.
type Sampler struct {
	pid      int
	interval time.Duration

	mu      sync.Mutex
	peakRSS uint64
	samples int
	stop    chan struct{}
	done    chan struct{}
}

// StartSampler samples pid every interval until Stop.
func StartSampler(pid int, interval time.Duration) *Sampler {
	s := &Sampler{pid: pid, interval: interval, stop: make(chan struct{}), done: make(chan struct{})}
	go s.loop()
	return s
}

func (s *Sampler) loop() {
	defer close(s.done)
	t := time.NewTicker(s.interval)
	defer t.Stop()
	for {
		if rss, _, err := ProcMem(s.pid); err == nil {
			s.mu.Lock()
			s.peakRSS = max(s.peakRSS, rss)
			s.samples++
			s.mu.Unlock()
		}
		select {
		case <-s.stop:
			return
		case <-t.C:
		}
	}
}

// Stop ends the sampling and returns the largest resident set seen and the number of samples.
func (s *Sampler) Stop() (peakRSS uint64, samples int) {
	select {
	case <-s.stop:
	default:
		close(s.stop)
	}
	<-s.done
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.peakRSS, s.samples
}

// Controller is bin/weft-controller running as a child process.
type Controller struct {
	cmd     *exec.Cmd
	log     *os.File
	LogPath string
	Admin   string // http://host:port of the admin server
	waited  chan struct{}
	waitErr error
}

// StartController runs bin with args, its output in dir/weft-controller.log. The process
// gets SIGKILL if the benchmark dies.
func StartController(bin, dir, adminAddr string, args ...string) (*Controller, error) {
	logPath := filepath.Join(dir, "weft-controller.log")
	f, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	c := &Controller{cmd: cmd, log: f, LogPath: logPath, Admin: "http://" + adminAddr, waited: make(chan struct{})}
	go func() {
		c.waitErr = cmd.Wait()
		close(c.waited)
	}()
	return c, nil
}

// PID is the controller's process id.
func (c *Controller) PID() int { return c.cmd.Process.Pid }

// Exited reports whether the process ended, and how.
func (c *Controller) Exited() (bool, error) {
	select {
	case <-c.waited:
		return true, c.waitErr
	default:
		return false, nil
	}
}

// Stop sends SIGTERM, waits up to 10 s, then kills the process. Safe to call twice.
func (c *Controller) Stop() error {
	if ok, _ := c.Exited(); !ok {
		_ = c.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-c.waited:
		case <-time.After(10 * time.Second):
			_ = c.cmd.Process.Kill()
			<-c.waited
		}
	}
	return c.log.Close()
}

// LogTail returns the last n lines of the controller's log.
func (c *Controller) LogTail(n int) string {
	b, err := os.ReadFile(c.LogPath)
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

var adminClient = &http.Client{Timeout: 10 * time.Second}

func (c *Controller) get(ctx context.Context, path string) ([]byte, int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.Admin+path, nil)
	if err != nil {
		return nil, 0, err
	}
	resp, err := adminClient.Do(req)
	if err != nil {
		return nil, 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return b, resp.StatusCode, err
}

// WaitReady polls /readyz until it answers 200, the process exits or ctx is done.
func (c *Controller) WaitReady(ctx context.Context) error {
	for {
		if ok, err := c.Exited(); ok {
			return fmt.Errorf("weft-controller exited (%v):\n%s", err, c.LogTail(20))
		}
		if _, code, err := c.get(ctx, "/readyz"); err == nil && code == http.StatusOK {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("weft-controller not ready: %w\n%s", context.Cause(ctx), c.LogTail(20))
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// NodeStatus is the part of the controller's /debug/push entries the benchmark reads.
type NodeStatus struct {
	Node    string `json:"node"`
	Streams int    `json:"streams"`
	// ConnectedSince is when the controller accepted the node's stream (after authenticating it).
	ConnectedSince time.Time `json:"connectedSince"`
	Pushed         string    `json:"pushed"`
	PushedAt       time.Time `json:"pushedAt"`
	Resources      int       `json:"resources"`
	Sent           string    `json:"sent"`
	SentAt         time.Time `json:"sentAt"`
	Acked          string    `json:"acked"`
	AckedAt        time.Time `json:"ackedAt"`
	Nacked         string    `json:"nacked"`
	NackError      string    `json:"nackError"`
}

// PushStatus reads /debug/push.
func (c *Controller) PushStatus(ctx context.Context) (map[string]NodeStatus, error) {
	b, code, err := c.get(ctx, "/debug/push")
	if err != nil {
		return nil, err
	}
	if code != http.StatusOK {
		return nil, fmt.Errorf("/debug/push: %d %s", code, strings.TrimSpace(string(b)))
	}
	var list []NodeStatus
	if err := json.Unmarshal(b, &list); err != nil {
		return nil, fmt.Errorf("/debug/push: %w", err)
	}
	out := make(map[string]NodeStatus, len(list))
	for _, s := range list {
		out[s.Node] = s
	}
	return out, nil
}

// Metrics reads /metrics and returns the samples without labels (name → value).
func (c *Controller) Metrics(ctx context.Context) (map[string]float64, error) {
	b, code, err := c.get(ctx, "/metrics")
	if err != nil {
		return nil, err
	}
	if code != http.StatusOK {
		return nil, fmt.Errorf("/metrics: %d", code)
	}
	return ParseMetrics(string(b)), nil
}

// ParseMetrics returns the unlabelled samples of a Prometheus text exposition, plus the
// labelled histogram buckets as name{le="x"}.
func ParseMetrics(text string) map[string]float64 {
	out := map[string]float64{}
	sc := bufio.NewScanner(strings.NewReader(text))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		name := line[:i]
		if strings.Contains(name, "{") && !strings.Contains(name, "{le=") {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			continue
		}
		out[name] = v
	}
	return out
}
