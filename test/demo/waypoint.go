package demo

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/weftmesh/weft/api"
	"github.com/weftmesh/weft/test/apps/client/report"
	"github.com/weftmesh/weft/test/harness"
	"github.com/weftmesh/weft/test/mesh"
)

// BookSubsets is the tutorial's DestinationRule: the versions of books as subsets.
const BookSubsets = `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: books, namespace: mesh}
spec:
  host: books
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
`

// GatewayPrincipal is gw's identity, the only one the demo's AuthorizationPolicy allows.
const GatewayPrincipal = "cluster.local/ns/mesh/sa/gw"

// BooksGetOnly allows only GET from gw to the Service books; the waypoint enforces it
// (targetRefs), so anything else gets 403 "RBAC: access denied".
const BooksGetOnly = `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: books-get-only, namespace: mesh}
spec:
  targetRefs:
  - {kind: Service, group: "", name: books}
  action: ALLOW
  rules:
  - from:
    - source: {principals: ["` + GatewayPrincipal + `"]}
    to:
    - operation: {methods: ["GET"]}
`

// CanaryWeights are the demo's canary steps: the weights of books v1 and v2.
var CanaryWeights = [][2]int{{90, 10}, {50, 50}, {0, 100}}

// Requests of the waypoint chapter.
const (
	canaryRequests = 200 // per canary step, keep-alive, 4 at a time
	authzRequests  = 10  // per method
)

// CanaryVirtualService returns the VirtualService books that splits traffic between the
// subsets v1 and v2 by weight.
func CanaryVirtualService(v1, v2 int) []byte {
	return fmt.Appendf(nil, `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: books, namespace: mesh}
spec:
  hosts: [books]
  http:
  - route:
    - {destination: {host: books, subset: v1}, weight: %d}
    - {destination: {host: books, subset: v2}, weight: %d}
`, v1, v2)
}

// WaypointResult is what the waypoint chapter measured.
type WaypointResult struct {
	Pod     string        `json:"pod"`
	Node    string        `json:"node"`
	ReadyIn time.Duration `json:"readyIn"` // Gateway applied → Deployment ready and Programmed
	Canary  []CanaryStep  `json:"canary"`
	// PolicyInForceAfter is the time from applying BooksGetOnly to the first POST denied.
	PolicyInForceAfter time.Duration `json:"policyInForceAfter"`
	Get                report.Report `json:"get"`
	Post               report.Report `json:"post"`
	// PostReply is the status line and body of one denied POST, as fortio curl printed them.
	PostReply string `json:"postReply"`
}

// CanaryStep is one weight split and the responses of canaryRequests requests under it.
type CanaryStep struct {
	V1, V2 int // weights
	// InForceAfter is the time from applying the VirtualService until probes saw the new split.
	InForceAfter time.Duration `json:"inForceAfter"`
	Report       report.Report `json:"report"`
}

// Share returns the share of v2 among the step's successful responses (NaN without any).
func (s CanaryStep) Share() float64 {
	n := s.Report.Versions["v1"] + s.Report.Versions["v2"]
	if n == 0 {
		return math.NaN()
	}
	return float64(s.Report.Versions["v2"]) / float64(n)
}

// Tolerance is how far v2's observed share may be from its weight over n requests: 3.5
// standard deviations of the binomial share (about 1 in 2000 false alarms), at least 1 %.
func Tolerance(v2Weight, n int) float64 {
	if n <= 0 {
		return 0
	}
	p := float64(v2Weight) / 100
	return math.Max(0.01, 3.5*math.Sqrt(p*(1-p)/float64(n)))
}

// Failed reports whether the step lost a request or v2's share is outside Tolerance of its
// weight.
func (s CanaryStep) Failed() bool {
	if s.Report.Count == 0 || s.Report.OK != s.Report.Count {
		return true
	}
	share := s.Share()
	return math.IsNaN(share) || math.Abs(share-float64(s.V2)/100) > Tolerance(s.V2, s.Report.OK)
}

// Failed reports whether a canary step failed, a GET from gw was not answered 200, or a POST
// from gw was not denied with 403.
func (w *WaypointResult) Failed() bool {
	if len(w.Canary) != len(CanaryWeights) {
		return true
	}
	for _, s := range w.Canary {
		if s.Failed() {
			return true
		}
	}
	return w.Get.Count == 0 || w.Get.Status["200"] != w.Get.Count ||
		w.Post.Count == 0 || w.Post.Status["403"] != w.Post.Count
}

