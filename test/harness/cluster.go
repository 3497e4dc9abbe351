package harness

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/weftmesh/weft/test/controlplane"
	"github.com/weftmesh/weft/test/privileged"
)

// Options configure a harness cluster. The zero value is a two-node cluster with cluster DNS.
type Options struct {
	Nodes    int          // number of nodes (default 2, at most 9)
	RepoRoot string       // found from the working directory when empty
	Logger   *slog.Logger // harness logs (default: discard)
	Progress io.Writer    // one line per step with elapsed time (default: discard)
	// ChainedCNIPlugins are appended to every node's CNI chain after bridge + host-local.
	ChainedCNIPlugins []map[string]any
	// Images adds or overrides entries of the image table (image name → binary path).
	Images Images
	// NoDNS skips deploying CoreDNS.
	NoDNS bool
}

// Cluster is a running harness cluster.
type Cluster struct {
	RunID        string
	Dir          string // state directory of the run
	ControlPlane *controlplane.ControlPlane
	Client       kubernetes.Interface
	Nodes        []*Node
	// Kubeconfig is the admin kubeconfig on the host (server on 127.0.0.1).
	Kubeconfig string
	Tools      controlplane.Binaries // paths of the control-plane binaries, CoreDNS and fortio

	opts           Options
	log            *slog.Logger
	progress       *Progress
	binDir         string
	shim           string
	images         Images
	cgroupDir      string
	bpffs          string
	underlay       NetNS
	nodeKubeconfig []byte // credentials with the server at the node-side apiserver VIP
	cancel         context.CancelFunc
}

// Start builds what is missing, starts the control plane and the nodes, deploys cluster DNS and
// returns when every node is Ready and DNS answers. On error everything created is removed.
func Start(ctx context.Context, opts Options) (c *Cluster, err error) {
	if opts.Nodes == 0 {
		opts.Nodes = 2
	}
	if opts.Nodes < 1 || opts.Nodes > 9 {
		return nil, fmt.Errorf("harness: %d nodes: between 1 and 9 are supported", opts.Nodes)
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	// Runs whose owner died (a crashed test) are removed first.
	if _, err := Clean("", false); err != nil {
		opts.Logger.Warn("cleaning stale harness runs", "err", err)
	}
	runID := newRunID()
	c = &Cluster{
		RunID:    runID,
		Dir:      filepath.Join(stateRoot, runID),
		opts:     opts,
		log:      opts.Logger.With("run", runID),
		progress: NewProgress(opts.Progress),
	}
	if err := createRunDir(c.Dir); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			c.Close()
			c = nil
		}
	}()
	runCtx, cancel := context.WithCancel(context.Background())
	c.cancel = cancel
	if err := c.prepareHost(ctx); err != nil {
		return c, err
	}
	c.progress.Step("starting control plane (etcd, kube-apiserver, kube-controller-manager, kube-scheduler)")
	cp, err := controlplane.Start(ctx, controlplane.Config{
		Binaries:    c.Tools,
		Dir:         filepath.Join(c.Dir, "controlplane"),
		ServiceCIDR: serviceCIDR.String(),
		ClusterCIDR: clusterCIDR.String(),
		ExtraSANs:   []net.IP{APIServerVIP},
		CgroupDir:   filepath.Join(c.cgroupDir, "controlplane"),
		Logger:      c.log,
	})
	if err != nil {
		return c, fmt.Errorf("harness: %w", err)
	}
	c.ControlPlane, c.Kubeconfig = cp, cp.Kubeconfig
	if c.Client, err = kubernetes.NewForConfig(cp.RESTConfig); err != nil {
		return c, fmt.Errorf("harness: %w", err)
	}
	server := fmt.Sprintf("https://%s:%d", APIServerVIP, apiServerVIPPort)
	if c.nodeKubeconfig, err = cp.KubeconfigWithServer(server); err != nil {
		return c, fmt.Errorf("harness: %w", err)
	}
	if err := c.startNodes(ctx, runCtx); err != nil {
		return c, err
	}
	if err := c.publishAPIServerEndpoints(ctx); err != nil {
		return c, err
	}
	if !opts.NoDNS {
		c.progress.Step("deploying cluster DNS (CoreDNS)")
		if err := c.deployDNS(ctx); err != nil {
			return c, err
		}
	}
	c.progress.Step("cluster %s ready: %d nodes, kubeconfig %s", runID, len(c.Nodes), c.Kubeconfig)
	return c, nil
}

