package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"

	"github.com/weftmesh/weft/test/apps/client/report"
	"github.com/weftmesh/weft/test/demo"
	"github.com/weftmesh/weft/test/harness"
	"github.com/weftmesh/weft/test/mesh"
)

// waypointGateway is the sample namespace's waypoint, as Istio's docs write it.
var waypointGateway = string(mesh.WaypointManifest(demo.Namespace, "waypoint"))

// TestPrivilegedWaypoint follows "Istio Explained – Service Mesh Part 1: Routing" step by step
// with its own YAML, through a waypoint deployed from a Gateway of class istio-waypoint: the
// node agents send the namespace's service traffic to the waypoint, which routes it.
func TestPrivilegedWaypoint(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 12*time.Minute)
	defer cancel()
	c := startCluster(t, ctx)
	if err := c.Apply(ctx, demo.Namespace, demo.SampleManifest); err != nil {
		t.Fatal(err)
	}
	if err := c.Apply(ctx, demo.Namespace, []byte(tcpEcho)); err != nil {
		t.Fatal(err)
	}
	if err := mesh.SetAmbient(ctx, c, demo.Namespace, true); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dumpAgentLogs(t, c); dumpWaypointLogs(t, c) })
	if err := mesh.Install(ctx, c); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"gw", "books-v1", "books-v2", "ratings-v1", "ratings-v2", "tcp-echo"} {
		if err := c.WaitDeploymentReady(ctx, demo.Namespace, d, 2*time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	apply(t, ctx, c, waypointGateway)
	if err := c.WaitDeploymentReady(ctx, demo.Namespace, "waypoint", 2*time.Minute); err != nil {
		t.Fatal(err)
	}
	waitProgrammed(t, ctx, c, "waypoint")
	if err := mesh.SetNamespaceLabel(ctx, c, demo.Namespace, "istio.io/use-waypoint", "waypoint"); err != nil {
		t.Fatal(err)
	}
	gw := podOf(t, ctx, c, "gw")
	books := "http://books/"

	// Every request now crosses the waypoint: it reports it in Istio's request metrics.
	waitUntil(t, ctx, "a request counted by the waypoint", func() bool {
		r := httpFrom(t, ctx, c, gw, books, 1)
		return r.OK == 1 && waypointRequests(t, ctx, c, `destination_service_name="books"`) > 0
	})

	t.Run("all v1", func(t *testing.T) {
		apply(t, ctx, c, demo.BookSubsets+`---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: books, namespace: mesh}
spec:
  hosts: [books]
  http:
  - route:
    - destination: {host: books, subset: v1}
`)
		waitVersions(t, ctx, c, gw, books, func(v map[string]int) bool { return v["v2"] == 0 })
		r := httpFrom(t, ctx, c, gw, books, 100)
		if r.OK != 100 || r.Versions["v1"] != 100 {
			t.Errorf("all-v1: %d of 100 ok, versions %v; want every response from v1", r.OK, r.Versions)
		}
	})

	t.Run("50/50", func(t *testing.T) {
		apply(t, ctx, c, `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: books, namespace: mesh}
spec:
  hosts: [books]
  http:
  - route:
    - {destination: {host: books, subset: v1}, weight: 50}
    - {destination: {host: books, subset: v2}, weight: 50}
`)
		waitVersions(t, ctx, c, gw, books, func(v map[string]int) bool { return v["v2"] > 0 })
		r := httpFrom(t, ctx, c, gw, books, 400, "-c", "8")
		checkShare(t, "50/50", r, 400, "v1", 0.4, 0.6)
	})

	t.Run("header match: end-user jason to v2", func(t *testing.T) {
		apply(t, ctx, c, `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: books, namespace: mesh}
spec:
  hosts: [books]
  http:
  - match:
    - headers:
        end-user: {exact: jason}
    route:
    - destination: {host: books, subset: v2}
  - route:
    - destination: {host: books, subset: v1}
`)
		waitVersions(t, ctx, c, gw, books, func(v map[string]int) bool { return v["v2"] == 0 })
		if r := httpFrom(t, ctx, c, gw, books, 20, "-H", "end-user: jason"); r.OK != 20 || r.Versions["v2"] != 20 {
			t.Errorf("end-user: jason: %d of 20 ok, versions %v; want all v2", r.OK, r.Versions)
		}
		if r := httpFrom(t, ctx, c, gw, books, 20); r.OK != 20 || r.Versions["v1"] != 20 {
			t.Errorf("no end-user: %d of 20 ok, versions %v; want all v1", r.OK, r.Versions)
		}
	})

	t.Run("delay fault, then a shorter timeout gives 504", func(t *testing.T) {
		apply(t, ctx, c, `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: ratings, namespace: mesh}
spec:
  hosts: [ratings]
  http:
  - fault:
      delay:
        fixedDelay: 2s
        percentage: {value: 100}
    route:
    - destination: {host: ratings}
`)
		t.Cleanup(func() { deleteObject(t, ctx, c, "virtualservices", "ratings") })
		waitUntil(t, ctx, "ratings delayed", func() bool {
			r := httpFrom(t, ctx, c, gw, "http://ratings/", 1)
			return r.OK == 1 && r.Latency.Max >= 2000
		})
		if r := httpFrom(t, ctx, c, gw, "http://ratings/", 3); r.OK != 3 || r.Latency.Min < 2000 {
			t.Errorf("delay fault: %d of 3 ok, latency min %.0f ms; want all ok after ≥ 2 s", r.OK, r.Latency.Min)
		}
		// books calls ratings on /chain: books' route times out first.
		apply(t, ctx, c, `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: books, namespace: mesh}
spec:
  hosts: [books]
  http:
  - route:
    - destination: {host: books, subset: v1}
    timeout: 1s
`)
		waitUntil(t, ctx, "books times out", func() bool {
			return httpFrom(t, ctx, c, gw, books+"chain", 1).Status["504"] == 1
		})
		r := httpFrom(t, ctx, c, gw, books+"chain", 3)
		if r.Status["504"] != 3 || r.Latency.Max > 1900 {
			t.Errorf("timeout: statuses %v, latency max %.0f ms; want 504 after about 1 s", r.Status, r.Latency.Max)
		}
	})

	t.Run("retries hide a v1 that fails 2 of 3", func(t *testing.T) {
		setEnv(t, ctx, c, "books-v1", "FAIL_PATTERN", "503,503,200")
		t.Cleanup(func() { setEnv(t, ctx, c, "books-v1", "FAIL_PATTERN", "") })
		apply(t, ctx, c, `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: books, namespace: mesh}
spec:
  hosts: [books]
  http:
  - route:
    - destination: {host: books, subset: v1}
    retries: {attempts: 0}
`)
		// Istio retries 503 twice by default; attempts: 0 shows the failures.
		waitUntil(t, ctx, "v1 failing without retries", func() bool {
			return httpFrom(t, ctx, c, gw, books, 3).Status["503"] >= 1
		})
		apply(t, ctx, c, `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: books, namespace: mesh}
spec:
  hosts: [books]
  http:
  - route:
    - destination: {host: books, subset: v1}
    retries:
      attempts: 3
      perTryTimeout: 2s
      retryOn: 5xx
`)
		waitUntil(t, ctx, "retries in force", func() bool { return httpFrom(t, ctx, c, gw, books, 3).OK == 3 })
		if r := httpFrom(t, ctx, c, gw, books, 30); r.OK != 30 || r.Versions["v1"] != 30 {
			t.Errorf("with retries: %d of 30 ok, statuses %v; want all ok from v1", r.OK, r.Status)
		}
	})

	t.Run("mirroring: v2 gets copies, the client sees v1", func(t *testing.T) {
		apply(t, ctx, c, `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: books, namespace: mesh}
spec:
  hosts: [books]
  http:
  - route:
    - destination: {host: books, subset: v1}
      weight: 100
    mirror: {host: books, subset: v2}
    mirrorPercentage: {value: 100}
`)
		before := waypointRequests(t, ctx, c, `destination_service_name="books"`, `destination_canonical_revision="v2"`)
		waitUntil(t, ctx, "mirrored copies reach v2", func() bool {
			httpFrom(t, ctx, c, gw, books, 5)
			return waypointRequests(t, ctx, c, `destination_service_name="books"`, `destination_canonical_revision="v2"`) > before
		})
		if r := httpFrom(t, ctx, c, gw, books, 20); r.OK != 20 || r.Versions["v1"] != 20 {
			t.Errorf("mirroring: %d of 20 ok, versions %v; want all answered by v1", r.OK, r.Versions)
		}
	})

	t.Run("circuit breaker", func(t *testing.T) {
		apply(t, ctx, c, `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: books, namespace: mesh}
spec:
  host: books
  trafficPolicy:
    connectionPool:
      tcp: {maxConnections: 1}
      http: {http1MaxPendingRequests: 1, maxRequestsPerConnection: 1}
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: books, namespace: mesh}
spec:
  hosts: [books]
  http:
  - route:
    - destination: {host: books, subset: v1}
`)
		waitUntil(t, ctx, "circuit breaker in force", func() bool {
			r := httpFrom(t, ctx, c, gw, books+"?delay=300ms", 20, "-c", "20")
			return r.Status["503"] > 0 && r.OK > 0
		})
		r := httpFrom(t, ctx, c, gw, books+"?delay=300ms", 20, "-c", "20")
		if r.Status["503"] == 0 || r.OK == 0 || r.OK+r.Status["503"] != 20 {
			t.Errorf("20 concurrent requests: statuses %v; want some 503 (overflow) and the rest 200", r.Status)
		}
		if n := waypointRequests(t, ctx, c, `response_code="503"`, `response_flags="UO"`); n == 0 {
			t.Error("no overflow (response_flags UO) counted by the waypoint")
		}
	})

	t.Run("outlier detection ejects a failing pod", func(t *testing.T) {
		setEnv(t, ctx, c, "books-v1", "FAIL_PATTERN", "503")
		t.Cleanup(func() {
			deleteObject(t, ctx, c, "destinationrules", "books")
			setEnv(t, ctx, c, "books-v1", "FAIL_PATTERN", "")
		})
		apply(t, ctx, c, `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: books, namespace: mesh}
spec:
  host: books
  trafficPolicy:
    outlierDetection:
      consecutive5xxErrors: 2
      interval: 1s
      baseEjectionTime: 1m
      maxEjectionPercent: 100
`)
		deleteObject(t, ctx, c, "virtualservices", "books")
		waitFor(t, ctx, c, 20*time.Second, "only v2 answers", func() report.Report { return httpFrom(t, ctx, c, gw, books, 20) },
			func(r report.Report) bool { return r.OK == 20 && r.Versions["v2"] == 20 })
		if n := waypointRequests(t, ctx, c, `destination_service_name="books"`, `destination_canonical_revision="v1"`, `response_code="503"`); n == 0 {
			t.Error("the failing v1 was ejected without a 503 counted")
		}
	})

	t.Run("HTTPRoute weights 50/50", func(t *testing.T) {
		apply(t, ctx, c, `apiVersion: v1
kind: Service
metadata: {name: books-v1, namespace: mesh}
spec:
  selector: {app: books, version: v1}
  ports: [{name: http, port: 80, targetPort: http}]
---
apiVersion: v1
kind: Service
metadata: {name: books-v2, namespace: mesh}
spec:
  selector: {app: books, version: v2}
  ports: [{name: http, port: 80, targetPort: http}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: books, namespace: mesh}
spec:
  parentRefs:
  - {group: "", kind: Service, name: books, port: 80}
  rules:
  - backendRefs:
    - {name: books-v1, port: 80, weight: 50}
    - {name: books-v2, port: 80, weight: 50}
`)
		t.Cleanup(func() { deleteObject(t, ctx, c, "httproutes", "books") })
		waitVersions(t, ctx, c, gw, books, func(v map[string]int) bool { return v["v1"] > 0 && v["v2"] > 0 })
		r := httpFrom(t, ctx, c, gw, books, 400, "-c", "8")
		checkShare(t, "HTTPRoute 50/50", r, 400, "v1", 0.4, 0.6)
	})

	t.Run("AuthorizationPolicy: GET allowed, POST denied with 403", func(t *testing.T) {
		apply(t, ctx, c, `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: books-get-only, namespace: mesh}
spec:
  targetRefs:
  - {kind: Service, group: "", name: books}
  action: ALLOW
  rules:
  - from:
    - source: {principals: ["cluster.local/ns/mesh/sa/gw"]}
    to:
    - operation: {methods: ["GET"]}
`)
		waitUntil(t, ctx, "POST denied", func() bool {
			return httpFrom(t, ctx, c, gw, books, 1, "-method", "POST", "-data", "x").Status["403"] == 1
		})
		if r := httpFrom(t, ctx, c, gw, books, 10); r.OK != 10 {
			t.Errorf("GET from gw: %d of 10 ok, statuses %v", r.OK, r.Status)
		}
		if r := httpFrom(t, ctx, c, gw, books, 10, "-method", "POST", "-data", "x"); r.Status["403"] != 10 {
			t.Errorf("POST from gw: statuses %v, want 10 × 403", r.Status)
		}
		ratings := podOf(t, ctx, c, "ratings")
		if r := httpFrom(t, ctx, c, ratings, books, 5); r.Status["403"] != 5 {
			t.Errorf("GET from ratings (not gw): statuses %v, want 5 × 403", r.Status)
		}
	})

	t.Run("TCP port through the waypoint", func(t *testing.T) {
		before := waypointTCP(t, ctx, c)
		out, err := c.Exec(ctx, gw.Namespace, gw.Name, c.Binary("client"), "tcp", "tcp-echo:9000", "-send", "through the waypoint", "-n", "1")
		if err != nil || !strings.Contains(string(out), "through the waypoint") {
			t.Fatalf("tcp echo through the waypoint: %v\n%s", err, out)
		}
		if after := waypointTCP(t, ctx, c); after <= before {
			t.Errorf("the waypoint did not count the TCP connection (%v → %v)", before, after)
		}
	})

	t.Run("waypoint-for all: traffic to a pod IP goes through the waypoint to that pod", func(t *testing.T) {
		patch := []byte(`{"metadata":{"labels":{"istio.io/waypoint-for":"all"}}}`)
		if _, err := dynamicClient(t, c).Resource(mesh.GatewayGVR).Namespace(demo.Namespace).Patch(ctx, "waypoint", types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			patch := []byte(`{"metadata":{"labels":{"istio.io/waypoint-for":null}}}`)
			_, _ = dynamicClient(t, c).Resource(mesh.GatewayGVR).Namespace(demo.Namespace).Patch(ctx, "waypoint", types.MergePatchType, patch, metav1.PatchOptions{})
		})
		books := podOf(t, ctx, c, "books")
		url := "http://" + net.JoinHostPort(books.Status.PodIP, "8080") + "/"
		through := func() float64 {
			return waypointRequests(t, ctx, c, `destination_workload="`+books.Name+`"`, `response_code="200"`)
		}
		before := through()
		waitFor(t, ctx, c, 30*time.Second, "pod-addressed requests through the waypoint", func() report.Report {
			r := httpFrom(t, ctx, c, gw, url, 5)
			if through() < before+5 {
				r.OK = 0 // answered, but not through the waypoint yet
			}
			return r
		}, func(r report.Report) bool { return r.OK == 5 && r.Pods[books.Name] == 5 })
	})

	t.Run("waypoint deleted: refused, not bypassed; recreated: traffic resumes", func(t *testing.T) {
		deleteGateway(t, ctx, c, "waypoint")
		// The waypoint's pod ends gracefully; once it is gone the agents refuse at once.
		waitFor(t, ctx, c, time.Minute, "requests refused without the waypoint",
			func() report.Report { return httpFrom(t, ctx, c, gw, books, 3, "-method", "POST", "-data", "x") },
			func(r report.Report) bool {
				return r.OK == 0 && len(r.Status) == 0 && r.Failed == 3 && r.Latency.Max < 1000
			})
		// Neither the L7 ALLOW (POST) nor anything else passes while the waypoint is away.
		if r := httpFrom(t, ctx, c, gw, books, 5, "-method", "POST", "-data", "x"); r.OK != 0 {
			t.Errorf("POST without the waypoint: %d of 5 ok, want all refused (not bypassed)", r.OK)
		}
		n := mesh.CounterSum(agentMetrics(t, ctx, c.Node(gw.Spec.NodeName)), "weft_nodeagent_denied_connections_total", `direction="outbound"`, `reason="waypoint_unavailable"`)
		if n == 0 {
			t.Error("the source agent did not count waypoint_unavailable refusals")
		}
		assertLogged(t, ctx, c, gw.Spec.NodeName, `connection refused: waypoint unavailable`)
		apply(t, ctx, c, waypointGateway)
		waitProgrammed(t, ctx, c, "waypoint")
		waitFor(t, ctx, c, 2*time.Minute, "traffic through the new waypoint", func() report.Report { return httpFrom(t, ctx, c, gw, books, 1) },
			func(r report.Report) bool { return r.OK == 1 })
		if r := httpFrom(t, ctx, c, gw, books, 5, "-method", "POST", "-data", "x"); r.Status["403"] != 5 {
			t.Errorf("POST through the new waypoint: statuses %v, want 5 × 403", r.Status)
		}
	})
}

