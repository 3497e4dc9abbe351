package scale

import (
	"bytes"
	"maps"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/weftmesh/weft/controller/translate"
	"github.com/weftmesh/weft/nodeagent/state"
	"github.com/weftmesh/weft/nodeagent/xds"
)

// testModel is a cluster of two nodes: namespace "mesh" (ambient) with service "web" and
// pods web-0 on node-a and web-1 on node-b, and namespace "plain" (not ambient) with service
// "db" and pod db-0 on node-a.
func testModel(t *testing.T) *Model {
	t.Helper()
	m := NewModel()
	m.PutNamespace(NewNamespace("mesh", true))
	m.PutNamespace(NewNamespace("plain", false))
	ip := 0
	for _, s := range []struct{ ns, svc, vip string }{{"mesh", "web", "198.19.0.10"}, {"plain", "db", "198.19.0.11"}} {
		svc := NewService(s.ns, s.svc)
		svc.Spec.ClusterIP, svc.Spec.ClusterIPs = s.vip, []string{s.vip}
		m.PutService(svc)
	}
	var web, db []*corev1.Pod
	for k, node := range []string{"node-a", "node-b"} {
		p := WithStatus(NewPod("mesh", "web", PodName("web", k), node), PodIP(ip), true)
		ip++
		m.PutPod(p)
		web = append(web, p)
	}
	p := WithStatus(NewPod("plain", "db", PodName("db", 0), "node-a"), PodIP(ip), true)
	m.PutPod(p)
	db = append(db, p)
	m.PutSlice(NewSlice("mesh", "web", web))
	m.PutSlice(NewSlice("plain", "db", db))
	return m
}

var nodes = []string{"node-a", "node-b"}

// agentSnapshot is what an agent of node holds when it has everything the mesh sends it.
func agentSnapshot(t *testing.T, m *translate.Mesh, node string) *state.Snapshot {
	t.Helper()
	var ws []*state.Workload
	var ss []*state.Service
	for _, r := range m.ForNode(node) {
		res, err := xds.ConvertResource(r.Address)
		if err != nil {
			t.Fatal(err)
		}
		if res.Workload != nil {
			ws = append(ws, res.Workload)
		} else if res.Service != nil {
			ss = append(ss, res.Service)
		}
	}
	snap := state.NewSnapshot("1", ws, ss)
	if err := snap.Validate(); err != nil {
		t.Fatal(err)
	}
	return snap
}

