package bench

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"net"
	"slices"
	"text/template"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/weftmesh/weft/test/harness"
)

// Ports of the benchmark's servers.
const (
	EchoPort = 8080
	BulkPort = 5001
	// GRPCPort is the echo server's gRPC port (health and reflection), named "grpc" in the pod
	// and the Service so that a waypoint speaks HTTP/2 to it.
	GRPCPort = 9090
)

// Topology places the benchmark's pods like two machines: the client pod (where the load
// generators run) on one node, the echo server and the bulk receiver on the other. A second
// echo server and bulk receiver (bench-server-local, bench-bulk-local) run on the client's node
// for the same-node scenarios.
type Topology struct {
	Namespace  string
	ClientNode string
	ServerNode string
	// NamespaceLabels are set on the namespace, e.g. to enrol it in a mesh.
	NamespaceLabels map[string]string
}

// NewTopology returns the cross-node topology of the harness's first two nodes in namespace ns.
func NewTopology(ns string) Topology {
	return Topology{Namespace: ns, ClientNode: "node-1", ServerNode: "node-2"}
}

var manifestTmpl = template.Must(template.New("bench").Parse(`apiVersion: v1
kind: Namespace
metadata:
  name: {{.Namespace}}
  labels:
    app.kubernetes.io/part-of: weft-bench
{{- range .Labels}}
    {{.}}
{{- end}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: bench-client, namespace: {{.Namespace}}}
spec:
  replicas: 1
  selector: {matchLabels: {app: bench-client}}
  template:
    metadata: {labels: {app: bench-client}}
    spec:
      nodeSelector: {kubernetes.io/hostname: {{.ClientNode}}}
      containers:
      - name: echo
        image: weftmesh/echo:latest
        env:
        - {name: NAME, value: bench-client}
        - {name: PORT, value: "{{.EchoPort}}"}
        - {name: LOG_LEVEL, value: warn}
        ports: [{name: http, containerPort: {{.EchoPort}}}]
        readinessProbe: {httpGet: {path: /readyz, port: http}, periodSeconds: 1}
---
{{- range .Servers}}
apiVersion: apps/v1
kind: Deployment
metadata: {name: {{.Echo}}, namespace: {{$.Namespace}}}
spec:
  replicas: 1
  selector: {matchLabels: {app: {{.Echo}}}}
  template:
    metadata: {labels: {app: {{.Echo}}}}
    spec:
      nodeSelector: {kubernetes.io/hostname: {{.Node}}}
      containers:
      - name: echo
        image: weftmesh/echo:latest
        env:
        - {name: NAME, value: {{.Echo}}}
        - {name: PORT, value: "{{$.EchoPort}}"}
        - {name: GRPC_PORT, value: "{{$.GRPCPort}}"}
        - {name: LOG_LEVEL, value: warn}
        ports: [{name: http, containerPort: {{$.EchoPort}}}, {name: grpc, containerPort: {{$.GRPCPort}}}]
        readinessProbe: {httpGet: {path: /readyz, port: http}, periodSeconds: 1}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: {{.Bulk}}, namespace: {{$.Namespace}}}
spec:
  replicas: 1
  selector: {matchLabels: {app: {{.Bulk}}}}
  template:
    metadata: {labels: {app: {{.Bulk}}}}
    spec:
      nodeSelector: {kubernetes.io/hostname: {{.Node}}}
      containers:
      - name: bulk
        image: weftmesh/bulk:latest
        args: [recv, -listen, ":{{$.BulkPort}}"]
        env:
        - {name: BULK_LOG_LEVEL, value: warn}
        ports: [{name: bulk, containerPort: {{$.BulkPort}}}]
        readinessProbe: {tcpSocket: {port: bulk}, periodSeconds: 2}
---
{{- end}}
apiVersion: v1
kind: Service
metadata: {name: bench-server, namespace: {{.Namespace}}}
spec:
  selector: {app: bench-server}
  ports: [{name: http, port: 80, targetPort: http}, {name: grpc, port: {{.GRPCPort}}, targetPort: grpc, appProtocol: grpc}]
---
apiVersion: v1
kind: Service
metadata: {name: bench-bulk, namespace: {{.Namespace}}}
spec:
  selector: {app: bench-bulk}
  ports: [{name: tcp-bulk, port: {{.BulkPort}}, targetPort: bulk}]
`))

// Manifest returns the namespace, the five Deployments (bench-client; bench-server and
// bench-bulk on the server node; bench-server-local and bench-bulk-local on the client node)
// and Services for bench-server and bench-bulk, which later scenarios may target.
func (t Topology) Manifest() ([]byte, error) {
	var labels []string
	for _, k := range slices.Sorted(maps.Keys(t.NamespaceLabels)) {
		labels = append(labels, fmt.Sprintf("%s: %q", k, t.NamespaceLabels[k]))
	}
	var b bytes.Buffer
	type servers struct{ Echo, Bulk, Node string }
	err := manifestTmpl.Execute(&b, map[string]any{
		"Namespace": t.Namespace, "ClientNode": t.ClientNode,
		"Servers": []servers{{"bench-server", "bench-bulk", t.ServerNode}, {"bench-server-local", "bench-bulk-local", t.ClientNode}},
		"Labels":  labels, "EchoPort": EchoPort, "BulkPort": BulkPort, "GRPCPort": GRPCPort,
	})
	if err != nil {
		return nil, fmt.Errorf("manifest: %w", err)
	}
	return b.Bytes(), nil
}

