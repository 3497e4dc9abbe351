package mesh

import (
	"context"
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
)

// GatewayGVR is Gateway API's Gateway resource.
var GatewayGVR = schema.GroupVersionResource{Group: "gateway.networking.k8s.io", Version: "v1", Resource: "gateways"}

// WaypointMetricsPort is where a waypoint serves its Prometheus metrics.
const WaypointMetricsPort = 15020

// WaypointManifest returns a waypoint Gateway as Istio's docs write it: class istio-waypoint,
// one HBONE listener on 15008.
func WaypointManifest(ns, name string) []byte {
	return fmt.Appendf(nil, `apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata:
  name: %s
  namespace: %s
spec:
  gatewayClassName: %s
  listeners:
  - name: %s
    port: %d
    protocol: %s
`, name, ns, api.WaypointGatewayClass, api.WaypointListener, api.WaypointPort, api.WaypointProtocol)
}

// DeployWaypoint applies the waypoint Gateway ns/name (Weft's controller deploys it) and waits
// until its Deployment is ready and the Gateway Programmed.
func DeployWaypoint(ctx context.Context, c *harness.Cluster, ns, name string, timeout time.Duration) error {
	if err := c.Apply(ctx, ns, WaypointManifest(ns, name)); err != nil {
		return fmt.Errorf("waypoint: %w", err)
	}
	if err := c.WaitDeploymentReady(ctx, ns, name, timeout); err != nil {
		return fmt.Errorf("waypoint: %w", err)
	}
	return WaitProgrammed(ctx, c, ns, name, timeout)
}

// WaitProgrammed waits until the Gateway ns/name has the condition Programmed=True.
func WaitProgrammed(ctx context.Context, c *harness.Cluster, ns, name string, timeout time.Duration) error {
	dyn, err := dynamic.NewForConfig(c.ControlPlane.RESTConfig)
	if err != nil {
		return err
	}
	return harness.WaitFor(ctx, timeout, "gateway "+ns+"/"+name+" Programmed", func(ctx context.Context) (bool, error) {
		gw, err := dyn.Resource(GatewayGVR).Namespace(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, nil // not created yet, or the API is busy: try again
		}
		conds, _, _ := unstructured.NestedSlice(gw.Object, "status", "conditions")
		for _, cond := range conds {
			if m, ok := cond.(map[string]any); ok && m["type"] == "Programmed" && m["status"] == "True" {
				return true, nil
			}
		}
		return false, nil
	})
}

// WaypointPods returns the ready pods of the waypoint ns/name.
func WaypointPods(ctx context.Context, c *harness.Cluster, ns, name string) ([]corev1.Pod, error) {
	list, err := c.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: api.LabelGatewayName + "=" + name})
	if err != nil {
		return nil, fmt.Errorf("waypoint pods: %w", err)
	}
	var pods []corev1.Pod
	for _, p := range list.Items {
		if p.DeletionTimestamp == nil && PodReady(p) && p.Status.PodIP != "" {
			pods = append(pods, p)
		}
	}
	return pods, nil
}

// WaypointRequests sums the istio_requests_total series that contain every part over the
// ready pods of the waypoint ns/name, scraped from inside each pod's network namespace.
func WaypointRequests(ctx context.Context, c *harness.Cluster, ns, name string, parts ...string) (float64, error) {
	pods, err := WaypointPods(ctx, c, ns, name)
	if err != nil {
		return 0, err
	}
	var sum float64
	for _, p := range pods {
		netns, err := c.PodNetNS(&p)
		if err != nil {
			return 0, fmt.Errorf("waypoint metrics: %w", err)
		}
		text, err := Scrape(ctx, netns, "http://"+net.JoinHostPort(p.Status.PodIP, fmt.Sprint(WaypointMetricsPort))+"/metrics")
		if err != nil {
			return 0, fmt.Errorf("waypoint metrics: %w", err)
		}
		sum += CounterSum(text, "istio_requests_total", parts...)
	}
	return sum, nil
}

// Scrape GETs url from inside the network namespace ns and returns the body.
func Scrape(ctx context.Context, ns harness.NetNS, url string) (string, error) {
	client := &http.Client{Transport: &http.Transport{DialContext: ns.DialContext}, Timeout: 5 * time.Second}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
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

// SetNamespaceLabel sets a label of a namespace, or removes it when value is "" (a merge patch:
// a label already in that state changes nothing).
func SetNamespaceLabel(ctx context.Context, c *harness.Cluster, ns, key, value string) error {
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
