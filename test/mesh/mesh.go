// Package mesh installs Weft into a harness cluster the way a user would (CRDs, controller and
// node agents from deploy/), enrolls namespaces by label and reads the agents' metrics. Tests,
// the demo and the benchmarks share it.
package mesh

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"k8s.io/client-go/util/retry"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/weftmesh/weft/test/apps/client/report"
	"github.com/weftmesh/weft/test/controlplane"
	"github.com/weftmesh/weft/test/harness"
)

// Labels Istio ambient users put on namespaces and pods.
const (
	DataplaneModeLabel = "istio.io/dataplane-mode"
	Ambient            = "ambient"
)

// Install installs Weft the way a user would: the CRDs from deploy/crds (Istio's and the
// Gateway API's, server-side applied), then the controller
// and the node agents from deploy/manifests/weft.yaml; it waits until the controller is ready
// and an agent is ready on every node.
func Install(ctx context.Context, c *harness.Cluster) error {
	root, err := controlplane.RepoRoot()
	if err != nil {
		return err
	}
	for _, f := range []string{"deploy/crds/istio.yaml", "deploy/crds/gateway-api.yaml", "deploy/manifests/weft.yaml"} {
		manifest, err := os.ReadFile(filepath.Join(root, f))
		if err != nil {
			return err
		}
		if err := c.Apply(ctx, "weft-system", manifest); err != nil {
			return fmt.Errorf("%s: %w", f, err)
		}
	}
	if err := c.WaitDeploymentReady(ctx, "weft-system", "weft-controller", 2*time.Minute); err != nil {
		return err
	}
	return WaitDaemonSet(ctx, c, "weft-system", "weft-nodeagent", len(c.Nodes))
}

// SetPeerAuthentication applies the namespace-wide PeerAuthentication "default" of ns with mode
// (STRICT, PERMISSIVE or DISABLE), as a user would with kubectl.
func SetPeerAuthentication(ctx context.Context, c *harness.Cluster, ns, mode string) error {
	return c.Apply(ctx, ns, []byte(fmt.Sprintf(`apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: %s}
spec: {mtls: {mode: %s}}
`, ns, mode)))
}

