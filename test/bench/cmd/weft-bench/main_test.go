package main

import (
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/weftmesh/weft/test/bench"
)

func TestParseFlags(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		want    config
		wantErr bool
	}{
		{"make bench", []string{"-out", "bench-results"}, config{mode: bench.Full, outDir: "bench-results", timeout: 30 * time.Minute, tuneClient: true}, false},
		{"make bench QUICK=1", []string{"-quick", "-out", "bench-results"}, config{mode: bench.Quick, outDir: "bench-results", timeout: 6 * time.Minute, tuneClient: true}, false},
		{"explicit", []string{"-quick", "-out", "/tmp/b", "-timeout", "2m", "-tune-client=false"}, config{mode: bench.Quick, outDir: "/tmp/b", timeout: 2 * time.Minute}, false},
		{"plot", []string{"-plot", "bench-results/bench-1.json"}, config{mode: bench.Full, outDir: "bench-results", tuneClient: true, plot: "bench-results/bench-1.json"}, false},
		{"plot elsewhere", []string{"-plot", "r/bench-1.json", "-out", "/tmp/p"}, config{mode: bench.Full, outDir: "/tmp/p", tuneClient: true, plot: "r/bench-1.json"}, false},
		{"profile", []string{"-quick", "-duration", "8s", "-profile", "/tmp/prof", "-scenarios", "weft-l4, weft-same-node", "-pin-load", "0"}, config{mode: bench.Quick, outDir: "bench-results", timeout: 6 * time.Minute, tuneClient: true,
			duration: 8 * time.Second, profile: "/tmp/prof", loadCPUs: "0", scenarios: map[string]bool{"no-mesh": true, "weft-l4": true, "no-mesh-same-node": true, "weft-same-node": true}}, false},
		{"unknown scenario", []string{"-scenarios", "weft-l5"}, config{}, true},
		{"stray argument", []string{"-quick", "now"}, config{}, true},
		{"unknown flag", []string{"-fast"}, config{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseFlags(tt.args, io.Discard)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, want error %v", err, tt.wantErr)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("config %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestIsWeftModule(t *testing.T) {
	tests := []struct {
		gomod string
		want  bool
	}{
		{"module github.com/weftmesh/weft\n\ngo 1.26.0\n", true},
		{"// comment\nmodule \"github.com/weftmesh/weft\"\n", true},
		{"module github.com/weftmesh/weft/sub\n", false},
		{"go 1.26.0\n", false},
	}
	for _, tt := range tests {
		if got := isWeftModule([]byte(tt.gomod)); got != tt.want {
			t.Errorf("isWeftModule(%q) = %v, want %v", tt.gomod, got, tt.want)
		}
	}
}

func TestRepoRoot(t *testing.T) {
	root, err := repoRoot() // the test runs in test/bench/cmd/weft-bench
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "test", "bench", "cmd", "weft-bench", "main.go")); err != nil {
		t.Errorf("repo root %s: %v", root, err)
	}
}

func TestCopyBinary(t *testing.T) {
	src := filepath.Join(t.TempDir(), "tool")
	if err := os.WriteFile(src, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	dst, err := copyBinary(src, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(dst)
	if err != nil || fi.Mode().Perm()&0o111 == 0 || fi.Size() != 10 {
		t.Errorf("copy %s: %v %v", dst, fi, err)
	}
	if _, err := copyBinary("", t.TempDir()); err == nil {
		t.Error("empty source accepted")
	}
}

// testRun is a minimal two-scenario run without agents.
func testRun(t *testing.T) *bench.Run {
	t.Helper()
	plan, err := bench.NewPlan(bench.Quick)
	if err != nil {
		t.Fatal(err)
	}
	r := &bench.Run{Schema: bench.SchemaVersion, ID: "20261122-010000", Mode: bench.Quick, Plan: plan, Baseline: bench.BaselineScenario}
	for i, name := range []string{bench.BaselineScenario, bench.WeftL4Scenario} {
		k := float64(i + 1)
		sc := bench.ScenarioResult{Name: name}
		for _, w := range plan.Workloads {
			s := bench.Sample{bench.Gbps: 5 / k, bench.Errors: 0}
			if w.Kind == bench.HTTP {
				s = bench.Sample{bench.P50: 0.2 * k, bench.P90: 0.3 * k, bench.P99: 0.5 * k, bench.P999: 1 * k, bench.RPS: 9000 / k, bench.Errors: 0}
			}
			sc.Results = append(sc.Results, bench.NewResult(w.ID, []bench.Sample{s}))
		}
		r.Scenarios = append(r.Scenarios, sc)
	}
	if err := r.ComputeRatios(); err != nil {
		t.Fatal(err)
	}
	return r
}

// write stores the JSON, the plots and the Markdown that links them; -plot renders the plots
// again from the JSON.
func TestWriteAndPlot(t *testing.T) {
	dir := t.TempDir()
	r := testRun(t)
	if err := write(dir, r, io.Discard); err != nil {
		t.Fatal(err)
	}
	base := filepath.Join(dir, "bench-"+r.ID)
	md, err := os.ReadFile(base + ".md")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{bench.LatencyPlot, bench.ThroughputPlot} { // no agents: no resources plot
		if _, err := os.Stat(base + "-" + name + ".svg"); err != nil {
			t.Error(err)
		}
		if link := "](bench-" + r.ID + "-" + name + ".svg)"; !strings.Contains(string(md), link) {
			t.Errorf("Markdown lacks %s", link)
		}
	}

	out := t.TempDir()
	var stdout strings.Builder
	if err := plotRun(base+".json", out, &stdout); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{bench.LatencyPlot, bench.ThroughputPlot} {
		if _, err := os.Stat(filepath.Join(out, "bench-"+r.ID+"-"+name+".svg")); err != nil {
			t.Error(err)
		}
	}
	if !strings.Contains(stdout.String(), "![") {
		t.Errorf("-plot printed no image links:\n%s", stdout.String())
	}
	if err := plotRun(filepath.Join(dir, "missing.json"), out, io.Discard); err == nil {
		t.Error("-plot of a missing file: no error")
	}
}
