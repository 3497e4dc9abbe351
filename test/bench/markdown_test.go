package bench

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// httpSamples returns n HTTP samples around the given medians, spread by ±5 % and ±10 %.
func httpSamples(n int, p50, p90, p99, p999, rps float64, sockets float64) []Sample {
	f := []float64{1, 0.95, 1.1}
	var out []Sample
	for i := range n {
		k := f[i%len(f)]
		out = append(out, Sample{
			P50: p50 * k, P90: p90 * k, P99: p99 * k, P999: p999 * k,
			RPS: rps / k, Requests: rps / k * 15, Errors: 0, Sockets: sockets,
		})
	}
	return out
}

// withAgents adds the node agents' accounting to samples: CPU seconds and peak MiB per node over
// a window of secs, as AgentMeter and the runner record them.
func withAgents(w Workload, samples []Sample, secs float64, cpu, rss [2]float64) []Sample {
	for i, s := range samples {
		k := 1 + 0.1*float64(i)
		s[AgentCPU], s[AgentRSS] = 0, 0
		for n, node := range []string{"node-1", "node-2"} {
			c, m := cpu[n]*k, rss[n]*k
			s[NodeMetric(AgentCPU, node)] = c
			s[NodeMetric(AgentVCPU, node)] = c / secs
			s[NodeMetric(AgentRSS, node)] = m
			s[AgentCPU] += c
			s[AgentRSS] += m
		}
		s[AgentVCPU] = s[AgentCPU] / secs
		deriveAgentMetrics(w, s)
	}
	return samples
}

func bulkSamples(n int, gbps float64) []Sample {
	f := []float64{1, 0.9, 1.05}
	var out []Sample
	for i := range n {
		out = append(out, Sample{Gbps: gbps * f[i%len(f)], Bytes: 2e9, Errors: 0})
	}
	return out
}

