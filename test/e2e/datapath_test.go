package e2e

import (
	"bytes"
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/weftmesh/weft/test/apps/client/report"
	"github.com/weftmesh/weft/test/demo"
	"github.com/weftmesh/weft/test/harness"
	"github.com/weftmesh/weft/test/mesh"
)

// dumpAgentLogs prints the logs of the controller and the node agents when the test failed.
func dumpAgentLogs(t *testing.T, c *harness.Cluster) {
	if !t.Failed() {
		return
	}
	ctx := context.Background()
	pods, err := c.Client.CoreV1().Pods("weft-system").List(ctx, metav1.ListOptions{})
	if err != nil {
		return
	}
	for _, p := range pods.Items {
		if b, err := c.ContainerLog(ctx, p.Namespace, p.Name, p.Spec.Containers[0].Name); err == nil {
			t.Logf("log of %s on %s:\n%s", p.Name, p.Spec.NodeName, b)
		}
	}
}

// waitSynced waits until every node agent has the cluster as it is now (see mesh.WaitSynced).
func waitSynced(t *testing.T, ctx context.Context, c *harness.Cluster) {
	t.Helper()
	if err := mesh.WaitSynced(ctx, c); err != nil {
		t.Fatal(err)
	}
}

// agentMetrics scrapes the node agent of node n.
func agentMetrics(t *testing.T, ctx context.Context, n *harness.Node) string {
	t.Helper()
	m, err := mesh.AgentMetrics(ctx, n)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// clientFrom runs n requests to url from inside pod (see mesh.Client).
func clientFrom(t *testing.T, ctx context.Context, c *harness.Cluster, pod corev1.Pod, url string, n int) report.Report {
	t.Helper()
	r, err := mesh.Client(ctx, c, pod.Namespace, pod.Name, url, n)
	if err != nil {
		t.Fatalf("client in %s: %v", pod.Name, err)
	}
	return r
}

// TestPrivilegedDataPath runs the sample app in an ambient namespace with Weft's node agents and
// checks that traffic between its pods is captured and carried in mTLS with the right SPIFFE
// identities, across nodes and on one node, with the source pod's IP preserved.
func TestPrivilegedDataPath(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	c := startCluster(t, ctx)

	// The app runs before the agents: they must find its pods by scanning.
	if err := c.Apply(ctx, demo.Namespace, demo.SampleManifest); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"gw", "books-v1", "books-v2", "ratings-v1", "ratings-v2"} {
		if err := c.WaitDeploymentReady(ctx, demo.Namespace, d, 2*time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	if err := mesh.SetAmbient(ctx, c, demo.Namespace, true); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dumpAgentLogs(t, c) })
	if err := mesh.Install(ctx, c); err != nil {
		t.Fatal(err)
	}
	waitSynced(t, ctx, c)

	pods, err := c.Client.CoreV1().Pods(demo.Namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	byApp := map[string]corev1.Pod{}
	for _, p := range pods.Items {
		byApp[p.Labels["app"]+"-"+p.Labels["version"]] = p
	}
	gw := byApp["gw-v1"]
	var cross, same corev1.Pod
	for _, name := range []string{"books-v1", "books-v2"} {
		if p := byApp[name]; p.Spec.NodeName == gw.Spec.NodeName {
			same = p
		} else {
			cross = p
		}
	}
	if cross.Name == "" || same.Name == "" {
		t.Fatalf("want one books pod on gw's node and one on the other, got %v", byApp)
	}

	for _, tc := range []struct {
		name   string
		dst    corev1.Pod
		family int // index into status.podIPs: 0 IPv4, 1 IPv6
	}{{"cross-node", cross, 0}, {"same-node", same, 0}, {"cross-node IPv6", cross, 1}, {"same-node IPv6", same, 1}} {
		t.Run(tc.name, func(t *testing.T) {
			dstIP, srcIP := tc.dst.Status.PodIPs[tc.family].IP, gw.Status.PodIPs[tc.family].IP
			url := "http://" + net.JoinHostPort(dstIP, "8080") + "/"
			dstAgent := c.Node(tc.dst.Spec.NodeName)
			mtlsFromGW := func() float64 {
				return mesh.CounterSum(agentMetrics(t, ctx, dstAgent), "istio_tcp_connections_opened_total",
					`reporter="destination"`, `source_principal="spiffe://cluster.local/ns/mesh/sa/gw"`, `connection_security_policy="mutual_tls"`)
			}
			before := mtlsFromGW()
			r := clientFrom(t, ctx, c, gw, url, 5)
			if cross := tc.dst.Spec.NodeName != gw.Spec.NodeName; cross {
				if got := mtlsFromGW() - before; got != 5 {
					t.Errorf("destination agent counted %v mTLS connections from gw's identity, want 5", got)
				}
			}
			if r.OK != 5 || r.Pods[tc.dst.Name] != 5 {
				t.Errorf("from gw to %s: %d of 5 ok, answered by %v: %v", tc.dst.Name, r.OK, r.Pods, r.ErrorSamples)
			}
			if r.Peers[srcIP] != 5 {
				t.Errorf("the app saw sources %v, want gw's pod IP %s", r.Peers, srcIP)
			}
		})
	}

	// The destination agent of the cross-node request reports gw's SPIFFE ID, over mTLS.
	dstMetrics := agentMetrics(t, ctx, c.Node(cross.Spec.NodeName))
	lines := mesh.MetricLines(dstMetrics, "istio_tcp_connections_opened_total",
		`reporter="destination"`, `source_principal="spiffe://cluster.local/ns/mesh/sa/gw"`,
		`destination_principal="spiffe://cluster.local/ns/mesh/sa/books"`, `connection_security_policy="mutual_tls"`)
	if len(lines) == 0 {
		t.Errorf("destination agent on %s has no mTLS connection from gw's identity; metrics:\n%s", cross.Spec.NodeName,
			strings.Join(mesh.MetricLines(dstMetrics, "istio_tcp_connections_opened_total"), "\n"))
	}

	t.Run("100MB transfer crosses the underlay only as TLS to 15008", func(t *testing.T) {
		testEncryptedTransfer(t, ctx, c, gw, cross.Spec.NodeName)
	})

	plain := startPlainPod(t, ctx, c)
	crossURL := "http://" + net.JoinHostPort(cross.Status.PodIP, "8080") + "/"
	t.Run("non-ambient to PERMISSIVE accepted in plaintext", func(t *testing.T) {
		r := clientFrom(t, ctx, c, plain, crossURL, 3)
		if r.OK != 3 || r.Peers[plain.Status.PodIP] != 3 {
			t.Errorf("plain → books: %d of 3 ok, peers %v", r.OK, r.Peers)
		}
		m := agentMetrics(t, ctx, c.Node(cross.Spec.NodeName))
		if len(mesh.MetricLines(m, "istio_tcp_connections_opened_total", `reporter="destination"`, `connection_security_policy="none"`, `destination_canonical_service="books"`)) == 0 {
			t.Error("no plaintext connection counted at the destination")
		}
	})
	t.Run("ambient to a destination outside the mesh passes through", func(t *testing.T) {
		r := clientFrom(t, ctx, c, gw, "http://"+net.JoinHostPort(plain.Status.PodIP, "8080")+"/", 3)
		if r.OK != 3 {
			t.Errorf("gw → plain: %d of 3 ok: %v", r.OK, r.ErrorSamples)
		}
	})
	t.Run("non-ambient to STRICT refused", func(t *testing.T) {
		if err := mesh.SetPeerAuthentication(ctx, c, demo.Namespace, "STRICT"); err != nil {
			t.Fatal(err)
		}
		err := harness.WaitFor(ctx, 10*time.Second, "STRICT in force", func(ctx context.Context) (bool, error) {
			return clientFrom(t, ctx, c, plain, crossURL, 1).OK == 0, nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if r := clientFrom(t, ctx, c, gw, crossURL, 3); r.OK != 3 {
			t.Errorf("mTLS gw → books under STRICT: %d of 3 ok: %v", r.OK, r.ErrorSamples)
		}
		m := agentMetrics(t, ctx, c.Node(cross.Spec.NodeName))
		if len(mesh.MetricLines(m, "weft_nodeagent_denied_connections_total", `reason="strict_mtls_plaintext"`)) == 0 {
			t.Error("refusal not counted")
		}
	})
	t.Run("probes keep enrolled pods Ready", func(t *testing.T) {
		pods, err := c.Client.CoreV1().Pods(demo.Namespace).List(ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range pods.Items {
			if !mesh.PodReady(p) {
				t.Errorf("pod %s is not Ready while enrolled", p.Name)
			}
		}
	})
	t.Run("agent SIGKILLed: fail closed; restarted by the kubelet: traffic again", func(t *testing.T) {
		testAgentKilled(t, ctx, c, gw, crossURL)
	})
	t.Run("agent stopped: fail closed; restarted: traffic again", func(t *testing.T) {
		testAgentRestart(t, ctx, c, gw, crossURL)
	})
	t.Run("label removed: pods unenrolled without restart, plaintext again", func(t *testing.T) {
		testUnenroll(t, ctx, c, gw, cross, crossURL)
	})
}

// testAgentKilled kills the agent of gw's node with SIGKILL: until the kubelet restarts it, new
// connections from gw fail; then they work again.
func testAgentKilled(t *testing.T, ctx context.Context, c *harness.Cluster, gw corev1.Pod, url string) {
	pods, err := c.Client.CoreV1().Pods("weft-system").List(ctx, metav1.ListOptions{LabelSelector: "app=weft-nodeagent", FieldSelector: "spec.nodeName=" + gw.Spec.NodeName})
	if err != nil || len(pods.Items) != 1 {
		t.Fatalf("agent of %s: %v (%d pods)", gw.Spec.NodeName, err, len(pods.Items))
	}
	agent := pods.Items[0]
	pid, err := strconv.Atoi(strings.TrimPrefix(agent.Status.ContainerStatuses[0].ContainerID, "weft-harness://"))
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if r := clientFrom(t, ctx, c, gw, url, 3); r.OK != 0 {
		t.Errorf("with gw's agent killed, %d of 3 new connections got through", r.OK)
	}
	err = harness.WaitFor(ctx, 30*time.Second, "traffic through the restarted agent", func(ctx context.Context) (bool, error) {
		return clientFrom(t, ctx, c, gw, url, 1).OK == 1, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	p, err := c.Client.CoreV1().Pods("weft-system").Get(ctx, agent.Name, metav1.GetOptions{})
	if err != nil || p.Status.ContainerStatuses[0].RestartCount < 1 {
		t.Errorf("agent pod not restarted in place: %v", err)
	}
}

// testUnenroll removes the namespace's ambient label: the agents stop capturing its pods, which
// keep running (not restarted) and talk directly again: gw's agent handles none of its
// connections any more.
func testUnenroll(t *testing.T, ctx context.Context, c *harness.Cluster, gw, dst corev1.Pod, url string) {
	if err := mesh.SetAmbient(ctx, c, demo.Namespace, false); err != nil {
		t.Fatal(err)
	}
	gwAgent := c.Node(gw.Spec.NodeName)
	handled := func() float64 {
		return mesh.CounterSum(agentMetrics(t, ctx, gwAgent), "istio_tcp_connections_opened_total", `reporter="source"`, `source_workload="gw"`)
	}
	err := harness.WaitFor(ctx, 5*time.Second, "gw's connections no longer through its agent", func(ctx context.Context) (bool, error) {
		before := handled()
		r := clientFrom(t, ctx, c, gw, url, 3)
		return r.OK == 3 && r.Peers[gw.Status.PodIP] == 3 && handled() == before, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []corev1.Pod{gw, dst} {
		cur, err := c.Client.CoreV1().Pods(p.Namespace).Get(ctx, p.Name, metav1.GetOptions{})
		if err != nil || cur.UID != p.UID || cur.Status.ContainerStatuses[0].RestartCount != 0 {
			t.Errorf("pod %s was restarted or replaced by unenrolling: %v", p.Name, err)
		}
	}
}

// startPlainPod runs an echo pod in a namespace outside the mesh.
func startPlainPod(t *testing.T, ctx context.Context, c *harness.Cluster) corev1.Pod {
	t.Helper()
	const manifest = `
apiVersion: v1
kind: Namespace
metadata: {name: outside}
---
apiVersion: v1
kind: Pod
metadata: {name: plain, namespace: outside, labels: {app: plain}}
spec:
  containers:
  - name: echo
    image: weftmesh/echo
    env: [{name: NAME, value: plain}, {name: POD_NAME, value: plain}]
    readinessProbe: {httpGet: {path: /readyz, port: 8080}, periodSeconds: 1}
`
	if err := c.Apply(ctx, "outside", []byte(manifest)); err != nil {
		t.Fatal(err)
	}
	var pod *corev1.Pod
	err := harness.WaitFor(ctx, time.Minute, "pod outside/plain ready", func(ctx context.Context) (bool, error) {
		p, err := c.Client.CoreV1().Pods("outside").Get(ctx, "plain", metav1.GetOptions{})
		pod = p
		return err == nil && mesh.PodReady(*p), err
	})
	if err != nil {
		t.Fatal(err)
	}
	waitSynced(t, ctx, c) // the agents learn the new (non-mesh) workload
	return *pod
}

const plaintextMarker = "WEFT-PLAINTEXT-MARKER"

// testEncryptedTransfer sends 100 MB from src to a receiver on node dstNode while capturing the
// underlay: the bytes arrive intact, and the capture shows only TLS to port 15008, never the
// plaintext marker the sender writes every KiB.
func testEncryptedTransfer(t *testing.T, ctx context.Context, c *harness.Cluster, src corev1.Pod, dstNode string) {
	manifest := `
apiVersion: v1
kind: Pod
metadata: {name: sink, namespace: mesh, labels: {app: sink}}
spec:
  nodeName: ` + dstNode + `
  containers:
  - name: bulk
    image: weftmesh/bulk
    args: [recv, -listen, ":5001"]
    readinessProbe: {tcpSocket: {port: 5001}, periodSeconds: 1}
`
	if err := c.Apply(ctx, demo.Namespace, []byte(manifest)); err != nil {
		t.Fatal(err)
	}
	var sink *corev1.Pod
	err := harness.WaitFor(ctx, time.Minute, "pod mesh/sink ready", func(ctx context.Context) (bool, error) {
		p, err := c.Client.CoreV1().Pods(demo.Namespace).Get(ctx, "sink", metav1.GetOptions{})
		sink = p
		return err == nil && mesh.PodReady(*p), err
	})
	if err != nil {
		t.Fatal(err)
	}
	waitSynced(t, ctx, c)

	capture := filepath.Join(t.TempDir(), "underlay.pcap")
	stop := startCapture(t, c, src.Spec.NodeName, capture)
	out, err := c.Exec(ctx, src.Namespace, src.Name, c.Binary("bulk"), "send",
		"-to", net.JoinHostPort(sink.Status.PodIP, "5001"), "-bytes", "100M", "-marker", plaintextMarker, "-json")
	stop()
	if err != nil {
		t.Errorf("100 MB transfer: %v\n%s", err, out)
		dumpAgentLogs(t, c)
		t.FailNow()
	}
	segs, err := readPcap(capture)
	if err != nil {
		t.Fatal(err)
	}
	if len(segs) < 1500 { // 100 MB in segments of at most 64 KiB (GSO)
		t.Fatalf("capture has only %d TCP payloads", len(segs))
	}
	sawHello := false
	for i, s := range segs {
		if s.srcPort != 15008 && s.dstPort != 15008 {
			t.Fatalf("segment %d crossed the underlay outside the tunnel: ports %d → %d", i, s.srcPort, s.dstPort)
		}
		if bytes.Contains(s.payload, []byte(plaintextMarker)) {
			t.Fatalf("segment %d carries the plaintext marker", i)
		}
		if s.dstPort == 15008 && len(s.payload) > 5 && s.payload[0] == 0x16 && s.payload[1] == 0x03 {
			sawHello = true // a TLS handshake record: the ClientHello
		}
	}
	if !sawHello {
		t.Error("no TLS handshake seen on port 15008")
	}
	t.Logf("%d TCP payloads on the underlay, all TLS on 15008, no plaintext marker", len(segs))

	// Deleting the pod unenrolls it (the CNI plugin's DEL reaches the agent).
	if err := c.Client.CoreV1().Pods(demo.Namespace).Delete(ctx, "sink", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	agents, err := c.Client.CoreV1().Pods("weft-system").List(ctx, metav1.ListOptions{LabelSelector: "app=weft-nodeagent", FieldSelector: "spec.nodeName=" + dstNode})
	if err != nil || len(agents.Items) != 1 {
		t.Fatalf("agent of %s: %v", dstNode, err)
	}
	want := `"msg":"unenrolled","uid":"Kubernetes//Pod/` + demo.Namespace + `/sink"`
	err = harness.WaitFor(ctx, 30*time.Second, "sink unenrolled after deletion", func(ctx context.Context) (bool, error) {
		log, err := c.ContainerLog(ctx, "weft-system", agents.Items[0].Name, "nodeagent")
		return err == nil && strings.Contains(string(log), want), err
	})
	if err != nil {
		t.Error(err)
	}
}

// startCapture runs tcpdump, until the returned stop is called, on node's port of the underlay
// bridge: it sees every frame the node sends or receives (a capture on the bridge device itself
// would see only frames flooded to it).
func startCapture(t *testing.T, c *harness.Cluster, node, file string) (stop func()) {
	t.Helper()
	port := "n" + strings.TrimPrefix(node, "node-") // the underlay end of the node's veth
	cmd := exec.Command("tcpdump", "-i", port, "-U", "-s", "0", "-c", "200000", "-w", file, "tcp")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := c.Underlay().Do(cmd.Start); err != nil {
		t.Fatalf("tcpdump: %v", err)
	}
	// tcpdump says "listening on br0" once the capture runs.
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(stderr.String(), "listening on") && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	return func() {
		time.Sleep(100 * time.Millisecond) // let tcpdump write the last packets
		_ = cmd.Process.Signal(syscall.SIGINT)
		_ = cmd.Wait()
	}
}

// testAgentRestart removes the node agents (a nodeSelector no node matches), checks that a new
// connection from an enrolled pod fails and nothing crosses in plaintext, then brings them back.
func testAgentRestart(t *testing.T, ctx context.Context, c *harness.Cluster, gw corev1.Pod, url string) {
	patch := func(selector string) {
		t.Helper()
		body := `{"spec":{"template":{"spec":{"nodeSelector":` + selector + `}}}}`
		if _, err := c.Client.AppsV1().DaemonSets("weft-system").Patch(ctx, "weft-nodeagent", types.StrategicMergePatchType, []byte(body), metav1.PatchOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	patch(`{"weft.dev/no-such-node":"true"}`)
	err := harness.WaitFor(ctx, time.Minute, "node agents gone", func(ctx context.Context) (bool, error) {
		pods, err := c.Client.CoreV1().Pods("weft-system").List(ctx, metav1.ListOptions{LabelSelector: "app=weft-nodeagent"})
		return err == nil && len(pods.Items) == 0, err
	})
	if err != nil {
		t.Fatal(err)
	}
	capture := filepath.Join(t.TempDir(), "down.pcap")
	stop := startCapture(t, c, gw.Spec.NodeName, capture)
	r := clientFrom(t, ctx, c, gw, url, 3)
	stop()
	if r.OK != 0 {
		t.Errorf("with the agents stopped, %d of 3 new connections from an enrolled pod got through", r.OK)
	}
	segs, err := readPcap(capture)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range segs {
		if s.dstPort == 8080 || s.srcPort == 8080 {
			t.Fatalf("with the agents stopped, traffic crossed to the app port in plaintext")
		}
	}
	t.Logf("with the agents stopped, %d TCP payloads left gw's node, none to the app port", len(segs))
	for _, n := range c.Nodes {
		if entries, err := os.ReadDir(n.HostPath("/sys/fs/bpf/weft")); err != nil || len(entries) == 0 {
			t.Errorf("%s: pins gone while the agent is stopped: %v", n.Name, err)
		}
	}
	patch(`null`)
	if err := mesh.WaitDaemonSet(ctx, c, "weft-system", "weft-nodeagent", len(c.Nodes)); err != nil {
		t.Fatal(err)
	}
	// A ready agent has re-enrolled the running pods: traffic flows within a second.
	err = harness.WaitFor(ctx, time.Second, "traffic through restarted agents", func(ctx context.Context) (bool, error) {
		return clientFrom(t, ctx, c, gw, url, 1).OK == 1, nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
