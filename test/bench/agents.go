package bench

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Meter measures what a repetition costs besides the load generator's own figures.
type Meter interface {
	// Start begins a measurement window. The returned stop ends it and returns the metrics of
	// the window, which the runner adds to the repetition's sample.
	Start() (stop func() (Sample, error), err error)
}

// Agent is a node agent whose CPU and memory a run accounts.
type Agent struct {
	Node string `json:"node"`
	Pod  string `json:"pod"` // namespace/name
	// Cgroup is the cgroup v2 directory of the agent's pod: its processes and their CPU time.
	Cgroup string `json:"cgroup"`
}

// AgentMeter accounts the node agents' resources from the kernel's own bookkeeping, not from
// the agents: the CPU time is usage_usec of cpu.stat in each agent pod's cgroup (user and
// system time of all its processes and threads, restarts included), the memory is VmHWM, the
// peak resident set, of the processes in that cgroup, reset at the start of the window by
// writing 5 to /proc/<pid>/clear_refs, so that it is the peak of the window.
//
// The kernel work of the agents' own system calls is included; work the kernel does for the mesh
// in other tasks' context is not: eBPF programs run in the application's connect(), and softirq
// processing (TCP receive) is charged to whichever task it interrupted, or to no cgroup when the
// kernel accounts IRQ time separately (CONFIG_IRQ_TIME_ACCOUNTING).
type AgentMeter struct {
	Agents []Agent
	// Proc is the proc filesystem ("" is /proc); tests point it at a fixture.
	Proc string
	// Now is the clock of the window ("" is time.Now).
	Now func() time.Time
}

// Start implements Meter. It fails when an agent's cgroup cannot be read or a peak cannot be
// reset.
func (m *AgentMeter) Start() (func() (Sample, error), error) {
	if len(m.Agents) == 0 {
		return nil, errors.New("agent meter: no agents")
	}
	start := make([]uint64, len(m.Agents))
	for i, a := range m.Agents {
		u, err := cgroupCPUUsec(a.Cgroup)
		if err != nil {
			return nil, fmt.Errorf("agent meter: %s: %w", a.Node, err)
		}
		start[i] = u
		pids, err := cgroupPIDs(a.Cgroup)
		if err != nil {
			return nil, fmt.Errorf("agent meter: %s: %w", a.Node, err)
		}
		for _, pid := range pids {
			if err := m.resetPeakRSS(pid); err != nil {
				return nil, fmt.Errorf("agent meter: %s: %w", a.Node, err)
			}
		}
	}
	t0 := m.now()
	return func() (Sample, error) { return m.stop(start, m.now().Sub(t0)) }, nil
}

func (m *AgentMeter) stop(start []uint64, wall time.Duration) (Sample, error) {
	if wall <= 0 {
		return nil, fmt.Errorf("agent meter: window of %s", wall)
	}
	s := Sample{AgentCPU: 0, AgentRSS: 0}
	for i, a := range m.Agents {
		u, err := cgroupCPUUsec(a.Cgroup)
		if err != nil {
			return nil, fmt.Errorf("agent meter: %s: %w", a.Node, err)
		}
		if u < start[i] {
			return nil, fmt.Errorf("agent meter: %s: CPU usage went back from %d to %d µs: cgroup recreated", a.Node, start[i], u)
		}
		pids, err := cgroupPIDs(a.Cgroup)
		if err != nil {
			return nil, fmt.Errorf("agent meter: %s: %w", a.Node, err)
		}
		var kib uint64
		for _, pid := range pids {
			v, err := m.peakRSSKiB(pid)
			if errors.Is(err, fs.ErrNotExist) {
				continue // exited since cgroup.procs was read
			}
			if err != nil {
				return nil, fmt.Errorf("agent meter: %s: %w", a.Node, err)
			}
			kib += v
		}
		cpu := float64(u-start[i]) / 1e6
		rss := float64(kib) / 1024
		s[NodeMetric(AgentCPU, a.Node)] = cpu
		s[NodeMetric(AgentVCPU, a.Node)] = cpu / wall.Seconds()
		s[NodeMetric(AgentRSS, a.Node)] = rss
		s[AgentCPU] += cpu
		s[AgentRSS] += rss
	}
	s[AgentVCPU] = s[AgentCPU] / wall.Seconds()
	return s, nil
}

func (m *AgentMeter) now() time.Time {
	if m.Now != nil {
		return m.Now()
	}
	return time.Now()
}

