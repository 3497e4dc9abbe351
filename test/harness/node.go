package harness

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/ptr"

	"github.com/weftmesh/weft/test/harness/podshim"
)

// Address plan; see the package documentation.
var (
	underlayCIDR = netip("192.0.2.0/24")
	clusterCIDR  = netip("198.18.0.0/16")
	serviceCIDR  = netip("198.19.0.0/16")
	// APIServerVIP is where pods and node processes reach the apiserver, inside every node.
	APIServerVIP = net.ParseIP("203.0.113.1").To4()
	// ClusterDNS is the ClusterIP of the kube-dns Service.
	ClusterDNS = net.ParseIP("198.19.0.10").To4()
)

const (
	apiServerVIPPort = 6443
	clusterDomain    = "cluster.local"
)

func netip(s string) *net.IPNet {
	_, n, err := net.ParseCIDR(s)
	if err != nil {
		panic(err)
	}
	return n
}

// Node is one harness node: a network namespace on the underlay with its own node IP, pod CIDR,
// cgroup, bpffs pin directory, kube-proxy and kubelet.
type Node struct {
	Name      string
	IP        net.IP     // underlay address
	IP6       net.IP     // underlay IPv6 address
	PodCIDR   *net.IPNet // this node's pod addresses
	PodCIDR6  *net.IPNet // this node's pod IPv6 addresses
	NetNS     NetNS
	CgroupDir string // cgroup v2 subtree of everything that runs on the node
	PinDir    string // bpffs directory for the node's pins
	StateDir  string

	index   int
	cluster *Cluster
	cni     *cniNetwork
	kubelet *kubelet
	proxy   *process
	fwd     net.Listener
	wg      sync.WaitGroup
}

func nodeName(i int) string { return "node-" + strconv.Itoa(i) }

// newNode creates node i (1-based) and plugs it into the underlay.
func (c *Cluster) newNode(ctx context.Context, i int) (*Node, error) {
	n := &Node{
		Name:      nodeName(i),
		IP:        net.IPv4(192, 0, 2, byte(10+i)).To4(),
		PodCIDR:   &net.IPNet{IP: net.IPv4(198, 18, byte(i), 0).To4(), Mask: net.CIDRMask(24, 32)},
		IP6:       net.ParseIP(fmt.Sprintf("2001:db8:2::%d", 10+i)),
		PodCIDR6:  &net.IPNet{IP: net.ParseIP(fmt.Sprintf("2001:db8:18:%d::", i)), Mask: net.CIDRMask(64, 128)},
		CgroupDir: filepath.Join(c.cgroupDir, nodeName(i)),
		PinDir:    filepath.Join(c.bpffs, runPrefix(c.RunID), nodeName(i)),
		StateDir:  filepath.Join(c.Dir, "nodes", nodeName(i)),
		index:     i,
		cluster:   c,
	}
	for _, d := range []string{n.CgroupDir, n.PinDir, n.StateDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("node %s: %w", n.Name, err)
		}
	}
	ns, err := newNetNS(runPrefix(c.RunID) + "-" + n.Name)
	if err != nil {
		return nil, err
	}
	n.NetNS = ns
	if err := n.plugUnderlay(); err != nil {
		return nil, err
	}
	if err := n.NetNS.Do(n.configureNetwork); err != nil {
		return nil, fmt.Errorf("node %s: %w", n.Name, err)
	}
	if err := n.makeHostDirs(); err != nil {
		return nil, fmt.Errorf("node %s: %w", n.Name, err)
	}
	n.cni, err = newCNINetwork(n, c.opts.ChainedCNIPlugins)
	if err != nil {
		return nil, err
	}
	if err := n.startAPIServerForwarder(); err != nil {
		return nil, err
	}
	return n, nil
}

// plugUnderlay connects the node to the underlay bridge with a veth pair (eth0 in the node).
func (n *Node) plugUnderlay() error {
	nodeNS, err := netns.GetFromPath(n.NetNS.Path())
	if err != nil {
		return fmt.Errorf("node %s: %w", n.Name, err)
	}
	defer nodeNS.Close()
	return n.cluster.underlay.Do(func() error {
		br, err := netlink.LinkByName("br0")
		if err != nil {
			return fmt.Errorf("underlay: %w", err)
		}
		veth := &netlink.Veth{
			LinkAttrs:     netlink.LinkAttrs{Name: "n" + strconv.Itoa(n.index), MasterIndex: br.Attrs().Index},
			PeerName:      "eth0",
			PeerNamespace: netlink.NsFd(int(nodeNS)),
		}
		if err := netlink.LinkAdd(veth); err != nil {
			return fmt.Errorf("node %s: veth: %w", n.Name, err)
		}
		return setLinkUp(veth.Name)
	})
}

