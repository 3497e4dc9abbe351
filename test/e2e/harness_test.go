package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/weftmesh/weft/test/apps/echo/echoserver"
	"github.com/weftmesh/weft/test/harness"
	"github.com/weftmesh/weft/test/mesh"
	"github.com/weftmesh/weft/test/privileged"
)

// startCluster starts a two-node harness cluster for t and checks, at cleanup, that nothing of
// it is left on the host.
func startCluster(t *testing.T, ctx context.Context) *harness.Cluster {
	t.Helper()
	privileged.Require(t)
	c, err := harness.Start(ctx, harness.Options{Progress: testWriter{t}})
	if err != nil {
		t.Fatalf("start cluster: %v", err)
	}
	t.Cleanup(func() {
		run := c.RunID
		if err := c.Close(); err != nil {
			t.Errorf("close cluster: %v", err)
		}
		if left := harness.Leftovers(run); len(left) > 0 {
			t.Errorf("cluster %s left behind: %v", run, left)
		}
	})
	return c
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(b), "\n"))
	return len(b), nil
}

const booksManifest = `
apiVersion: v1
kind: Namespace
metadata: {name: mesh}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: books, namespace: mesh}
spec:
  replicas: 4
  selector: {matchLabels: {app: books}}
  template:
    metadata: {labels: {app: books}}
    spec:
      topologySpreadConstraints:
      - {maxSkew: 1, topologyKey: kubernetes.io/hostname, whenUnsatisfiable: DoNotSchedule, labelSelector: {matchLabels: {app: books}}}
      containers:
      - name: books
        image: weftmesh/echo:latest
        env:
        - {name: NAME, value: books}
        - {name: POD_NAME, valueFrom: {fieldRef: {fieldPath: metadata.name}}}
        ports: [{name: http, containerPort: 8080}]
        readinessProbe: {httpGet: {path: /readyz, port: http}, periodSeconds: 1}
        livenessProbe: {tcpSocket: {port: http}, periodSeconds: 2}
---
apiVersion: v1
kind: Service
metadata: {name: books, namespace: mesh}
spec:
  selector: {app: books}
  ports: [{name: http, port: 80, targetPort: http}]
`

