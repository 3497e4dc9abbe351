// Package demo runs Weft's demo in a harness cluster: the sample app of "Istio Explained –
// Service Mesh Part 1: Routing" (gw → books v1/v2 → ratings v1/v2) in an ambient namespace with
// Weft's node agents installed, traffic between its pods on one node and across nodes, and a
// short report with timings and, per connection, its security and both SPIFFE identities as the
// agents counted them. Then the waypoint chapter: a waypoint deployed from a Gateway of class
// istio-waypoint, a canary of books shifted 90/10 → 50/50 → 0/100 by a VirtualService with the
// live counts of each step, and an AuthorizationPolicy enforced by the waypoint that lets gw GET
// books but denies its POST with 403.
package demo

import (
	"context"
	_ "embed"
	"fmt"
	"io"
	"net"
	"regexp"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/weftmesh/weft/test/apps/client/report"
	"github.com/weftmesh/weft/test/harness"
	"github.com/weftmesh/weft/test/mesh"
)

// SampleManifest is the sample app, in namespace "mesh".
//
//go:embed sample.yaml
var SampleManifest []byte

// Namespace is where the sample app runs.
const Namespace = "mesh"

// Hop is one measured path of the report.
type Hop struct {
	Name   string        `json:"name"`
	From   string        `json:"from"` // pod (node)
	To     string        `json:"to"`   // URL
	Report report.Report `json:"report"`
}

// Result is what the demo measured.
type Result struct {
	Pods        []PodPlacement `json:"pods"`
	Hops        []Hop          `json:"hops"`
	Connections []Connection   `json:"connections"`
	DeployFor   time.Duration  `json:"deployFor"`
	// Waypoint is the waypoint chapter: a canary shift and an L7 deny (nil until it ran).
	Waypoint *WaypointResult `json:"waypoint,omitempty"`
}

// PodPlacement is where one pod of the sample app runs.
type PodPlacement struct {
	Name, Node, IP string
}

// Run deploys the sample app into c, sends traffic and writes the report to out.
func Run(ctx context.Context, c *harness.Cluster, progress *harness.Progress, out io.Writer) (*Result, error) {
	start := time.Now()
	progress.Step("installing Weft: CRDs (deploy/crds), controller and node agents (deploy/manifests/weft.yaml)")
	if err := mesh.Install(ctx, c); err != nil {
		return nil, err
	}
	progress.Step("deploying the sample app (gw, books v1/v2, ratings v1/v2) into namespace %s", Namespace)
	if err := c.Apply(ctx, Namespace, SampleManifest); err != nil {
		return nil, err
	}
	progress.Step("labelling namespace %s %s=%s", Namespace, mesh.DataplaneModeLabel, mesh.Ambient)
	if err := mesh.SetAmbient(ctx, c, Namespace, true); err != nil {
		return nil, err
	}
	for _, d := range []string{"gw", "books-v1", "books-v2", "ratings-v1", "ratings-v2"} {
		if err := c.WaitDeploymentReady(ctx, Namespace, d, 2*time.Minute); err != nil {
			return nil, err
		}
	}
	for _, svc := range []string{"gw", "books", "ratings"} {
		if err := c.WaitServiceReady(ctx, Namespace, svc, 1, time.Minute); err != nil {
			return nil, err
		}
	}
	res := &Result{DeployFor: time.Since(start)}
	pods, err := c.Client.CoreV1().Pods(Namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, err
	}
	sort.Slice(pods.Items, func(i, j int) bool { return pods.Items[i].Name < pods.Items[j].Name })
	byApp := map[string][]corev1.Pod{}
	var gw corev1.Pod
	for _, p := range pods.Items {
		res.Pods = append(res.Pods, PodPlacement{Name: p.Name, Node: p.Spec.NodeName, IP: p.Status.PodIP})
		byApp[p.Labels["app"]] = append(byApp[p.Labels["app"]], p)
		if p.Labels["app"] == "gw" {
			gw = p
		}
	}
	progress.Step("sending traffic from %s on %s", gw.Name, gw.Spec.NodeName)
	from := fmt.Sprintf("%s (%s)", gw.Name, gw.Spec.NodeName)
	hops := []struct{ name, url string }{
		{"gw → books (Service by DNS name)", "http://books/"},
		{"gw → ratings (FQDN)", "http://ratings.mesh.svc.cluster.local/"},
		{"gw → gw → books → ratings (/chain)", "http://gw/chain"},
	}
	for _, p := range append(byApp["books"], byApp["ratings"]...) {
		where := "cross-node"
		if p.Spec.NodeName == gw.Spec.NodeName {
			where = "same-node"
		}
		hops = append(hops, struct{ name, url string }{
			fmt.Sprintf("gw → %s pod IP (%s, %s)", p.Labels["app"]+"-"+p.Labels["version"], where, p.Spec.NodeName),
			"http://" + net.JoinHostPort(p.Status.PodIP, "8080") + "/",
		})
	}
	for _, h := range hops {
		r, err := mesh.Client(ctx, c, Namespace, gw.Name, h.url, 50)
		if err != nil {
			return res, fmt.Errorf("%s: %w", h.name, err)
		}
		res.Hops = append(res.Hops, Hop{Name: h.name, From: from, To: h.url, Report: r})
	}
	for _, n := range c.Nodes {
		m, err := mesh.AgentMetrics(ctx, n)
		if err != nil {
			return res, fmt.Errorf("metrics of the agent on %s: %w", n.Name, err)
		}
		res.Connections = append(res.Connections, connections(n.Name, m)...)
	}
	writeReport(out, res)
	res.Waypoint, err = runWaypoint(ctx, c, progress, gw)
	if err != nil {
		return res, fmt.Errorf("waypoint chapter: %w", err)
	}
	fmt.Fprintln(out)
	writeWaypointReport(out, res.Waypoint)
	return res, nil
}