// runWaypoint is the waypoint chapter: deploy the waypoint, shift a canary, deny by method.
func runWaypoint(ctx context.Context, c *harness.Cluster, progress *harness.Progress, gw corev1.Pod) (*WaypointResult, error) {
	res := &WaypointResult{}
	start := time.Now()
	progress.Step("applying the waypoint: Gateway %s/waypoint of class istio-waypoint", Namespace)
	if err := mesh.DeployWaypoint(ctx, c, Namespace, "waypoint", 2*time.Minute); err != nil {
		return res, err
	}
	res.ReadyIn = time.Since(start)
	pods, err := mesh.WaypointPods(ctx, c, Namespace, "waypoint")
	if err != nil {
		return res, err
	}
	for _, p := range pods {
		res.Pod, res.Node = p.Name, p.Spec.NodeName
	}
	progress.Step("labelling namespace %s istio.io/use-waypoint=waypoint; applying DestinationRule books (subsets v1, v2)", Namespace)
	if err := mesh.SetNamespaceLabel(ctx, c, Namespace, api.LabelUseWaypoint, "waypoint"); err != nil {
		return res, fmt.Errorf("waypoint: %w", err)
	}
	if err := c.Apply(ctx, Namespace, []byte(BookSubsets)); err != nil {
		return res, fmt.Errorf("waypoint: %w", err)
	}
	const books = "http://books/"
	// Until the waypoint is in the path, nothing changes; with it, books is split 50/50 by
	// round robin, the starting point of the canary.
	err = harness.WaitFor(ctx, time.Minute, "requests to books through the waypoint", func(ctx context.Context) (bool, error) {
		n, err := mesh.WaypointRequests(ctx, c, Namespace, "waypoint")
		if err != nil || n > 0 {
			return n > 0, err
		}
		_, err = clientRun(ctx, c, gw, books, 1)
		return false, err
	})
	if err != nil {
		return res, err
	}
	prev := 50
	for _, w := range CanaryWeights {
		progress.Step("VirtualService books: v1 %d%%, v2 %d%%", w[0], w[1])
		applied := time.Now()
		if err := c.Apply(ctx, Namespace, CanaryVirtualService(w[0], w[1])); err != nil {
			return res, fmt.Errorf("canary %d/%d: %w", w[0], w[1], err)
		}
		if err := waitSplit(ctx, c, gw, books, prev, w[1]); err != nil {
			return res, fmt.Errorf("canary %d/%d: %w", w[0], w[1], err)
		}
		step := CanaryStep{V1: w[0], V2: w[1], InForceAfter: time.Since(applied)}
		if step.Report, err = clientRun(ctx, c, gw, books, canaryRequests, "-c", "4"); err != nil {
			return res, fmt.Errorf("canary %d/%d: %w", w[0], w[1], err)
		}
		res.Canary = append(res.Canary, step)
		prev = w[1]
	}

	progress.Step("AuthorizationPolicy books-get-only (targetRefs Service books): ALLOW GET from %s", GatewayPrincipal)
	applied := time.Now()
	if err := c.Apply(ctx, Namespace, []byte(BooksGetOnly)); err != nil {
		return res, fmt.Errorf("authorization: %w", err)
	}
	post := []string{"-method", "POST", "-data", "x"}
	err = harness.WaitFor(ctx, 30*time.Second, "POST to books denied", func(ctx context.Context) (bool, error) {
		r, err := clientRun(ctx, c, gw, books, 1, post...)
		return r.Status["403"] == 1, err
	})
	if err != nil {
		return res, fmt.Errorf("authorization: %w", err)
	}
	res.PolicyInForceAfter = time.Since(applied)
	if res.Get, err = clientRun(ctx, c, gw, books, authzRequests); err != nil {
		return res, fmt.Errorf("authorization: GET: %w", err)
	}
	if res.Post, err = clientRun(ctx, c, gw, books, authzRequests, post...); err != nil {
		return res, fmt.Errorf("authorization: POST: %w", err)
	}
	out, _ := c.Exec(ctx, Namespace, gw.Name, c.Binary("fortio"), "curl", "-loglevel", "Error", "-payload", "x", books)
	res.PostReply = statusAndBody(out)
	return res, nil
}

// waitSplit waits until two probes in a row of 40 requests each show v2's share past the middle
// between the previous split (from) and the new one (to): the new VirtualService is in force at
// the waypoint. (One probe of the old split passes by chance about once in 100 tries for
// 50/50 → 90/10; two in a row about once in 10,000.)
func waitSplit(ctx context.Context, c *harness.Cluster, gw corev1.Pod, url string, from, to int) error {
	mid := float64(from+to) / 200
	passed := 0
	return harness.WaitFor(ctx, 30*time.Second, fmt.Sprintf("v2 share of books near %d%%", to), func(ctx context.Context) (bool, error) {
		r, err := clientRun(ctx, c, gw, url, 40, "-c", "4")
		if err != nil || r.OK != r.Count {
			passed = 0
			return false, err
		}
		share := CanaryStep{Report: r}.Share()
		if (to >= from && share >= mid) || (to < from && share <= mid) {
			passed++
		} else {
			passed = 0
		}
		return passed >= 2, nil
	})
}

