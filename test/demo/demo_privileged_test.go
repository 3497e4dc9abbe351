package demo

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/weftmesh/weft/test/harness"
	"github.com/weftmesh/weft/test/privileged"
)

// TestPrivilegedDemo runs the whole demo (make demo) in a harness cluster and checks what its
// report claims: every request answered, mTLS on every connection inside the mesh, each canary
// step's shares within tolerance of its weights, GET from gw allowed and POST denied with 403.
func TestPrivilegedDemo(t *testing.T) {
	privileged.Require(t)
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	progress := harness.NewProgress(logWriter{t})
	c, err := harness.Start(ctx, harness.Options{Progress: progress})
	if err != nil {
		t.Fatalf("start cluster: %v", err)
	}
	t.Cleanup(func() {
		if err := c.Close(); err != nil {
			t.Errorf("close cluster: %v", err)
		}
	})
	var out strings.Builder
	res, err := Run(ctx, c, progress, &out)
	t.Logf("demo report:\n%s", out.String())
	if err != nil {
		t.Fatal(err)
	}
	if res.Failed() {
		t.Error("the demo reports a failure (see its output above)")
	}
	w := res.Waypoint
	if w == nil || len(w.Canary) != len(CanaryWeights) {
		t.Fatalf("waypoint chapter incomplete: %+v", w)
	}
	for _, s := range w.Canary {
		if s.Failed() {
			t.Errorf("canary %d/%d: v2 share %.3f of %d ok (of %d), want %.2f ± %.3f", s.V1, s.V2, s.Share(), s.Report.OK, s.Report.Count,
				float64(s.V2)/100, Tolerance(s.V2, s.Report.OK))
		}
	}
	if w.Post.Status["403"] != authzRequests || !strings.Contains(w.PostReply, "RBAC: access denied") {
		t.Errorf("POST from gw: statuses %v, reply %q; want %d × 403 \"RBAC: access denied\"", w.Post.Status, w.PostReply, authzRequests)
	}
	if w.Get.Status["200"] != authzRequests {
		t.Errorf("GET from gw: statuses %v, want %d × 200", w.Get.Status, authzRequests)
	}
}

// logWriter sends the harness's progress lines to the test log.
type logWriter struct{ t *testing.T }

func (w logWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(b), "\n"))
	return len(b), nil
}