// Connection is one row of the agents' istio_tcp_connections_opened_total as the source agent
// reported it: who talked to whom, and how.
type Connection struct {
	Node, Source, Destination, Security string
	Count                               float64
}

var labelRE = regexp.MustCompile(`(\w+)="([^"]*)"`)

// connections reads the source-reported connection counters of one agent's metrics, summed per
// source, destination and security.
func connections(node, metrics string) []Connection {
	var out []Connection
	index := map[Connection]int{} // key with Count 0
	for _, line := range mesh.MetricLines(metrics, "istio_tcp_connections_opened_total", `reporter="source"`) {
		labels := map[string]string{}
		for _, m := range labelRE.FindAllStringSubmatch(line, -1) {
			labels[m[1]] = m[2]
		}
		n, _ := mesh.MetricValue(line)
		key := Connection{Node: node, Source: labels["source_principal"], Destination: labels["destination_principal"],
			Security: labels["connection_security_policy"]}
		if i, ok := index[key]; ok {
			out[i].Count += n
			continue
		}
		index[key] = len(out)
		key.Count = n
		out = append(out, key)
	}
	return out
}

func writeReport(out io.Writer, res *Result) {
	fmt.Fprintf(out, "\nSample app deployed, enrolled and Ready in %.1fs:\n\n", res.DeployFor.Seconds())
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  POD\tNODE\tIP")
	for _, p := range res.Pods {
		fmt.Fprintf(tw, "  %s\t%s\t%s\n", p.Name, p.Node, p.IP)
	}
	tw.Flush()
	fmt.Fprintf(out, "\nTraffic from gw, every request on a new connection:\n\n")
	tw = tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  PATH\tOK\tANSWERED BY\tP50 ms\tP99 ms")
	for _, h := range res.Hops {
		fmt.Fprintf(tw, "  %s\t%d/%d\t%s\t%.2f\t%.2f\n", h.Name, h.Report.OK, h.Report.Count, answeredBy(h.Report), h.Report.Latency.P50, h.Report.Latency.P99)
	}
	tw.Flush()
	fmt.Fprintf(out, "\nConnections as the source node agents counted them (istio_tcp_connections_opened_total):\n\n")
	tw = tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  NODE\tSOURCE IDENTITY\tDESTINATION IDENTITY\tSECURITY\tCONNECTIONS")
	for _, c := range res.Connections {
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%.0f\n", c.Node, c.Source, c.Destination, c.Security, c.Count)
	}
	tw.Flush()
	fmt.Fprintln(out)
}

// answeredBy lists which versions of which apps answered: "books v1=21 v2=29"; for a chain,
// every app on it.
func answeredBy(r report.Report) string {
	apps := make([]string, 0, len(r.Services))
	for app := range r.Services {
		apps = append(apps, app)
	}
	sort.Strings(apps)
	parts := make([]string, len(apps))
	for i, app := range apps {
		parts[i] = app + " " + counts(r.Services[app])
	}
	return strings.Join(parts, ", ")
}

// counts renders {"v1": 26, "v2": 24} as "v1=26 v2=24".
func counts(m map[string]int) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s=%d", k, m[k])
	}
	return strings.Join(parts, " ")
}

// Failed reports whether any request of the demo failed, a connection between the sample
// app's workloads went without mutual TLS, or the waypoint chapter (when it ran) failed: a
// canary share outside its tolerance, a GET from gw not answered or a POST not denied.
func (r *Result) Failed() bool {
	if r.Waypoint != nil && r.Waypoint.Failed() {
		return true
	}
	for _, h := range r.Hops {
		if h.Report.Failed > 0 || h.Report.OK == 0 {
			return true
		}
	}
	for _, c := range r.Connections {
		if strings.Contains(c.Destination, "/ns/"+Namespace+"/") && c.Security != "mutual_tls" {
			return true
		}
	}
	return len(r.Connections) == 0
}