// tcpEcho is a TCP service (a port that is not HTTP): the waypoint relays it as TCP.
const tcpEcho = `apiVersion: apps/v1
kind: Deployment
metadata: {name: tcp-echo, namespace: mesh}
spec:
  replicas: 1
  selector: {matchLabels: {app: tcp-echo}}
  template:
    metadata: {labels: {app: tcp-echo, version: v1}}
    spec:
      containers:
      - name: echo
        image: weftmesh/echo:latest
        env:
        - {name: NAME, value: tcp-echo}
        - {name: TCP_PORT, value: "9000"}
        ports: [{name: http, containerPort: 8080}, {name: tcp, containerPort: 9000}]
        readinessProbe: {httpGet: {path: /readyz, port: http}, periodSeconds: 1}
---
apiVersion: v1
kind: Service
metadata: {name: tcp-echo, namespace: mesh}
spec:
  selector: {app: tcp-echo}
  ports: [{name: tcp, port: 9000, targetPort: tcp}]
`

// waypointTCP sums the waypoint's istio_tcp_connections_opened_total.
func waypointTCP(t *testing.T, ctx context.Context, c *harness.Cluster) float64 {
	t.Helper()
	pods, err := mesh.WaypointPods(ctx, c, demo.Namespace, "waypoint")
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, p := range pods {
		ns, err := c.PodNetNS(&p)
		if err != nil {
			t.Fatal(err)
		}
		text, err := mesh.Scrape(ctx, ns, "http://"+net.JoinHostPort(p.Status.PodIP, "15020")+"/metrics")
		if err != nil {
			t.Fatal(err)
		}
		sum += mesh.CounterSum(text, "istio_tcp_connections_opened_total")
	}
	return sum
}