// configureNetwork runs inside the node namespace: addresses, forwarding, the apiserver VIP.
func (n *Node) configureNetwork() error {
	ones, _ := underlayCIDR.Mask.Size()
	if err := addAddr("eth0", fmt.Sprintf("%s/%d", n.IP, ones)); err != nil {
		return err
	}
	if err := addAddrNoDAD("eth0", n.IP6.String()+"/64"); err != nil {
		return err
	}
	if err := setLinkUp("eth0"); err != nil {
		return err
	}
	if err := addAddr("lo", APIServerVIP.String()+"/32"); err != nil {
		return err
	}
	// Host-network processes (the node agent) reach ClusterIPs as on a real node, whose default
	// route covers the service CIDR: the route only has to exist, kube-proxy's DNAT re-routes.
	eth0, err := netlink.LinkByName("eth0")
	if err != nil {
		return err
	}
	if err := netlink.RouteReplace(&netlink.Route{LinkIndex: eth0.Attrs().Index, Dst: serviceCIDR, Scope: netlink.SCOPE_LINK}); err != nil {
		return fmt.Errorf("route %s: %w", serviceCIDR, err)
	}
	for _, s := range [][2]string{
		{"net/ipv4/ip_forward", "1"},
		{"net/ipv6/conf/all/forwarding", "1"},
		{"net/ipv6/conf/default/accept_dad", "0"}, // cni0's gateway address usable at once
		{"net/ipv4/conf/all/rp_filter", "0"},
		// Service traffic between two pods of one bridge must pass through iptables, as on a
		// kubelet node with br_netfilter.
		{"net/bridge/bridge-nf-call-iptables", "1"},
	} {
		if err := writeSysctl(s[0], s[1]); err != nil {
			return err
		}
	}
	return nil
}

// routeTo adds the route to other's pod CIDR through other's node IP.
func (n *Node) routeTo(other *Node) error {
	return n.NetNS.Do(func() error {
		if err := addRoute(other.PodCIDR.String(), other.IP); err != nil {
			return err
		}
		return addRoute(other.PodCIDR6.String(), other.IP6)
	})
}

// startAPIServerForwarder listens on APIServerVIP:6443 inside the node and forwards every
// connection to the apiserver on the host's loopback, so pods and node processes reach the
// control plane as they would in a cluster. TLS passes through untouched.
func (n *Node) startAPIServerForwarder() error {
	ln, err := n.NetNS.Listen("tcp", net.JoinHostPort(APIServerVIP.String(), strconv.Itoa(apiServerVIPPort)))
	if err != nil {
		return fmt.Errorf("node %s: apiserver forwarder: %w", n.Name, err)
	}
	n.fwd = ln
	target := net.JoinHostPort("127.0.0.1", strconv.Itoa(n.cluster.ControlPlane.APIServerPort))
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go forward(c, target)
		}
	}()
	return nil
}

// forward copies between c and a new connection to target until either side closes.
func forward(c net.Conn, target string) {
	defer c.Close()
	up, err := net.DialTimeout("tcp", target, 5*time.Second)
	if err != nil {
		return
	}
	defer up.Close()
	done := make(chan struct{}, 2)
	cp := func(dst, src net.Conn) {
		_, _ = io.Copy(dst, src)
		if tc, ok := dst.(*net.TCPConn); ok {
			_ = tc.CloseWrite()
		}
		done <- struct{}{}
	}
	go cp(up, c)
	go cp(c, up)
	<-done
	<-done
}

// register creates the Node object and keeps it Ready: status now, and a Lease renewed every 10 s
// (the node lifecycle controller marks a node whose lease expires NotReady).
func (n *Node) register(ctx context.Context) error {
	cs := n.cluster.Client
	node := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{
			Name: n.Name,
			Labels: map[string]string{
				"kubernetes.io/hostname": n.Name,
				"kubernetes.io/os":       "linux",
				"kubernetes.io/arch":     "amd64",
				"weft.dev/harness-run":   n.cluster.RunID,
			},
		},
		Spec: corev1.NodeSpec{PodCIDR: n.PodCIDR.String(), PodCIDRs: []string{n.PodCIDR.String(), n.PodCIDR6.String()}},
	}
	if _, err := cs.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("node %s: register: %w", n.Name, err)
	}
	if err := n.postStatus(ctx); err != nil {
		return err
	}
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		n.heartbeat(ctx)
	}()
	return nil
}

