package e2e

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"

	"github.com/weftmesh/weft/api"
	cav1 "github.com/weftmesh/weft/api/ca/v1"
	"github.com/weftmesh/weft/test/demo"
	"github.com/weftmesh/weft/test/harness"
	"github.com/weftmesh/weft/test/mesh"
)

const (
	gwID    = "spiffe://cluster.local/ns/mesh/sa/gw"
	booksID = "spiffe://cluster.local/ns/mesh/sa/books"
)

// TestPrivilegedController installs Weft (controller and node agents from deploy/) into a cluster
// whose app already runs, and checks the controller's part end to end, in order: enrollment by
// namespace label on running pods (mTLS within 2 s, no restart) and its removal; pods of a
// scaled-up Deployment enrolled before they receive traffic; the CA and xDS refusing a real node
// agent token that asks for another node's identity or configuration; and the controller away
// for 60 s under steady traffic without a failed request, then back and resynced.
func TestPrivilegedController(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	c := startCluster(t, ctx)
	t.Cleanup(func() { dumpAgentLogs(t, c) })

	// The app runs first, in a namespace that is not labelled; then Weft is installed.
	if err := c.Apply(ctx, demo.Namespace, demo.SampleManifest); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"gw", "books-v1", "books-v2", "ratings-v1", "ratings-v2"} {
		if err := c.WaitDeploymentReady(ctx, demo.Namespace, d, 2*time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	if err := mesh.Install(ctx, c); err != nil {
		t.Fatal(err)
	}
	waitSynced(t, ctx, c)

	pods, err := c.Client.CoreV1().Pods(demo.Namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var gw, cross corev1.Pod
	for _, p := range pods.Items {
		if p.Labels["app"] == "gw" {
			gw = p
		}
	}
	for _, p := range pods.Items {
		if p.Labels["app"] == "books" && p.Spec.NodeName != gw.Spec.NodeName {
			cross = p
		}
	}
	if gw.Name == "" || cross.Name == "" {
		t.Fatalf("want gw and a books pod on another node; pods: %v", podNames(pods.Items))
	}
	t.Logf("gw %s on %s, books %s on %s", gw.Name, gw.Spec.NodeName, cross.Name, cross.Spec.NodeName)
	crossURL := "http://" + net.JoinHostPort(cross.Status.PodIP, "8080") + "/"
	gwAgent, dstAgent := c.Node(gw.Spec.NodeName), c.Node(cross.Spec.NodeName)
	// mtls counts, at the destination agent, the connections from gw's identity to books'
	// identity it accepted over mTLS; handled counts the connections of gw its own agent carried.
	mtls := func() float64 {
		return mesh.CounterSum(agentMetrics(t, ctx, dstAgent), "istio_tcp_connections_opened_total",
			`reporter="destination"`, `source_principal="`+gwID+`"`, `destination_principal="`+booksID+`"`,
			`connection_security_policy="mutual_tls"`)
	}
	handled := func() float64 {
		return mesh.CounterSum(agentMetrics(t, ctx, gwAgent), "istio_tcp_connections_opened_total",
			`reporter="source"`, `source_workload="gw"`)
	}
	appPods := podStates(t, ctx, c, demo.Namespace)

	t.Run("before the label: plaintext, not seen by the agents", func(t *testing.T) {
		m0, h0 := mtls(), handled()
		r := clientFrom(t, ctx, c, gw, crossURL, 5)
		if r.OK != 5 || r.Peers[gw.Status.PodIP] != 5 {
			t.Errorf("gw → %s: %d of 5 ok, peers %v: %v", cross.Name, r.OK, r.Peers, r.ErrorSamples)
		}
		if m, h := mtls()-m0, handled()-h0; m != 0 || h != 0 {
			t.Errorf("namespace not labelled, yet %v connections counted as mTLS at the destination and %v carried by gw's agent", m, h)
		}
	})

	// labelToMTLS labels the namespace ambient and measures the time until a new request from gw
	// to the books pod on the other node is counted by that node's agent as mTLS from gw's to
	// books' identity, polling every 100 ms; it must be at most 2 s.
	labelToMTLS := func(t *testing.T, what string) {
		before := mtls()
		start := time.Now()
		if err := mesh.SetAmbient(ctx, c, demo.Namespace, true); err != nil {
			t.Fatal(err)
		}
		attempts, failed := 0, 0
		for {
			iter := time.Now()
			r := clientFrom(t, ctx, c, gw, crossURL, 1)
			attempts++
			failed += r.Failed
			if r.OK == 1 && mtls() > before {
				break
			}
			if time.Since(start) > 15*time.Second {
				t.Fatalf("15 s after labelling, gw → %s still not counted as mTLS by %s's agent (%d requests, %d failed: %v)",
					cross.Name, dstAgent.Name, attempts, failed, r.ErrorSamples)
			}
			time.Sleep(time.Until(iter.Add(100 * time.Millisecond)))
		}
		took := time.Since(start)
		t.Logf("%s → first cross-node request counted as mTLS (%s → %s): %v (%d requests, %d failed meanwhile)",
			what, gwID, booksID, took.Round(time.Millisecond), attempts, failed)
		if took > 2*time.Second {
			t.Errorf("%s → mTLS took %v, want ≤ 2 s", what, took.Round(time.Millisecond))
		}
	}

	t.Run("label: cross-node mTLS with both SPIFFE IDs within 2 s, no restart", func(t *testing.T) {
		labelToMTLS(t, "label")
		// Steady state: every new connection is mTLS.
		m0 := mtls()
		if r := clientFrom(t, ctx, c, gw, crossURL, 5); r.OK != 5 || r.Peers[gw.Status.PodIP] != 5 {
			t.Errorf("gw → %s after labelling: %d of 5 ok, peers %v: %v", cross.Name, r.OK, r.Peers, r.ErrorSamples)
		}
		if got := mtls() - m0; got != 5 {
			t.Errorf("after labelling, %v of 5 connections counted as mTLS from gw's to books' identity", got)
		}
		checkNotRestarted(t, ctx, c, appPods)
	})

	t.Run("unlabel: plaintext again, nothing broken, no restart", func(t *testing.T) {
		// Precondition: the label took effect (otherwise this would pass without testing anything).
		m0 := mtls()
		if r := clientFrom(t, ctx, c, gw, crossURL, 1); r.OK != 1 || mtls() != m0+1 {
			t.Fatalf("precondition: gw → %s is not mTLS while the namespace is labelled (%d of 1 ok, %v counted)", cross.Name, r.OK, mtls()-m0)
		}
		start := time.Now()
		if err := mesh.SetAmbient(ctx, c, demo.Namespace, false); err != nil {
			t.Fatal(err)
		}
		attempts, failed := 0, 0
		err := harness.WaitFor(ctx, 10*time.Second, "gw → books no longer through the agents", func(ctx context.Context) (bool, error) {
			m0, h0 := mtls(), handled()
			r := clientFrom(t, ctx, c, gw, crossURL, 1)
			attempts++
			failed += r.Failed
			return r.OK == 1 && mtls() == m0 && handled() == h0, nil
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("unlabel → plaintext: %v (%d requests, %d failed meanwhile)", time.Since(start).Round(time.Millisecond), attempts, failed)
		m0, h0 := mtls(), handled()
		r := clientFrom(t, ctx, c, gw, crossURL, 10)
		if r.OK != 10 || r.Peers[gw.Status.PodIP] != 10 {
			t.Errorf("gw → %s after unlabelling: %d of 10 ok, peers %v: %v", cross.Name, r.OK, r.Peers, r.ErrorSamples)
		}
		if m, h := mtls()-m0, handled()-h0; m != 0 || h != 0 {
			t.Errorf("after unlabelling, %v connections counted as mTLS at the destination, %v carried by gw's agent; want 0", m, h)
		}
		checkNotRestarted(t, ctx, c, appPods)
	})

	t.Run("relabel: mTLS again within 2 s", func(t *testing.T) {
		labelToMTLS(t, "relabel")
		checkNotRestarted(t, ctx, c, appPods)
	})

	t.Run("scale 2→6 under traffic: new pods enrolled before they receive traffic", func(t *testing.T) {
		testScaleUp(t, ctx, c, gw)
	})

	t.Run("agent token asking for another node's identity or configuration refused", func(t *testing.T) {
		testIdentityTheft(t, ctx, c)
	})

	t.Run("controller away 60 s under steady traffic: no failure, back and resynced", func(t *testing.T) {
		testControllerAway(t, ctx, c, gw, cross)
	})
}

func podNames(pods []corev1.Pod) []string {
	var names []string
	for _, p := range pods {
		names = append(names, p.Name+"@"+p.Spec.NodeName)
	}
	return names
}

// podState is what changes when a pod is restarted or replaced.
type podState struct {
	uid      types.UID
	restarts int32
}

// podStates records the pods of the namespaces, by "namespace/name".
func podStates(t *testing.T, ctx context.Context, c *harness.Cluster, namespaces ...string) map[string]podState {
	t.Helper()
	out := map[string]podState{}
	for _, ns := range namespaces {
		pods, err := c.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range pods.Items {
			s := podState{uid: p.UID}
			for _, cs := range p.Status.ContainerStatuses {
				s.restarts += cs.RestartCount
			}
			out[p.Namespace+"/"+p.Name] = s
		}
	}
	return out
}

// checkNotRestarted fails t unless every pod of before still runs, the same object (UID), with the
// same restart count.
func checkNotRestarted(t *testing.T, ctx context.Context, c *harness.Cluster, before map[string]podState) {
	t.Helper()
	for name, was := range before {
		ns, pod, _ := strings.Cut(name, "/")
		p, err := c.Client.CoreV1().Pods(ns).Get(ctx, pod, metav1.GetOptions{})
		if err != nil {
			t.Errorf("pod %s: %v", name, err)
			continue
		}
		var restarts int32
		for _, cs := range p.Status.ContainerStatuses {
			restarts += cs.RestartCount
		}
		if p.UID != was.uid || restarts != was.restarts {
			t.Errorf("pod %s restarted or replaced: uid %s → %s, restarts %d → %d", name, was.uid, p.UID, was.restarts, restarts)
		}
	}
}

// traffic is a client app in a pod sending requests in a bounded loop, in the background.
type traffic struct {
	cancel context.CancelFunc
	done   chan struct{}

	mu       sync.Mutex
	count    int
	ok       int
	failures []string // time and error of each failed batch
	pods     map[string]int
}

// startTraffic runs, from pod, batches of n requests to url (each on a new connection), with
// pause between batches, until stop is called.
func startTraffic(ctx context.Context, c *harness.Cluster, pod corev1.Pod, url string, n int, pause time.Duration) *traffic {
	ctx, cancel := context.WithCancel(ctx)
	tr := &traffic{cancel: cancel, done: make(chan struct{}), pods: map[string]int{}}
	go func() {
		defer close(tr.done)
		for ctx.Err() == nil {
			r, err := mesh.Client(ctx, c, pod.Namespace, pod.Name, url, n)
			if ctx.Err() != nil {
				return // cut short by stop: not a failure of the mesh
			}
			now := time.Now().Format("15:04:05.000")
			tr.mu.Lock()
			if err != nil {
				tr.count += n
				tr.failures = append(tr.failures, fmt.Sprintf("%s: %d requests not sent: %v", now, n, err))
			} else {
				tr.count += r.Count
				tr.ok += r.OK
				if r.Failed > 0 {
					tr.failures = append(tr.failures, fmt.Sprintf("%s: %d of %d failed: %v", now, r.Failed, r.Count, r.ErrorSamples))
				}
				for p, k := range r.Pods {
					tr.pods[p] += k
				}
			}
			tr.mu.Unlock()
			select {
			case <-ctx.Done():
			case <-time.After(pause):
			}
		}
	}()
	return tr
}

// snapshot returns the counts so far.
func (tr *traffic) snapshot() (count, ok int, failures []string, pods map[string]int) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	p := map[string]int{}
	for k, v := range tr.pods {
		p[k] = v
	}
	return tr.count, tr.ok, slices.Clone(tr.failures), p
}

// stop ends the loop (a batch in flight is abandoned) and waits for it.
func (tr *traffic) stop() {
	tr.cancel()
	<-tr.done
}

const shelfManifest = `
apiVersion: v1
kind: ServiceAccount
metadata: {name: shelf, namespace: mesh}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: shelf, namespace: mesh, labels: {app: shelf}}
spec:
  replicas: 2
  selector: {matchLabels: {app: shelf}}
  template:
    metadata: {labels: {app: shelf, version: v1}}
    spec:
      serviceAccountName: shelf
      topologySpreadConstraints:
      - {maxSkew: 1, topologyKey: kubernetes.io/hostname, whenUnsatisfiable: DoNotSchedule, labelSelector: {matchLabels: {app: shelf}}}
      containers:
      - name: shelf
        image: weftmesh/echo:latest
        env:
        - {name: NAME, value: shelf}
        - {name: VERSION, value: v1}
        - {name: POD_NAME, valueFrom: {fieldRef: {fieldPath: metadata.name}}}
        ports: [{name: http, containerPort: 8080}]
        readinessProbe: {httpGet: {path: /readyz, port: http}, periodSeconds: 1}
---
apiVersion: v1
kind: Service
metadata: {name: shelf, namespace: mesh}
spec:
  selector: {app: shelf}
  ports: [{name: http, port: 80, targetPort: http}]
`

// testScaleUp runs, in the ambient namespace, a dedicated Deployment (shelf) with 2 replicas, and
// scales it to 6 while gw sends requests to its Service continuously; every connection the new
// pods received must have been mTLS.
//
// The evidence, and why it is sound. Every connection the shelf pods' apps accept comes from gw
// (kubelet probes come from the node and are not mesh traffic). gw is enrolled, so each of its
// connects is captured by its own agent, which counts it once (reporter="source") with the
// connection_security_policy it used: mutual_tls when it carried it over HBONE to the
// destination pod's 15008 (a listener that exists only once the destination agent enrolled that
// pod) or handed it to the pod on its own node (only to a pod it serves, i.e. enrolled);
// anything else ("unknown": a plaintext passthrough, e.g. to a pod it does not know yet)
// would show with another policy and in weft_nodeagent_passthrough_connections_total. So:
//   - at gw's agent, the connections to destination_workload="shelf" are all mutual_tls, and
//     their number is at least the number of requests the shelf pods answered (the client opens
//     one connection per request and counts who answered), with no passthrough meanwhile;
//   - at every agent, no connection to shelf is counted as plaintext (reporter="destination",
//     "none"), and the agent of the node gw is not on counted mTLS ones (cross-node);
//   - no request failed: a pod that received a connection before its agent enrolled it would
//     have refused the HBONE connection (nothing on 15008), which the client sees;
//   - each new pod answered requests (otherwise the above proves nothing about it).
//
// A plaintext connection to a pod not yet enrolled is counted by no destination agent, which is
// why "none stays 0 at the destination" alone would not be evidence. In addition, each new pod's
// agent must log "enrolled" for it before the test saw the pod Ready (a necessary condition:
// the test observes Ready a little after the kubelet sets it).
func testScaleUp(t *testing.T, ctx context.Context, c *harness.Cluster, gw corev1.Pod) {
	if err := c.Apply(ctx, demo.Namespace, []byte(shelfManifest)); err != nil {
		t.Fatal(err)
	}
	if err := c.WaitDeploymentReady(ctx, demo.Namespace, "shelf", time.Minute); err != nil {
		t.Fatal(err)
	}
	waitSynced(t, ctx, c)
	oldPods, err := c.Client.CoreV1().Pods(demo.Namespace).List(ctx, metav1.ListOptions{LabelSelector: "app=shelf"})
	if err != nil {
		t.Fatal(err)
	}
	old := map[string]bool{}
	for _, p := range oldPods.Items {
		old[p.Name] = true
	}

	// When the test first sees each pod Ready.
	var mu sync.Mutex
	readySeen := map[string]time.Time{}
	w, err := c.Client.CoreV1().Pods(demo.Namespace).Watch(ctx, metav1.ListOptions{LabelSelector: "app=shelf"})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	go func() {
		for ev := range w.ResultChan() {
			if p, ok := ev.Object.(*corev1.Pod); ok && mesh.PodReady(*p) {
				mu.Lock()
				if _, seen := readySeen[p.Name]; !seen {
					readySeen[p.Name] = time.Now()
				}
				mu.Unlock()
			}
		}
	}()

	// Precondition: gw's connections to shelf go through its agent in mTLS. Otherwise (gw not
	// enrolled) what follows would measure gw, not the new pods.
	viaMesh := func() float64 {
		return mesh.CounterSum(agentMetrics(t, ctx, c.Node(gw.Spec.NodeName)), "istio_tcp_connections_opened_total",
			`reporter="source"`, `source_workload="gw"`, `destination_workload="shelf"`, `connection_security_policy="mutual_tls"`)
	}
	v0 := viaMesh()
	if r := clientFrom(t, ctx, c, gw, "http://shelf/", 4); r.OK != 4 || viaMesh()-v0 != 4 {
		t.Fatalf("precondition: gw → shelf before scaling: %d of 4 ok, %v carried in mTLS by gw's agent (is gw enrolled?): %v",
			r.OK, viaMesh()-v0, r.ErrorSamples)
	}

	before := map[string]string{}
	for _, n := range c.Nodes {
		before[n.Name] = agentMetrics(t, ctx, n)
	}
	tr := startTraffic(ctx, c, gw, "http://shelf/", 10, 20*time.Millisecond)
	time.Sleep(500 * time.Millisecond) // traffic to the two old pods first
	scaledAt := time.Now()
	if _, err := c.Client.AppsV1().Deployments(demo.Namespace).Patch(ctx, "shelf", types.MergePatchType,
		[]byte(`{"spec":{"replicas":6}}`), metav1.PatchOptions{}); err != nil {
		tr.stop()
		t.Fatal(err)
	}
	if err := c.WaitDeploymentReady(ctx, demo.Namespace, "shelf", time.Minute); err != nil {
		tr.stop()
		t.Fatal(err)
	}
	t.Logf("shelf scaled 2 → 6 and ready in %v", time.Since(scaledAt).Round(time.Millisecond))
	all, err := c.Client.CoreV1().Pods(demo.Namespace).List(ctx, metav1.ListOptions{LabelSelector: "app=shelf"})
	if err != nil {
		tr.stop()
		t.Fatal(err)
	}
	var fresh []corev1.Pod
	for _, p := range all.Items {
		if !old[p.Name] {
			fresh = append(fresh, p)
		}
	}
	if len(fresh) != 4 {
		tr.stop()
		t.Fatalf("want 4 new shelf pods, got %v", podNames(fresh))
	}
	// Keep sending until every new pod answered a few requests.
	err = harness.WaitFor(ctx, 15*time.Second, "every new shelf pod answering", func(context.Context) (bool, error) {
		_, _, _, answered := tr.snapshot()
		for _, p := range fresh {
			if answered[p.Name] < 3 {
				return false, nil
			}
		}
		return true, nil
	})
	tr.stop()
	count, ok, failures, answered := tr.snapshot()
	t.Logf("%d requests to shelf, %d ok; answered per pod: %v", count, ok, answered)
	if err != nil {
		t.Error(err)
	}
	if len(failures) > 0 || ok != count {
		t.Errorf("%d of %d requests failed during the scale-up:\n%s", count-ok, count, strings.Join(failures, "\n"))
	}

	after := map[string]string{}
	for _, n := range c.Nodes {
		after[n.Name] = agentMetrics(t, ctx, n)
	}
	delta := func(node, metric string, parts ...string) float64 {
		return mesh.CounterSum(after[node], metric, parts...) - mesh.CounterSum(before[node], metric, parts...)
	}
	toShelf := []string{`reporter="source"`, `source_workload="gw"`, `destination_workload="shelf"`}
	srcMTLS := delta(gw.Spec.NodeName, "istio_tcp_connections_opened_total", append(toShelf, `connection_security_policy="mutual_tls"`)...)
	srcAll := delta(gw.Spec.NodeName, "istio_tcp_connections_opened_total", toShelf...)
	passthrough := delta(gw.Spec.NodeName, "weft_nodeagent_passthrough_connections_total", `direction="outbound"`)
	answeredSum := 0
	for _, k := range answered {
		answeredSum += k
	}
	t.Logf("gw's agent: %v connections to shelf, %v of them mTLS, %v passthrough; shelf pods answered %d", srcAll, srcMTLS, passthrough, answeredSum)
	if srcAll != srcMTLS {
		t.Errorf("gw's agent carried %v connections to shelf other than mTLS:\n%s", srcAll-srcMTLS,
			strings.Join(mesh.MetricLines(after[gw.Spec.NodeName], "istio_tcp_connections_opened_total", toShelf...), "\n"))
	}
	if passthrough != 0 {
		t.Errorf("gw's agent passed %v connections through in plaintext during the scale-up", passthrough)
	}
	if srcMTLS < float64(answeredSum) {
		t.Errorf("the shelf pods answered %d requests but gw's agent carried only %v mTLS connections to them", answeredSum, srcMTLS)
	}
	for _, n := range c.Nodes {
		atDst := []string{`reporter="destination"`, `destination_workload="shelf"`}
		if plain := delta(n.Name, "istio_tcp_connections_opened_total", append(atDst, `connection_security_policy="none"`)...); plain != 0 {
			t.Errorf("the agent of %s accepted %v plaintext connections to shelf", n.Name, plain)
		}
		m := delta(n.Name, "istio_tcp_connections_opened_total", append(atDst, `connection_security_policy="mutual_tls"`, `source_principal="`+gwID+`"`,
			`destination_principal="spiffe://cluster.local/ns/mesh/sa/shelf"`)...)
		t.Logf("the agent of %s accepted %v mTLS connections from gw to shelf", n.Name, m)
		if n.Name != gw.Spec.NodeName && m == 0 {
			t.Errorf("the agent of %s (not gw's node) counted no mTLS connection to shelf", n.Name)
		}
	}
	for _, p := range fresh {
		if answered[p.Name] == 0 {
			t.Errorf("new pod %s on %s answered no request", p.Name, p.Spec.NodeName)
		}
	}

	// Each new pod's agent logged its enrollment before the test saw it Ready.
	enrolled := enrolledAt(t, ctx, c)
	mu.Lock()
	defer mu.Unlock()
	for _, p := range fresh {
		e, ok := enrolled[p.Namespace+"/"+p.Name]
		r, seen := readySeen[p.Name]
		switch {
		case !ok:
			t.Errorf("the agent of %s never logged \"enrolled\" for %s", p.Spec.NodeName, p.Name)
		case !seen:
			t.Errorf("pod %s never seen Ready", p.Name)
		case !e.Before(r):
			t.Errorf("pod %s enrolled at %s, after it was Ready (seen at %s)", p.Name, e.Format("15:04:05.000"), r.Format("15:04:05.000"))
		default:
			t.Logf("pod %s on %s: enrolled %v after the scale, %v before seen Ready", p.Name, p.Spec.NodeName,
				e.Sub(scaledAt).Round(time.Millisecond), r.Sub(e).Round(time.Millisecond))
		}
	}
}

// enrolledAt returns, from the node agents' logs, when each pod ("namespace/name") was last
// enrolled.
func enrolledAt(t *testing.T, ctx context.Context, c *harness.Cluster) map[string]time.Time {
	t.Helper()
	agents, err := c.Client.CoreV1().Pods("weft-system").List(ctx, metav1.ListOptions{LabelSelector: "app=weft-nodeagent"})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]time.Time{}
	for _, a := range agents.Items {
		log, err := c.ContainerLog(ctx, a.Namespace, a.Name, a.Spec.Containers[0].Name)
		if err != nil {
			t.Fatal(err)
		}
		for line := range strings.Lines(string(log)) {
			var l struct {
				Time time.Time `json:"time"`
				Msg  string    `json:"msg"`
				Pod  string    `json:"pod"`
			}
			if json.Unmarshal([]byte(line), &l) == nil && l.Msg == "enrolled" && l.Pod != "" {
				out[l.Pod] = l.Time
			}
		}
	}
	return out
}

// testIdentityTheft obtains a real token of the node agents' service account, bound to the agent
// pod of node-1, and uses it as a compromised agent would: a certificate for a service account
// whose only pod runs on node-2 is refused, one for a pod on node-1 is issued (control), and
// workload discovery as node-2 is refused.
func testIdentityTheft(t *testing.T, ctx context.Context, c *harness.Cluster) {
	const victimSA = "vault"
	manifest := `
apiVersion: v1
kind: ServiceAccount
metadata: {name: ` + victimSA + `, namespace: mesh}
---
apiVersion: v1
kind: Pod
metadata: {name: vault, namespace: mesh, labels: {app: vault}}
spec:
  nodeName: node-2
  serviceAccountName: ` + victimSA + `
  containers:
  - name: vault
    image: weftmesh/echo
    env: [{name: NAME, value: vault}]
`
	if err := c.Apply(ctx, demo.Namespace, []byte(manifest)); err != nil {
		t.Fatal(err)
	}
	err := harness.WaitFor(ctx, time.Minute, "pod mesh/vault running", func(ctx context.Context) (bool, error) {
		p, err := c.Client.CoreV1().Pods(demo.Namespace).Get(ctx, "vault", metav1.GetOptions{})
		return err == nil && p.Status.Phase == corev1.PodRunning, err
	})
	if err != nil {
		t.Fatal(err)
	}
	onNode1, err := c.Client.CoreV1().Pods(demo.Namespace).List(ctx, metav1.ListOptions{FieldSelector: "spec.nodeName=node-1"})
	if err != nil || len(onNode1.Items) == 0 {
		t.Fatalf("pods of mesh on node-1: %v (%d)", err, len(onNode1.Items))
	}
	ownSA := onNode1.Items[0].Spec.ServiceAccountName
	for _, p := range onNode1.Items {
		if p.Spec.ServiceAccountName == victimSA {
			t.Fatalf("pod %s of service account %s runs on node-1", p.Name, victimSA)
		}
	}

	agents, err := c.Client.CoreV1().Pods("weft-system").List(ctx, metav1.ListOptions{LabelSelector: "app=weft-nodeagent", FieldSelector: "spec.nodeName=node-1"})
	if err != nil || len(agents.Items) != 1 {
		t.Fatalf("agent of node-1: %v (%d pods)", err, len(agents.Items))
	}
	agent := agents.Items[0]
	tr, err := c.Client.CoreV1().ServiceAccounts("weft-system").CreateToken(ctx, "weft-nodeagent", &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{
			Audiences:         []string{api.TokenAudience},
			ExpirationSeconds: ptr.To[int64](600),
			BoundObjectRef:    &authenticationv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: agent.Name, UID: agent.UID},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	conn, err := mesh.DialController(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	authed := metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+tr.Status.Token)
	ca := cav1.NewCertificateServiceClient(conn)

	sign := func(sa string) (*cav1.CreateCertificateResponse, string, error) {
		id := "spiffe://cluster.local/ns/mesh/sa/" + sa
		u, err := url.Parse(id)
		if err != nil {
			t.Fatal(err)
		}
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{URIs: []*url.URL{u}}, key)
		if err != nil {
			t.Fatal(err)
		}
		cctx, cancel := context.WithTimeout(authed, 10*time.Second)
		defer cancel()
		resp, err := ca.CreateCertificate(cctx, &cav1.CreateCertificateRequest{Csr: csr})
		return resp, id, err
	}

	_, id, err := sign(victimSA)
	if status.Code(err) != codes.PermissionDenied {
		t.Errorf("node-1's agent token asking for %s (pod only on node-2): %v, want PermissionDenied", id, err)
	} else {
		msg := status.Convert(err).Message()
		t.Logf("refused as it should be: %s", msg)
		if !strings.Contains(msg, "mesh/"+victimSA) || !strings.Contains(msg, "node-1") {
			t.Errorf("the refusal does not name the service account and the caller's node: %q", msg)
		}
	}

	resp, id, err := sign(ownSA)
	if err != nil {
		t.Errorf("node-1's agent token asking for %s (a pod on node-1): %v", id, err)
	} else {
		leaf, err := x509.ParseCertificate(resp.GetCertChain()[0])
		if err != nil {
			t.Fatal(err)
		}
		if len(leaf.URIs) != 1 || leaf.URIs[0].String() != id {
			t.Errorf("certificate for %s carries URIs %v", id, leaf.URIs)
		}
		t.Logf("control: certificate for %s issued, valid until %s", id, leaf.NotAfter.Format(time.RFC3339))
	}

	xctx, cancel := context.WithTimeout(authed, 10*time.Second)
	defer cancel()
	stream, err := discoveryv3.NewAggregatedDiscoveryServiceClient(conn).DeltaAggregatedResources(xctx)
	if err != nil {
		t.Fatal(err)
	}
	err = stream.Send(&discoveryv3.DeltaDiscoveryRequest{
		Node:                   &corev3.Node{Id: "node-2"},
		TypeUrl:                api.AddressType,
		ResourceNamesSubscribe: []string{"*"},
	})
	if err == nil {
		var resp *discoveryv3.DeltaDiscoveryResponse
		resp, err = stream.Recv()
		if err == nil {
			t.Errorf("node-1's agent token subscribed as node-2 and received %d resources", len(resp.GetResources()))
		}
	}
	if status.Code(err) != codes.PermissionDenied {
		t.Errorf("xDS as node-2 with node-1's agent token: %v, want PermissionDenied", err)
	} else {
		msg := status.Convert(err).Message()
		t.Logf("xDS refused as it should be: %s", msg)
		if !strings.Contains(msg, "node-2") || !strings.Contains(msg, "node-1") {
			t.Errorf("the xDS refusal does not name the nodes: %q", msg)
		}
	}
}

// testControllerAway stops the controller (Deployment scaled to 0) for 60 s while gw sends a
// request to the books Service every 50 ms: none may fail. A PeerAuthentication STRICT applied
// meanwhile is not known to the agents (they keep their last configuration) until the controller
// is back and they resynced; then it is enforced.
func testControllerAway(t *testing.T, ctx context.Context, c *harness.Cluster, gw, books corev1.Pod) {
	plain := startPlainPod(t, ctx, c) // outside the mesh
	booksURL := "http://" + net.JoinHostPort(books.Status.PodIP, "8080") + "/"
	if r := clientFrom(t, ctx, c, plain, booksURL, 1); r.OK != 1 {
		t.Fatalf("plaintext to PERMISSIVE books before the controller stops: %v", r.ErrorSamples)
	}
	// Precondition: gw → books goes through the agents in mTLS, so the traffic below depends on
	// the mesh (and its configuration) the controller is away from.
	gwAgent := c.Node(gw.Spec.NodeName)
	viaMesh := func() float64 {
		return mesh.CounterSum(agentMetrics(t, ctx, gwAgent), "istio_tcp_connections_opened_total",
			`reporter="source"`, `source_workload="gw"`, `destination_canonical_service="books"`, `connection_security_policy="mutual_tls"`)
	}
	v0 := viaMesh()
	if r := clientFrom(t, ctx, c, gw, "http://books/", 4); r.OK != 4 || viaMesh()-v0 != 4 {
		t.Fatalf("precondition: gw → books: %d of 4 ok, %v carried in mTLS by gw's agent (are gw and books enrolled?): %v",
			r.OK, viaMesh()-v0, r.ErrorSamples)
	}
	v0 = viaMesh()
	pods := podStates(t, ctx, c, demo.Namespace, "weft-system")
	delete(pods, "weft-system/"+controllerPodName(t, ctx, c))

	scale := func(n int) {
		t.Helper()
		body := fmt.Sprintf(`{"spec":{"replicas":%d}}`, n)
		if _, err := c.Client.AppsV1().Deployments("weft-system").Patch(ctx, "weft-controller", types.MergePatchType, []byte(body), metav1.PatchOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	tr := startTraffic(ctx, c, gw, "http://books/", 1, 50*time.Millisecond)
	defer tr.stop()
	time.Sleep(time.Second)
	scale(0)
	err := harness.WaitFor(ctx, 30*time.Second, "controller gone", func(ctx context.Context) (bool, error) {
		p, err := c.Client.CoreV1().Pods("weft-system").List(ctx, metav1.ListOptions{LabelSelector: "app=weft-controller"})
		return err == nil && len(p.Items) == 0, err
	})
	if err != nil {
		t.Fatal(err)
	}
	goneAt := time.Now()
	count0, ok0, _, _ := tr.snapshot()

	// A change while it is away.
	if err := mesh.SetPeerAuthentication(ctx, c, demo.Namespace, "STRICT"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(3 * time.Second)
	if r := clientFrom(t, ctx, c, plain, booksURL, 1); r.OK != 1 {
		t.Errorf("with the controller away, the agents enforced a PeerAuthentication they cannot have received: %v", r.ErrorSamples)
	}

	time.Sleep(time.Until(goneAt.Add(60 * time.Second)))
	count1, ok1, failures1, _ := tr.snapshot()
	t.Logf("controller away 60 s: %d requests gw → books, %d ok", count1-count0, ok1-ok0)
	if len(failures1) > 0 {
		t.Errorf("requests failed while the controller was away:\n%s", strings.Join(failures1, "\n"))
	}
	if count1-count0 < 200 {
		t.Errorf("only %d requests in 60 s: traffic was not steady", count1-count0)
	}

	back := time.Now()
	scale(1)
	if err := c.WaitDeploymentReady(ctx, "weft-system", "weft-controller", time.Minute); err != nil {
		t.Fatal(err)
	}
	readyIn := time.Since(back)
	// The agents reconnect with back-off, so allow more than WaitSynced's 30 s for that part.
	var conns map[string]time.Time
	err = harness.WaitFor(ctx, 45*time.Second, "every node agent connected to the returned controller", func(ctx context.Context) (bool, error) {
		b, err := mesh.ControllerGet(ctx, c, "/debug/push")
		if err != nil {
			return false, nil
		}
		var nodes []struct {
			Node           string    `json:"node"`
			Streams        int       `json:"streams"`
			ConnectedSince time.Time `json:"connectedSince"`
		}
		if err := json.Unmarshal(b, &nodes); err != nil {
			return false, err
		}
		conns = map[string]time.Time{}
		for _, n := range nodes {
			if n.Streams > 0 {
				conns[n.Node] = n.ConnectedSince
			}
		}
		return len(conns) == len(c.Nodes), nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for n, at := range conns {
		t.Logf("the agent of %s reconnected %v after the controller was scaled back (ready after %v)", n, at.Sub(back).Round(time.Millisecond), readyIn.Round(time.Millisecond))
	}
	waitSynced(t, ctx, c)
	t.Logf("agents resynced %v after scaling back", time.Since(back).Round(time.Millisecond))
	err = harness.WaitFor(ctx, 10*time.Second, "STRICT in force after the controller returned", func(ctx context.Context) (bool, error) {
		return clientFrom(t, ctx, c, plain, booksURL, 1).OK == 0, nil
	})
	if err != nil {
		t.Error(err)
	} else {
		t.Logf("STRICT in force %v after scaling back", time.Since(back).Round(time.Millisecond))
	}
	time.Sleep(time.Second)
	tr.stop()
	count, ok, failures, answered := tr.snapshot()
	carried := viaMesh() - v0
	t.Logf("whole window: %d requests gw → books, %d ok, answered by %v; %v carried in mTLS by gw's agent", count, ok, answered, carried)
	if len(failures) > 0 || ok != count {
		t.Errorf("%d of %d requests failed over the whole window:\n%s", count-ok, count, strings.Join(failures, "\n"))
	}
	if carried < float64(ok) {
		t.Errorf("%d requests succeeded but gw's agent carried only %v mTLS connections to books", ok, carried)
	}
	if r := clientFrom(t, ctx, c, gw, booksURL, 3); r.OK != 3 {
		t.Errorf("gw → books (mTLS) under STRICT after the return: %d of 3 ok: %v", r.OK, r.ErrorSamples)
	}
	checkNotRestarted(t, ctx, c, pods)
}

// controllerPodName returns the name of the ready controller pod.
func controllerPodName(t *testing.T, ctx context.Context, c *harness.Cluster) string {
	t.Helper()
	p, err := c.Client.CoreV1().Pods("weft-system").List(ctx, metav1.ListOptions{LabelSelector: "app=weft-controller"})
	if err != nil || len(p.Items) != 1 {
		t.Fatalf("controller pod: %v (%d pods)", err, len(p.Items))
	}
	return p.Items[0].Name
}
