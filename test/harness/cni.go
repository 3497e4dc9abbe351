package harness

import (
	"context"
	"encoding/json"
	"fmt"
	"net"

	"github.com/containernetworking/cni/libcni"
	current "github.com/containernetworking/cni/pkg/types/100"
)

// cniPluginDirs are searched for CNI plugins: Debian's containernetworking-plugins, the usual
// upstream location, then the repository's bin/ (for Weft's own chained plugin).
var cniPluginDirs = []string{"/usr/lib/cni", "/opt/cni/bin"}

// cniNetwork is a node's pod network: the bridge plugin with host-local IPAM, followed by any
// chained plugins (a mesh plugin joins here).
type cniNetwork struct {
	cni   *libcni.CNIConfig
	list  *libcni.NetworkConfigList
	owner NetNS // the node namespace the plugins run in
}

// newCNINetwork builds the conflist for a node. stateDir keeps IPAM leases and libcni's cache.
func newCNINetwork(node NetNS, podCIDR *net.IPNet, stateDir string, extraDirs []string, chained []map[string]any) (*cniNetwork, error) {
	plugins := []map[string]any{{
		"type":        "bridge",
		"bridge":      "cni0",
		"isGateway":   true,
		"ipMasq":      false,
		"hairpinMode": true,
		"ipam": map[string]any{
			"type":    "host-local",
			"ranges":  [][]map[string]string{{{"subnet": podCIDR.String()}}},
			"routes":  []map[string]string{{"dst": "0.0.0.0/0"}},
			"dataDir": stateDir + "/ipam",
		},
	}}
	plugins = append(plugins, chained...)
	raw, err := json.Marshal(map[string]any{
		"cniVersion": "1.0.0",
		"name":       "weft-harness",
		"plugins":    plugins,
	})
	if err != nil {
		return nil, fmt.Errorf("cni: %w", err)
	}
	list, err := libcni.ConfListFromBytes(raw)
	if err != nil {
		return nil, fmt.Errorf("cni: conflist: %w", err)
	}
	dirs := append(append([]string{}, cniPluginDirs...), extraDirs...)
	return &cniNetwork{
		cni:   libcni.NewCNIConfigWithCacheDir(dirs, stateDir+"/cache", nil),
		list:  list,
		owner: node,
	}, nil
}

func (n *cniNetwork) runtimeConf(netnsPath, ns, name, uid string) *libcni.RuntimeConf {
	return &libcni.RuntimeConf{
		ContainerID: uid,
		NetNS:       netnsPath,
		IfName:      "eth0",
		Args: [][2]string{
			{"IgnoreUnknown", "1"},
			{"K8S_POD_NAMESPACE", ns},
			{"K8S_POD_NAME", name},
			{"K8S_POD_INFRA_CONTAINER_ID", uid},
			{"K8S_POD_UID", uid},
		},
	}
}

// add runs the chain's ADD for a pod namespace and returns the pod's IPv4 address.
func (n *cniNetwork) add(ctx context.Context, netnsPath, ns, name, uid string) (net.IP, error) {
	var res *current.Result
	err := n.owner.Do(func() error {
		r, err := n.cni.AddNetworkList(ctx, n.list, n.runtimeConf(netnsPath, ns, name, uid))
		if err != nil {
			return err
		}
		res, err = current.NewResultFromResult(r)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("cni: add %s/%s: %w", ns, name, err)
	}
	for _, ip := range res.IPs {
		if ip.Address.IP.To4() != nil {
			return ip.Address.IP.To4(), nil
		}
	}
	return nil, fmt.Errorf("cni: add %s/%s: no IPv4 address in result", ns, name)
}

// del runs the chain's DEL; it is idempotent, as CNI requires.
func (n *cniNetwork) del(ctx context.Context, netnsPath, ns, name, uid string) error {
	err := n.owner.Do(func() error {
		return n.cni.DelNetworkList(ctx, n.list, n.runtimeConf(netnsPath, ns, name, uid))
	})
	if err != nil {
		return fmt.Errorf("cni: del %s/%s: %w", ns, name, err)
	}
	return nil
}
