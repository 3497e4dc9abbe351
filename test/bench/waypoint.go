package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"

	"github.com/weftmesh/weft/api"
	"github.com/weftmesh/weft/test/harness"
	"github.com/weftmesh/weft/test/mesh"
)

// WaypointName is the name of the benchmark's waypoint: its Gateway, Deployment and the value
// of the istio.io/use-waypoint label that sends the namespace's service traffic through it.
const WaypointName = "waypoint"

// waypointMetricsPort is where a waypoint serves its Prometheus metrics (istio_requests_total).
const waypointMetricsPort = 15020

// WaypointManifest returns the waypoint Gateway of namespace ns, as Istio's docs write it: class
// istio-waypoint, one HBONE listener on 15008.
func WaypointManifest(ns string) []byte {
	return fmt.Appendf(nil, `apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata:
  name: %s
  namespace: %s
spec:
  gatewayClassName: %s
  listeners:
  - name: mesh
    port: 15008
    protocol: HBONE
`, WaypointName, ns, api.WaypointGatewayClass)
}

var gatewayGVR = schema.GroupVersionResource{Group: "gateway.networking.k8s.io", Version: "v1", Resource: "gateways"}

// DeployWaypoint applies the waypoint Gateway to namespace ns (Weft's controller deploys it),
// waits until its Deployment is ready and the Gateway Programmed, and returns the waypoint's
// pod with its node and cgroup, for a WaypointMeter.
func DeployWaypoint(ctx context.Context, c *harness.Cluster, ns string) (Agent, error) {
	if err := c.Apply(ctx, ns, WaypointManifest(ns)); err != nil {
		return Agent{}, fmt.Errorf("waypoint: %w", err)
	}
	if err := c.WaitDeploymentReady(ctx, ns, WaypointName, deployWait); err != nil {
		return Agent{}, fmt.Errorf("waypoint: %w", err)
	}
	dyn, err := dynamic.NewForConfig(c.ControlPlane.RESTConfig)
	if err != nil {
		return Agent{}, fmt.Errorf("waypoint: %w", err)
	}
	err = harness.WaitFor(ctx, deployWait, "gateway "+ns+"/"+WaypointName+" Programmed", func(ctx context.Context) (bool, error) {
		gw, err := dyn.Resource(gatewayGVR).Namespace(ns).Get(ctx, WaypointName, metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		return gatewayProgrammed(gw), nil
	})
	if err != nil {
		return Agent{}, fmt.Errorf("waypoint: %w", err)
	}
	pods, err := waypointPods(ctx, c, ns)
	if err != nil {
		return Agent{}, err
	}
	if len(pods) != 1 {
		return Agent{}, fmt.Errorf("waypoint: %d ready pods, want 1", len(pods))
	}
	dir, err := c.PodCgroupDir(&pods[0])
	if err != nil {
		return Agent{}, fmt.Errorf("waypoint: %w", err)
	}
	return Agent{Node: pods[0].Spec.NodeName, Pod: pods[0].Namespace + "/" + pods[0].Name, Cgroup: dir}, nil
}

func gatewayProgrammed(gw *unstructured.Unstructured) bool {
	conds, _, _ := unstructured.NestedSlice(gw.Object, "status", "conditions")
	for _, cond := range conds {
		if m, ok := cond.(map[string]any); ok && m["type"] == "Programmed" && m["status"] == "True" {
			return true
		}
	}
	return false
}

// waypointPods returns the ready pods of the benchmark's waypoint.
func waypointPods(ctx context.Context, c *harness.Cluster, ns string) ([]corev1.Pod, error) {
	list, err := c.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: api.LabelGatewayName + "=" + WaypointName})
	if err != nil {
		return nil, fmt.Errorf("waypoint pods: %w", err)
	}
	var pods []corev1.Pod
	for _, p := range list.Items {
		if p.DeletionTimestamp == nil && mesh.PodReady(p) && p.Status.PodIP != "" {
			pods = append(pods, p)
		}
	}
	return pods, nil
}

