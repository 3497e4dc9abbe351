package bench

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestWaypointMeter(t *testing.T) {
	proc := t.TempDir()
	w := newFakeAgent(t, proc, 301)
	w.setCPU(1_000_000)
	clock := time.Date(2026, 11, 21, 22, 40, 0, 0, time.UTC)
	m := &WaypointMeter{Waypoint: Agent{Node: "node-1", Pod: "bench/waypoint-x", Cgroup: w.cgroup}, Proc: proc,
		Now: func() time.Time { return clock }}
	stop, err := m.Start()
	if err != nil {
		t.Fatal(err)
	}
	if got := w.clearRefs(301); got != "5" {
		t.Errorf("clear_refs = %q, want 5 (reset VmHWM)", got)
	}
	clock = clock.Add(5 * time.Second)
	w.setCPU(1_000_000 + 600_000) // 0.12 vCPU over 5 s
	w.setHWM(301, 24*1024)
	s, err := stop()
	if err != nil {
		t.Fatal(err)
	}
	want := Sample{WaypointCPU: 0.6, WaypointVCPU: 0.12, WaypointRSS: 24}
	if len(s) != len(want) {
		t.Errorf("sample %v, want exactly %v (no agent metrics)", s, want)
	}
	for k, v := range want {
		if !approx(s[k], v) {
			t.Errorf("%s = %v, want %v", k, s[k], v)
		}
	}

	// The waypoint pod's cgroup gone (pod replaced): Start says so, naming the waypoint.
	m.Waypoint.Cgroup = t.TempDir() + "/gone"
	if _, err := m.Start(); err == nil || !strings.Contains(err.Error(), "waypoint meter") {
		t.Errorf("Start on a missing cgroup: %v, want a waypoint meter error", err)
	}
}

// sampleMeter returns a fixed sample, or fails.
type sampleMeter struct {
	s                 Sample
	startErr, stopErr error
}

func (m sampleMeter) Start() (func() (Sample, error), error) {
	if m.startErr != nil {
		return nil, m.startErr
	}
	return func() (Sample, error) { return m.s, m.stopErr }, nil
}

func TestMeters(t *testing.T) {
	agents := sampleMeter{s: Sample{AgentCPU: 1, AgentRSS: 40}}
	waypoint := sampleMeter{s: Sample{WaypointCPU: 0.5, WaypointRSS: 20}}
	tests := []struct {
		name     string
		meters   Meters
		want     Sample
		startErr bool
		stopErr  bool
	}{
		{"joined", Meters{agents, waypoint}, Sample{AgentCPU: 1, AgentRSS: 40, WaypointCPU: 0.5, WaypointRSS: 20}, false, false},
		{"one fails to start", Meters{agents, sampleMeter{startErr: errors.New("no cgroup")}}, nil, true, false},
		{"one fails to stop", Meters{agents, sampleMeter{stopErr: errors.New("cgroup recreated")}}, nil, false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			stop, err := tt.meters.Start()
			if (err != nil) != tt.startErr {
				t.Fatalf("Start: %v, want error %v", err, tt.startErr)
			}
			if err != nil {
				return
			}
			s, err := stop()
			if (err != nil) != tt.stopErr {
				t.Fatalf("stop: %v, want error %v", err, tt.stopErr)
			}
			if len(s) != len(tt.want) {
				t.Errorf("sample %v, want %v", s, tt.want)
			}
			for k, v := range tt.want {
				if s[k] != v {
					t.Errorf("%s = %v, want %v", k, s[k], v)
				}
			}
		})
	}
}

func TestDeriveWaypointMetrics(t *testing.T) {
	http := Workload{ID: "http-1000rps", Kind: HTTP, QPS: 1000}
	s := Sample{Requests: 5000, RPS: 1000, WaypointCPU: 0.5, WaypointRSS: 30}
	deriveAgentMetrics(http, s)
	if !approx(s[WaypointVCPUPerKRPS], 0.1) || !approx(s[WaypointRSSPerKRPS], 30) {
		t.Errorf("per 1000 rps: vCPU %v, RSS %v; want 0.1 and 30", s[WaypointVCPUPerKRPS], s[WaypointRSSPerKRPS])
	}
	if _, ok := s[AgentVCPUPerKRPS]; ok {
		t.Error("agents' figures derived without agent accounting")
	}
	bulk := Sample{Bytes: 1e9, Gbps: 2, WaypointCPU: 0.5, WaypointRSS: 30}
	deriveAgentMetrics(Workload{Kind: Bulk}, bulk)
	if _, ok := bulk[WaypointVCPUPerKRPS]; ok {
		t.Error("waypoint per-1000-rps figure on a bulk workload")
	}
}

// TestRunnerScenarioWorkloads checks that a scenario with Workloads runs only those, and is
// neither entered nor measured for the others.
func TestRunnerScenarioWorkloads(t *testing.T) {
	plan, err := NewPlan(Quick)
	if err != nil {
		t.Fatal(err)
	}
	plan.Pause = 0
	plan.Workloads = plan.Workloads[:3] // http-1000rps, http-3200rps, http-max
	fe := &fakeExec{fortio: readTestdata(t, "fortio-1.75-keepalive.json"), bulk: []byte(bulkReport)}
	var events []string
	fe.fail = func(argv []string) error {
		if i := slices.Index(argv, "-labels"); i >= 0 && argv[i+1] != "warmup" {
			events = append(events, argv[i+1])
		}
		return nil
	}
	r := &Runner{Exec: fe, Fortio: "/bin/fortio", Bulk: "/bin/bulk", Plan: plan}
	got := r.Run(t.Context(),
		Scenario{Name: BaselineScenario, Target: testTarget},
		Scenario{Name: WeftL7Scenario, Target: testTarget, Workloads: plan.FixedRateHTTP()})
	want := []string{
		"no-mesh http-1000rps 1", "weft-l7 http-1000rps 1",
		"no-mesh http-3200rps 1", "weft-l7 http-3200rps 1",
		"no-mesh http-max 1",
	}
	if !slices.Equal(events, want) {
		t.Errorf("measured:\n%s\nwant:\n%s", strings.Join(events, "\n"), strings.Join(want, "\n"))
	}
	if len(got[0].Results) != 3 || len(got[1].Results) != 2 {
		t.Fatalf("results: %d and %d, want 3 and 2", len(got[0].Results), len(got[1].Results))
	}
	if !slices.Equal(got[1].Workloads, []string{"http-1000rps", "http-3200rps"}) || got[1].Runs("http-max") || !got[0].Runs("http-max") {
		t.Errorf("workloads of the scenarios: %v / %v", got[0].Workloads, got[1].Workloads)
	}
	if got[1].Result("http-max") != nil {
		t.Error("a result for a workload the scenario does not run")
	}
}