// httpFrom runs n HTTP requests to url from inside pod with the client app's extra flags, each
// on a new connection (so each is a new tunnel through the mesh).
func httpFrom(t *testing.T, ctx context.Context, c *harness.Cluster, pod corev1.Pod, url string, n int, flags ...string) report.Report {
	t.Helper()
	args := append([]string{c.Binary("client"), "http", url, "-n", strconv.Itoa(n), "-new-conn", "-json", "-allow-fail", "-timeout", "10s"}, flags...)
	out, err := c.Exec(ctx, pod.Namespace, pod.Name, args...)
	if err != nil {
		t.Fatalf("client in %s: %v\n%s", pod.Name, err, out)
	}
	// The output interleaves the client's JSON log lines (stderr) with its report (stdout):
	// the report is the JSON object that has a kind.
	for rest := out; len(rest) > 0; {
		i := bytes.IndexByte(rest, '{')
		if i < 0 {
			break
		}
		var r report.Report
		if err := json.NewDecoder(bytes.NewReader(rest[i:])).Decode(&r); err == nil && r.Kind != "" {
			return r
		}
		rest = rest[i+1:]
	}
	t.Fatalf("no client report in:\n%s", out)
	return report.Report{}
}

// waitFor polls the requests of try for up to limit until ok accepts the report, and fails
// the test with the last report and the waypoint's log when it never does.
func waitFor(t *testing.T, ctx context.Context, c *harness.Cluster, limit time.Duration, what string, try func() report.Report, ok func(report.Report) bool) {
	t.Helper()
	var last report.Report
	err := harness.WaitFor(ctx, limit, what, func(context.Context) (bool, error) {
		last = try()
		return ok(last), nil
	})
	if err != nil {
		t.Errorf("%v; last report: ok %d failed %d statuses %v versions %v errors %v samples %v latency %+v",
			err, last.OK, last.Failed, last.Status, last.Versions, last.Errors, last.ErrorSamples, last.Latency)
		dumpWaypointLogs(t, c)
		t.FailNow()
	}
}

