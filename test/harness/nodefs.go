package harness

import (
	"os"
	"path/filepath"
	"strings"

	"github.com/weftmesh/weft/test/harness/podshim"
)

// Node-scoped host paths. On a real node these are the node's own directories; in the harness
// every node has its own copy, and a pod's hostPath volume, a CNI plugin, or a node process that
// names one of these paths gets its node's copy (bind-mounted in its private mount namespace).
// A DaemonSet such as Weft's node agent thus attaches to "/sys/fs/cgroup" (its node's cgroup
// subtree), pins under "/sys/fs/bpf", and installs a chained CNI plugin into "/opt/cni/bin" and
// "/etc/cni/net.d" exactly as it would on a real node.
const (
	HostCgroup    = "/sys/fs/cgroup"
	HostBPFFS     = "/sys/fs/bpf"
	HostCNIConf   = "/etc/cni/net.d"
	HostCNIBin    = "/opt/cni/bin"
	HostWeftRun   = "/var/run/weft"
	HostNetNS     = "/var/run/netns" // the node's pods' network namespaces, as named by CNI
	hostRunAlias  = "/run/weft"      // /var/run is /run on Debian
	cniConfigName = "10-weft-harness.conflist"
)

// hostPaths returns the node's copy of each node-scoped path.
func (n *Node) hostPaths() map[string]string {
	return map[string]string{
		HostCgroup:  n.CgroupDir,
		HostBPFFS:   n.PinDir,
		HostCNIConf: filepath.Join(n.StateDir, "cni", "net.d"),
		HostCNIBin:  filepath.Join(n.StateDir, "cni", "bin"),
		HostWeftRun: filepath.Join(n.StateDir, "run-weft"),
		HostNetNS:   n.netnsDir(),
	}
}

// HostPath returns where a node-scoped path (or a path below one) lives for this node; other
// paths are returned unchanged.
func (n *Node) HostPath(p string) string {
	p = filepath.Clean(p)
	for alias, host := range map[string]string{hostRunAlias: HostWeftRun, "/run/netns": HostNetNS} {
		if rest, ok := strings.CutPrefix(p, alias); ok && (rest == "" || rest[0] == '/') {
			p = host + rest
		}
	}
	for host, local := range n.hostPaths() {
		if p == host {
			return local
		}
		if rest, ok := strings.CutPrefix(p, host+"/"); ok {
			return filepath.Join(local, rest)
		}
	}
	return p
}

// netnsDir holds the network namespaces of the node's pods (the node's /var/run/netns).
func (n *Node) netnsDir() string { return filepath.Join(n.StateDir, "netns") }

// makeHostDirs creates the node's copies of the node-scoped directories; the netns directory is a
// shared mount, so a DaemonSet that mounts it sees namespaces created after it started.
func (n *Node) makeHostDirs() error {
	for _, d := range n.hostPaths() {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	return shareDir(n.netnsDir())
}

// nodeView is the mount list that gives a process the node's filesystem view.
func (n *Node) nodeView() []podshim.Mount {
	var ms []podshim.Mount
	for host, local := range n.hostPaths() {
		ms = append(ms, podshim.Mount{Source: local, Target: host})
	}
	return ms
}

// WriteFile writes a file of the node's filesystem (a node-scoped path is the node's copy),
// atomically: a process watching it never reads half of it.
func (n *Node) WriteFile(p string, data []byte) error { return writeAtomic(n.HostPath(p), data) }
