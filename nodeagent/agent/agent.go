// Package agent is the node agent's composition root: it attaches the datapath, keeps the state
// from its config source, enrolls the node's ambient pods (told by the CNI plugin, or found by a
// scan at start), serves them through the proxy with certificates from the identity manager, and
// installs the chained CNI plugin.
package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/weftmesh/weft/internal/identity"
	"github.com/weftmesh/weft/nodeagent/admin"
	"github.com/weftmesh/weft/nodeagent/cni"
	"github.com/weftmesh/weft/nodeagent/datapath"
	"github.com/weftmesh/weft/nodeagent/enroll"
	"github.com/weftmesh/weft/nodeagent/podnet"
	"github.com/weftmesh/weft/nodeagent/proxy"
	"github.com/weftmesh/weft/nodeagent/state"
)

// Source delivers state snapshots (the controller's xDS or a local file); apply's error is a NACK.
type Source interface {
	Run(ctx context.Context, apply func(*state.Snapshot) error) error
}

// Config configures an agent. Paths are the node's.
type Config struct {
	Node        string
	Source      Source
	CA          identity.CAClient
	TrustDomain string
	Datapath    datapath.Config // CgroupPath, PinDir, marks (the iptables capture uses the marks and ports)
	// Capture is how pods' connections reach the agent: CaptureEBPF (empty) or CaptureIPTables.
	Capture    string
	CNISocket  string   // enrollment socket (enroll.DefaultSocket)
	CNIPlugin  string   // weft-cni binary to install; empty: do not install
	CNIBinDir  string   // /opt/cni/bin
	CNIConfDir string   // /etc/cni/net.d
	NetNSDirs  []string // scanned at start, e.g. /var/run/netns
	// DescribesAllPods says that Source describes every pod of the node as soon as it is
	// scheduled (the controller does): a new pod's CNI ADD then waits for its description and
	// is refused when none comes. Without it (a local file), an undescribed pod starts
	// unenrolled.
	DescribesAllPods bool
	// CNIAddWait bounds how long a CNI ADD waits for the pod's description; zero means 5 s.
	CNIAddWait time.Duration
	Metrics    *admin.Metrics
	Logger     *slog.Logger
}

// Agent is a running node agent.
type Agent struct {
	cfg   Config
	log   *slog.Logger
	dp    *datapath.Datapath // nil with the iptables capture
	cap   capture
	store *state.Store
	certs *identity.Manager
	proxy *proxy.Proxy

	mu        sync.Mutex
	sandboxes map[netip.Addr]string // pod address → netns path, from CNI events and scans
	pods      map[string]sandbox    // "namespace/name" → sandbox, from CNI events
	unfound   map[netip.Addr]bool   // addresses a scan did not find (cleared by CNI reports)
	served    map[string]*served    // by workload UID
	ready     bool
}

// sandbox is a pod's network namespace as the CNI plugin reported it.
type sandbox struct {
	netns string
	ips   []netip.Addr
}

type served struct {
	pod   *proxy.Pod
	dp    io.Closer // *datapath.Pod or *iptables.Pod
	addrs []netip.Addr
}

// New attaches the datapath and builds the agent; Run serves.
func New(cfg Config) (*Agent, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.CNISocket == "" {
		cfg.CNISocket = enroll.DefaultSocket
	}
	if cfg.CNIAddWait <= 0 {
		cfg.CNIAddWait = 5 * time.Second
	}
	a := &Agent{cfg: cfg, log: cfg.Logger, store: &state.Store{}, sandboxes: map[netip.Addr]string{}, pods: map[string]sandbox{}, unfound: map[netip.Addr]bool{}, served: map[string]*served{}}
	c, dp, err := newCapture(cfg.Capture, cfg.Datapath, cfg.Logger)
	if err != nil {
		return nil, fmt.Errorf("agent: %w", err)
	}
	a.cap, a.dp = c, dp
	td, err := trustDomain(cfg.TrustDomain)
	if err != nil {
		c.close()
		return nil, err
	}
	if a.certs, err = identity.NewManager(cfg.CA, identity.Options{TrustDomain: td, Logger: cfg.Logger}); err != nil {
		c.close()
		return nil, fmt.Errorf("agent: %w", err)
	}
	deps := proxy.Deps{
		Node:    cfg.Node,
		Store:   a.store,
		Certs:   a.certs,
		Metrics: cfg.Metrics,
		Logger:  cfg.Logger,
	}
	c.deps(&deps)
	a.proxy, err = proxy.New(deps)
	if err != nil {
		a.certs.Close()
		c.close()
		return nil, fmt.Errorf("agent: %w", err)
	}
	return a, nil
}