// TestPrivilegedHarnessCluster brings up two nodes, runs a Deployment and a Service applied with
// kubectl, and checks pod placement, readiness, EndpointSlices, and traffic pod→pod on one node
// and across nodes, pod→ClusterIP and pod→Service by DNS name; then deletes everything.
func TestPrivilegedHarnessCluster(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	c := startCluster(t, ctx)

	kubectl := exec.CommandContext(ctx, c.Tools.Kubectl, "--kubeconfig", c.Kubeconfig, "apply", "-f", "-")
	kubectl.Stdin = strings.NewReader(booksManifest)
	if out, err := kubectl.CombinedOutput(); err != nil {
		t.Fatalf("kubectl apply: %v\n%s", err, out)
	}
	if err := c.WaitDeploymentReady(ctx, "mesh", "books", 2*time.Minute); err != nil {
		t.Fatal(err)
	}
	pods, err := c.Client.CoreV1().Pods("mesh").List(ctx, metav1.ListOptions{LabelSelector: "app=books"})
	if err != nil {
		t.Fatal(err)
	}
	byNode := map[string][]corev1.Pod{}
	for _, p := range pods.Items {
		n := c.Node(p.Spec.NodeName)
		if n == nil {
			t.Fatalf("pod %s on unknown node %q", p.Name, p.Spec.NodeName)
		}
		ip := net.ParseIP(p.Status.PodIP)
		if !n.PodCIDR.Contains(ip) {
			t.Errorf("pod %s has IP %s outside %s's pod CIDR %s", p.Name, ip, n.Name, n.PodCIDR)
		}
		if p.Status.HostIP != n.IP.String() {
			t.Errorf("pod %s hostIP %s, want %s", p.Name, p.Status.HostIP, n.IP)
		}
		if !mesh.PodReady(p) {
			t.Errorf("pod %s not Ready", p.Name)
		}
		byNode[p.Spec.NodeName] = append(byNode[p.Spec.NodeName], p)
	}
	if len(byNode["node-1"]) != 2 || len(byNode["node-2"]) != 2 {
		t.Fatalf("want 2 pods per node, got node-1=%d node-2=%d", len(byNode["node-1"]), len(byNode["node-2"]))
	}

	if err := c.WaitServiceReady(ctx, "mesh", "books", 4, time.Minute); err != nil {
		t.Fatal(err)
	}

	src := byNode["node-1"][0]
	srcNS, err := c.PodNetNS(&src)
	if err != nil {
		t.Fatal(err)
	}
	svc, err := c.Client.CoreV1().Services("mesh").Get(ctx, "books", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	clusterIP := "http://" + svc.Spec.ClusterIP + "/"
	for _, tc := range []struct {
		name, url, wantPod string
	}{
		{"same node pod", "http://" + net.JoinHostPort(byNode["node-1"][1].Status.PodIP, "8080") + "/", byNode["node-1"][1].Name},
		{"cross node pod", "http://" + net.JoinHostPort(byNode["node-2"][0].Status.PodIP, "8080") + "/", byNode["node-2"][0].Name},
		{"service ClusterIP", clusterIP, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp := getFromNetNS(t, ctx, srcNS, tc.url)
			if resp.Name != "books" {
				t.Errorf("answer from %q, want books", resp.Name)
			}
			if tc.wantPod != "" && resp.PodName != tc.wantPod {
				t.Errorf("answer from pod %q, want %q", resp.PodName, tc.wantPod)
			}
			if host, _, _ := net.SplitHostPort(resp.RemoteAddr); tc.wantPod != "" && host != src.Status.PodIP {
				t.Errorf("server saw source %s, want the source pod's IP %s", host, src.Status.PodIP)
			}
		})
	}
	for _, url := range []string{"http://books/", "http://books.mesh.svc.cluster.local/"} {
		t.Run("dns "+url, func(t *testing.T) {
			out, err := c.Exec(ctx, "mesh", src.Name, c.Binary("client"), "http", url, "-n", "3")
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("client: %s", out)
		})
	}

	t.Run("hostNetwork daemonset", func(t *testing.T) { testHostNetworkDaemonSet(t, ctx, c, srcNS) })
	t.Run("probes", func(t *testing.T) { testProbes(t, ctx, c) })
	t.Run("garbage collection", func(t *testing.T) { testGarbageCollection(t, ctx, c) })

	if err := c.Client.CoreV1().Namespaces().Delete(ctx, "mesh", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	err = harness.WaitFor(ctx, 2*time.Minute, "namespace mesh deleted", func(ctx context.Context) (bool, error) {
		_, err := c.Client.CoreV1().Namespaces().Get(ctx, "mesh", metav1.GetOptions{})
		return apierrors.IsNotFound(err), nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range pods.Items {
		if _, err := c.PodNetNS(&p); err == nil {
			t.Errorf("pod %s still has its network namespace after deletion", p.Name)
		}
	}
}

const nodeEchoManifest = `
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: node-echo, namespace: mesh}
spec:
  selector: {matchLabels: {app: node-echo}}
  template:
    metadata: {labels: {app: node-echo}}
    spec:
      hostNetwork: true
      containers:
      - name: echo
        image: weftmesh/echo
        env: [{name: PORT, value: "18080"}, {name: NAME, value: node-echo}]
        readinessProbe: {httpGet: {path: /readyz, port: 18080}, periodSeconds: 1}
`

// testHostNetworkDaemonSet runs a hostNetwork DaemonSet: one pod per node, in the node's network
// namespace, reachable at the node's IP from a pod.
func testHostNetworkDaemonSet(t *testing.T, ctx context.Context, c *harness.Cluster, from harness.NetNS) {
	if err := c.Apply(ctx, "mesh", []byte(nodeEchoManifest)); err != nil {
		t.Fatal(err)
	}
	err := harness.WaitFor(ctx, time.Minute, "daemonset node-echo ready on every node", func(ctx context.Context) (bool, error) {
		ds, err := c.Client.AppsV1().DaemonSets("mesh").Get(ctx, "node-echo", metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		return ds.Status.DesiredNumberScheduled == int32(len(c.Nodes)) && ds.Status.NumberReady == ds.Status.DesiredNumberScheduled, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	pods, err := c.Client.CoreV1().Pods("mesh").List(ctx, metav1.ListOptions{LabelSelector: "app=node-echo"})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range pods.Items {
		n := c.Node(p.Spec.NodeName)
		if p.Status.PodIP != n.IP.String() {
			t.Errorf("hostNetwork pod %s has IP %s, want its node's %s", p.Name, p.Status.PodIP, n.IP)
		}
		r := getFromNetNS(t, ctx, from, "http://"+net.JoinHostPort(n.IP.String(), "18080")+"/")
		if r.Name != "node-echo" || r.Hostname != n.Name {
			t.Errorf("%s:18080 answered name %q hostname %q, want node-echo on %s", n.IP, r.Name, r.Hostname, n.Name)
		}
	}
}

const probesManifest = `
apiVersion: v1
kind: Pod
metadata: {name: unhealthy, namespace: mesh, labels: {app: probes}}
spec:
  containers:
  - name: echo
    image: weftmesh/echo
    livenessProbe: {httpGet: {path: "/live?status=500", port: 8080}, periodSeconds: 1, failureThreshold: 2}
---
apiVersion: v1
kind: Pod
metadata: {name: unready, namespace: mesh, labels: {app: probes}}
spec:
  containers:
  - name: echo
    image: weftmesh/echo
    readinessProbe: {tcpSocket: {port: 9999}, periodSeconds: 1}
---
apiVersion: v1
kind: Service
metadata: {name: probes, namespace: mesh}
spec:
  selector: {app: probes}
  ports: [{port: 80, targetPort: 8080}]
`

// testProbes checks that a failing liveness probe restarts its container and a failing
// readiness probe keeps its pod NotReady and out of the Service's endpoints.
func testProbes(t *testing.T, ctx context.Context, c *harness.Cluster) {
	if err := c.Apply(ctx, "mesh", []byte(probesManifest)); err != nil {
		t.Fatal(err)
	}
	err := harness.WaitFor(ctx, time.Minute, "liveness restart of mesh/unhealthy", func(ctx context.Context) (bool, error) {
		p, err := c.Client.CoreV1().Pods("mesh").Get(ctx, "unhealthy", metav1.GetOptions{})
		if err != nil || len(p.Status.ContainerStatuses) == 0 {
			return false, err
		}
		return p.Status.ContainerStatuses[0].RestartCount >= 1, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	p, err := c.Client.CoreV1().Pods("mesh").Get(ctx, "unready", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if p.Status.Phase != corev1.PodRunning || mesh.PodReady(*p) {
		t.Errorf("unready pod: phase %s, ready %v; want Running and not Ready", p.Status.Phase, mesh.PodReady(*p))
	}
	slices, err := c.Client.DiscoveryV1().EndpointSlices("mesh").List(ctx, metav1.ListOptions{LabelSelector: "kubernetes.io/service-name=probes"})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range slices.Items {
		for _, e := range s.Endpoints {
			if e.Conditions.Ready != nil && *e.Conditions.Ready && e.TargetRef != nil && e.TargetRef.Name == "unready" {
				t.Errorf("unready pod is a ready endpoint of service probes")
			}
		}
	}
}

// testGarbageCollection deletes the books Deployment: the garbage collector removes its
// ReplicaSet and pods, and the kubelet their sandboxes.
func testGarbageCollection(t *testing.T, ctx context.Context, c *harness.Cluster) {
	pods, err := c.Client.CoreV1().Pods("mesh").List(ctx, metav1.ListOptions{LabelSelector: "app=books"})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Client.AppsV1().Deployments("mesh").Delete(ctx, "books", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	err = harness.WaitFor(ctx, time.Minute, "books ReplicaSet and pods collected", func(ctx context.Context) (bool, error) {
		rs, err := c.Client.AppsV1().ReplicaSets("mesh").List(ctx, metav1.ListOptions{LabelSelector: "app=books"})
		if err != nil {
			return false, err
		}
		left, err := c.Client.CoreV1().Pods("mesh").List(ctx, metav1.ListOptions{LabelSelector: "app=books"})
		if err != nil {
			return false, err
		}
		return len(rs.Items) == 0 && len(left.Items) == 0, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range pods.Items {
		if _, err := c.PodNetNS(&p); err == nil {
			t.Errorf("pod %s still has its network namespace after deletion", p.Name)
		}
	}
}

// getFromNetNS sends a GET from inside ns and decodes the echo answer.
func getFromNetNS(t *testing.T, ctx context.Context, ns harness.NetNS, url string) echoserver.Response {
	t.Helper()
	r, err := httpGetFrom(ctx, ns, url)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// httpGetFrom sends one GET from inside ns on a new connection and decodes the echo answer.
func httpGetFrom(ctx context.Context, ns harness.NetNS, url string) (echoserver.Response, error) {
	var r echoserver.Response
	client := &http.Client{Transport: &http.Transport{DialContext: ns.DialContext, DisableKeepAlives: true}, Timeout: 10 * time.Second}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return r, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return r, fmt.Errorf("GET %s: %w", url, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return r, fmt.Errorf("GET %s: %s\n%s", url, resp.Status, body)
	}
	if err := json.Unmarshal(body, &r); err != nil {
		return r, fmt.Errorf("GET %s: %w\n%s", url, err, body)
	}
	return r, nil
}
