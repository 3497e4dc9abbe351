package bench

import (
	"bytes"
	"errors"
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
)

func TestNewPlan(t *testing.T) {
	tests := []struct {
		mode     Mode
		reps     int
		duration time.Duration
		maxHTTP  time.Duration // bound on the HTTP load of one scenario
	}{
		// quick: the cluster takes about a minute, so the load must stay well under two
		{Quick, 1, time.Second, 30 * time.Second},
		{Full, 3, 5 * time.Second, 2 * time.Minute},
	}
	for _, tt := range tests {
		t.Run(string(tt.mode), func(t *testing.T) {
			p, err := NewPlan(tt.mode)
			if err != nil {
				t.Fatal(err)
			}
			if p.Repetitions != tt.reps || time.Duration(p.Duration) != tt.duration {
				t.Errorf("%d × %s, want %d × %s", p.Repetitions, time.Duration(p.Duration), tt.reps, tt.duration)
			}
			if p.HTTPTime() > tt.maxHTTP {
				t.Errorf("HTTP load %s, want at most %s", p.HTTPTime(), tt.maxHTTP)
			}
			ids := map[string]bool{}
			var http, bulk, grpc int
			for _, w := range p.Workloads {
				if ids[w.ID] {
					t.Errorf("duplicate workload %s", w.ID)
				}
				ids[w.ID] = true
				switch w.Kind {
				case HTTP:
					http++
					if w.Connections != 16 || w.ResponseBytes != 1024 {
						t.Errorf("%s: %d connections, %d bytes", w.ID, w.Connections, w.ResponseBytes)
					}
				case Bulk:
					bulk++
				case GRPC:
					grpc++
					if w.QPS != 1000 || w.Connections != 16 || !w.Latency() {
						t.Errorf("%s: %d rps, %d connections", w.ID, w.QPS, w.Connections)
					}
				}
			}
			if http != 4 || bulk != 2 || grpc != 1 {
				t.Errorf("%d HTTP, %d gRPC and %d bulk workloads", http, grpc, bulk)
			}
		})
	}
	if _, err := NewPlan("slow"); err == nil {
		t.Error("unknown mode accepted")
	}
}

func TestPlanLoadTime(t *testing.T) {
	tests := []struct {
		mode      Mode
		scenarios int
		want      time.Duration
	}{
		// 4 HTTP and 1 gRPC workloads × (0.25 s warm-up + 1 s + 0.25 s pause)
		{Quick, 1, 5 * 1500 * time.Millisecond},
		{Quick, 2, 2 * 5 * 1500 * time.Millisecond},
		// one scenario: one 1 s warm-up per workload, 3 × 5 s, 0.5 s pause
		{Full, 1, 5 * 16500 * time.Millisecond},
		// interleaved: 2 scenarios × 3 repetitions × (1 s + 5 s + 0.5 s)
		{Full, 2, 5 * 6 * 6500 * time.Millisecond},
	}
	for _, tt := range tests {
		p, err := NewPlan(tt.mode)
		if err != nil {
			t.Fatal(err)
		}
		if got := p.LoadTime(tt.scenarios); got != tt.want {
			t.Errorf("%s, %d scenarios: %s, want %s", tt.mode, tt.scenarios, got, tt.want)
		}
	}
}

func TestParseCPUInfo(t *testing.T) {
	tests := []struct {
		name  string
		in    string
		model string
		cpus  int
	}{
		{"two cores", "processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Xeon(R)  CPU @ 2.90GHz\nflags\t\t: fpu\n\nprocessor\t: 1\nmodel name\t: Intel(R) Xeon(R)  CPU @ 2.90GHz\n", "Intel(R) Xeon(R) CPU @ 2.90GHz", 2},
		{"no model (arm)", "processor\t: 0\nBogoMIPS\t: 50.00\n\nprocessor\t: 1\n", "", 2},
		{"hybrid", "processor : 0\nmodel name : A\nprocessor : 1\nmodel name : B\nprocessor : 2\nmodel name : A\n", "A + B", 3},
		{"empty", "", "", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			model, cpus := ParseCPUInfo(strings.NewReader(tt.in))
			if model != tt.model || cpus != tt.cpus {
				t.Errorf("ParseCPUInfo = %q, %d; want %q, %d", model, cpus, tt.model, tt.cpus)
			}
		})
	}
}