// goldenRun builds the runs rendered by the golden tests.
func goldenRun(t *testing.T, name string) *Run {
	t.Helper()
	mode := Full
	if name == "quick" {
		mode = Quick
	}
	plan, err := NewPlan(mode)
	if err != nil {
		t.Fatal(err)
	}
	if mode == Full {
		plan.Duration = Duration(10 * time.Second) // the figures below assume 10 s
	}
	n := plan.Repetitions
	started := time.Date(2026, 11, 21, 22, 40, 0, 0, time.UTC)
	r := &Run{
		Schema: SchemaVersion, ID: started.Format("20060102-150405"), Mode: mode,
		Started: started, Finished: started.Add(5 * time.Minute),
		Env: Env{
			Kernel: "6.1.0-28-amd64", CPUModel: "Intel(R) Xeon(R) Platinum 8375C CPU @ 2.90GHz", CPUs: 2,
			GoVersion: "go1.26.8", FortioVersion: "1.75.3", GitRevision: "abc1234", LoadAvg: 0.12,
		},
		Plan:     plan,
		Baseline: BaselineScenario,
	}
	target := Target{Namespace: "bench", ClientPod: "bench-client-x", ClientNode: "node-1", ServerNode: "node-2",
		HTTPURL: "http://198.18.2.4:8080/", BulkAddr: "198.18.2.5:5001"}
	agents := name == "two-scenarios" || name == "three-scenarios" || name == "same-node"
	// result builds the result of a workload; in the two-scenario run with the agents' figures.
	result := func(id string, samples []Sample, cpu, rss [2]float64) Result {
		if agents {
			w := r.Workload(id)
			secs := float64(time.Duration(plan.Duration)) / float64(time.Second)
			if w.Kind == Bulk {
				secs = samples[0][Bytes] * 8 / 1e9 / samples[0][Gbps]
			}
			samples = withAgents(*w, samples, secs, cpu, rss)
		}
		return NewResult(id, samples)
	}
	idle, idleRSS := [2]float64{0.02, 0.03}, [2]float64{21.3, 22.1}
	noMesh := ScenarioResult{Name: BaselineScenario, Description: "plain pod→pod", Target: target, Results: []Result{
		result("http-1000rps", httpSamples(n, 0.110, 0.150, 0.300, 0.900, 1000, 16), idle, idleRSS),
		result("http-3200rps", httpSamples(n, 0.120, 0.170, 0.400, 1.200, 3200, 16), idle, idleRSS),
		result("http-max", httpSamples(n, 0.900, 1.400, 2.500, 5.000, 17500, 16), idle, idleRSS),
		result("http-newconn", httpSamples(n, 1.500, 2.600, 4.600, 9.000, 9900, 9900*15), idle, idleRSS),
		result("tcp-1stream", bulkSamples(n, 5.07), idle, idleRSS),
		result("tcp-4streams", bulkSamples(n, 6.52), idle, idleRSS),
	}}
	noMesh.Results[1].Notes = []string{"rep 2: 3010 of 3200 rps achieved"}
	r.Scenarios = append(r.Scenarios, noMesh)
	if agents {
		r.Agents = []Agent{
			{Node: "node-1", Pod: "weft-system/weft-nodeagent-a", Cgroup: "/sys/fs/cgroup/weft/node-1/pod-a"},
			{Node: "node-2", Pod: "weft-system/weft-nodeagent-b", Cgroup: "/sys/fs/cgroup/weft/node-2/pod-b"},
		}
		errored := NewResult("http-newconn", httpSamples(1, 2.0, 3.5, 6.0, 12.0, 7000, 7000*15))
		errored.Samples[0][Errors] = 42
		errored = NewResult("http-newconn", errored.Samples)
		errored.Error = "repetition 2: fortio: exec fortio in bench/bench-client-x: signal: killed"
		r.Scenarios = append(r.Scenarios, ScenarioResult{Name: "weft-l4", Description: "Weft L4, mTLS", Target: target, Results: []Result{
			result("http-1000rps", httpSamples(n, 0.160, 0.320, 0.500, 1.400, 1000, 16), [2]float64{0.45, 0.55}, [2]float64{24.5, 25.5}),
			result("http-3200rps", httpSamples(n, 0.170, 0.350, 0.432, 1.900, 3200, 16), [2]float64{1.3, 1.6}, [2]float64{26, 27}),
			result("http-max", httpSamples(n, 1.200, 1.900, 3.100, 6.000, 14000, 16), [2]float64{5.1, 6.2}, [2]float64{31, 33}),
			errored,
			result("tcp-1stream", bulkSamples(n, 3.80), [2]float64{2.1, 2.4}, [2]float64{40.2, 44.8}),
			// tcp-4streams missing: the scenario was cut short
		}})
	}
	if name == "three-scenarios" {
		// weft-l7 at the fixed rates only: 1000 rps within every target, 3200 rps missing them.
		r.Waypoint = &Agent{Node: "node-1", Pod: "bench/waypoint-7d9f", Cgroup: "/sys/fs/cgroup/weft/node-1/pod-w"}
		secs := float64(time.Duration(plan.Duration)) / float64(time.Second)
		l7 := func(id string, samples []Sample, cpu, rss float64) Result {
			for _, s := range samples {
				s[WaypointCPU], s[WaypointVCPU], s[WaypointRSS] = cpu, cpu/secs, rss
				deriveAgentMetrics(*r.Workload(id), s)
			}
			return result(id, samples, [2]float64{0.9, 1.0}, [2]float64{25, 26})
		}
		r.Scenarios = append(r.Scenarios, ScenarioResult{Name: WeftL7Scenario, Description: "Weft L7, waypoint", Target: target,
			Workloads: plan.FixedRateHTTP(), Results: []Result{
				l7("http-1000rps", httpSamples(n, 0.300, 0.500, 0.700, 1.500, 1000, 16), 1.5, 30),
				l7("http-3200rps", httpSamples(n, 0.500, 1.100, 2.400, 4.000, 3200, 16), 9.6, 160),
			}})
	}
	if name == "same-node" {
		// The same-node pair after weft-l4, at SameNodeWorkloads, with only node-1's agent busy.
		same := target
		same.ServerNode, same.HTTPURL, same.BulkAddr = "node-1", "http://198.18.1.6:8080/", "198.18.1.7:5001"
		ids := SameNodeWorkloads(plan)
		r.Scenarios = append(r.Scenarios, ScenarioResult{Name: NoMeshSameNodeScenario, Description: "plain pod→pod on node-1",
			Target: same, Workloads: ids, Path: PathNone, Baseline: NoMeshSameNodeScenario, Results: []Result{
				result("http-1000rps", httpSamples(n, 0.060, 0.090, 0.150, 0.400, 1000, 16), idle, idleRSS),
				result("http-3200rps", httpSamples(n, 0.070, 0.110, 0.200, 0.600, 3200, 16), idle, idleRSS),
				result("http-newconn", httpSamples(n, 0.800, 1.300, 2.400, 5.000, 15000, 15000*15), idle, idleRSS),
				result("tcp-1stream", bulkSamples(n, 12.5), idle, idleRSS),
			}}, ScenarioResult{Name: WeftSameNodeScenario, Description: "Weft L4 on node-1",
			Target: same, Workloads: ids, Path: PathAgents, Baseline: NoMeshSameNodeScenario, Results: []Result{
				result("http-1000rps", httpSamples(n, 0.090, 0.140, 0.230, 0.700, 1000, 16), [2]float64{0.6, 0.02}, [2]float64{26, 22}),
				result("http-3200rps", httpSamples(n, 0.100, 0.180, 0.300, 0.900, 3200, 16), [2]float64{1.9, 0.02}, [2]float64{28, 22}),
				result("http-newconn", httpSamples(n, 1.100, 1.900, 3.600, 7.000, 9000, 9000*15), [2]float64{8.5, 0.02}, [2]float64{35, 22}),
				result("tcp-1stream", bulkSamples(n, 6.25), [2]float64{2.2, 0.02}, [2]float64{45, 22}),
			}})
	}
	if name == "quick" {
		r.Env.LoadAvg = 3.5 // busy
	}
	if err := r.ComputeRatios(); err != nil {
		t.Fatal(err)
	}
	return r
}

