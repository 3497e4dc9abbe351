package harness

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/invoke"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/cni/pkg/version"

	"github.com/weftmesh/weft/test/harness/podshim"
)

// debianCNIDir holds the standard CNI plugins of Debian's containernetworking-plugins.
const debianCNIDir = "/usr/lib/cni"

// cniNetwork runs a node's pod network the way containerd does: the first conflist in the node's
// /etc/cni/net.d (read at every ADD, so a DaemonSet that chains its plugin in is picked up), with
// plugins from the node's /opt/cni/bin and Debian's plugin directory. Plugins run in the node's
// network namespace and filesystem view (see nodefs.go), through the pod shim.
type cniNetwork struct {
	node     *Node
	confDir  string
	cacheDir string
}

// baseConfList is the harness's own network: bridge + host-local IPAM (dual-stack), with chained
// plugins.
func baseConfList(podCIDR, podCIDR6 *net.IPNet, ipamDir string, chained []map[string]any) ([]byte, error) {
	plugins := []map[string]any{{
		"type":        "bridge",
		"bridge":      "cni0",
		"isGateway":   true,
		"ipMasq":      false,
		"hairpinMode": true,
		"ipam": map[string]any{
			"type":    "host-local",
			"ranges":  [][]map[string]string{{{"subnet": podCIDR.String()}}, {{"subnet": podCIDR6.String()}}},
			"routes":  []map[string]string{{"dst": "0.0.0.0/0"}, {"dst": "::/0"}},
			"dataDir": ipamDir,
		},
	}}
	plugins = append(plugins, chained...)
	return json.MarshalIndent(map[string]any{"cniVersion": "1.0.0", "name": "weft-harness", "plugins": plugins}, "", "  ")
}

// newCNINetwork writes the node's base conflist into its /etc/cni/net.d.
func newCNINetwork(n *Node, chained []map[string]any) (*cniNetwork, error) {
	state := filepath.Join(n.StateDir, "cni")
	raw, err := baseConfList(n.PodCIDR, n.PodCIDR6, filepath.Join(state, "ipam"), chained)
	if err != nil {
		return nil, fmt.Errorf("cni: %w", err)
	}
	confDir := n.HostPath(HostCNIConf)
	if err := os.WriteFile(filepath.Join(confDir, cniConfigName), raw, 0o644); err != nil {
		return nil, fmt.Errorf("cni: %w", err)
	}
	return &cniNetwork{node: n, confDir: confDir, cacheDir: filepath.Join(state, "cache")}, nil
}

// load returns the CNI runner and the first conflist of the node's configuration directory.
func (n *cniNetwork) load() (*libcni.CNIConfig, *libcni.NetworkConfigList, error) {
	files, err := libcni.ConfFiles(n.confDir, []string{".conflist"})
	if err != nil || len(files) == 0 {
		return nil, nil, fmt.Errorf("cni: no conflist in the node's %s (%s): %v", HostCNIConf, n.confDir, err)
	}
	list, err := libcni.ConfListFromFile(files[0]) // ConfFiles sorts by name
	if err != nil {
		return nil, nil, fmt.Errorf("cni: %w", err)
	}
	dirs := []string{n.node.HostPath(HostCNIBin), debianCNIDir}
	return libcni.NewCNIConfigWithCacheDir(dirs, n.cacheDir, &nodeExec{node: n.node}), list, nil
}

func runtimeConf(netnsPath, ns, name, uid string) *libcni.RuntimeConf {
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

// add runs the chain's ADD for a pod namespace and returns the pod's addresses, IPv4 first.
func (n *cniNetwork) add(ctx context.Context, netnsPath, ns, name, uid string) ([]net.IP, error) {
	cni, list, err := n.load()
	if err != nil {
		return nil, err
	}
	r, err := cni.AddNetworkList(ctx, list, runtimeConf(n.nodeViewPath(netnsPath), ns, name, uid))
	if err != nil {
		return nil, fmt.Errorf("cni: add %s/%s: %w", ns, name, err)
	}
	res, err := current.NewResultFromResult(r)
	if err != nil {
		return nil, fmt.Errorf("cni: add %s/%s: %w", ns, name, err)
	}
	var v4, v6 []net.IP
	for _, ip := range res.IPs {
		if a := ip.Address.IP.To4(); a != nil {
			v4 = append(v4, a)
		} else {
			v6 = append(v6, ip.Address.IP)
		}
	}
	if len(v4) == 0 {
		return nil, fmt.Errorf("cni: add %s/%s: no IPv4 address in result", ns, name)
	}
	return append(v4, v6...), nil
}

// del runs the chain's DEL; it is idempotent, as CNI requires.
func (n *cniNetwork) del(ctx context.Context, netnsPath, ns, name, uid string) error {
	cni, list, err := n.load()
	if err != nil {
		return err
	}
	if err := cni.DelNetworkList(ctx, list, runtimeConf(n.nodeViewPath(netnsPath), ns, name, uid)); err != nil {
		return fmt.Errorf("cni: del %s/%s: %w", ns, name, err)
	}
	return nil
}

// nodeViewPath turns the host path of a pod's namespace into the node's view of it
// (/var/run/netns/<name>), as a kubelet passes it to CNI plugins.
func (n *cniNetwork) nodeViewPath(hostPath string) string {
	if filepath.Dir(hostPath) == n.node.netnsDir() {
		return filepath.Join(HostNetNS, filepath.Base(hostPath))
	}
	return hostPath
}

// nodeExec runs CNI plugins through the pod shim: in the node's network namespace and with the
// node's view of the node-scoped paths, in the node's cgroup.
type nodeExec struct {
	node                  *Node
	invoke.RawExec        // FindInPath
	version.PluginDecoder // Decode
}

func (e *nodeExec) ExecPlugin(ctx context.Context, pluginPath string, stdinData []byte, environ []string) ([]byte, error) {
	n := e.node
	spec := podshim.Spec{NetNSPath: n.NetNS.Path(), Mounts: n.nodeView(), Argv: []string{pluginPath}, Env: environ}
	b, err := json.Marshal(spec)
	if err != nil {
		return nil, err
	}
	f, err := os.CreateTemp(n.StateDir, "cni-exec-*.json")
	if err != nil {
		return nil, err
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(b); err != nil {
		f.Close()
		return nil, err
	}
	f.Close()
	cg, err := os.Open(n.CgroupDir)
	if err != nil {
		return nil, err
	}
	defer cg.Close()
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, n.cluster.shim, f.Name())
	cmd.Stdin, cmd.Stdout, cmd.Stderr = bytes.NewReader(stdinData), &stdout, &stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(cg.Fd())}
	if err := cmd.Run(); err != nil {
		// A plugin reports errors as JSON on stdout; pass it on as libcni's RawExec does.
		if stdout.Len() > 0 {
			return nil, pluginError(stdout.Bytes(), stderr.Bytes())
		}
		return nil, fmt.Errorf("%s: %w: %s", filepath.Base(pluginPath), err, stderr.Bytes())
	}
	return stdout.Bytes(), nil
}

// pluginError decodes a CNI error result.
func pluginError(stdout, stderr []byte) error {
	var e struct {
		Code    uint   `json:"code"`
		Msg     string `json:"msg"`
		Details string `json:"details"`
	}
	if err := json.Unmarshal(stdout, &e); err != nil || e.Msg == "" {
		return fmt.Errorf("plugin failed: %s %s", stdout, stderr)
	}
	return fmt.Errorf("plugin failed (code %d): %s %s", e.Code, e.Msg, e.Details)
}