// ServiceURL returns http://<cluster IP>:<first port>/ of a Service: traffic addressed to the
// Service's VIP, which a waypoint (istio.io/waypoint-for: service, the default) handles.
func ServiceURL(ctx context.Context, c *harness.Cluster, ns, name string) (string, error) {
	svc, err := c.Client.CoreV1().Services(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return "", fmt.Errorf("service %s/%s: %w", ns, name, err)
	}
	if svc.Spec.ClusterIP == "" || svc.Spec.ClusterIP == corev1.ClusterIPNone || len(svc.Spec.Ports) == 0 {
		return "", fmt.Errorf("service %s/%s: no cluster IP or no port", ns, name)
	}
	return fmt.Sprintf("http://%s/", net.JoinHostPort(svc.Spec.ClusterIP, fmt.Sprint(svc.Spec.Ports[0].Port))), nil
}

// waypointRequests sums istio_requests_total over the benchmark's waypoint pods, scraped from
// inside each pod's network namespace.
func waypointRequests(ctx context.Context, c *harness.Cluster, ns string) (float64, error) {
	pods, err := waypointPods(ctx, c, ns)
	if err != nil {
		return 0, err
	}
	if len(pods) == 0 {
		return 0, errors.New("waypoint requests: no ready waypoint pod")
	}
	var sum float64
	for _, p := range pods {
		netns, err := c.PodNetNS(&p)
		if err != nil {
			return 0, fmt.Errorf("waypoint requests: %w", err)
		}
		client := &http.Client{Transport: &http.Transport{DialContext: netns.DialContext}, Timeout: 5 * time.Second}
		url := "http://" + net.JoinHostPort(p.Status.PodIP, fmt.Sprint(waypointMetricsPort)) + "/metrics"
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return 0, fmt.Errorf("waypoint requests: %w", err)
		}
		resp, err := client.Do(req)
		if err != nil {
			return 0, fmt.Errorf("waypoint requests: %w", err)
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			return 0, fmt.Errorf("waypoint requests: %w", err)
		}
		sum += mesh.CounterSum(string(b), "istio_requests_total")
	}
	return sum, nil
}

// setNamespaceLabel sets a label of a namespace, or removes it when value is "" (a merge patch,
// so that a label already in that state changes nothing).
func setNamespaceLabel(ctx context.Context, c *harness.Cluster, ns, key, value string) error {
	v := "null"
	if value != "" {
		v = fmt.Sprintf("%q", value)
	}
	patch := fmt.Sprintf(`{"metadata":{"labels":{%q:%s}}}`, key, v)
	if _, err := c.Client.CoreV1().Namespaces().Patch(ctx, ns, types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		return fmt.Errorf("namespace %s: label %s: %w", ns, key, err)
	}
	return nil
}

// WaypointMeter accounts a waypoint pod's resources exactly as AgentMeter accounts a node
// agent's (CPU from the pod's cgroup, peak RSS from VmHWM of its processes, reset when the
// window starts), under the Waypoint* metrics.
type WaypointMeter struct {
	Waypoint Agent
	// Proc is the proc filesystem ("" is /proc); tests point it at a fixture.
	Proc string
	// Now is the clock of the window (nil is time.Now).
	Now func() time.Time
}

// Start implements Meter.
func (m *WaypointMeter) Start() (func() (Sample, error), error) {
	am := &AgentMeter{Agents: []Agent{m.Waypoint}, Proc: m.Proc, Now: m.Now}
	stop, err := am.Start()
	if err != nil {
		return nil, fmt.Errorf("waypoint meter: %w", err)
	}
	return func() (Sample, error) {
		s, err := stop()
		if err != nil {
			return nil, fmt.Errorf("waypoint meter: %w", err)
		}
		return Sample{WaypointCPU: s[AgentCPU], WaypointVCPU: s[AgentVCPU], WaypointRSS: s[AgentRSS]}, nil
	}, nil
}

// Meters measures with every meter at once; the sample joins theirs. It fails when any fails.
type Meters []Meter

// Start implements Meter.
func (ms Meters) Start() (func() (Sample, error), error) {
	stops := make([]func() (Sample, error), 0, len(ms))
	for _, m := range ms {
		stop, err := m.Start()
		if err != nil {
			return nil, err
		}
		stops = append(stops, stop)
	}
	return func() (Sample, error) {
		out := Sample{}
		var errs []error
		for _, stop := range stops {
			s, err := stop()
			if err != nil {
				errs = append(errs, err)
				continue
			}
			for k, v := range s {
				out[k] = v
			}
		}
		if err := errors.Join(errs...); err != nil {
			return nil, err
		}
		return out, nil
	}, nil
}
