// Package mesh installs Weft into a harness cluster the way a user would (the node agent from
// deploy/manifests with a CA in the weft-ca Secret) and derives the node agents' configuration
// from the cluster, as the controller will serve it over xDS (its own issue); until then the
// configuration is written to every node's /var/run/weft/config.yaml. Tests, the demo and the
// benchmarks share it.
package mesh

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"k8s.io/client-go/util/retry"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/weftmesh/weft/nodeagent/identity"
	"github.com/weftmesh/weft/nodeagent/state"
	"github.com/weftmesh/weft/test/apps/client/report"
	"github.com/weftmesh/weft/test/controlplane"
	"github.com/weftmesh/weft/test/harness"
)

// Labels Istio ambient users put on namespaces and pods.
const (
	DataplaneModeLabel = "istio.io/dataplane-mode"
	Ambient            = "ambient"
)

// Config is the node agents' local configuration file (format: package nodeagent/config).
type Config struct {
	Workloads []map[string]any `json:"workloads"`
	Services  []map[string]any `json:"services"`
}

// BuildConfig derives the node agents' configuration from the cluster, as the controller
// will (over xDS, in its own issue): a workload per running pod, enrolled when its namespace or
// itself is labelled istio.io/dataplane-mode=ambient (and not opted out with "none"); a service
// per ClusterIP Service with its ready endpoints. modes gives a namespace's PeerAuthentication
// mode: STRICT, PERMISSIVE or DISABLE (PERMISSIVE when absent).
func BuildConfig(ctx context.Context, c *harness.Cluster, modes map[string]string) (*Config, error) {
	cs := c.Client
	nss, err := cs.CoreV1().Namespaces().List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, err
	}
	ambientNS := map[string]bool{}
	for _, ns := range nss.Items {
		ambientNS[ns.Name] = ns.Labels[DataplaneModeLabel] == Ambient
	}
	pods, err := cs.CoreV1().Pods("").List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, err
	}
	cfg := &Config{}
	for _, p := range pods.Items {
		if p.Spec.HostNetwork || p.Status.PodIP == "" || p.DeletionTimestamp != nil {
			continue
		}
		var addrs []string
		for _, pip := range p.Status.PodIPs {
			ip, err := netip.ParseAddr(pip.IP)
			if err != nil {
				return nil, err
			}
			addrs = append(addrs, ip.String())
		}
		mode := p.Labels[DataplaneModeLabel]
		enrolled := mode == Ambient || ambientNS[p.Namespace] && mode != "none"
		w := map[string]any{
			"uid": string(p.UID), "name": p.Name, "namespace": p.Namespace, "serviceAccount": p.Spec.ServiceAccountName,
			"node": p.Spec.NodeName, "addresses": addrs, "status": "UNHEALTHY", "tunnelProtocol": "NONE",
			"workloadName": p.Labels["app"], "canonicalName": p.Labels["app"], "canonicalRevision": p.Labels["version"],
		}
		if enrolled {
			w["tunnelProtocol"] = "HBONE"
		}
		for key, annotation := range map[string]string{
			"excludeInboundPorts":  state.AnnotationExcludeInboundPorts,
			"excludeOutboundPorts": state.AnnotationExcludeOutboundPorts,
		} {
			if v, ok := p.Annotations[annotation]; ok {
				ports, err := state.ParsePorts(v)
				if err != nil {
					return nil, fmt.Errorf("pod %s/%s: annotation %s: %w", p.Namespace, p.Name, annotation, err)
				}
				w[key] = ports
			}
		}
		if PodReady(p) {
			w["status"] = "HEALTHY"
		}
		if m, ok := modes[p.Namespace]; ok {
			w["peerAuthentication"] = map[string]any{"mtls": map[string]any{"mode": m}}
		}
		cfg.Workloads = append(cfg.Workloads, w)
	}
	svcs, err := cs.CoreV1().Services("").List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, err
	}
	for _, s := range svcs.Items {
		if s.Spec.ClusterIP == "" || s.Spec.ClusterIP == corev1.ClusterIPNone || len(s.Spec.Selector) == 0 {
			continue
		}
		svc, err := serviceConfig(ctx, c, s)
		if err != nil {
			return nil, err
		}
		cfg.Services = append(cfg.Services, svc)
	}
	known := map[string]bool{}
	for _, w := range cfg.Workloads {
		known[w["uid"].(string)] = true
	}
	for _, svc := range cfg.Services { // a terminating pod may still be an endpoint
		eps := svc["endpoints"].([]map[string]any)
		kept := eps[:0]
		for _, e := range eps {
			if known[e["workloadUid"].(string)] {
				kept = append(kept, e)
			}
		}
		svc["endpoints"] = kept
	}
	sort.Slice(cfg.Workloads, func(i, j int) bool { return cfg.Workloads[i]["uid"].(string) < cfg.Workloads[j]["uid"].(string) })
	return cfg, nil
}

