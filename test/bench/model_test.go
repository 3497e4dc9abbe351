package bench

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestNewResult(t *testing.T) {
	res := NewResult("http-1000rps", []Sample{
		{P99: 0.30, RPS: 1000, Errors: 0},
		{P99: 0.28, RPS: 999, Errors: 2},
		{P99: 0.35, RPS: 1001},
	})
	tests := []struct {
		m    Metric
		want Stat
	}{
		{P99, Stat{N: 3, Median: 0.30, Min: 0.28, Max: 0.35, Sum: 0.93}},
		{RPS, Stat{N: 3, Median: 1000, Min: 999, Max: 1001, Sum: 3000}},
		{Errors, Stat{N: 2, Median: 1, Min: 0, Max: 2, Sum: 2}},
	}
	for _, tt := range tests {
		got := res.Summary[tt.m]
		if got.N != tt.want.N || !approx(got.Median, tt.want.Median) || !approx(got.Min, tt.want.Min) ||
			!approx(got.Max, tt.want.Max) || !approx(got.Sum, tt.want.Sum) {
			t.Errorf("%s: %+v, want %+v", tt.m, got, tt.want)
		}
	}
	if len(res.Summary) != 3 {
		t.Errorf("summary has %d metrics: %v", len(res.Summary), res.Summary)
	}
}

func TestRatio(t *testing.T) {
	base := map[Metric]Stat{P99: {N: 3, Median: 0.2}, RPS: {N: 3, Median: 20000}, P50: {N: 1, Median: 0}}
	tests := []struct {
		name   string
		s      map[Metric]Stat
		m      Metric
		want   float64
		wantOK bool
	}{
		{"latency cost", map[Metric]Stat{P99: {N: 3, Median: 0.216}}, P99, 1.08, true},
		{"throughput cost", map[Metric]Stat{RPS: {N: 3, Median: 15000}}, RPS, 0.75, true},
		{"same", map[Metric]Stat{P99: {N: 3, Median: 0.2}}, P99, 1, true},
		{"missing in scenario", map[Metric]Stat{}, P99, 0, false},
		{"missing in baseline", map[Metric]Stat{Gbps: {N: 1, Median: 3}}, Gbps, 0, false},
		{"zero baseline", map[Metric]Stat{P50: {N: 1, Median: 0.1}}, P50, 0, false},
		{"no samples", map[Metric]Stat{P99: {}}, P99, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := Ratio(tt.s, base, tt.m)
			if ok != tt.wantOK || !approx(got, tt.want) {
				t.Errorf("Ratio = %v, %v; want %v, %v", got, ok, tt.want, tt.wantOK)
			}
		})
	}
}

func TestComputeRatios(t *testing.T) {
	r := &Run{
		Baseline: BaselineScenario,
		Scenarios: []ScenarioResult{
			{Name: "weft-l4", Results: []Result{
				NewResult("http-1000rps", []Sample{{P50: 0.15, P99: 0.3, RPS: 1000, Errors: 0}}),
				NewResult("tcp-1stream", []Sample{{Gbps: 4, Errors: 0}}),
				NewResult("only-here", []Sample{{P99: 1}}),
			}},
			{Name: BaselineScenario, Results: []Result{
				NewResult("http-1000rps", []Sample{{P50: 0.1, P99: 0.2, RPS: 1000, Errors: 5}}),
				NewResult("tcp-1stream", []Sample{{Gbps: 5, Errors: 0}}),
			}},
		},
	}
	if err := r.ComputeRatios(); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		scenario, workload string
		want               map[Metric]float64
	}{
		{BaselineScenario, "http-1000rps", map[Metric]float64{P50: 1, P99: 1, RPS: 1}},
		{BaselineScenario, "tcp-1stream", map[Metric]float64{Gbps: 1}},
		{"weft-l4", "http-1000rps", map[Metric]float64{P50: 1.5, P99: 1.5, RPS: 1}},
		{"weft-l4", "tcp-1stream", map[Metric]float64{Gbps: 0.8}},
		{"weft-l4", "only-here", nil},
	}
	for _, tt := range tests {
		got := r.Scenario(tt.scenario).Result(tt.workload).Ratios
		if len(got) != len(tt.want) {
			t.Errorf("%s/%s: ratios %v, want %v", tt.scenario, tt.workload, got, tt.want)
			continue
		}
		for m, v := range tt.want {
			if !approx(got[m], v) {
				t.Errorf("%s/%s %s: %v, want %v", tt.scenario, tt.workload, m, got[m], v)
			}
		}
	}

	r.Baseline = "missing"
	if err := r.ComputeRatios(); err == nil || !strings.Contains(err.Error(), "missing") {
		t.Errorf("missing baseline: err = %v", err)
	}
}

