package bench

import (
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestParseCPUStat(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    uint64
		wantErr bool
	}{
		{"cgroup v2", "usage_usec 1234567\nuser_usec 1000000\nsystem_usec 234567\nnr_periods 0\n", 1234567, false},
		{"usage not first", "nr_periods 0\nusage_usec 42\n", 42, false},
		{"no usage", "user_usec 1\nsystem_usec 2\n", 0, true},
		{"bad number", "usage_usec x\n", 0, true},
		{"empty", "", 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseCPUStat(tt.in)
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Errorf("ParseCPUStat = %d, %v; want %d, error %v", got, err, tt.want, tt.wantErr)
			}
		})
	}
}

func TestParsePIDs(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    []int
		wantErr bool
	}{
		{"two", "4242\n4250\n", []int{4242, 4250}, false},
		{"empty cgroup", "", nil, false},
		{"garbage", "12\nabc\n", nil, true},
		{"zero", "0\n", nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParsePIDs(tt.in)
			if (err != nil) != tt.wantErr || !slices.Equal(got, tt.want) {
				t.Errorf("ParsePIDs = %v, %v; want %v, error %v", got, err, tt.want, tt.wantErr)
			}
		})
	}
}

const procStatus = `Name:	weft-nodeagent
Umask:	0022
State:	S (sleeping)
Pid:	4242
VmPeak:	 1882116 kB
VmSize:	 1882116 kB
VmHWM:	   27448 kB
VmRSS:	   25172 kB
Threads:	9
`

func TestParseStatusKiB(t *testing.T) {
	tests := []struct {
		name    string
		status  string
		field   string
		want    uint64
		wantErr bool
	}{
		{"peak", procStatus, "VmHWM", 27448, false},
		{"current", procStatus, "VmRSS", 25172, false},
		{"prefix is not the field", procStatus, "VmH", 0, true},
		{"kernel thread", "Name:\tkthreadd\nState:\tS (sleeping)\n", "VmHWM", 0, true},
		{"no unit", "VmHWM:\t12\n", "VmHWM", 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseStatusKiB(tt.status, tt.field)
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Errorf("ParseStatusKiB = %d, %v; want %d, error %v", got, err, tt.want, tt.wantErr)
			}
		})
	}
}

// fakeAgent lays out a cgroup with cpu.stat and cgroup.procs (and a child cgroup holding a
// second process) and the /proc files of its processes.
type fakeAgent struct {
	t      *testing.T
	cgroup string
	proc   string
	pids   []int
}

func newFakeAgent(t *testing.T, proc string, pids ...int) *fakeAgent {
	t.Helper()
	a := &fakeAgent{t: t, cgroup: t.TempDir(), proc: proc, pids: pids}
	child := filepath.Join(a.cgroup, "child")
	if err := os.Mkdir(child, 0o755); err != nil {
		t.Fatal(err)
	}
	a.write(filepath.Join(a.cgroup, "cgroup.procs"), strconv.Itoa(pids[0])+"\n")
	var rest []string
	for _, p := range pids[1:] {
		rest = append(rest, strconv.Itoa(p))
	}
	a.write(filepath.Join(child, "cgroup.procs"), strings.Join(rest, "\n"))
	a.write(filepath.Join(child, "cpu.stat"), "usage_usec 999999999\n") // counted in the parent's
	for _, p := range pids {
		if err := os.MkdirAll(filepath.Join(proc, strconv.Itoa(p)), 0o755); err != nil {
			t.Fatal(err)
		}
		a.write(filepath.Join(proc, strconv.Itoa(p), "clear_refs"), "")
	}
	return a
}

func (a *fakeAgent) write(path, content string) {
	a.t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		a.t.Fatal(err)
	}
}

func (a *fakeAgent) setCPU(usec int) {
	a.write(filepath.Join(a.cgroup, "cpu.stat"), "usage_usec "+strconv.Itoa(usec)+"\nuser_usec 0\n")
}

func (a *fakeAgent) setHWM(pid, kib int) {
	a.write(filepath.Join(a.proc, strconv.Itoa(pid), "status"), "Name:\tx\nVmHWM:\t "+strconv.Itoa(kib)+" kB\n")
}

func (a *fakeAgent) clearRefs(pid int) string {
	a.t.Helper()
	b, err := os.ReadFile(filepath.Join(a.proc, strconv.Itoa(pid), "clear_refs"))
	if err != nil {
		a.t.Fatal(err)
	}
	return string(b)
}