func TestParseLoadAvg(t *testing.T) {
	tests := []struct {
		in   string
		want float64
	}{
		{"0.52 0.58 0.59 1/148 15075\n", 0.52},
		{"7.76 6.20 4.58 7/148 15075", 7.76},
		{"", 0},
		{"x y z", 0},
	}
	for _, tt := range tests {
		if got := ParseLoadAvg(tt.in); got != tt.want {
			t.Errorf("ParseLoadAvg(%q) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

func TestTopologyManifest(t *testing.T) {
	topo := NewTopology("bench")
	topo.NamespaceLabels = map[string]string{"weft.dev/mesh": "l4", "a": "b"}
	m, err := topo.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(m), 4096)
	objs := map[string]*unstructured.Unstructured{}
	for {
		var u unstructured.Unstructured
		if err := dec.Decode(&u.Object); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("decode: %v\n%s", err, m)
		}
		objs[u.GetKind()+"/"+u.GetName()] = &u
	}
	ns := objs["Namespace/bench"]
	if ns == nil || ns.GetLabels()["weft.dev/mesh"] != "l4" || ns.GetLabels()["a"] != "b" {
		t.Fatalf("namespace %v", ns)
	}
	tests := []struct {
		deploy, node, image string
	}{
		{"bench-client", "node-1", "weftmesh/echo:latest"},
		{"bench-server", "node-2", "weftmesh/echo:latest"},
		{"bench-bulk", "node-2", "weftmesh/bulk:latest"},
		{"bench-server-local", "node-1", "weftmesh/echo:latest"},
		{"bench-bulk-local", "node-1", "weftmesh/bulk:latest"},
	}
	for _, tt := range tests {
		d := objs["Deployment/"+tt.deploy]
		if d == nil {
			t.Errorf("no Deployment %s", tt.deploy)
			continue
		}
		if d.GetNamespace() != "bench" {
			t.Errorf("%s in namespace %q", tt.deploy, d.GetNamespace())
		}
		node, _, _ := unstructured.NestedString(d.Object, "spec", "template", "spec", "nodeSelector", "kubernetes.io/hostname")
		if node != tt.node {
			t.Errorf("%s on %q, want %q", tt.deploy, node, tt.node)
		}
		cs, _, _ := unstructured.NestedSlice(d.Object, "spec", "template", "spec", "containers")
		if len(cs) != 1 || cs[0].(map[string]any)["image"] != tt.image {
			t.Errorf("%s containers %v", tt.deploy, cs)
		}
	}
	for _, s := range []string{"Service/bench-server", "Service/bench-bulk"} {
		if objs[s] == nil {
			t.Errorf("no %s", s)
		}
	}
	if len(objs) != 8 {
		t.Errorf("%d objects, want 8", len(objs))
	}
}

func TestFixedRateHTTPAndLoadTimeOf(t *testing.T) {
	p, err := NewPlan(Quick)
	if err != nil {
		t.Fatal(err)
	}
	fixed := p.FixedRateHTTP()
	if !slices.Equal(fixed, []string{"http-1000rps", "http-3200rps"}) {
		t.Errorf("FixedRateHTTP = %v, want the 1000 and 3200 rps workloads", fixed)
	}
	// Quick: 0.25 s warm-up, 1 × 1 s, 0.25 s pause = 1.5 s per HTTP load point and scenario.
	tests := []struct {
		name      string
		scenarios [][]string
		want      time.Duration
	}{
		{"one scenario is LoadTime(1)", [][]string{nil}, p.LoadTime(1)},
		{"two full scenarios are LoadTime(2)", [][]string{nil, nil}, p.LoadTime(2)},
		{"L7 at the fixed rates adds 2 load points", [][]string{nil, nil, fixed}, p.LoadTime(2) + 2*1500*time.Millisecond},
		{"a workload of one scenario alone", [][]string{fixed}, 2 * 1500 * time.Millisecond},
		{"none", nil, 0},
	}
	if got := p.FixedRate(); !slices.Equal(got, []string{"http-1000rps", "http-3200rps", "grpc-1000rps"}) {
		t.Errorf("FixedRate = %v, want the fixed-rate HTTP and gRPC workloads", got)
	}
	if got := p.IDs(func(w Workload) bool { return w.Kind == Bulk }); !slices.Equal(got, []string{"tcp-1stream", "tcp-4streams"}) {
		t.Errorf("IDs(bulk) = %v", got)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := p.LoadTimeOf(tt.scenarios...); got != tt.want {
				t.Errorf("LoadTimeOf = %s, want %s", got, tt.want)
			}
		})
	}
}
