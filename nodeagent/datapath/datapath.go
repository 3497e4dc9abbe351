package datapath

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"sync"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/features"
	"github.com/cilium/ebpf/link"
)

// Defaults of Config; they are the values Istio's in-pod mode uses where it has one.
const (
	DefaultAgentMark     uint32 = 0x539  // SO_MARK of the agent's sockets in pods (Istio: 1337)
	DefaultAgentMarkMask uint32 = 0xfff  // bits of SO_MARK compared with AgentMark
	DefaultUpstreamMark  uint32 = 0x1539 // SO_MARK of the agent's transparent upstream sockets
	DefaultOutboundPort  uint16 = 15001  // the agent's outbound listener, on 127.0.0.1 and ::1
	DefaultHBONEPort     uint16 = 15008  // the agent's HBONE listener, never steered
	DefaultReplyTable           = 1337   // routing table of the reply route in pods
)

// ErrNoOriginalDst is returned by OriginalDst when no redirected connection matches.
var ErrNoOriginalDst = errors.New("no original destination")

// ErrClosed is returned by methods of a Datapath or Pod whose handles were released.
var ErrClosed = errors.New("datapath closed")

// Config is the node-wide configuration of the data path. Zero values take the defaults.
type Config struct {
	// CgroupPath is the node's cgroup v2 directory; pods' cgroups are below it.
	CgroupPath string
	// PinDir is a directory on a bpffs where maps and links are pinned, so that a restarted agent
	// finds them, and the attachments, again.
	PinDir string
	// AgentMark and AgentMarkMask: a socket whose SO_MARK&AgentMarkMask equals AgentMark is the
	// agent's own and is never captured.
	AgentMark, AgentMarkMask uint32
	// UpstreamMark is the SO_MARK of the agent's upstream connections to a local application
	// (TransparentControl). It must count as an agent mark and differ from AgentMark.
	UpstreamMark uint32
	// OutboundPort is the port of the agent's outbound listeners in every pod.
	OutboundPort uint16
	// HBONEPort is the port the agent serves HBONE on in every pod; inbound steering skips it.
	HBONEPort uint16
	// ReplyTable is the routing table, inside each pod's netns, of the route that returns the
	// application's replies to the agent's transparent sockets.
	ReplyTable int
}

func (c Config) withDefaults() (Config, error) {
	if c.CgroupPath == "" || c.PinDir == "" {
		return c, errors.New("datapath: config needs CgroupPath and PinDir")
	}
	if c.AgentMark == 0 {
		c.AgentMark = DefaultAgentMark
	}
	if c.AgentMarkMask == 0 {
		c.AgentMarkMask = DefaultAgentMarkMask
	}
	if c.UpstreamMark == 0 {
		c.UpstreamMark = DefaultUpstreamMark
	}
	if c.OutboundPort == 0 {
		c.OutboundPort = DefaultOutboundPort
	}
	if c.HBONEPort == 0 {
		c.HBONEPort = DefaultHBONEPort
	}
	if c.ReplyTable == 0 {
		c.ReplyTable = DefaultReplyTable
	}
	switch {
	case c.AgentMark&^c.AgentMarkMask != 0:
		return c, fmt.Errorf("datapath: agent mark %#x has bits outside its mask %#x", c.AgentMark, c.AgentMarkMask)
	case c.UpstreamMark&c.AgentMarkMask != c.AgentMark:
		return c, fmt.Errorf("datapath: upstream mark %#x is not an agent mark (%#x/%#x)", c.UpstreamMark, c.AgentMark, c.AgentMarkMask)
	case c.UpstreamMark == c.AgentMark:
		return c, fmt.Errorf("datapath: upstream mark must differ from the agent mark %#x", c.AgentMark)
	}
	return c, nil
}

// Datapath is the loaded data path of one node: the outbound programs attached to the node's
// cgroup, the shared maps, and the pods enrolled through this handle. Its methods are safe for
// concurrent use.
type Datapath struct {
	cfg         Config
	conn        connectObjects
	inboundSpec *ebpf.CollectionSpec
	inbound     inboundMaps
	links       []link.Link
	btfCache    *btf.Cache

	mu     sync.Mutex
	pods   map[uint64]*Pod
	closed bool
}