func TestAgentMeter(t *testing.T) {
	proc := t.TempDir()
	a1 := newFakeAgent(t, proc, 101, 102)
	a2 := newFakeAgent(t, proc, 201)
	a1.setCPU(5_000_000)
	a2.setCPU(7_000_000)
	clock := time.Date(2026, 11, 21, 22, 40, 0, 0, time.UTC)
	m := &AgentMeter{
		Agents: []Agent{{Node: "node-1", Cgroup: a1.cgroup}, {Node: "node-2", Cgroup: a2.cgroup}},
		Proc:   proc,
		Now:    func() time.Time { return clock },
	}
	stop, err := m.Start()
	if err != nil {
		t.Fatal(err)
	}
	for _, pid := range []int{101, 102} {
		if got := a1.clearRefs(pid); got != "5" {
			t.Errorf("clear_refs of %d = %q, want 5 (reset VmHWM)", pid, got)
		}
	}
	clock = clock.Add(10 * time.Second)
	a1.setCPU(5_000_000 + 1_500_000) // 0.15 vCPU over 10 s
	a2.setCPU(7_000_000 + 2_500_000) // 0.25 vCPU
	a1.setHWM(101, 20*1024)
	a1.setHWM(102, 1024)
	a2.setHWM(201, 30*1024)
	s, err := stop()
	if err != nil {
		t.Fatal(err)
	}
	want := Sample{
		AgentCPU: 4, AgentVCPU: 0.4, AgentRSS: 51,
		NodeMetric(AgentCPU, "node-1"): 1.5, NodeMetric(AgentVCPU, "node-1"): 0.15, NodeMetric(AgentRSS, "node-1"): 21,
		NodeMetric(AgentCPU, "node-2"): 2.5, NodeMetric(AgentVCPU, "node-2"): 0.25, NodeMetric(AgentRSS, "node-2"): 30,
	}
	if len(s) != len(want) {
		t.Errorf("sample %v, want %v", s, want)
	}
	for k, v := range want {
		if !approx(s[k], v) {
			t.Errorf("%s = %v, want %v", k, s[k], v)
		}
	}
}

func TestAgentMeterErrors(t *testing.T) {
	tests := []struct {
		name    string
		setup   func(a *fakeAgent)
		between func(a *fakeAgent) // after Start
		start   bool               // Start fails
		wantErr string             // substring of the error of Start or stop; "": none
	}{
		{name: "no cpu.stat", setup: func(*fakeAgent) {}, start: true, wantErr: "cpu.stat"},
		{
			name:    "cgroup recreated",
			setup:   func(a *fakeAgent) { a.setCPU(100) },
			between: func(a *fakeAgent) { a.setCPU(50); a.setHWM(1, 1) },
			wantErr: "went back",
		},
		{
			name:    "process exited",
			setup:   func(a *fakeAgent) { a.setCPU(100) },
			between: func(a *fakeAgent) { a.setCPU(200); a.setHWM(1, 1024) }, // pid 2 has no status
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			proc := t.TempDir()
			a := newFakeAgent(t, proc, 1, 2)
			tt.setup(a)
			m := &AgentMeter{Agents: []Agent{{Node: "node-1", Cgroup: a.cgroup}}, Proc: proc}
			stop, err := m.Start()
			if tt.start {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Start: err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tt.between(a)
			s, err := stop()
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatal(err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("stop: err = %v, want %q", err, tt.wantErr)
			case tt.wantErr == "" && s[AgentRSS] != 1:
				t.Errorf("RSS %v MiB, want 1 (the exited process counts nothing)", s[AgentRSS])
			}
		})
	}
	if _, err := (&AgentMeter{}).Start(); err == nil {
		t.Error("meter without agents started")
	}
}

func TestDeriveAgentMetrics(t *testing.T) {
	http := Workload{Kind: HTTP, QPS: 1000}
	bulk := Workload{Kind: Bulk, Streams: 1}
	tests := []struct {
		name string
		w    Workload
		s    Sample
		want map[Metric]float64 // absent: must not be set
	}{
		// 0.5 CPU-seconds for 15000 requests in 15 s: 0.033 vCPU at 1000 rps
		{"http", http, Sample{AgentCPU: 0.5, Requests: 15000}, map[Metric]float64{AgentVCPUPerKRPS: 0.5 * 1000 / 15000}},
		// 2 CPU-seconds for 2 GB: 16 Gbit, 0.125 vCPU per Gbit/s
		{"bulk", bulk, Sample{AgentCPU: 2, Bytes: 2e9}, map[Metric]float64{AgentVCPUPerGbps: 0.125}},
		{"no requests", http, Sample{AgentCPU: 0.5, Requests: 0}, nil},
		{"no accounting", http, Sample{Requests: 15000}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			deriveAgentMetrics(tt.w, tt.s)
			for _, m := range []Metric{AgentVCPUPerKRPS, AgentVCPUPerGbps} {
				want, ok := tt.want[m]
				got, has := tt.s[m]
				if ok != has || !approx(got, want) {
					t.Errorf("%s = %v (set %v), want %v (set %v)", m, got, has, want, ok)
				}
			}
		})
	}
}
