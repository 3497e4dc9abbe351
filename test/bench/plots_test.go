package bench

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// syntheticRun is a small synthetic run with three scenarios, the node agents accounted, and one
// workload not measured in the third scenario.
func syntheticRun(t *testing.T) *Run {
	t.Helper()
	plan, err := NewPlan(Quick)
	if err != nil {
		t.Fatal(err)
	}
	started := time.Date(2026, 11, 22, 1, 0, 0, 0, time.UTC)
	r := &Run{
		Schema: SchemaVersion, ID: started.Format("20060102-150405"), Mode: Quick,
		Started: started, Finished: started.Add(2 * time.Minute),
		Env:      Env{Kernel: "6.1.0", CPUModel: "Test CPU", CPUs: 2, GoVersion: "go1.26.8", GitRevision: "abc1234"},
		Plan:     plan,
		Baseline: BaselineScenario,
		Agents: []Agent{
			{Node: "node-1", Pod: "weft-system/weft-nodeagent-a"},
			{Node: "node-2", Pod: "weft-system/weft-nodeagent-b"},
		},
	}
	scenario := func(name string, lat, thr, cpu float64, skip string) ScenarioResult {
		sc := ScenarioResult{Name: name}
		for _, w := range plan.Workloads {
			if w.ID == skip {
				continue
			}
			var samples []Sample
			switch w.Kind {
			case HTTP:
				rps := float64(w.QPS)
				if rps == 0 {
					rps = 10000 * thr
				}
				samples = httpSamples(1, 0.2*lat, 0.3*lat, 0.5*lat, 1.5*lat, rps, 16)
			case Bulk:
				samples = bulkSamples(1, 5*thr)
				samples[0][Bytes] = 1e9
			}
			secs := float64(time.Duration(plan.Duration)) / float64(time.Second)
			if w.Kind == Bulk {
				secs = samples[0][Bytes] * 8 / 1e9 / samples[0][Gbps]
			}
			samples = withAgents(w, samples, secs, [2]float64{cpu, cpu}, [2]float64{20, 22})
			sc.Results = append(sc.Results, NewResult(w.ID, samples))
		}
		return sc
	}
	r.Scenarios = []ScenarioResult{
		scenario(BaselineScenario, 1, 1, 0.01, ""),
		scenario(WeftL4Scenario, 2.5, 0.4, 2.5, ""),
		scenario("stunnel-pair", 3, 0.3, 3, "tcp-4streams"),
	}
	if err := r.ComputeRatios(); err != nil {
		t.Fatal(err)
	}
	return r
}

func TestWritePlots(t *testing.T) {
	r := syntheticRun(t)
	dir := t.TempDir()
	files, err := WritePlots(dir, "bench-"+r.ID, r)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{LatencyPlot, ResourcesPlot, ThroughputPlot}
	if len(files) != len(want) {
		t.Fatalf("%d plots written, want %d: %+v", len(files), len(want), files)
	}
	for i, f := range files {
		if f.Name != want[i] {
			t.Errorf("plot %d is %q, want %q", i, f.Name, want[i])
		}
		if wantPath := filepath.Join(dir, "bench-"+r.ID+"-"+want[i]+".svg"); f.Path != wantPath {
			t.Errorf("plot %s written to %s, want %s", f.Name, f.Path, wantPath)
		}
		b, err := os.ReadFile(f.Path)
		if err != nil {
			t.Fatal(err)
		}
		svg := string(b)
		if !strings.Contains(svg, "<svg") || len(b) < 1000 {
			t.Errorf("%s: not an SVG (%d bytes)", f.Path, len(b))
		}
		for _, s := range []string{BaselineScenario, WeftL4Scenario, "stunnel-pair", r.ID} {
			if !strings.Contains(svg, s) {
				t.Errorf("%s does not name %q", f.Name, s)
			}
		}
	}
	// Units on the axes, ratios on the throughput bars.
	for name, texts := range map[string][]string{
		LatencyPlot:    {"latency (ms)", "p99.9", "HTTP/1.1 keep-alive, 1000 rps"},
		ResourcesPlot:  {"vCPU per 1000 rps", "vCPU per Gbit/s", "peak RSS (MiB"},
		ThroughputPlot: {"requests per second", "connections per second", "MB/s", "0.40×", "1.00×"},
	} {
		b, err := os.ReadFile(filepath.Join(dir, "bench-"+r.ID+"-"+name+".svg"))
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range texts {
			if !strings.Contains(string(b), s) {
				t.Errorf("%s plot lacks %q", name, s)
			}
		}
	}

	var md strings.Builder
	if err := WritePlotLinks(&md, dir, files); err != nil {
		t.Fatal(err)
	}
	for _, name := range want {
		if link := "(bench-" + r.ID + "-" + name + ".svg)"; !strings.Contains(md.String(), link) {
			t.Errorf("Markdown lacks the link %s:\n%s", link, md.String())
		}
	}
}

// A run without agents has no resources plot; one without a baseline scenario still plots.
func TestWritePlotsPartialRuns(t *testing.T) {
	r := syntheticRun(t)
	r.Agents = nil
	files, err := WritePlots(t.TempDir(), "bench-"+r.ID, r)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, f := range files {
		names = append(names, f.Name)
	}
	if got := strings.Join(names, ","); got != "latency,throughput" {
		t.Errorf("plots without agents: %s, want latency,throughput", got)
	}

	r = goldenRun(t, "two-scenarios") // an errored and a missing workload
	if _, err := WritePlots(t.TempDir(), "bench-"+r.ID, r); err != nil {
		t.Fatal(err)
	}
}

func TestReadRun(t *testing.T) {
	dir := t.TempDir()
	if _, err := ReadRun(filepath.Join(dir, "missing.json")); err == nil {
		t.Error("ReadRun of a missing file: no error")
	}
	bad := filepath.Join(dir, "scale.json")
	if err := os.WriteFile(bad, []byte(`{"schema":1,"id":"x"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadRun(bad); err == nil {
		t.Error("ReadRun of a file without scenarios: no error")
	}
}
