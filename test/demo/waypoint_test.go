package demo

import (
	"math"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/weftmesh/weft/test/apps/client/report"
)

func TestCanaryVirtualService(t *testing.T) {
	for _, w := range CanaryWeights {
		var vs struct {
			Kind     string
			Metadata struct{ Name, Namespace string }
			Spec     struct {
				Hosts []string
				HTTP  []struct {
					Route []struct {
						Destination struct{ Host, Subset string }
						Weight      int
					}
				} `json:"http"`
			}
		}
		if err := yaml.Unmarshal(CanaryVirtualService(w[0], w[1]), &vs); err != nil {
			t.Fatal(err)
		}
		if vs.Kind != "VirtualService" || vs.Metadata.Name != "books" || vs.Metadata.Namespace != Namespace ||
			len(vs.Spec.Hosts) != 1 || vs.Spec.Hosts[0] != "books" || len(vs.Spec.HTTP) != 1 {
			t.Fatalf("%v: virtual service %+v", w, vs)
		}
		r := vs.Spec.HTTP[0].Route
		if len(r) != 2 || r[0].Destination.Subset != "v1" || r[0].Weight != w[0] || r[1].Destination.Subset != "v2" || r[1].Weight != w[1] {
			t.Errorf("%v: routes %+v", w, r)
		}
		if w[0]+w[1] != 100 {
			t.Errorf("weights %v do not add up to 100", w)
		}
	}
}

func versions(v1, v2 int) report.Report {
	return report.Report{Count: v1 + v2, OK: v1 + v2, Status: map[string]int{"200": v1 + v2}, Versions: map[string]int{"v1": v1, "v2": v2}}
}

func TestCanaryStepFailed(t *testing.T) {
	tests := []struct {
		name   string
		step   CanaryStep
		failed bool
	}{
		{"90/10 as weighted", CanaryStep{V1: 90, V2: 10, Report: versions(181, 19)}, false},
		{"90/10 at the edge of 3.5 SD (±7.4 %)", CanaryStep{V1: 90, V2: 10, Report: versions(166, 34)}, false},
		{"90/10 still 50/50", CanaryStep{V1: 90, V2: 10, Report: versions(100, 100)}, true},
		{"50/50", CanaryStep{V1: 50, V2: 50, Report: versions(107, 93)}, false},
		{"50/50 lopsided", CanaryStep{V1: 50, V2: 50, Report: versions(140, 60)}, true},
		{"0/100 exact", CanaryStep{V1: 0, V2: 100, Report: versions(0, 200)}, false},
		{"0/100 with a v1 straggler", CanaryStep{V1: 0, V2: 100, Report: versions(3, 197)}, true},
		{"a failed request", CanaryStep{V1: 90, V2: 10, Report: report.Report{Count: 200, OK: 199, Versions: map[string]int{"v1": 180, "v2": 19}}}, true},
		{"no requests", CanaryStep{V1: 90, V2: 10}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.step.Failed(); got != tt.failed {
				t.Errorf("Failed() = %v, want %v (share %.3f, tolerance %.3f)", got, tt.failed, tt.step.Share(), Tolerance(tt.step.V2, tt.step.Report.OK))
			}
		})
	}
	if tol := Tolerance(10, 200); math.Abs(tol-0.0742) > 0.001 {
		t.Errorf("Tolerance(10, 200) = %.4f, want 3.5 × sqrt(0.09/200) ≈ 0.0742", tol)
	}
}

func goodWaypoint() *WaypointResult {
	return &WaypointResult{
		Pod: "waypoint-5c9d7", Node: "node-1", ReadyIn: 4200 * time.Millisecond,
		Canary: []CanaryStep{
			{V1: 90, V2: 10, InForceAfter: 1100 * time.Millisecond, Report: versions(181, 19)},
			{V1: 50, V2: 50, InForceAfter: 900 * time.Millisecond, Report: versions(97, 103)},
			{V1: 0, V2: 100, InForceAfter: 800 * time.Millisecond, Report: versions(0, 200)},
		},
		PolicyInForceAfter: 700 * time.Millisecond,
		Get:                report.Report{Count: 10, OK: 10, Status: map[string]int{"200": 10}},
		Post:               report.Report{Count: 10, Failed: 10, Status: map[string]int{"403": 10}},
		PostReply:          `403 Forbidden "RBAC: access denied"`,
	}
}

