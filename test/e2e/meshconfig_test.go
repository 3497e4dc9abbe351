package e2e

import (
	"context"
	"encoding/json"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strconv"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/weftmesh/weft/test/harness"
)

// Labels Istio ambient users put on namespaces and pods.
const (
	dataplaneModeLabel = "istio.io/dataplane-mode"
	ambient            = "ambient"
)

// meshConfig is the node agents' local configuration file (format: package nodeagent/config).
type meshConfig struct {
	Workloads []map[string]any `json:"workloads"`
	Services  []map[string]any `json:"services"`
}

// buildMeshConfig derives the node agents' configuration from the cluster, as the controller
// will (over xDS, in its own issue): a workload per running pod, enrolled when its namespace or
// itself is labelled istio.io/dataplane-mode=ambient (and not opted out with "none"); a service
// per ClusterIP Service with its ready endpoints. modes gives a namespace's PeerAuthentication
// mode: STRICT, PERMISSIVE or DISABLE (PERMISSIVE when absent).
func buildMeshConfig(ctx context.Context, c *harness.Cluster, modes map[string]string) (*meshConfig, error) {
	cs := c.Client
	nss, err := cs.CoreV1().Namespaces().List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, err
	}
	ambientNS := map[string]bool{}
	for _, ns := range nss.Items {
		ambientNS[ns.Name] = ns.Labels[dataplaneModeLabel] == ambient
	}
	pods, err := cs.CoreV1().Pods("").List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, err
	}
	cfg := &meshConfig{}
	for _, p := range pods.Items {
		if p.Spec.HostNetwork || p.Status.PodIP == "" || p.DeletionTimestamp != nil {
			continue
		}
		ip, err := netip.ParseAddr(p.Status.PodIP)
		if err != nil {
			return nil, err
		}
		mode := p.Labels[dataplaneModeLabel]
		enrolled := mode == ambient || ambientNS[p.Namespace] && mode != "none"
		w := map[string]any{
			"uid": string(p.UID), "name": p.Name, "namespace": p.Namespace, "serviceAccount": p.Spec.ServiceAccountName,
			"node": p.Spec.NodeName, "addresses": []string{ip.String()}, "status": "UNHEALTHY", "tunnelProtocol": "NONE",
			"workloadName": p.Labels["app"], "canonicalName": p.Labels["app"], "canonicalRevision": p.Labels["version"],
		}
		if enrolled {
			w["tunnelProtocol"] = "HBONE"
		}
		if podReady(p) {
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

// writeMeshConfig writes cfg to every node's /var/run/weft/config.yaml (JSON is YAML), atomically.
func writeMeshConfig(c *harness.Cluster, cfg *meshConfig) error {
	b, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return err
	}
	for _, n := range c.Nodes {
		p := n.HostPath("/var/run/weft/config.yaml")
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		tmp := p + ".tmp"
		if err := os.WriteFile(tmp, b, 0o644); err != nil {
			return err
		}
		if err := os.Rename(tmp, p); err != nil {
			return err
		}
	}
	return nil
}