func (m *AgentMeter) proc(pid int, file string) string {
	root := m.Proc
	if root == "" {
		root = "/proc"
	}
	return filepath.Join(root, strconv.Itoa(pid), file)
}

// resetPeakRSS sets the process's VmHWM to its current resident set (proc(5), clear_refs 5).
// A process that has exited is no error.
func (m *AgentMeter) resetPeakRSS(pid int) error {
	err := os.WriteFile(m.proc(pid, "clear_refs"), []byte("5"), 0)
	if err != nil && !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("reset peak RSS: %w", err)
	}
	return nil
}

func (m *AgentMeter) peakRSSKiB(pid int) (uint64, error) {
	b, err := os.ReadFile(m.proc(pid, "status"))
	if err != nil {
		return 0, err
	}
	return ParseStatusKiB(string(b), "VmHWM")
}

// cgroupCPUUsec returns usage_usec of the cgroup's cpu.stat.
func cgroupCPUUsec(dir string) (uint64, error) {
	b, err := os.ReadFile(filepath.Join(dir, "cpu.stat"))
	if err != nil {
		return 0, fmt.Errorf("cgroup CPU: %w", err)
	}
	return ParseCPUStat(string(b))
}

// cgroupPIDs returns the processes of the cgroup tree at dir (cgroup.procs of dir and of every
// cgroup below it).
func cgroupPIDs(dir string) ([]int, error) {
	var pids []int
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			return nil
		}
		b, err := os.ReadFile(filepath.Join(path, "cgroup.procs"))
		if err != nil {
			return err
		}
		p, err := ParsePIDs(string(b))
		if err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		pids = append(pids, p...)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("cgroup processes: %w", err)
	}
	return pids, nil
}

// ParseCPUStat returns usage_usec of a cgroup v2 cpu.stat file.
func ParseCPUStat(s string) (uint64, error) {
	for line := range strings.Lines(s) {
		f := strings.Fields(line)
		if len(f) == 2 && f[0] == "usage_usec" {
			v, err := strconv.ParseUint(f[1], 10, 64)
			if err != nil {
				return 0, fmt.Errorf("cpu.stat: usage_usec: %w", err)
			}
			return v, nil
		}
	}
	return 0, errors.New("cpu.stat: no usage_usec")
}

// ParsePIDs parses a cgroup.procs file: one process ID per line.
func ParsePIDs(s string) ([]int, error) {
	var pids []int
	for _, f := range strings.Fields(s) {
		pid, err := strconv.Atoi(f)
		if err != nil || pid <= 0 {
			return nil, fmt.Errorf("cgroup.procs: bad process ID %q", f)
		}
		pids = append(pids, pid)
	}
	return pids, nil
}

// ParseStatusKiB returns a "kB" field of /proc/<pid>/status, e.g. VmHWM or VmRSS, in KiB.
func ParseStatusKiB(status, field string) (uint64, error) {
	sc := bufio.NewScanner(strings.NewReader(status))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok || k != field {
			continue
		}
		f := strings.Fields(v)
		if len(f) != 2 || f[1] != "kB" {
			return 0, fmt.Errorf("status: %s: unexpected value %q", field, strings.TrimSpace(v))
		}
		n, err := strconv.ParseUint(f[0], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("status: %s: %w", field, err)
		}
		return n, nil
	}
	return 0, fmt.Errorf("status: no %s", field)
}

// deriveAgentMetrics adds the agents' CPU per unit of load to a sample that has AgentCPU:
// per 1000 requests for HTTP (vCPU per 1000 rps), per gigabit for bulk (vCPU per Gbit/s); and
// to an HTTP sample that has WaypointCPU, the waypoint's CPU and peak RSS per 1000 rps.
func deriveAgentMetrics(w Workload, s Sample) {
	if cpu, ok := s[WaypointCPU]; ok && w.Latency() {
		if req := s[Requests]; req > 0 {
			s[WaypointVCPUPerKRPS] = cpu * 1000 / req
		}
		if rss, ok := s[WaypointRSS]; ok && s[RPS] > 0 {
			s[WaypointRSSPerKRPS] = rss * 1000 / s[RPS]
		}
	}
	cpu, ok := s[AgentCPU]
	if !ok {
		return
	}
	switch w.Kind {
	case HTTP, GRPC:
		if req := s[Requests]; req > 0 {
			s[AgentVCPUPerKRPS] = cpu * 1000 / req
		}
	case Bulk:
		if b := s[Bytes]; b > 0 {
			s[AgentVCPUPerGbps] = cpu / (b * 8 / 1e9)
		}
	}
}