// postStatus writes the node's Ready status, retrying when a controller changed the Node meanwhile.
func (n *Node) postStatus(ctx context.Context) error {
	err := retry.RetryOnConflict(retry.DefaultBackoff, func() error {
		node, err := n.cluster.Client.CoreV1().Nodes().Get(ctx, n.Name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		return n.updateStatus(ctx, node)
	})
	if err != nil {
		return fmt.Errorf("node %s: status: %w", n.Name, err)
	}
	return nil
}

func (n *Node) updateStatus(ctx context.Context, node *corev1.Node) error {
	now := metav1.Now()
	node.Status = corev1.NodeStatus{
		Capacity:    n.capacity(),
		Allocatable: n.capacity(),
		Addresses: []corev1.NodeAddress{
			{Type: corev1.NodeInternalIP, Address: n.IP.String()},
			{Type: corev1.NodeHostName, Address: n.Name},
		},
		Conditions: []corev1.NodeCondition{{
			Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "KubeletReady",
			Message: "weft harness kubelet is posting ready status", LastHeartbeatTime: now, LastTransitionTime: now,
		}},
		NodeInfo: corev1.NodeSystemInfo{
			KubeletVersion: "v1.35.4", OperatingSystem: "linux", Architecture: "amd64",
			ContainerRuntimeVersion: "weft-harness://1",
		},
	}
	_, err := n.cluster.Client.CoreV1().Nodes().UpdateStatus(ctx, node, metav1.UpdateOptions{})
	return err
}

func (n *Node) capacity() corev1.ResourceList {
	return corev1.ResourceList{
		corev1.ResourceCPU:    resource.MustParse("8"),
		corev1.ResourceMemory: resource.MustParse("16Gi"),
		corev1.ResourcePods:   resource.MustParse("110"),
	}
}

// heartbeat renews the node's Lease and refreshes its Ready condition until ctx ends.
func (n *Node) heartbeat(ctx context.Context) {
	leases := n.cluster.Client.CoordinationV1().Leases(corev1.NamespaceNodeLease)
	t := time.NewTicker(10 * time.Second)
	defer t.Stop()
	for beat := 0; ; beat++ {
		now := metav1.NewMicroTime(time.Now())
		lease, err := leases.Get(ctx, n.Name, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
			_, err = leases.Create(ctx, &coordinationv1.Lease{
				ObjectMeta: metav1.ObjectMeta{Name: n.Name},
				Spec: coordinationv1.LeaseSpec{
					HolderIdentity: ptr.To(n.Name), LeaseDurationSeconds: ptr.To[int32](40), RenewTime: &now,
				},
			}, metav1.CreateOptions{})
		case err == nil:
			lease.Spec.RenewTime = &now
			_, err = leases.Update(ctx, lease, metav1.UpdateOptions{})
		}
		if err != nil && ctx.Err() == nil {
			n.cluster.log.Warn("node lease", "node", n.Name, "err", err)
		}
		if beat%4 == 3 { // every 40 s, as a kubelet's node status update
			_ = n.postStatus(ctx)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// startKubeProxy runs the real kube-proxy (iptables mode) inside the node, in the node's cgroup.
func (n *Node) startKubeProxy() error {
	kubeconfig := filepath.Join(n.StateDir, "kube-proxy.kubeconfig")
	if err := os.WriteFile(kubeconfig, n.cluster.nodeKubeconfig, 0o600); err != nil {
		return fmt.Errorf("node %s: %w", n.Name, err)
	}
	cg := filepath.Join(n.CgroupDir, "kube-proxy")
	if err := os.MkdirAll(cg, 0o755); err != nil {
		return fmt.Errorf("node %s: %w", n.Name, err)
	}
	spec := podshim.Spec{
		NetNSPath: n.NetNS.Path(),
		Hostname:  n.Name,
		Argv: []string{
			n.cluster.Tools.KubeProxy,
			"--kubeconfig=" + kubeconfig,
			"--hostname-override=" + n.Name,
			"--proxy-mode=iptables",
			"--iptables-min-sync-period=100ms", // tests see new endpoints quickly
			"--cluster-cidr=" + clusterCIDR.String(),
			"--bind-address=" + n.IP.String(),
			"--healthz-bind-address=127.0.0.1:10256",
			"--metrics-bind-address=127.0.0.1:10249",
			// conntrack tables are per host, not per namespace: leave their sizes alone.
			"--conntrack-max-per-core=0",
			"--conntrack-tcp-timeout-established=0",
			"--conntrack-tcp-timeout-close-wait=0",
			"--v=1",
		},
		Env: []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"},
	}
	p, err := startProcess(n.cluster.shim, spec, filepath.Join(n.StateDir, "kube-proxy.json"), cg, filepath.Join(n.StateDir, "kube-proxy.log"))
	if err != nil {
		return fmt.Errorf("node %s: kube-proxy: %w", n.Name, err)
	}
	n.proxy = p
	return nil
}

// stop ends the node's processes; the namespace itself goes with the run's cleanup.
func (n *Node) stop() {
	if n.kubelet != nil {
		n.kubelet.stop()
	}
	if n.proxy != nil {
		n.proxy.signal(9)
		<-n.proxy.done
	}
	if n.fwd != nil {
		n.fwd.Close()
	}
	n.wg.Wait()
}

// Logger returns the cluster logger with the node's name.
func (n *Node) logger() *slog.Logger { return n.cluster.log.With("node", n.Name) }
