package bench

import (
	"slices"
	"strings"
	"testing"
)

func TestSameNodeWorkloads(t *testing.T) {
	want := []string{"http-1000rps", "http-newconn", "tcp-1stream"}
	for _, mode := range []Mode{Full, Quick} {
		p, err := NewPlan(mode)
		if err != nil {
			t.Fatal(err)
		}
		if got := SameNodeWorkloads(p); !slices.Equal(got, want) {
			t.Errorf("%s: SameNodeWorkloads = %v, want %v", mode, got, want)
		}
	}
}

// TestSameNodeScenarios checks the pair's fields and that the runner keeps their baseline and
// loads the same-node addresses with their workloads only.
func TestSameNodeScenarios(t *testing.T) {
	plan, err := NewPlan(Quick)
	if err != nil {
		t.Fatal(err)
	}
	plan.Pause = 0
	same := testTarget
	same.ServerNode, same.HTTPURL, same.BulkAddr, same.GRPCAddr = "node-1", "http://198.18.1.6:8080/", "198.18.1.7:5001", ""
	scs := SameNodeScenarios(same, plan, &MeshSwitch{Target: testTarget})
	tests := []struct {
		name, path string
	}{
		{NoMeshSameNodeScenario, PathNone},
		{WeftSameNodeScenario, PathAgents},
	}
	if len(scs) != len(tests) {
		t.Fatalf("%d scenarios, want %d", len(scs), len(tests))
	}
	for i, tt := range tests {
		sc := scs[i]
		if sc.Name != tt.name || sc.Path != tt.path || sc.Baseline != NoMeshSameNodeScenario || sc.Target != same ||
			sc.Enter == nil || !slices.Equal(sc.Workloads, SameNodeWorkloads(plan)) {
			t.Errorf("scenario %d: %+v, want %s with path %s, baseline %s, the same-node target and workloads",
				i, sc, tt.name, tt.path, NoMeshSameNodeScenario)
		}
		scs[i].Enter = nil // the switch needs a cluster
	}

	fe := &fakeExec{fortio: readTestdata(t, "fortio-1.75-keepalive.json"), bulk: []byte(bulkReport)}
	r := &Runner{Exec: fe, Fortio: "/bin/fortio", Bulk: "/bin/bulk", Plan: plan}
	got := r.Run(t.Context(), scs...)
	for i, sc := range got {
		if sc.Baseline != NoMeshSameNodeScenario || sc.Name != tests[i].name {
			t.Errorf("result %d: name %q, baseline %q", i, sc.Name, sc.Baseline)
		}
		var ids []string
		for _, res := range sc.Results {
			ids = append(ids, res.Workload)
		}
		if !slices.Equal(ids, SameNodeWorkloads(plan)) {
			t.Errorf("%s: results for %v", sc.Name, ids)
		}
	}
	if len(fe.calls) == 0 {
		t.Fatal("no load run")
	}
	for _, call := range fe.calls {
		dest := call[len(call)-1]
		if call[1] == "/bin/bulk" {
			dest = call[slices.Index(call, "-to")+1]
		}
		if !strings.Contains(dest, "198.18.1.") {
			t.Errorf("a load to %s, not the same-node pods: %q", dest, call)
		}
	}
}

// TestSameNodePlots checks that the plots label weft-same-node with its ratio to
// no-mesh-same-node, draw both baselines grey and label neither with a latency ratio.
func TestSameNodePlots(t *testing.T) {
	r := goldenRun(t, "same-node")
	if files, err := WritePlots(t.TempDir(), "bench-"+r.ID, r); err != nil || len(files) != 3 {
		t.Fatalf("WritePlots: %d files, %v", len(files), err)
	}
	f, err := latencyFigure(r)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{BaselineScenario, WeftL4Scenario, NoMeshSameNodeScenario, WeftSameNodeScenario}
	if !slices.Equal(f.Scenarios, want) {
		t.Fatalf("legend %v, want %v", f.Scenarios, want)
	}
	if f.Colors[0] != baselineColor || f.Colors[2] != otherBaselineColor || f.Colors[1] != scenarioColors[0] || f.Colors[3] != scenarioColors[1] {
		t.Errorf("colours %v", f.Colors)
	}
	if !strings.Contains(f.Subtitle, "no-mesh, except no-mesh-same-node for weft-same-node") {
		t.Errorf("subtitle %q does not name the same-node baseline", f.Subtitle)
	}
	// The first panel is http-1000rps: p50, p90, p99, p99.9; p99 is the third category.
	p := f.Rows[0][0]
	tests := []struct {
		scenario int
		want     string
	}{
		{2, "0.15"},          // no-mesh-same-node: no ratio
		{3, "0.23\n(1.53×)"}, // 0.230 / 0.150
		{1, "0.50\n(1.67×)"}, // weft-l4: 0.500 / 0.300
	}
	for _, tt := range tests {
		if got := p.labels[tt.scenario].Labels[2]; got != tt.want {
			t.Errorf("%s p99 label %q, want %q", want[tt.scenario], got, tt.want)
		}
	}
}