func serviceConfig(ctx context.Context, c *harness.Cluster, s corev1.Service) (map[string]any, error) {
	var ports []map[string]any
	for _, p := range s.Spec.Ports {
		if p.Protocol == corev1.ProtocolTCP {
			ports = append(ports, map[string]any{"name": p.Name, "port": p.Port})
		}
	}
	slices, err := c.Client.DiscoveryV1().EndpointSlices(s.Namespace).List(ctx, metav1.ListOptions{LabelSelector: discoveryv1.LabelServiceName + "=" + s.Name})
	if err != nil {
		return nil, err
	}
	endpoints := []map[string]any{}
	for _, sl := range slices.Items {
		for _, e := range sl.Endpoints {
			if e.TargetRef == nil || e.TargetRef.Kind != "Pod" {
				continue
			}
			targets := map[string]int32{}
			for _, sp := range s.Spec.Ports {
				for _, port := range sl.Ports {
					if port.Port != nil && port.Name != nil && *port.Name == sp.Name {
						targets[strconv.Itoa(int(sp.Port))] = *port.Port
					}
				}
			}
			endpoints = append(endpoints, map[string]any{"workloadUid": string(e.TargetRef.UID), "ports": targets})
		}
	}
	return map[string]any{
		"name": s.Name, "namespace": s.Namespace, "hostname": s.Name + "." + s.Namespace + ".svc.cluster.local",
		"vips": []string{s.Spec.ClusterIP}, "ports": ports, "endpoints": endpoints,
	}, nil
}

// WriteConfig writes cfg to every node's /var/run/weft/config.yaml (JSON is YAML), atomically.
func WriteConfig(c *harness.Cluster, cfg *Config) error {
	b, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return err
	}
	for _, n := range c.Nodes {
		if err := n.WriteFile("/var/run/weft/config.yaml", b); err != nil {
			return err
		}
	}
	return nil
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

// Apply writes the agents' configuration derived from the cluster now.
func Apply(ctx context.Context, c *harness.Cluster, modes map[string]string) error {
	cfg, err := BuildConfig(ctx, c, modes)
	if err != nil {
		return err
	}
	return WriteConfig(c, cfg)
}

// InstallNodeAgent installs Weft's node agent from deploy/manifests with a fresh CA in the
// weft-ca Secret, and waits until it is ready on every node.
func InstallNodeAgent(ctx context.Context, c *harness.Cluster) error {
	dir, err := os.MkdirTemp("", "weft-ca-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	td := spiffeid.RequireTrustDomainFromString("cluster.local")
	if _, err := identity.CreateRootCA(td, filepath.Join(dir, "ca.crt"), filepath.Join(dir, "ca.key"), 24*time.Hour); err != nil {
		return err
	}
	if _, err := c.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "weft-system"}}, metav1.CreateOptions{}); err != nil {
		return err
	}
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "weft-ca", Namespace: "weft-system"}, Data: map[string][]byte{}}
	for _, f := range []string{"ca.crt", "ca.key"} {
		b, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil {
			return err
		}
		secret.Data[f] = b
	}
	if _, err := c.Client.CoreV1().Secrets("weft-system").Create(ctx, secret, metav1.CreateOptions{}); err != nil {
		return err
	}
	root, err := controlplane.RepoRoot()
	if err != nil {
		return err
	}
	manifest, err := os.ReadFile(filepath.Join(root, "deploy", "manifests", "nodeagent.yaml"))
	if err != nil {
		return err
	}
	if err := c.Apply(ctx, "weft-system", manifest); err != nil {
		return err
	}
	return WaitDaemonSet(ctx, c, "weft-system", "weft-nodeagent", len(c.Nodes))
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
// The agents act on it at the next Apply.
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
	client := &http.Client{Transport: &http.Transport{DialContext: n.NetNS.DialContext}, Timeout: 5 * time.Second}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+net.JoinHostPort(n.IP.String(), "15020")+"/metrics", nil)
	if err != nil {
		return "", err
	}
	resp, err := client.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
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
