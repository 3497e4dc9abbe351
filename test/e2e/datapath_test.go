package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/weftmesh/weft/nodeagent/identity"
	"github.com/weftmesh/weft/test/apps/client/report"
	"github.com/weftmesh/weft/test/controlplane"
	"github.com/weftmesh/weft/test/demo"
	"github.com/weftmesh/weft/test/harness"
)

// installNodeAgent installs Weft's node agent from deploy/manifests the way a user would, with a
// fresh CA in the weft-ca Secret, and waits until it is ready on every node.
func installNodeAgent(t *testing.T, ctx context.Context, c *harness.Cluster) {
	t.Helper()
	dir := t.TempDir()
	td := spiffeid.RequireTrustDomainFromString("cluster.local")
	if _, err := identity.CreateRootCA(td, filepath.Join(dir, "ca.crt"), filepath.Join(dir, "ca.key"), 24*time.Hour); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "weft-system"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "weft-ca", Namespace: "weft-system"}, Data: map[string][]byte{}}
	for _, f := range []string{"ca.crt", "ca.key"} {
		b, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		secret.Data[f] = b
	}
	if _, err := c.Client.CoreV1().Secrets("weft-system").Create(ctx, secret, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	root, err := controlplane.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	manifest, err := os.ReadFile(filepath.Join(root, "deploy", "manifests", "nodeagent.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Apply(ctx, "weft-system", manifest); err != nil {
		t.Fatal(err)
	}
	waitDaemonSet(t, ctx, c, "weft-system", "weft-nodeagent", len(c.Nodes))
}

func waitDaemonSet(t *testing.T, ctx context.Context, c *harness.Cluster, ns, name string, want int) {
	t.Helper()
	err := harness.WaitFor(ctx, 2*time.Minute, "daemonset "+ns+"/"+name+" ready", func(ctx context.Context) (bool, error) {
		ds, err := c.Client.AppsV1().DaemonSets(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		return ds.Status.DesiredNumberScheduled == int32(want) && ds.Status.NumberReady == int32(want), nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// applyMeshConfig writes the agents' configuration derived from the cluster now.
func applyMeshConfig(t *testing.T, ctx context.Context, c *harness.Cluster, modes map[string]string) {
	t.Helper()
	cfg, err := buildMeshConfig(ctx, c, modes)
	if err != nil {
		t.Fatal(err)
	}
	if err := writeMeshConfig(c, cfg); err != nil {
		t.Fatal(err)
	}
}

// agentMetrics scrapes the node agent of node n.
func agentMetrics(t *testing.T, ctx context.Context, n *harness.Node) string {
	t.Helper()
	client := &http.Client{Transport: &http.Transport{DialContext: n.NetNS.DialContext}, Timeout: 5 * time.Second}
	resp, err := client.Get("http://" + net.JoinHostPort(n.IP.String(), "15020") + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// metricLines returns the lines of a Prometheus text exposition of metric that contain every part.
func metricLines(text, metric string, parts ...string) []string {
	var out []string
	sc := bufio.NewScanner(strings.NewReader(text))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, metric+"{") {
			continue
		}
		ok := true
		for _, p := range parts {
			if !strings.Contains(line, p) {
				ok = false
				break
			}
		}
		if ok {
			out = append(out, line)
		}
	}
	return out
}

// clientFrom runs the client test app inside pod (its network namespace and cgroup, as the pod's
// own processes run) with n requests to url, each on a new connection.
func clientFrom(t *testing.T, ctx context.Context, c *harness.Cluster, pod corev1.Pod, url string, n int) report.Report {
	t.Helper()
	out, err := c.Exec(ctx, pod.Namespace, pod.Name, c.Binary("client"), "http", url, "-n", strconv.Itoa(n), "-new-conn", "-json", "-allow-fail")
	if err != nil {
		t.Fatalf("client in %s: %v", pod.Name, err)
	}
	var r report.Report
	if i := strings.IndexByte(string(out), '{'); i >= 0 {
		out = out[i:]
	}
	if err := json.NewDecoder(strings.NewReader(string(out))).Decode(&r); err != nil {
		t.Fatalf("client report: %v\n%s", err, out)
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
	ns, err := c.Client.CoreV1().Namespaces().Get(ctx, demo.Namespace, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ns.Labels[dataplaneModeLabel] = ambient
	if _, err := c.Client.CoreV1().Namespaces().Update(ctx, ns, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	applyMeshConfig(t, ctx, c, nil)
	installNodeAgent(t, ctx, c)

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
		name string
		dst  corev1.Pod
	}{{"cross-node", cross}, {"same-node", same}} {
		t.Run(tc.name, func(t *testing.T) {
			url := "http://" + net.JoinHostPort(tc.dst.Status.PodIP, "8080") + "/"
			r := clientFrom(t, ctx, c, gw, url, 5)
			if r.OK != 5 || r.Pods[tc.dst.Name] != 5 {
				t.Errorf("from gw to %s: %d of 5 ok, answered by %v", tc.dst.Name, r.OK, r.Pods)
			}
			if r.Peers[gw.Status.PodIP] != 5 {
				t.Errorf("the app saw sources %v, want gw's pod IP %s", r.Peers, gw.Status.PodIP)
			}
		})
	}

	// The destination agent of the cross-node request reports gw's SPIFFE ID, over mTLS.
	dstMetrics := agentMetrics(t, ctx, c.Node(cross.Spec.NodeName))
	lines := metricLines(dstMetrics, "istio_tcp_connections_opened_total",
		`reporter="destination"`, `source_principal="spiffe://cluster.local/ns/mesh/sa/gw"`,
		`destination_principal="spiffe://cluster.local/ns/mesh/sa/books"`, `connection_security_policy="mutual_tls"`)
	if len(lines) == 0 {
		t.Errorf("destination agent on %s has no mTLS connection from gw's identity; metrics:\n%s", cross.Spec.NodeName,
			strings.Join(metricLines(dstMetrics, "istio_tcp_connections_opened_total"), "\n"))
	}
}
