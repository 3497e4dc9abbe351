package harness

import (
	"context"
	"fmt"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"time"

	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// WaitServiceReady waits until the Service ns/name has at least want ready endpoints and every
// node's kube-proxy has programmed all of them, so that the ClusterIP answers from any node.
func (c *Cluster) WaitServiceReady(ctx context.Context, ns, name string, want int, timeout time.Duration) error {
	what := fmt.Sprintf("%d ready endpoints of service %s/%s programmed on every node", want, ns, name)
	return WaitFor(ctx, timeout, what, func(ctx context.Context) (bool, error) {
		addrs, err := c.readyEndpoints(ctx, ns, name)
		if err != nil || len(addrs) < want {
			return false, err
		}
		for _, n := range c.Nodes {
			rules, err := n.natRules(ctx)
			if err != nil {
				return false, err
			}
			for _, a := range addrs {
				if !strings.Contains(rules, "--to-destination "+a) {
					return false, nil
				}
			}
		}
		return true, nil
	})
}

// readyEndpoints returns ip:port of every ready endpoint of a Service, over its EndpointSlices.
func (c *Cluster) readyEndpoints(ctx context.Context, ns, name string) ([]string, error) {
	slices, err := c.Client.DiscoveryV1().EndpointSlices(ns).List(ctx, metav1.ListOptions{LabelSelector: discoveryv1.LabelServiceName + "=" + name})
	if err != nil {
		return nil, err
	}
	var out []string
	for _, s := range slices.Items {
		for _, e := range s.Endpoints {
			if e.Conditions.Ready == nil || !*e.Conditions.Ready {
				continue
			}
			for _, a := range e.Addresses {
				for _, p := range s.Ports {
					if p.Port != nil {
						out = append(out, net.JoinHostPort(a, strconv.Itoa(int(*p.Port))))
					}
				}
			}
		}
	}
	return out, nil
}

// natRules returns the node's iptables nat table, where kube-proxy's DNAT rules live.
func (n *Node) natRules(ctx context.Context) (string, error) {
	var out []byte
	err := n.NetNS.Do(func() error {
		var err error
		out, err = exec.CommandContext(ctx, "iptables-save", "-t", "nat").Output()
		return err
	})
	if err != nil {
		return "", fmt.Errorf("iptables-save on %s: %w", n.Name, err)
	}
	return string(out), nil
}