// waitVersions waits until 10 requests answer with versions that satisfy ok (a change of
// routing has reached the waypoint).
func waitVersions(t *testing.T, ctx context.Context, c *harness.Cluster, pod corev1.Pod, url string, ok func(map[string]int) bool) {
	t.Helper()
	waitFor(t, ctx, c, 30*time.Second, "routing change in force", func() report.Report { return httpFrom(t, ctx, c, pod, url, 10) },
		func(r report.Report) bool { return r.OK == 10 && ok(r.Versions) })
}

// checkShare checks that version's share of n ok responses is within [lo, hi].
func checkShare(t *testing.T, what string, r report.Report, n int, version string, lo, hi float64) {
	t.Helper()
	if r.OK != n {
		t.Errorf("%s: %d of %d ok, statuses %v", what, r.OK, n, r.Status)
		return
	}
	share := float64(r.Versions[version]) / float64(n)
	if share < lo || share > hi {
		t.Errorf("%s: %s answered %.0f%% of %d requests (%v), want %.0f–%.0f%%", what, version, share*100, n, r.Versions, lo*100, hi*100)
	} else {
		t.Logf("%s: %v", what, r.Versions)
	}
}

// podOf returns the ready pod of app in the sample namespace.
func podOf(t *testing.T, ctx context.Context, c *harness.Cluster, app string) corev1.Pod {
	t.Helper()
	pods, err := c.Client.CoreV1().Pods(demo.Namespace).List(ctx, metav1.ListOptions{LabelSelector: "app=" + app})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range pods.Items {
		if mesh.PodReady(p) && p.DeletionTimestamp == nil {
			return p
		}
	}
	t.Fatalf("no ready pod of %s", app)
	return corev1.Pod{}
}