func TestWriteMarkdown(t *testing.T) {
	for _, name := range []string{"no-mesh", "quick", "two-scenarios", "three-scenarios", "same-node"} {
		t.Run(name, func(t *testing.T) {
			var b strings.Builder
			if err := WriteMarkdown(&b, goldenRun(t, name)); err != nil {
				t.Fatal(err)
			}
			golden := filepath.Join("testdata", "markdown-"+name+".golden.md")
			if *update {
				if err := os.WriteFile(golden, []byte(b.String()), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test -run TestWriteMarkdown -update to create it)", err)
			}
			if got := b.String(); got != string(want) {
				t.Errorf("markdown differs from %s (go test -run TestWriteMarkdown -update rewrites it):\n--- got\n%s\n--- want\n%s", golden, got, want)
			}
		})
	}
}

// TestWriteMarkdownTable checks the tables' shape independently of the golden files: one row
// per workload and scenario in the main table (and in the agents' table), one per workload and
// non-baseline scenario in the ratio table, every row with its header's number of cells.
func TestWriteMarkdownTable(t *testing.T) {
	tests := []struct {
		name string
		rows []int // per table, header and separator excluded
	}{
		{"no-mesh", []int{7}},
		{"quick", []int{7}},
		{"two-scenarios", []int{14, 7, 14}},
		// weft-l7 runs only the 2 fixed-rate workloads: 7+7+2 rows, 2 waypoint rows.
		{"three-scenarios", []int{16, 9, 16, 2}},
		// no-mesh and weft-l4: 7+7 rows; the same-node pair: 3+3, weft-same-node alone in the
		// ratio table (no-mesh-same-node is its own baseline).
		{"same-node", []int{20, 10, 20}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b strings.Builder
			if err := WriteMarkdown(&b, goldenRun(t, tt.name)); err != nil {
				t.Fatal(err)
			}
			var tables [][]string
			inTable := false
			for line := range strings.Lines(b.String()) {
				if !strings.HasPrefix(line, "|") {
					inTable = false
					continue
				}
				if !inTable {
					tables = append(tables, nil)
					inTable = true
				}
				tables[len(tables)-1] = append(tables[len(tables)-1], strings.TrimSpace(line))
			}
			if len(tables) != len(tt.rows) {
				t.Fatalf("%d tables, want %d:\n%s", len(tables), len(tt.rows), b.String())
			}
			for i, table := range tables {
				if len(table) != tt.rows[i]+2 {
					t.Errorf("table %d: %d lines, want %d header+separator+rows", i, len(table), tt.rows[i]+2)
				}
				cells := strings.Count(table[0], "|")
				for _, l := range table {
					if strings.Count(l, "|") != cells {
						t.Errorf("table %d: row has %d separators, header %d: %s", i, strings.Count(l, "|"), cells, l)
					}
				}
			}
			if !strings.Contains(tables[0][2], "| no-mesh |") || !strings.Contains(tables[0][2], "1.00×") {
				t.Errorf("first row is not the baseline with ratio 1.00×: %s", tables[0][2])
			}
		})
	}
}