func TestAffected(t *testing.T) {
	base := testModel(t)
	before := base.Translate()
	webUID := translate.WorkloadUID("Kubernetes", "mesh", "web-0")
	dbUID := translate.WorkloadUID("Kubernetes", "plain", "db-0")
	webSvc := translate.ServiceName("mesh", "web.mesh.svc.cluster.local")

	tests := []struct {
		name   string
		change func(m *Model)
		want   map[string][]string // node → names expected to change
		absent map[string][]string // node → names expected to be gone
	}{{
		name:   "ambient pod readiness reaches every node",
		change: func(m *Model) { m.PutPod(WithReady(m.Pods["mesh/web-0"], false)) },
		want:   map[string][]string{"node-a": {webUID}, "node-b": {webUID}},
	}, {
		name:   "pod outside the mesh reaches only its node",
		change: func(m *Model) { m.PutPod(WithReady(m.Pods["plain/db-0"], false)) },
		want:   map[string][]string{"node-a": {dbUID}},
	}, {
		name:   "service port reaches every node",
		change: func(m *Model) { m.PutService(WithPort(m.Services["mesh/web"], "tcp-9000", 9000)) },
		want:   map[string][]string{"node-a": {webSvc}, "node-b": {webSvc}},
	}, {
		name:   "a pod's labels that no resource carries change nothing",
		change: func(m *Model) { p := m.Pods["mesh/web-0"].DeepCopy(); p.ResourceVersion = "42"; m.PutPod(p) },
		want:   map[string][]string{},
	}, {
		name:   "namespace leaves the mesh",
		change: func(m *Model) { m.PutNamespace(WithAmbient(m.Namespaces["mesh"], false)) },
		// node-a keeps its own pod (now outside the mesh) and loses node-b's and the service;
		// node-b the other way round.
		want: map[string][]string{
			"node-a": {webUID, translate.WorkloadUID("Kubernetes", "mesh", "web-1"), webSvc},
			"node-b": {webUID, translate.WorkloadUID("Kubernetes", "mesh", "web-1"), webSvc},
		},
		absent: map[string][]string{
			"node-a": {translate.WorkloadUID("Kubernetes", "mesh", "web-1"), webSvc},
			"node-b": {webUID, webSvc},
		},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := base.Clone()
			tt.change(m)
			after := m.Translate()
			got, err := Affected(before, after, nodes)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tt.want) {
				t.Fatalf("affected nodes %v, want %v", keys(got), tt.want)
			}
			for node, names := range tt.want {
				exp := got[node]
				if strings.Join(exp.Names(), ",") != strings.Join(sorted(names), ",") {
					t.Errorf("%s: names %v, want %v", node, exp.Names(), sorted(names))
				}
				for _, n := range tt.absent[node] {
					if exp[n] != nil {
						t.Errorf("%s: %s should be expected absent", node, n)
					}
				}
				// The agent that holds the old state does not meet it; one that holds the
				// new state does.
				if exp.Met(agentSnapshot(t, before, node)) {
					t.Errorf("%s: the old snapshot meets the expectation", node)
				}
				if !exp.Met(agentSnapshot(t, after, node)) {
					t.Errorf("%s: the new snapshot does not meet the expectation", node)
				}
			}
			// The base model is untouched (Clone shares objects, changes replace them).
			if !PodReady(base.Pods["mesh/web-0"]) || !IsAmbient(base.Namespaces["mesh"]) || len(base.Services["mesh/web"].Spec.Ports) != 1 {
				t.Error("the change modified the base model")
			}
		})
	}
}

func TestNameSetAndCompare(t *testing.T) {
	m := testModel(t).Translate()
	snapA := agentSnapshot(t, m, "node-a")
	if !NodeNames(m, "node-a").Holds(snapA) {
		t.Error("node-a's names do not hold node-a's snapshot")
	}
	if NodeNames(m, "node-b").Holds(snapA) {
		t.Error("node-b's names hold node-a's snapshot (node-a also has db-0)")
	}
	if NodeNames(m, "node-a").Holds(nil) {
		t.Error("names hold a nil snapshot")
	}
	if diffs, n, err := Compare(m, "node-a", snapA, 3); err != nil || n != 0 {
		t.Errorf("Compare(own snapshot) = %v, %d, %v", diffs, n, err)
	}
	if _, n, err := Compare(m, "node-b", snapA, 3); err != nil || n != 1 {
		t.Errorf("Compare(other node's snapshot) = %d differences, %v; want 1 (db-0 extra)", n, err)
	}
}

func TestNewQuantiles(t *testing.T) {
	q := NewQuantiles([]float64{5, 1, 4, 2, 3})
	if q.N != 5 || q.P50 != 3 || q.Min != 1 || q.Max != 5 || math.Abs(q.P99-4.96) > 1e-9 {
		t.Errorf("NewQuantiles = %+v", q)
	}
	if (NewQuantiles(nil) != Quantiles{}) {
		t.Error("NewQuantiles(nil) is not zero")
	}
}

func TestSummarize(t *testing.T) {
	r := &Result{Samples: []ChangeSample{
		{Kind: KindPodReady, Affected: 100, Names: 1, FirstMs: 110, LastMs: 200, PushMs: 105, ControllerCPUms: 50, AgentsCPUms: 100},
		{Kind: KindPodReady, Affected: 100, Names: 1, FirstMs: 120, LastMs: 400, PushMs: 106, ControllerCPUms: 70, AgentsCPUms: 100, Spurious: 2},
		{Kind: KindPodReady, Affected: 100, Error: "timeout", ControllerCPUms: 30},
		{Kind: KindNamespace, Affected: 100, Names: 220, FirstMs: 150, LastMs: 300},
	}}
	r.Summarize()
	if len(r.Changes) != 2 || r.Changes[0].Kind != KindPodReady || r.Changes[1].Kind != KindNamespace {
		t.Fatalf("kinds %+v", r.Changes)
	}
	k := r.Changes[0]
	if k.N != 3 || k.Failed != 1 || k.Spurious != 2 || k.Last.N != 2 || k.Last.P50 != 300 || k.Push.P50 != 105.5 || k.ControllerCPUms != 50 {
		t.Errorf("pod-ready summary %+v", k)
	}
}