// WaitDaemonSet waits until want pods of a DaemonSet are ready.
func WaitDaemonSet(ctx context.Context, c *harness.Cluster, ns, name string, want int) error {
	return harness.WaitFor(ctx, 2*time.Minute, "daemonset "+ns+"/"+name+" ready", func(ctx context.Context) (bool, error) {
		ds, err := c.Client.AppsV1().DaemonSets(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		return ds.Status.DesiredNumberScheduled == int32(want) && ds.Status.NumberReady == int32(want), nil
	})
}

// SetAmbient labels a namespace istio.io/dataplane-mode=ambient (on) or removes the label (off).
// The controller pushes the change to the agents; running pods are enrolled or released
// without a restart.
func SetAmbient(ctx context.Context, c *harness.Cluster, name string, on bool) error {
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		nss := c.Client.CoreV1().Namespaces()
		ns, err := nss.Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if _, has := ns.Labels[DataplaneModeLabel]; has == on && (!on || ns.Labels[DataplaneModeLabel] == Ambient) {
			return nil
		}
		if on {
			if ns.Labels == nil {
				ns.Labels = map[string]string{}
			}
			ns.Labels[DataplaneModeLabel] = Ambient
		} else {
			delete(ns.Labels, DataplaneModeLabel)
		}
		_, err = nss.Update(ctx, ns, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		return fmt.Errorf("namespace %s: %s label: %w", name, DataplaneModeLabel, err)
	}
	return nil
}

// Client runs the client test app inside pod (its network namespace and cgroup, as the pod's
// own processes run, so capture applies) with n HTTP requests to url, each on a new connection,
// and returns its report. Failed requests are in the report, not an error.
func Client(ctx context.Context, c *harness.Cluster, namespace, pod, url string, n int) (report.Report, error) {
	var r report.Report
	out, err := c.Exec(ctx, namespace, pod, c.Binary("client"), "http", url, "-n", strconv.Itoa(n), "-new-conn", "-json", "-allow-fail")
	if err != nil {
		return r, err
	}
	if i := bytes.IndexByte(out, '{'); i >= 0 {
		out = out[i:]
	}
	// The output is stdout and stderr together: the report, then the client's summary line.
	if err := json.NewDecoder(bytes.NewReader(out)).Decode(&r); err != nil {
		return r, fmt.Errorf("client report: %w\n%s", err, out)
	}
	return r, nil
}

// AgentMetrics scrapes the node agent of node n.
func AgentMetrics(ctx context.Context, n *harness.Node) (string, error) {
	return Scrape(ctx, n.NetNS, "http://"+net.JoinHostPort(n.IP.String(), "15020")+"/metrics")
}

// CounterSum adds up the values of the series of metric whose lines contain every part.
func CounterSum(text, metric string, parts ...string) float64 {
	var sum float64
	for _, line := range MetricLines(text, metric, parts...) {
		if v, ok := MetricValue(line); ok {
			sum += v
		}
	}
	return sum
}

// MetricValue returns the value of one line of a Prometheus text exposition.
func MetricValue(line string) (float64, bool) {
	i := strings.LastIndexByte(line, '}')
	if i < 0 {
		return 0, false
	}
	f := strings.Fields(line[i+1:])
	if len(f) == 0 {
		return 0, false
	}
	v, err := strconv.ParseFloat(f[0], 64)
	return v, err == nil
}

// MetricLines returns the lines of a Prometheus text exposition of metric that contain every part.
func MetricLines(text, metric string, parts ...string) []string {
	var out []string
	for line := range strings.Lines(text) {
		line = strings.TrimRight(line, "\n")
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

// PodReady reports whether p's Ready condition is true.
func PodReady(p corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// readyController returns a ready controller pod and the node that runs it.
func readyController(ctx context.Context, c *harness.Cluster) (corev1.Pod, *harness.Node, error) {
	pods, err := c.Client.CoreV1().Pods("weft-system").List(ctx, metav1.ListOptions{LabelSelector: "app=weft-controller"})
	if err != nil {
		return corev1.Pod{}, nil, err
	}
	for _, p := range pods.Items {
		if n := c.Node(p.Spec.NodeName); n != nil && p.Status.PodIP != "" && PodReady(p) {
			return p, n, nil
		}
	}
	return corev1.Pod{}, nil, errors.New("no ready controller pod")
}

// ControllerGet fetches a page of the controller's admin server (port 15014), e.g.
// "/debug/push", from the node that runs it.
func ControllerGet(ctx context.Context, c *harness.Cluster, path string) ([]byte, error) {
	p, n, err := readyController(ctx, c)
	if err != nil {
		return nil, err
	}
	client := &http.Client{Transport: &http.Transport{DialContext: n.NetNS.DialContext}, Timeout: 5 * time.Second}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+net.JoinHostPort(p.Status.PodIP, "15014")+path, nil)
	if err != nil {
		return nil, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err == nil && resp.StatusCode != http.StatusOK {
		err = fmt.Errorf("controller %s: %s: %s", path, resp.Status, bytes.TrimSpace(b))
	}
	return b, err
}

// DialController connects to the controller's TLS port (15012: workload xDS and the CA) as a
// node agent does: TLS 1.3, the server name weft-controller.weft-system.svc, verified with the
// roots the controller publishes in the ConfigMap weft-system/weft-ca-root-cert. It dials the
// ready controller pod's IP from inside the network namespace of the node that runs it (the
// host has no route into the cluster). Callers add their own credentials, e.g. a token in the
// outgoing metadata ("authorization: Bearer <token>").
func DialController(ctx context.Context, c *harness.Cluster) (*grpc.ClientConn, error) {
	p, n, err := readyController(ctx, c)
	if err != nil {
		return nil, err
	}
	cm, err := c.Client.CoreV1().ConfigMaps("weft-system").Get(ctx, "weft-ca-root-cert", metav1.GetOptions{})
	if err != nil {
		return nil, fmt.Errorf("controller roots: %w", err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM([]byte(cm.Data["root-cert.pem"])) {
		return nil, errors.New("controller roots: ConfigMap weft-system/weft-ca-root-cert has no PEM certificate in root-cert.pem")
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS13, RootCAs: roots, ServerName: "weft-controller.weft-system.svc"}
	return grpc.NewClient("passthrough:///"+net.JoinHostPort(p.Status.PodIP, "15012"),
		grpc.WithTransportCredentials(credentials.NewTLS(tc)),
		grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
			return n.NetNS.DialContext(ctx, "tcp", addr)
		}))
}

// WaitSynced waits until the controller has pushed the cluster as it is now and every node's
// agent has accepted it: every agent ACKed the newest push, and that push came after the call or
// the controller's longest batching delay (1 s) has passed since.
func WaitSynced(ctx context.Context, c *harness.Cluster) error {
	mark := time.Now()
	var last error
	err := harness.WaitFor(ctx, 30*time.Second, "node agents in sync with the controller", func(ctx context.Context) (bool, error) {
		b, err := ControllerGet(ctx, c, "/debug/push")
		if err != nil {
			last = err
			return false, nil
		}
		last = fmt.Errorf("/debug/push: %s", b)
		var nodes []struct {
			Node     string    `json:"node"`
			Pushed   string    `json:"pushed"`
			PushedAt time.Time `json:"pushedAt"`
			Acked    string    `json:"acked"`
		}
		if err := json.Unmarshal(b, &nodes); err != nil {
			return false, err
		}
		synced := 0
		for _, n := range nodes {
			if n.Pushed != "" && n.Acked == n.Pushed && (n.PushedAt.After(mark) || time.Since(mark) > 1500*time.Millisecond) {
				synced++
			}
		}
		return synced >= len(c.Nodes), nil
	})
	if err != nil && last != nil {
		return fmt.Errorf("%w; last: %v", err, last)
	}
	return err
}