// TestWriteMarkdownWaypoint checks the waypoint table's figures and verdicts against the targets.
func TestWriteMarkdownWaypoint(t *testing.T) {
	var b strings.Builder
	if err := WriteMarkdown(&b, goldenRun(t, "three-scenarios")); err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(b.String(), "through the waypoint (pod bench/waypoint-7d9f on node-1)")
	if !ok {
		t.Fatalf("no waypoint section:\n%s", b.String())
	}
	rows := map[string]string{}
	for line := range strings.Lines(section) {
		for _, id := range []string{"http-1000rps", "http-3200rps", "http-max"} {
			if strings.HasPrefix(line, "| "+id+" | ") && strings.Count(line, "|") == 10 {
				rows[id] = line
			}
		}
	}
	tests := []struct {
		workload string
		want     []string
	}{
		// p99 0.700 vs 0.300: +0.4 ms; 1.5 CPU-s over 10 s = 0.15 vCPU; 30 MiB = 31.5 MB per 1000 rps.
		{"http-1000rps", []string{"+0.400 ms (met)", "| 0.150 |", "(met)", "31.5 MB (met)"}},
		// p99 2.4 vs 0.4: +2 ms; 9.6 CPU-s over 10 s = 0.96 vCPU, 0.2 per 1000 rps; 160 MiB/3.2 = 52.4 MB.
		{"http-3200rps", []string{"+2.000 ms (**missed**)", "| 0.960 |", "0.200 (**missed**)", "52.4 MB (**missed**)"}},
	}
	for _, tt := range tests {
		row, ok := rows[tt.workload]
		if !ok {
			t.Errorf("no waypoint row for %s:\n%s", tt.workload, b.String())
			continue
		}
		for _, w := range tt.want {
			if !strings.Contains(row, w) {
				t.Errorf("%s row lacks %q: %s", tt.workload, w, row)
			}
		}
	}
	if _, ok := rows["http-max"]; ok {
		t.Error("a waypoint row for http-max, which weft-l7 does not run")
	}
	if strings.Contains(b.String(), "weft-l7: not run") {
		t.Error("workloads weft-l7 does not run are reported as not run")
	}
}

// TestWriteMarkdownSameNode checks that the same-node rows divide by the same-node baseline and
// that the text names it.
func TestWriteMarkdownSameNode(t *testing.T) {
	var b strings.Builder
	if err := WriteMarkdown(&b, goldenRun(t, "same-node")); err != nil {
		t.Fatal(err)
	}
	md := b.String()
	main, ratios, ok := strings.Cut(md, "\nRatios to the baseline")
	if !ok {
		t.Fatalf("no ratio table:\n%s", md)
	}
	tests := []struct {
		name, text, want string
	}{
		{"intro names both baselines", main, "Baseline: no-mesh, except no-mesh-same-node for weft-same-node.\n"},
		{"ratio table names both baselines", ratios, "Baseline: no-mesh, except no-mesh-same-node for weft-same-node.\n"},
		// p99 0.230 against no-mesh-same-node's 0.150, not no-mesh's 0.300.
		{"weft-same-node p99 vs its baseline", main, "| weft-same-node | 0.090 (0.085–0.099) | 0.140 (0.133–0.154) | 0.230 (0.218–0.253) | 0.700 (0.665–0.770) | 1000 (909–1053) rps | 0 | 1.53× (+0.080 ms) | — |"},
		{"same-node baseline at 1.00×", main, "| no-mesh-same-node | 0.060 (0.057–0.066) | 0.090 (0.085–0.099) | 0.150 (0.142–0.165) | 0.400 (0.380–0.440) | 1000 (909–1053) rps | 0 | 1.00× | — |"},
		// 6.25 Gbit/s against 12.5, not 5.07.
		{"weft-same-node bulk vs its baseline", main, "| weft-same-node | — | — | — | — | 6.25 (5.62–6.56) Gbit/s | 0 | — | 0.50× |"},
		{"ratio table row", ratios, "| http-newconn | weft-same-node | 1.38× (+0.300 ms) | 1.46× (+0.600 ms) | 1.50× (+1.200 ms) | 1.40× (+2.000 ms) | 0.60× |"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if !strings.Contains(tt.text, tt.want) {
				t.Errorf("lacks %q:\n%s", tt.want, md)
			}
		})
	}
	if strings.Contains(ratios[:strings.Index(ratios, "Node agents")], "| no-mesh-same-node |") {
		t.Errorf("ratio table has a row of no-mesh-same-node, a baseline:\n%s", ratios)
	}
}