func TestParseStatCPU(t *testing.T) {
	// comm with a space and a parenthesis; utime 250 and stime 50 ticks.
	stat := "1234 (weft (x) y) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 8 0 100 0 0"
	got, err := ParseStatCPU(stat)
	if err != nil || got != 3*time.Second {
		t.Errorf("ParseStatCPU = %v, %v; want 3s", got, err)
	}
	if _, err := ParseStatCPU("garbage"); err == nil {
		t.Error("ParseStatCPU(garbage) succeeded")
	}
}

func TestParseMetrics(t *testing.T) {
	m := ParseMetrics(`# HELP x y
weft_controller_xds_pushes_total 12
weft_controller_xds_push_seconds_bucket{le="0.001"} 3
weft_controller_xds_push_seconds_sum 0.5
go_gc_duration_seconds{quantile="0.5"} 1
`)
	if m["weft_controller_xds_pushes_total"] != 12 || m["weft_controller_xds_push_seconds_sum"] != 0.5 ||
		m[`weft_controller_xds_push_seconds_bucket{le="0.001"}`] != 3 || len(m) != 3 {
		t.Errorf("ParseMetrics = %v", m)
	}
}

func TestPlans(t *testing.T) {
	full, err := NewPlan(Full)
	if err != nil {
		t.Fatal(err)
	}
	if s := full.Size; s.Nodes != 100 || s.Services() != 1000 || s.Pods() != 10000 || s.AmbientNamespaces() != 40 {
		t.Errorf("full size %+v: %d services, %d pods, %d ambient", s, s.Services(), s.Pods(), s.AmbientNamespaces())
	}
	quick, err := NewPlan(Quick)
	if err != nil {
		t.Fatal(err)
	}
	if s := quick.Size; s.Nodes != 20 || s.Services() != 100 || s.Pods() != 1000 {
		t.Errorf("quick size %+v", s)
	}
	for _, p := range []Plan{full, quick} {
		if err := p.Validate(); err != nil {
			t.Error(err)
		}
	}
	if _, err := NewPlan("huge"); err == nil {
		t.Error("NewPlan(huge) succeeded")
	}
	if PodIP(0).String() != "198.18.0.1" || PodIP(255).String() != "198.18.1.0" {
		t.Errorf("PodIP: %s, %s", PodIP(0), PodIP(255))
	}
}

func TestWriteMarkdown(t *testing.T) {
	p, _ := NewPlan(Quick)
	r := &Result{ID: "20260101-000000", Mode: Quick, Plan: p, Samples: []ChangeSample{
		{Kind: KindPodReady, Detail: "pod x", Affected: 20, Names: 1, FirstMs: 110, LastMs: 150},
		{Kind: KindServicePort, Detail: "svc y", Affected: 20, Error: "1 of 20 affected agents did not apply the change"},
	}, Errors: []string{"content check: differs"}}
	r.Summarize()
	var b bytes.Buffer
	if err := WriteMarkdown(&b, r); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{"### weft-scale 20260101-000000 (quick)", "| `pod-ready` | 1 | 20 | 1 | **150** | **150** | 150 | 110 | — | — / — | 0 | 0.0 | 0 | 0 |",
		"| `service-port` | 1 | 0 | 0 | **—** |", "- content check: differs", "- service-port (svc y): 1 of 20"} {
		if !strings.Contains(out, want) {
			t.Errorf("markdown lacks %q:\n%s", want, out)
		}
	}
}

func keys[V any](m map[string]V) []string { return slices.Sorted(maps.Keys(m)) }

func sorted(s []string) []string { return slices.Sorted(slices.Values(s)) }