func TestWaypointResultFailed(t *testing.T) {
	tests := []struct {
		name   string
		change func(w *WaypointResult)
		failed bool
	}{
		{"as expected", func(*WaypointResult) {}, false},
		{"a canary step missing", func(w *WaypointResult) { w.Canary = w.Canary[:2] }, true},
		{"0/100 still answered by v1", func(w *WaypointResult) { w.Canary[2].Report = versions(100, 100) }, true},
		{"POST allowed", func(w *WaypointResult) { w.Post.Status = map[string]int{"200": 10} }, true},
		{"one POST not denied", func(w *WaypointResult) { w.Post.Status = map[string]int{"403": 9, "200": 1} }, true},
		{"GET denied", func(w *WaypointResult) { w.Get.Status = map[string]int{"403": 10} }, true},
		{"no GET sent", func(w *WaypointResult) { w.Get = report.Report{} }, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := goodWaypoint()
			tt.change(w)
			if got := w.Failed(); got != tt.failed {
				t.Errorf("Failed() = %v, want %v", got, tt.failed)
			}
			r := &Result{Connections: []Connection{{Destination: "spiffe://cluster.local/ns/mesh/sa/books", Security: "mutual_tls", Count: 1}}, Waypoint: w}
			if r.Failed() != tt.failed {
				t.Errorf("the demo's Failed() = %v, want %v", r.Failed(), tt.failed)
			}
		})
	}
}

func TestWriteWaypointReport(t *testing.T) {
	w := goodWaypoint()
	w.Canary[1].Report = versions(150, 50) // 25 % for a 50 % weight: flagged
	var b strings.Builder
	writeWaypointReport(&b, w)
	out := b.String()
	for line := range strings.Lines(out) {
		if strings.TrimRight(line, "\n") != strings.TrimRight(line, " \n") {
			t.Errorf("trailing spaces: %q", line)
		}
	}
	for _, want := range []string{
		"pod waypoint-5c9d7 on node-1, Programmed 4.2s after it was applied",
		"90/10          181 (90.5%)  19 (9.5%)",
		"0/100          0 (0.0%)     200 (100.0%)  200/200",
		"!! outside ±12.4% of the weight",
		"GET  http://books/ from gw  200 ×10",
		`POST http://books/ from gw  403 ×10   403 Forbidden "RBAC: access denied"`,
		"ALLOW only GET from cluster.local/ns/mesh/sa/gw; in force after 0.7s",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}
	if strings.Count(out, "!!") != 1 {
		t.Errorf("want exactly the 50/50 step flagged:\n%s", out)
	}
}

func TestStatusAndBody(t *testing.T) {
	tests := []struct {
		name, out, want string
	}{
		{"denied", "HTTP/1.1 403 Forbidden\r\ncontent-length: 19\r\ncontent-type: text/plain\r\n\r\nRBAC: access denied", `403 Forbidden "RBAC: access denied"`},
		{"log line first", "12:00:00 W fortio: non 200 status code 403\nHTTP/1.1 403 Forbidden\r\n\r\nRBAC: access denied\n", `403 Forbidden "RBAC: access denied"`},
		{"no body", "HTTP/1.1 204 No Content\r\ndate: x\r\n\r\n", "204 No Content"},
		{"no response", "dial tcp: connection refused", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := statusAndBody([]byte(tt.out)); got != tt.want {
				t.Errorf("statusAndBody = %q, want %q", got, tt.want)
			}
		})
	}
}