// waypointRequests sums the waypoint's istio_requests_total series that contain every part.
func waypointRequests(t *testing.T, ctx context.Context, c *harness.Cluster, parts ...string) float64 {
	t.Helper()
	n, err := mesh.WaypointRequests(ctx, c, demo.Namespace, "waypoint", parts...)
	if err != nil {
		t.Logf("waypoint metrics: %v", err) // a waypoint pod going away
	}
	return n
}

var (
	// objectGVRs are the kinds deleteObject deletes.
	objectGVRs = map[string]schema.GroupVersionResource{
		"virtualservices":  {Group: "networking.istio.io", Version: "v1", Resource: "virtualservices"},
		"destinationrules": {Group: "networking.istio.io", Version: "v1", Resource: "destinationrules"},
		"httproutes":       {Group: "gateway.networking.k8s.io", Version: "v1", Resource: "httproutes"},
	}
)

func dynamicClient(t *testing.T, c *harness.Cluster) *dynamic.DynamicClient {
	t.Helper()
	dyn, err := dynamic.NewForConfig(c.ControlPlane.RESTConfig)
	if err != nil {
		t.Fatal(err)
	}
	return dyn
}

// waitProgrammed waits until the Gateway's Programmed condition is True.
func waitProgrammed(t *testing.T, ctx context.Context, c *harness.Cluster, name string) {
	t.Helper()
	if err := mesh.WaitProgrammed(ctx, c, demo.Namespace, name, 2*time.Minute); err != nil {
		t.Fatal(err)
	}
}