// Pin names under Config.PinDir. Maps are pinned by their own names (LIBBPF_PIN_BY_NAME).
const (
	pinConnect4 = "connect4_link"
	pinConnect6 = "connect6_link"
	pinSockops  = "sockops_link"
	pinPods     = "pods" // directory: one sk_lookup link per pod, named by netns cookie
)

// Attach loads the programs, pins their maps under cfg.PinDir and attaches connect4, connect6
// and sockops to cfg.CgroupPath with pinned links. When links are already pinned there (an agent
// restart), they are kept and atomically switched to the freshly loaded programs: the hooks are
// never detached. Maps already pinned are reused with their contents.
func Attach(cfg Config) (*Datapath, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	if err := probeKernel(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Join(cfg.PinDir, pinPods), 0o700); err != nil {
		return nil, fmt.Errorf("datapath: pin dir: %w", err)
	}
	d := &Datapath{cfg: cfg, pods: make(map[uint64]*Pod), btfCache: btf.NewCache()}

	spec, err := loadConnect()
	if err != nil {
		return nil, fmt.Errorf("datapath: %w", err)
	}
	if err := setVariables(spec, map[string]any{
		"agent_mark":      cfg.AgentMark,
		"agent_mark_mask": cfg.AgentMarkMask,
		"upstream_mark":   cfg.UpstreamMark,
		"outbound_port":   cfg.OutboundPort,
	}); err != nil {
		return nil, err
	}
	opts := &ebpf.CollectionOptions{Maps: ebpf.MapOptions{PinPath: cfg.PinDir}, Cache: d.btfCache}
	if err := spec.LoadAndAssign(&d.conn, opts); err != nil {
		return nil, fmt.Errorf("datapath: load connect: %w", err)
	}

	if d.inboundSpec, err = loadInbound(); err != nil {
		d.conn.Close()
		return nil, fmt.Errorf("datapath: %w", err)
	}
	iopts := &ebpf.CollectionOptions{
		Maps:            ebpf.MapOptions{PinPath: cfg.PinDir},
		MapReplacements: map[string]*ebpf.Map{"enrolled": d.conn.Enrolled, "stats": d.conn.Stats, "upstream": d.conn.Upstream},
		Cache:           d.btfCache,
	}
	if err := d.inboundSpec.LoadAndAssign(&d.inbound, iopts); err != nil {
		d.conn.Close()
		return nil, fmt.Errorf("datapath: load inbound maps: %w", err)
	}

	for _, a := range []struct {
		pin  string
		at   ebpf.AttachType
		prog *ebpf.Program
	}{
		{pinConnect4, ebpf.AttachCGroupInet4Connect, d.conn.WeftConnect4},
		{pinConnect6, ebpf.AttachCGroupInet6Connect, d.conn.WeftConnect6},
		{pinSockops, ebpf.AttachCGroupSockOps, d.conn.WeftSockops},
	} {
		l, err := attachCgroup(cfg.CgroupPath, filepath.Join(cfg.PinDir, a.pin), a.at, a.prog)
		if err != nil {
			d.Close()
			return nil, err
		}
		d.links = append(d.links, l)
	}
	return d, nil
}

// attachCgroup reuses the link pinned at pin, switching it to prog, or attaches prog to the
// cgroup and pins the new link.
func attachCgroup(cgroup, pin string, at ebpf.AttachType, prog *ebpf.Program) (link.Link, error) {
	l, err := link.LoadPinnedLink(pin, nil)
	switch {
	case err == nil:
		if err := l.Update(prog); err != nil {
			l.Close()
			return nil, fmt.Errorf("datapath: update pinned %s: %w", filepath.Base(pin), err)
		}
		return l, nil
	case !errors.Is(err, os.ErrNotExist):
		return nil, fmt.Errorf("datapath: pinned %s: %w", filepath.Base(pin), err)
	}
	l, err = link.AttachCgroup(link.CgroupOptions{Path: cgroup, Attach: at, Program: prog})
	if err != nil {
		return nil, fmt.Errorf("datapath: attach %v to %s: %w", at, cgroup, err)
	}
	if err := l.Pin(pin); err != nil {
		l.Close()
		return nil, fmt.Errorf("datapath: pin %s: %w", filepath.Base(pin), err)
	}
	return l, nil
}