// Store is the agent's state (for the admin endpoints).
func (a *Agent) Store() *state.Store { return a.store }

// Certificates is the agent's identity manager (for the admin endpoints).
func (a *Agent) Certificates() *identity.Manager { return a.certs }

// Datapath is the agent's eBPF datapath (for its counters); nil with the iptables capture.
func (a *Agent) Datapath() *datapath.Datapath { return a.dp }

// Ready reports whether the agent applied a config and re-enrolled its pods.
func (a *Agent) Ready() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if !a.ready {
		return errors.New("waiting for the first configuration")
	}
	return nil
}

// Run installs the CNI plugin, serves enrollment and the config source until ctx ends, then
// stops serving. The datapath stays attached: enrolled pods' new connections fail until an agent
// serves them again (fail closed), and nothing leaves them in plaintext.
func (a *Agent) Run(ctx context.Context) error {
	defer a.shutdown()
	if a.cfg.CNIPlugin != "" {
		err := cni.Install(a.cfg.CNIPlugin, a.cfg.CNIBinDir, a.cfg.CNIConfDir, map[string]any{"socket": a.cfg.CNISocket})
		if err != nil {
			return fmt.Errorf("agent: %w", err)
		}
	}
	errc := make(chan error, 2)
	go func() {
		srv := &enroll.Server{Path: a.cfg.CNISocket, Handle: a.onCNI, Logger: a.log}
		errc <- srv.Serve(ctx)
	}()
	go func() { errc <- a.cfg.Source.Run(ctx, a.apply) }()
	select {
	case <-ctx.Done():
		return nil
	case err := <-errc:
		return err
	}
}

func (a *Agent) shutdown() {
	a.mu.Lock()
	defer a.mu.Unlock()
	for uid, s := range a.served {
		a.proxy.StopPod(s.pod)
		delete(a.served, uid)
	}
	a.proxy.Close()
	a.certs.Close()
	a.cap.close() // handles only: capture stays on for enrolled pods
}

// apply installs a new snapshot and reconciles the served pods; an invalid snapshot is refused
// and the last good one stays in force.
func (a *Agent) apply(snap *state.Snapshot) error {
	old := a.store.Load()
	if err := a.store.Replace(snap); err != nil { // validates
		return err
	}
	a.evictChanged(old, snap)
	a.mu.Lock()
	defer a.mu.Unlock()
	first := !a.ready
	a.reconcileLocked()
	if first {
		a.forgetStaleLocked()
		a.ready = true
	}
	return nil
}

// evictChanged drops pooled HBONE connections to addresses whose workload changed.
func (a *Agent) evictChanged(old, cur *state.Snapshot) {
	for _, addr := range changedAddrs(old, cur) {
		a.proxy.Evict(addr)
	}
}

// changedAddrs returns the addresses of old whose workload in cur is gone, another one, or has
// another identity: a pooled connection to them must not be reused.
func changedAddrs(old, cur *state.Snapshot) []netip.Addr {
	var out []netip.Addr
	for _, w := range old.Workloads() {
		for _, addr := range w.Addresses {
			if nw, ok := cur.WorkloadByIP(addr); !ok || nw.UID != w.UID || nw.Identity() != w.Identity() {
				out = append(out, addr)
			}
		}
	}
	return out
}

