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
	noMesh := ScenarioResult{Name: BaselineScenario, Description: "plain pod→pod", Target: target, Results: []Result{
		NewResult("http-1000rps", httpSamples(n, 0.110, 0.150, 0.300, 0.900, 1000, 16)),
		NewResult("http-3200rps", httpSamples(n, 0.120, 0.170, 0.400, 1.200, 3200, 16)),
		NewResult("http-max", httpSamples(n, 0.900, 1.400, 2.500, 5.000, 17500, 16)),
		NewResult("http-newconn", httpSamples(n, 1.500, 2.600, 4.600, 9.000, 9900, 9900*15)),
		NewResult("tcp-1stream", bulkSamples(n, 5.07)),
		NewResult("tcp-4streams", bulkSamples(n, 6.52)),
	}}
	noMesh.Results[1].Notes = []string{"rep 2: 3010 of 3200 rps achieved"}
	r.Scenarios = append(r.Scenarios, noMesh)
	if name == "two-scenarios" {
		errored := NewResult("http-newconn", httpSamples(1, 2.0, 3.5, 6.0, 12.0, 7000, 7000*15))
		errored.Samples[0][Errors] = 42
		errored = NewResult("http-newconn", errored.Samples)
		errored.Error = "repetition 2: fortio: exec fortio in bench/bench-client-x: signal: killed"
		r.Scenarios = append(r.Scenarios, ScenarioResult{Name: "weft-l4", Description: "Weft L4, mTLS", Target: target, Results: []Result{
			NewResult("http-1000rps", httpSamples(n, 0.160, 0.320, 0.500, 1.400, 1000, 16)),
			NewResult("http-3200rps", httpSamples(n, 0.170, 0.350, 0.432, 1.900, 3200, 16)),
			NewResult("http-max", httpSamples(n, 1.200, 1.900, 3.100, 6.000, 14000, 16)),
			errored,
			NewResult("tcp-1stream", bulkSamples(n, 3.80)),
			// tcp-4streams missing: the scenario was cut short
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
	for _, name := range []string{"no-mesh", "quick", "two-scenarios"} {
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

// TestWriteMarkdownTable checks the table's shape independently of the golden files: one row
// per workload and scenario, every row with the header's number of cells.
func TestWriteMarkdownTable(t *testing.T) {
	tests := []struct {
		name string
		rows int
	}{
		{"no-mesh", 6},
		{"two-scenarios", 12},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b strings.Builder
			if err := WriteMarkdown(&b, goldenRun(t, tt.name)); err != nil {
				t.Fatal(err)
			}
			var table []string
			for line := range strings.Lines(b.String()) {
				if strings.HasPrefix(line, "|") {
					table = append(table, strings.TrimSpace(line))
				}
			}
			if len(table) != tt.rows+2 {
				t.Fatalf("%d table lines, want %d header+separator+rows:\n%s", len(table), tt.rows+2, b.String())
			}
			cells := strings.Count(table[0], "|")
			for _, l := range table {
				if strings.Count(l, "|") != cells {
					t.Errorf("row has %d separators, header %d: %s", strings.Count(l, "|"), cells, l)
				}
			}
			if !strings.Contains(table[2], "| no-mesh |") || !strings.Contains(table[2], "1.00×") {
				t.Errorf("first row is not the baseline with ratio 1.00×: %s", table[2])
			}
		})
	}
}