func deleteGateway(t *testing.T, ctx context.Context, c *harness.Cluster, name string) {
	t.Helper()
	if err := dynamicClient(t, c).Resource(mesh.GatewayGVR).Namespace(demo.Namespace).Delete(ctx, name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
}

// deleteObject deletes an Istio networking or Gateway API object of the sample namespace.
func deleteObject(t *testing.T, ctx context.Context, c *harness.Cluster, resource, name string) {
	t.Helper()
	if err := dynamicClient(t, c).Resource(objectGVRs[resource]).Namespace(demo.Namespace).Delete(ctx, name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
}

// setEnv sets (or with "" removes) an environment variable of a Deployment's first container
// and waits for the rollout.
func setEnv(t *testing.T, ctx context.Context, c *harness.Cluster, deployment, name, value string) {
	t.Helper()
	d, err := c.Client.AppsV1().Deployments(demo.Namespace).Get(ctx, deployment, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ct := &d.Spec.Template.Spec.Containers[0]
	var env []corev1.EnvVar
	for _, e := range ct.Env {
		if e.Name != name {
			env = append(env, e)
		}
	}
	if value != "" {
		env = append(env, corev1.EnvVar{Name: name, Value: value})
	}
	ct.Env = env
	if _, err := c.Client.AppsV1().Deployments(demo.Namespace).Update(ctx, d, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	// The rollout replaces the pod: wait until only pods of the new template are ready.
	err = harness.WaitFor(ctx, 2*time.Minute, deployment+" rolled out", func(ctx context.Context) (bool, error) {
		d, err := c.Client.AppsV1().Deployments(demo.Namespace).Get(ctx, deployment, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		s := d.Status
		return s.ObservedGeneration >= d.Generation && s.UpdatedReplicas == *d.Spec.Replicas && s.ReadyReplicas == *d.Spec.Replicas && s.Replicas == *d.Spec.Replicas, nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// dumpWaypointLogs logs the waypoint's output when the test failed.
func dumpWaypointLogs(t *testing.T, c *harness.Cluster) {
	if !t.Failed() {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	pods, err := c.Client.CoreV1().Pods(demo.Namespace).List(ctx, metav1.ListOptions{LabelSelector: "gateway.networking.k8s.io/gateway-name"})
	if err != nil {
		return
	}
	for _, p := range pods.Items {
		out, _ := c.ContainerLog(ctx, p.Namespace, p.Name, "waypoint")
		lines := strings.Split(string(out), "\n")
		t.Logf("waypoint %s (last 60 lines):\n%s", p.Name, strings.Join(lines[max(0, len(lines)-60):], "\n"))
	}
}