// reconcileLocked serves every enrolled local workload whose sandbox is known and stops
// serving the others. A running pod whose sandbox the agent has not seen — it started before
// the agent, or before it was enrolled (its namespace labelled later) — is looked for by a scan
// of the node's network namespaces, matched by address; an address a scan did not find is not
// looked for again (a pod started since is reported by the CNI plugin), so updates cost no
// host-wide scan in the steady state.
func (a *Agent) reconcileLocked() {
	snap := a.store.Load()
	want := map[string]*state.Workload{}
	var missing []netip.Addr
	for _, w := range snap.LocalWorkloads(a.cfg.Node) {
		if !w.Captured() {
			continue
		}
		want[w.UID] = w
		if _, ok := a.served[w.UID]; !ok && !a.hasSandboxLocked(w) {
			for _, ip := range w.Addresses {
				if !a.unfound[ip] {
					missing = append(missing, ip)
				}
			}
		}
	}
	if len(missing) > 0 {
		found, err := enroll.Scan(missing, a.cfg.NetNSDirs...)
		if err != nil {
			a.log.Warn("netns scan", "err", err)
		}
		for _, ip := range missing {
			if path, ok := found[ip]; ok {
				a.sandboxes[ip] = path
			} else {
				a.unfound[ip] = true
			}
		}
	}
	for uid, s := range a.served {
		// A pod enrolled from its CNI report before the controller knew its addresses keeps
		// them when they arrive.
		w, ok := want[uid]
		if !ok || len(w.Addresses) > 0 && !sameAddrs(w.Addresses, s.addrs) {
			a.unenrollLocked(uid)
		}
	}
	for uid, w := range want {
		if _, ok := a.served[uid]; ok {
			continue
		}
		path, addrs := a.sandboxOfLocked(w)
		if path == "" {
			continue // not started yet: the CNI plugin will tell us
		}
		if err := a.enrollLocked(w, path, addrs); err != nil {
			a.log.Warn("enroll", "pod", w.Namespace+"/"+w.Name, "err", err)
		}
	}
}

// sandboxOfLocked returns the network namespace of w's pod and its addresses: found by
// address, or, for a pod the controller knows only by name so far, by name from its CNI report.
func (a *Agent) sandboxOfLocked(w *state.Workload) (string, []netip.Addr) {
	for _, ip := range w.Addresses {
		if p, ok := a.sandboxes[ip]; ok {
			return p, w.Addresses
		}
	}
	if len(w.Addresses) == 0 {
		if sb, ok := a.pods[w.Namespace+"/"+w.Name]; ok {
			return sb.netns, sb.ips
		}
	}
	return "", nil
}

func (a *Agent) hasSandboxLocked(w *state.Workload) bool {
	p, _ := a.sandboxOfLocked(w)
	return p != ""
}

func sameAddrs(a, b []netip.Addr) bool {
	return len(a) == len(b) && !slices.ContainsFunc(a, func(x netip.Addr) bool { return !slices.Contains(b, x) })
}

// enrollLocked opens the pod's listeners, fetches its certificate and turns capture on for the
// pod's addresses addrs.
func (a *Agent) enrollLocked(w *state.Workload, path string, addrs []netip.Addr) error {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if _, err := a.certs.Get(ctx, w.Identity()); err != nil {
		return fmt.Errorf("certificate for %s: %w", w.Identity(), err)
	}
	var cookie uint64
	var gateways []netip.Addr
	err := podnet.Do(path, func() error {
		var err error
		if cookie, err = podnet.Cookie(); err != nil {
			return err
		}
		gateways, err = defaultGateways()
		return err
	})
	if err != nil {
		return err
	}
	ipv6 := slices.ContainsFunc(addrs, netip.Addr.Is6)
	pod, err := a.proxy.OpenPod(ctx, w.UID, path, cookie, a.cap.listenConfig(), ipv6)
	if err != nil {
		return err
	}
	inbound := make([]syscall.Conn, len(pod.Inbound))
	for i, ln := range pod.Inbound {
		inbound[i] = ln.(*net.TCPListener)
	}
	dpPod, err := a.cap.enroll(datapath.PodConfig{
		NetNSPath:            path,
		IPs:                  addrs,
		Gateways:             gateways,
		ExcludeInboundPorts:  w.ExcludeInboundPorts,
		ExcludeOutboundPorts: w.ExcludeOutboundPorts,
		Inbound:              inbound,
	})
	if err != nil {
		a.proxy.StopPod(pod)
		return err
	}
	a.proxy.Serve(pod)
	a.served[w.UID] = &served{pod: pod, dp: dpPod, addrs: addrs}
	a.log.Info("enrolled", "pod", w.Namespace+"/"+w.Name, "identity", w.Identity().String(), "netns", path)
	return nil
}

// unenrollLocked turns capture off and stops serving; the pod keeps running, in plaintext.
func (a *Agent) unenrollLocked(uid string) {
	s := a.served[uid]
	delete(a.served, uid)
	if err := s.dp.Close(); err != nil {
		a.log.Warn("unenroll", "uid", uid, "err", err)
	}
	a.proxy.StopPod(s.pod)
	a.log.Info("unenrolled", "uid", uid)
}