// clientRun runs the client app in pod with n HTTP requests to url and the extra flags.
func clientRun(ctx context.Context, c *harness.Cluster, pod corev1.Pod, url string, n int, flags ...string) (report.Report, error) {
	var r report.Report
	args := append([]string{c.Binary("client"), "http", url, "-n", strconv.Itoa(n), "-json", "-allow-fail", "-timeout", "10s"}, flags...)
	out, err := c.Exec(ctx, pod.Namespace, pod.Name, args...)
	if err != nil {
		return r, fmt.Errorf("client in %s: %w\n%s", pod.Name, err, out)
	}
	if i := bytes.IndexByte(out, '{'); i >= 0 {
		out = out[i:]
	}
	if err := json.NewDecoder(bytes.NewReader(out)).Decode(&r); err != nil {
		return r, fmt.Errorf("client report: %w\n%s", err, out)
	}
	return r, nil
}

// statusAndBody returns the status line and the body of an HTTP response as fortio curl prints
// it ("HTTP/1.1 403 Forbidden", headers, blank line, body) on one line: `403 Forbidden "RBAC:
// access denied"`; "" when out holds no response.
func statusAndBody(out []byte) string {
	s := strings.ReplaceAll(string(out), "\r\n", "\n")
	i := strings.Index(s, "HTTP/")
	if i < 0 {
		return ""
	}
	s = s[i:]
	head, body, _ := strings.Cut(s, "\n\n")
	status, _, _ := strings.Cut(head, "\n")
	if _, rest, ok := strings.Cut(status, " "); ok {
		status = rest
	}
	body = strings.TrimSpace(body)
	if body == "" {
		return strings.TrimSpace(status)
	}
	return fmt.Sprintf("%s %q", strings.TrimSpace(status), body)
}

// writeWaypointReport renders the waypoint chapter.
func writeWaypointReport(out io.Writer, w *WaypointResult) {
	fmt.Fprintf(out, "Waypoint (L7): Gateway %s/waypoint, class istio-waypoint; pod %s on %s, Programmed %.1fs after it was applied.\n",
		Namespace, w.Pod, w.Node, w.ReadyIn.Seconds())
	fmt.Fprintf(out, "Namespace %s labelled istio.io/use-waypoint=waypoint; DestinationRule books has subsets v1 and v2.\n\n", Namespace)
	fmt.Fprintf(out, "Canary: VirtualService books shifts the weights; %d requests from gw to http://books/ per step:\n\n", canaryRequests)
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  WEIGHTS v1/v2\tv1\tv2\tOK\tIN FORCE AFTER")
	for _, s := range w.Canary {
		v1, v2 := s.Report.Versions["v1"], s.Report.Versions["v2"]
		n := max(v1+v2, 1)
		verdict := ""
		if s.Failed() {
			verdict = fmt.Sprintf("  !! outside ±%.1f%% of the weight", 100*Tolerance(s.V2, s.Report.OK))
		}
		fmt.Fprintf(tw, "  %d/%d\t%d (%.1f%%)\t%d (%.1f%%)\t%d/%d\t%.1fs%s\n", s.V1, s.V2,
			v1, 100*float64(v1)/float64(n), v2, 100*float64(v2)/float64(n), s.Report.OK, s.Report.Count, s.InForceAfter.Seconds(), verdict)
	}
	tw.Flush()
	fmt.Fprintf(out, "\nAuthorizationPolicy books-get-only (targetRefs Service books): ALLOW only GET from %s; in force after %.1fs:\n\n",
		GatewayPrincipal, w.PolicyInForceAfter.Seconds())
	tw = tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "  GET  http://books/ from gw\t%s\n", statuses(w.Get))
	post := statuses(w.Post)
	if w.PostReply != "" {
		post += "   " + w.PostReply
	}
	fmt.Fprintf(tw, "  POST http://books/ from gw\t%s\n", post)
	tw.Flush()
	fmt.Fprintln(out)
}

// statuses renders a report's status counts: "200 ×10", "403 ×9, 200 ×1", failures included.
func statuses(r report.Report) string {
	var parts []string
	for _, code := range slices.Sorted(maps.Keys(r.Status)) {
		parts = append(parts, fmt.Sprintf("%s ×%d", code, r.Status[code]))
	}
	for _, kind := range slices.Sorted(maps.Keys(r.Errors)) {
		parts = append(parts, fmt.Sprintf("%s ×%d", kind, r.Errors[kind]))
	}
	if len(parts) == 0 {
		return "no requests"
	}
	return strings.Join(parts, ", ")
}