// deployWait bounds the wait for the benchmark's pods.
const deployWait = 2 * time.Minute

// Targets are the pod→pod targets of a deployed Topology (pod IPs, no Service).
type Targets struct {
	// CrossNode loads bench-server and bench-bulk on the server node.
	CrossNode Target
	// SameNode loads bench-server-local and bench-bulk-local on the client's node; it has no
	// gRPC address.
	SameNode Target
}

// Deploy applies the manifest to c, waits until every pod is Ready on its node and both echo
// servers answer from the client pod, and returns the cross-node and same-node targets.
func (t Topology) Deploy(ctx context.Context, c *harness.Cluster, fortio string) (Targets, error) {
	m, err := t.Manifest()
	if err != nil {
		return Targets{}, err
	}
	if err := c.Apply(ctx, t.Namespace, m); err != nil {
		return Targets{}, fmt.Errorf("deploy: %w", err)
	}
	pods := map[string]*corev1.Pod{}
	for _, d := range []struct{ name, node string }{
		{"bench-client", t.ClientNode}, {"bench-server", t.ServerNode}, {"bench-bulk", t.ServerNode},
		{"bench-server-local", t.ClientNode}, {"bench-bulk-local", t.ClientNode},
	} {
		if err := c.WaitDeploymentReady(ctx, t.Namespace, d.name, deployWait); err != nil {
			return Targets{}, fmt.Errorf("deploy: %w", err)
		}
		p, err := readyPod(ctx, c, t.Namespace, d.name)
		if err != nil {
			return Targets{}, fmt.Errorf("deploy: %w", err)
		}
		if p.Spec.NodeName != d.node {
			return Targets{}, fmt.Errorf("deploy: pod %s is on %s, want %s", p.Name, p.Spec.NodeName, d.node)
		}
		pods[d.name] = p
	}
	ip := func(name string) string { return pods[name].Status.PodIP }
	cross := Target{
		Namespace:  t.Namespace,
		ClientPod:  pods["bench-client"].Name,
		ClientNode: t.ClientNode,
		ServerNode: t.ServerNode,
		HTTPURL:    fmt.Sprintf("http://%s/", net.JoinHostPort(ip("bench-server"), fmt.Sprint(EchoPort))),
		BulkAddr:   net.JoinHostPort(ip("bench-bulk"), fmt.Sprint(BulkPort)),
		GRPCAddr:   net.JoinHostPort(ip("bench-server"), fmt.Sprint(GRPCPort)),
	}
	same := cross
	same.ServerNode = t.ClientNode
	same.HTTPURL = fmt.Sprintf("http://%s/", net.JoinHostPort(ip("bench-server-local"), fmt.Sprint(EchoPort)))
	same.BulkAddr = net.JoinHostPort(ip("bench-bulk-local"), fmt.Sprint(BulkPort))
	same.GRPCAddr = ""
	for _, tg := range []Target{cross, same} {
		err = harness.WaitFor(ctx, 30*time.Second, tg.HTTPURL+" reachable from "+tg.ClientPod, func(ctx context.Context) (bool, error) {
			cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			defer cancel()
			if _, err := c.Exec(cctx, tg.Namespace, tg.ClientPod, fortio, "curl", "-loglevel", "Warning", tg.HTTPURL); err != nil {
				return false, err
			}
			return true, nil
		})
		if err != nil {
			return Targets{}, fmt.Errorf("deploy: %w", err)
		}
	}
	return Targets{CrossNode: cross, SameNode: same}, nil
}

// readyPod returns the one Running pod of a Deployment (label app=name) that has an IP.
func readyPod(ctx context.Context, c *harness.Cluster, ns, app string) (*corev1.Pod, error) {
	var pod *corev1.Pod
	err := harness.WaitFor(ctx, deployWait, "pod of "+app, func(ctx context.Context) (bool, error) {
		list, err := c.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=" + app})
		if err != nil {
			return false, err
		}
		var running []corev1.Pod
		for _, p := range list.Items {
			if p.DeletionTimestamp == nil && p.Status.Phase == corev1.PodRunning && p.Status.PodIP != "" {
				running = append(running, p)
			}
		}
		if len(running) != 1 {
			return false, nil
		}
		pod = &running[0]
		return true, nil
	})
	if err != nil {
		return nil, err
	}
	return pod, nil
}

// TuneClient sets the sysctls a load generator needs for connection-per-request load in the
// client pod's network namespace: the full ephemeral port range and reuse of TIME_WAIT sockets
// for new outgoing connections. They are per network namespace and touch nothing else.
func TuneClient(ctx context.Context, e Executor, t Target) error {
	if _, err := e.Exec(ctx, t.Namespace, t.ClientPod, "/usr/sbin/sysctl", "-w",
		"net.ipv4.ip_local_port_range=1024 65535", "net.ipv4.tcp_tw_reuse=1"); err != nil {
		return fmt.Errorf("tune client: %w", err)
	}
	return nil
}