func setVariables(spec *ebpf.CollectionSpec, vars map[string]any) error {
	for name, v := range vars {
		vs, ok := spec.Variables[name]
		if !ok {
			return fmt.Errorf("datapath: object has no variable %s", name)
		}
		if err := vs.Set(v); err != nil {
			return fmt.Errorf("datapath: set %s: %w", name, err)
		}
	}
	return nil
}

// probeKernel checks for the kernel features the programs need beyond loading them, so that an
// old kernel fails with a clear message instead of a verifier log.
func probeKernel() error {
	for _, p := range []struct {
		what string
		err  error
	}{
		{"sk_lookup programs (Linux 5.9)", features.HaveProgramType(ebpf.SkLookup)},
		{"bpf_get_netns_cookie in sockops (Linux 5.15)", features.HaveProgramHelper(ebpf.SockOps, asm.FnGetNetnsCookie)},
		{"bpf_get_netns_cookie in cgroup/connect (Linux 5.7)", features.HaveProgramHelper(ebpf.CGroupSockAddr, asm.FnGetNetnsCookie)},
	} {
		if p.err != nil {
			return fmt.Errorf("datapath: kernel lacks %s: %w", p.what, p.err)
		}
	}
	return nil
}

// Config returns the effective configuration, defaults filled in.
func (d *Datapath) Config() Config { return d.cfg }

// OriginalDst returns the destination an application in the network namespace netnsCookie asked
// for, given the peer address of the connection the agent accepted on its outbound listener,
// and forgets it: each redirected connection is looked up once. Unknown connections give an
// error wrapping ErrNoOriginalDst. IPv4 addresses come back as IPv4, also for IPv4-mapped peers.
func (d *Datapath) OriginalDst(netnsCookie uint64, peer netip.AddrPort) (netip.AddrPort, error) {
	key := sockKey{NetnsCookie: netnsCookie, Addr: peer.Addr().As16(), Port: peer.Port()}
	var v origDst
	if err := d.conn.OrigDst.LookupAndDelete(&key, &v); err != nil {
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			err = ErrNoOriginalDst
		}
		return netip.AddrPort{}, fmt.Errorf("datapath: original destination of %v in netns %d: %w", peer, netnsCookie, err)
	}
	return netip.AddrPortFrom(netip.AddrFrom16(v.Addr).Unmap(), v.Port), nil
}

// Close releases this process's handles, those of the pods it enrolled included. Everything stays
// attached and pinned: a new Attach (and EnrollPod) picks it up again.
func (d *Datapath) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return nil
	}
	d.closed = true
	var errs []error
	for _, p := range d.pods {
		errs = append(errs, p.link.Close())
	}
	d.pods = nil
	for _, l := range d.links {
		errs = append(errs, l.Close())
	}
	errs = append(errs, d.inbound.Close(), d.conn.Close())
	return errors.Join(errs...)
}

// Detach removes the data path from the node: it unenrolls the pods enrolled through this handle
// (and forgets any other enrolled namespace), detaches the programs, unpins links and maps and
// releases the handles.
func (d *Datapath) Detach() error {
	var errs []error
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return ErrClosed
	}
	pods := make([]*Pod, 0, len(d.pods))
	for _, p := range d.pods {
		pods = append(pods, p)
	}
	d.mu.Unlock()
	for _, p := range pods {
		errs = append(errs, p.Close())
	}
	cookies, err := d.EnrolledPods()
	errs = append(errs, err)
	for _, c := range cookies {
		errs = append(errs, d.Unenroll(c))
	}
	d.mu.Lock()
	for _, l := range d.links {
		errs = append(errs, l.Unpin())
	}
	for _, m := range []*ebpf.Map{d.conn.Enrolled, d.conn.Stats, d.conn.OrigByCookie, d.conn.OrigDst, d.conn.Upstream, d.inbound.InboundSocks} {
		errs = append(errs, m.Unpin())
	}
	d.mu.Unlock()
	errs = append(errs, d.Close(), os.Remove(filepath.Join(d.cfg.PinDir, pinPods)))
	return errors.Join(errs...)
}