// forgetStaleLocked unenrolls, in the datapath, pods a previous agent enrolled that this one does
// not serve (they are gone, or no longer ambient).
func (a *Agent) forgetStaleLocked() {
	cookies, err := a.cap.enrolledPods()
	if err != nil {
		a.log.Warn("enrolled pods", "err", err)
		return
	}
	live := map[uint64]bool{}
	for _, s := range a.served {
		live[s.pod.Cookie] = true
	}
	for _, c := range cookies {
		if !live[c] {
			_ = a.cap.unenroll(c)
		}
	}
}

// onCNI handles the plugin's report of a new or deleted sandbox.
func (a *Agent) onCNI(ctx context.Context, ev enroll.Event) error {
	if ev.Op == enroll.OpAdd {
		return a.cniAdd(ctx, ev)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, ip := range ev.IPs {
		delete(a.sandboxes, ip)
	}
	delete(a.pods, ev.Namespace+"/"+ev.Name)
	for uid, s := range a.served {
		if s.pod.NetNS == ev.NetNS {
			a.unenrollLocked(uid)
		}
	}
	return nil
}

// Pods of these namespaces start without waiting for the controller: the controller and the
// cluster DNS it is reached by must be able to start while it is away.
var systemNamespaces = []string{"kube-system", "weft-system"}

// cniAdd returns once the new pod is enrolled, or known not to be in the mesh, so that its
// containers start captured. The controller describes a pod to its node's agent as soon as it
// is scheduled, before it has an address; the agent enrolls it with the addresses the CNI
// plugin reports. A pod the agent cannot classify yet (the controller is away, or slow) is
// refused: the kubelet retries the sandbox, and the pod never runs outside the mesh it belongs
// to. Pods of system namespaces are exempt, and so is every pod when the source does not
// describe all pods (Config.DescribesAllPods).
func (a *Agent) cniAdd(ctx context.Context, ev enroll.Event) error {
	key := ev.Namespace + "/" + ev.Name
	a.mu.Lock()
	for _, ip := range ev.IPs {
		a.sandboxes[ip] = ev.NetNS
		delete(a.unfound, ip)
	}
	a.pods[key] = sandbox{netns: ev.NetNS, ips: ev.IPs}
	a.mu.Unlock()
	wait := a.cfg.DescribesAllPods && !slices.Contains(systemNamespaces, ev.Namespace)
	deadline := time.Now().Add(a.cfg.CNIAddWait)
	for {
		a.mu.Lock()
		if a.ready {
			if w := a.localWorkload(ev.Namespace, ev.Name, ev.IPs); w != nil {
				defer a.mu.Unlock()
				if !w.Captured() {
					return nil
				}
				a.reconcileLocked()
				if _, ok := a.served[w.UID]; !ok {
					return fmt.Errorf("pod %s could not be enrolled (see the agent's log)", key)
				}
				return nil
			}
		}
		a.mu.Unlock()
		if !wait {
			return nil // enrolled when its workload arrives, if it is in the mesh
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			a.log.Warn("pod refused: not described by the controller yet", "pod", key, "waited", a.cfg.CNIAddWait)
			return fmt.Errorf("pod %s: the controller has not described it to this node's agent yet (is the controller reachable?); the kubelet retries", key)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// localWorkload returns the workload of this node for a pod, by name or by address. a.mu is
// held.
func (a *Agent) localWorkload(namespace, name string, ips []netip.Addr) *state.Workload {
	snap := a.store.Load()
	for _, ip := range ips {
		if w, ok := snap.WorkloadByIP(ip); ok && w.Node == a.cfg.Node {
			return w
		}
	}
	for _, w := range snap.LocalWorkloads(a.cfg.Node) {
		if w.Namespace == namespace && w.Name == name {
			return w
		}
	}
	return nil
}

// defaultGateways returns the gateways of the calling thread's namespace's default routes: the
// node side of the pod's link, where kubelet probes come from.
func defaultGateways() ([]netip.Addr, error) {
	routes, err := netlink.RouteList(nil, netlink.FAMILY_ALL)
	if err != nil {
		return nil, fmt.Errorf("routes: %w", err)
	}
	var out []netip.Addr
	for _, r := range routes {
		if r.Dst != nil && !r.Dst.IP.IsUnspecified() {
			continue
		}
		if gw, ok := netip.AddrFromSlice(r.Gw); ok && gw.IsValid() {
			out = append(out, gw.Unmap())
		}
	}
	return out, nil
}