// prepareHost checks the kernel, builds missing binaries and creates the run's cgroup, bpffs
// directory and underlay.
func (c *Cluster) prepareHost(ctx context.Context) error {
	if err := privileged.Check(); err != nil {
		return err
	}
	root := c.opts.RepoRoot
	if root == "" {
		var err error
		if root, err = controlplane.RepoRoot(); err != nil {
			return fmt.Errorf("harness: %w", err)
		}
	}
	c.binDir = filepath.Join(root, "bin")
	c.shim = filepath.Join(c.binDir, "weft-podshim")
	c.progress.Step("building test binaries into %s", c.binDir)
	if err := buildRepoBinaries(ctx, root, c.binDir); err != nil {
		return err
	}
	cache := os.Getenv("WEFT_TOOLS_CACHE")
	if cache == "" {
		cache = filepath.Join(root, ".cache", "tools")
	}
	tools, err := controlplane.Ensure(ctx, cache, c.progress)
	if err != nil {
		return fmt.Errorf("harness: %w", err)
	}
	c.Tools = tools
	c.images = defaultImages(c.binDir, tools.CoreDNS, tools.Fortio)
	for k, v := range c.opts.Images {
		c.images[k] = v
	}
	cg, err := privileged.Cgroup2Root()
	if err != nil {
		return fmt.Errorf("harness: %w", err)
	}
	c.cgroupDir = filepath.Join(cg, runPrefix(c.RunID))
	if err := os.MkdirAll(filepath.Join(c.cgroupDir, "controlplane"), 0o755); err != nil {
		return fmt.Errorf("harness: cgroup: %w", err)
	}
	if c.bpffs, err = privileged.BPFFSRoot(); err != nil {
		return fmt.Errorf("harness: %w", err)
	}
	c.progress.Step("creating underlay bridge")
	if c.underlay, err = newNetNS(runPrefix(c.RunID) + "-underlay"); err != nil {
		return err
	}
	return c.underlay.Do(func() error { return addBridge("br0") })
}

// buildRepoBinaries builds Weft's binaries, the test apps and the pod shim with the go command
// (fast when cached).
func buildRepoBinaries(ctx context.Context, root, binDir string) error {
	cmd := exec.CommandContext(ctx, "go", "build", "-o", binDir+"/",
		"./cmd/...", "./test/apps/echo", "./test/apps/client", "./test/apps/bulk", "./test/harness/cmd/weft-podshim")
	cmd.Dir = root
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("harness: go build: %w\n%s", err, out)
	}
	return nil
}

// startNodes creates the nodes, routes between them, registers them and starts their
// kube-proxy and kubelet.
func (c *Cluster) startNodes(ctx, runCtx context.Context) error {
	for i := 1; i <= c.opts.Nodes; i++ {
		c.progress.Step("creating %s (netns, underlay, CNI, cgroup, bpffs)", nodeName(i))
		n, err := c.newNode(ctx, i)
		if n != nil {
			c.Nodes = append(c.Nodes, n)
		}
		if err != nil {
			return err
		}
	}
	for _, n := range c.Nodes {
		for _, o := range c.Nodes {
			if n != o {
				if err := n.routeTo(o); err != nil {
					return fmt.Errorf("node %s: %w", n.Name, err)
				}
			}
		}
	}
	c.progress.Step("registering nodes, starting kube-proxy and kubelets")
	for _, n := range c.Nodes {
		if err := n.register(runCtx); err != nil {
			return err
		}
		if err := n.startKubeProxy(); err != nil {
			return err
		}
		if err := n.startKubelet(runCtx); err != nil {
			return err
		}
	}
	return nil
}

// publishAPIServerEndpoints points the kubernetes Service at the apiserver VIP every node serves
// (the apiserver runs with --endpoint-reconciler-type=none).
func (c *Cluster) publishAPIServerEndpoints(ctx context.Context) error {
	slice := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{
			Name: "kubernetes", Namespace: corev1.NamespaceDefault,
			Labels: map[string]string{
				discoveryv1.LabelServiceName: "kubernetes",
				discoveryv1.LabelManagedBy:   "harness.weft.dev",
			},
		},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{APIServerVIP.String()}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)}}},
		Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("https"), Port: ptr.To[int32](apiServerVIPPort), Protocol: ptr.To(corev1.ProtocolTCP)}},
	}
	if _, err := c.Client.DiscoveryV1().EndpointSlices(corev1.NamespaceDefault).Create(ctx, slice, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("harness: kubernetes endpoints: %w", err)
	}
	return nil
}

// Underlay is the namespace of the bridge that connects the nodes (where a capture sees what
// crosses between them).
func (c *Cluster) Underlay() NetNS { return c.underlay }

// Node returns the node with the given name, or nil.
func (c *Cluster) Node(name string) *Node {
	for _, n := range c.Nodes {
		if n.Name == name {
			return n
		}
	}
	return nil
}

// Close stops everything and removes every trace of the run. It is safe to call more than once.
func (c *Cluster) Close() error {
	if c == nil {
		return nil
	}
	if c.cancel != nil {
		c.cancel()
	}
	var errs []error
	for _, n := range c.Nodes {
		n.stop()
	}
	c.Nodes = nil
	if c.ControlPlane != nil {
		if err := c.ControlPlane.Stop(); err != nil {
			errs = append(errs, err)
		}
		c.ControlPlane = nil
	}
	if _, err := cleanRun(c.RunID); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// WaitFor polls cond every 100 ms until it returns true, an error, or timeout passes.
func WaitFor(ctx context.Context, timeout time.Duration, what string, cond func(ctx context.Context) (bool, error)) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var last error
	for {
		ok, err := cond(ctx)
		if ok && err == nil {
			return nil
		}
		if err != nil {
			last = err
		}
		select {
		case <-ctx.Done():
			if last != nil {
				return fmt.Errorf("waiting for %s: %w (last error: %v)", what, ctx.Err(), last)
			}
			return fmt.Errorf("waiting for %s: %w", what, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}