// TestComputeRatiosPerScenarioBaseline checks that a scenario with its own Baseline divides by
// that scenario, and that the others still divide by the run's.
func TestComputeRatiosPerScenarioBaseline(t *testing.T) {
	r := &Run{
		Baseline: BaselineScenario,
		Scenarios: []ScenarioResult{
			{Name: BaselineScenario, Results: []Result{
				NewResult("http-1000rps", []Sample{{P99: 0.4, RPS: 1000}}),
				NewResult("tcp-1stream", []Sample{{Gbps: 5}}),
			}},
			{Name: WeftL4Scenario, Results: []Result{
				NewResult("http-1000rps", []Sample{{P99: 0.6, RPS: 1000}}),
			}},
			{Name: NoMeshSameNodeScenario, Baseline: NoMeshSameNodeScenario, Results: []Result{
				NewResult("http-1000rps", []Sample{{P99: 0.2, RPS: 1000}}),
				NewResult("tcp-1stream", []Sample{{Gbps: 12}}),
			}},
			{Name: WeftSameNodeScenario, Baseline: NoMeshSameNodeScenario, Results: []Result{
				NewResult("http-1000rps", []Sample{{P99: 0.3, RPS: 1000}}),
				NewResult("tcp-1stream", []Sample{{Gbps: 6}}),
			}},
		},
	}
	if err := r.ComputeRatios(); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		scenario, workload, baseline string
		want                         map[Metric]float64
	}{
		{BaselineScenario, "http-1000rps", BaselineScenario, map[Metric]float64{P99: 1, RPS: 1}},
		{WeftL4Scenario, "http-1000rps", BaselineScenario, map[Metric]float64{P99: 1.5, RPS: 1}},
		{NoMeshSameNodeScenario, "http-1000rps", NoMeshSameNodeScenario, map[Metric]float64{P99: 1, RPS: 1}},
		{NoMeshSameNodeScenario, "tcp-1stream", NoMeshSameNodeScenario, map[Metric]float64{Gbps: 1}},
		// 0.3 / 0.2 and 6 / 12: against no-mesh-same-node (no-mesh would give 0.75 and 1.2).
		{WeftSameNodeScenario, "http-1000rps", NoMeshSameNodeScenario, map[Metric]float64{P99: 1.5, RPS: 1}},
		{WeftSameNodeScenario, "tcp-1stream", NoMeshSameNodeScenario, map[Metric]float64{Gbps: 0.5}},
	}
	for _, tt := range tests {
		t.Run(tt.scenario+"/"+tt.workload, func(t *testing.T) {
			sc := r.Scenario(tt.scenario)
			if got := r.BaselineOf(sc); got != tt.baseline {
				t.Errorf("BaselineOf = %q, want %q", got, tt.baseline)
			}
			got := sc.Result(tt.workload).Ratios
			if len(got) != len(tt.want) {
				t.Fatalf("ratios %v, want %v", got, tt.want)
			}
			for m, v := range tt.want {
				if !approx(got[m], v) {
					t.Errorf("%s: %v, want %v", m, got[m], v)
				}
			}
		})
	}

	r.Scenarios[3].Baseline = "missing-same-node"
	if err := r.ComputeRatios(); err == nil || !strings.Contains(err.Error(), "missing-same-node") {
		t.Errorf("missing per-scenario baseline: err = %v", err)
	}
}

// TestRunJSONRoundTrip checks that the JSON file reads back into the same figures.
func TestRunJSONRoundTrip(t *testing.T) {
	r := goldenRun(t, "two-scenarios")
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	var back Run
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if back.Plan.Duration != r.Plan.Duration || back.Plan.Workloads[0] != r.Plan.Workloads[0] {
		t.Errorf("plan: %+v", back.Plan)
	}
	got := back.Scenario("weft-l4").Result("http-3200rps")
	want := r.Scenario("weft-l4").Result("http-3200rps")
	if got.Summary[P99] != want.Summary[P99] || got.Ratios[P99] != want.Ratios[P99] {
		t.Errorf("round trip: %+v, want %+v", got, want)
	}
	if len(back.Agents) != 2 || back.Agents[1] != r.Agents[1] {
		t.Errorf("agents: %+v", back.Agents)
	}
	gotA := back.Scenario("weft-l4").Result("http-1000rps").Summary
	wantA := r.Scenario("weft-l4").Result("http-1000rps").Summary
	for _, m := range []Metric{AgentVCPU, AgentVCPUPerKRPS, AgentRSS, NodeMetric(AgentVCPU, "node-2")} {
		if gotA[m] != wantA[m] || gotA[m].N == 0 {
			t.Errorf("%s: %+v, want %+v", m, gotA[m], wantA[m])
		}
	}
	for _, key := range []string{`"p99.9_ms"`, `"ratios"`, `"duration":"10s"`, `"fortioVersion":"1.75.3"`,
		`"agents":[{"node":"node-1"`, `"agent_vcpu_per_krps"`, `"agent_peak_rss_mib@node-1"`, `"agent_vcpu_per_gbps"`} {
		if !strings.Contains(string(b), key) {
			t.Errorf("JSON lacks %s", key)
		}
	}
}
