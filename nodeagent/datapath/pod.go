package datapath

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"syscall"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/weftmesh/weft/nodeagent/podnet"
	"golang.org/x/sys/unix"
)

// PodConfig describes a pod to enroll.
type PodConfig struct {
	// NetNSPath is the pod's network namespace (/proc/<pid>/ns/net, /var/run/netns/<name>, …).
	NetNSPath string
	// IPs are the pod's addresses (at most 4); inbound connections to them are steered.
	IPs []netip.Addr
	// Gateways are the node-side addresses kubelet probes come from (at most 2, one per family);
	// connections from them reach the application directly.
	Gateways []netip.Addr
	// ExcludeInboundPorts and ExcludeOutboundPorts (at most 32 each) are never captured.
	ExcludeInboundPorts, ExcludeOutboundPorts []uint16
	// BypassInbound leaves inbound connections alone (Istio's
	// ambient.istio.io/bypass-inbound-capture); outbound connects are still captured.
	BypassInbound bool
	// Inbound are the agent's inbound (15006) listening TCP sockets inside the pod's netns:
	// *net.TCPListener or *os.File, plain TCP (not MPTCP; see AgentListenConfig). At most one IPv4 and one IPv6 socket; a dual-stack IPv6
	// socket serves IPv4 too. Required unless BypassInbound. The data path holds its own
	// reference: closing them in the agent removes them from the data path as well.
	Inbound []syscall.Conn
}

// encode validates c and returns the map value and the address families of the pod.
func (c PodConfig) encode() (podConfig, []int, error) {
	var pc podConfig
	switch {
	case c.NetNSPath == "":
		return pc, nil, errors.New("no netns path")
	case len(c.IPs) == 0:
		return pc, nil, errors.New("no pod IPs")
	case len(c.IPs) > maxPodIPs:
		return pc, nil, fmt.Errorf("%d pod IPs, at most %d", len(c.IPs), maxPodIPs)
	case len(c.Gateways) > maxProbeSources:
		return pc, nil, fmt.Errorf("%d gateways, at most %d", len(c.Gateways), maxProbeSources)
	case len(c.ExcludeInboundPorts) > maxPorts:
		return pc, nil, fmt.Errorf("%d excluded inbound ports, at most %d", len(c.ExcludeInboundPorts), maxPorts)
	case len(c.ExcludeOutboundPorts) > maxPorts:
		return pc, nil, fmt.Errorf("%d excluded outbound ports, at most %d", len(c.ExcludeOutboundPorts), maxPorts)
	case !c.BypassInbound && len(c.Inbound) == 0:
		return pc, nil, errors.New("no inbound listener")
	}
	pc.Flags = podOutbound
	if !c.BypassInbound {
		pc.Flags |= podInbound
	}
	var fams []int
	for i, ip := range c.IPs {
		if !ip.IsValid() {
			return pc, nil, fmt.Errorf("invalid pod IP %v", ip)
		}
		pc.IPs[i] = ip.As16()
		fam := unix.AF_INET6
		if ip.Unmap().Is4() {
			fam = unix.AF_INET
		}
		if !slices.Contains(fams, fam) {
			fams = append(fams, fam)
		}
	}
	for i, ip := range c.Gateways {
		if !ip.IsValid() {
			return pc, nil, fmt.Errorf("invalid gateway %v", ip)
		}
		pc.ProbeSources[i] = ip.As16()
	}
	copy(pc.ExcludeInPorts[:], c.ExcludeInboundPorts)
	copy(pc.ExcludeOutPorts[:], c.ExcludeOutboundPorts)
	pc.NIPs, pc.NProbeSources = uint8(len(c.IPs)), uint8(len(c.Gateways))
	pc.NExcludeIn, pc.NExcludeOut = uint8(len(c.ExcludeInboundPorts)), uint8(len(c.ExcludeOutboundPorts))
	return pc, fams, nil
}

// Pod is an enrolled pod.
type Pod struct {
	d         *Datapath
	cookie    uint64
	netnsPath string
	families  []int // families with reply routing installed; nil with BypassInbound
	link      link.Link
}

// NetNSCookie returns the cookie of the pod's network namespace: the key OriginalDst needs.
func (p *Pod) NetNSCookie() uint64 { return p.cookie }

// EnrollPod captures the pod's traffic: its listeners are registered, an sk_lookup program
// bound to its netns is attached (a pinned link, reused when an earlier agent left one), the
// reply routing for source-IP preservation is installed in its netns, and finally its
// configuration is written to the enrolled map, which switches capture on. Enrolling an
// enrolled pod again updates it. The agent's outbound listeners must exist before.
func (d *Datapath) EnrollPod(cfg PodConfig) (*Pod, error) {
	pc, fams, err := cfg.encode()
	if err != nil {
		return nil, fmt.Errorf("datapath: enroll %s: %w", cfg.NetNSPath, err)
	}
	var cookie uint64
	if err := podnet.Do(cfg.NetNSPath, func() (err error) {
		cookie, err = currentNetNSCookie()
		return err
	}); err != nil {
		return nil, fmt.Errorf("datapath: enroll %s: %w", cfg.NetNSPath, err)
	}

	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return nil, ErrClosed
	}
	p := d.pods[cookie]
	if p == nil {
		p = &Pod{d: d, cookie: cookie}
	}
	p.netnsPath = cfg.NetNSPath
	var prev podConfig
	wasEnrolled := d.conn.Enrolled.Lookup(cookie, &prev) == nil
	if err := d.enroll(p, cfg, pc, fams); err != nil {
		if !wasEnrolled {
			err = errors.Join(err, d.unenroll(p))
		}
		return nil, fmt.Errorf("datapath: enroll %s (netns %d): %w", cfg.NetNSPath, cookie, err)
	}
	d.pods[cookie] = p
	return p, nil
}

func (d *Datapath) enroll(p *Pod, cfg PodConfig, pc podConfig, fams []int) error {
	if err := d.putListeners(p.cookie, cfg.Inbound); err != nil {
		return err
	}
	if p.link == nil {
		l, err := d.attachSkLookup(p.cookie, cfg.NetNSPath)
		if err != nil {
			return err
		}
		p.link = l
	}
	switch {
	case !cfg.BypassInbound:
		stale := slices.DeleteFunc(slices.Clone(p.families), func(f int) bool { return slices.Contains(fams, f) })
		p.families = fams
		err := inPodNetNS(cfg.NetNSPath, p.cookie, func() error {
			return errors.Join(d.routing().removeFamilies(stale), d.routing().install(fams))
		})
		if err != nil {
			return fmt.Errorf("reply routing: %w", err)
		}
	case p.families != nil: // inbound capture switched off
		if err := inPodNetNS(cfg.NetNSPath, p.cookie, func() error { return d.routing().remove(p.families) }); err != nil {
			return fmt.Errorf("reply routing: %w", err)
		}
		p.families = nil
	}
	if err := d.conn.Enrolled.Put(p.cookie, &pc); err != nil {
		return fmt.Errorf("enrolled map: %w", err)
	}
	return nil
}

func (d *Datapath) routing() replyRouting {
	return replyRouting{mark: d.cfg.UpstreamMark, table: d.cfg.ReplyTable}
}

// putListeners checks the sockets and stores them in inbound_socks.
func (d *Datapath) putListeners(cookie uint64, socks []syscall.Conn) error {
	seen := map[uint32]bool{}
	for _, s := range socks {
		err := withSocket(s, func(si socketInfo) error {
			switch {
			case si.netnsCookie != cookie:
				return fmt.Errorf("inbound listener is in netns %d, not the pod's", si.netnsCookie)
			case si.protocol == unix.IPPROTO_MPTCP:
				return errors.New("inbound listener is MPTCP (Go's default since 1.24): use AgentListenConfig")
			case si.protocol != unix.IPPROTO_TCP || !si.listening:
				return errors.New("inbound socket is not a listening TCP socket")
			case si.family != unix.AF_INET && si.family != unix.AF_INET6:
				return fmt.Errorf("inbound socket of family %d", si.family)
			}
			key := listenerKey{NetnsCookie: cookie, Family: uint32(si.family)}
			if seen[key.Family] {
				return fmt.Errorf("two inbound listeners of family %d", si.family)
			}
			seen[key.Family] = true
			if err := d.inbound.InboundSocks.Update(&key, uint64(si.fd), ebpf.UpdateAny); err != nil {
				return fmt.Errorf("store inbound listener: %w", err)
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	for _, fam := range []uint32{unix.AF_INET, unix.AF_INET6} {
		if seen[fam] {
			continue
		}
		key := listenerKey{NetnsCookie: cookie, Family: fam} // left from an earlier enrollment
		if err := d.inbound.InboundSocks.Delete(&key); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return fmt.Errorf("remove inbound listener: %w", err)
		}
	}
	return nil
}

// attachSkLookup loads an sk_lookup program bound to the netns and attaches it, or switches the
// link an earlier agent pinned for this netns to it.
func (d *Datapath) attachSkLookup(cookie uint64, netnsPath string) (link.Link, error) {
	spec := d.inboundSpec.Copy()
	if err := setVariables(spec, map[string]any{"netns_cookie": cookie, "hbone_port": d.cfg.HBONEPort}); err != nil {
		return nil, err
	}
	var progs inboundPrograms
	err := spec.LoadAndAssign(&progs, &ebpf.CollectionOptions{
		MapReplacements: map[string]*ebpf.Map{
			"enrolled":      d.conn.Enrolled,
			"stats":         d.conn.Stats,
			"upstream":      d.conn.Upstream,
			"inbound_socks": d.inbound.InboundSocks,
		},
		Cache: d.btfCache,
	})
	if err != nil {
		return nil, fmt.Errorf("load sk_lookup: %w", err)
	}
	defer progs.Close() // the link holds the program

	pin := d.podPin(cookie)
	if l, err := link.LoadPinnedLink(pin, nil); err == nil {
		if err := l.Update(progs.WeftSkLookup); err != nil {
			l.Close()
			return nil, fmt.Errorf("update pinned sk_lookup link: %w", err)
		}
		return l, nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("pinned sk_lookup link: %w", err)
	}
	var ns *os.File
	if err := inPodNetNS(netnsPath, cookie, func() (err error) {
		ns, err = os.Open("/proc/thread-self/ns/net")
		return err
	}); err != nil {
		return nil, fmt.Errorf("open netns: %w", err)
	}
	defer ns.Close()
	l, err := link.AttachNetNs(int(ns.Fd()), progs.WeftSkLookup)
	if err != nil {
		return nil, fmt.Errorf("attach sk_lookup: %w", err)
	}
	if err := l.Pin(pin); err != nil {
		l.Close()
		return nil, fmt.Errorf("pin sk_lookup link: %w", err)
	}
	return l, nil
}

func (d *Datapath) podPin(cookie uint64) string {
	return filepath.Join(d.cfg.PinDir, pinPods, strconv.FormatUint(cookie, 10))
}

// Close unenrolls the pod: capture stops, its listeners leave the data path, its sk_lookup link
// is unpinned and detached and the reply routing is removed from its netns (when the netns still
// exists). The pod's processes and sockets are not touched.
func (p *Pod) Close() error {
	d := p.d
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return ErrClosed
	}
	if d.pods[p.cookie] != p {
		return nil // already closed
	}
	delete(d.pods, p.cookie)
	return d.unenroll(p)
}

// unenroll removes every trace of p; d.mu is held.
func (d *Datapath) unenroll(p *Pod) error {
	errs := []error{d.forget(p.cookie)}
	if p.link != nil {
		errs = append(errs, p.link.Close())
		p.link = nil
	}
	if p.families != nil {
		err := inPodNetNS(p.netnsPath, p.cookie, func() error { return d.routing().remove(p.families) })
		if err != nil && !errors.Is(err, errNetNSGone) {
			errs = append(errs, fmt.Errorf("reply routing: %w", err))
		}
		p.families = nil
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("datapath: unenroll netns %d: %w", p.cookie, err)
	}
	return nil
}

// forget removes a netns from the maps and unpins its sk_lookup link; d.mu is held.
func (d *Datapath) forget(cookie uint64) error {
	var errs []error
	if err := d.conn.Enrolled.Delete(cookie); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		errs = append(errs, fmt.Errorf("enrolled map: %w", err))
	}
	for _, fam := range []uint32{unix.AF_INET, unix.AF_INET6} {
		key := listenerKey{NetnsCookie: cookie, Family: fam}
		if err := d.inbound.InboundSocks.Delete(&key); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			errs = append(errs, fmt.Errorf("inbound listener: %w", err))
		}
	}
	if err := os.Remove(d.podPin(cookie)); err != nil && !errors.Is(err, os.ErrNotExist) {
		errs = append(errs, fmt.Errorf("unpin sk_lookup link: %w", err))
	}
	return errors.Join(errs...)
}

// EnrolledPods lists the netns cookies of every enrolled pod and of every pod with a pinned
// sk_lookup link, whichever agent enrolled them: after a restart, the agent compares them with
// the pods it finds and unenrolls the missing ones with Unenroll.
func (d *Datapath) EnrolledPods() ([]uint64, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return nil, ErrClosed
	}
	var cookies []uint64
	var c uint64
	var v podConfig
	it := d.conn.Enrolled.Iterate()
	for it.Next(&c, &v) {
		cookies = append(cookies, c)
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("datapath: list enrolled: %w", err)
	}
	ents, err := os.ReadDir(filepath.Join(d.cfg.PinDir, pinPods))
	if err != nil {
		return nil, fmt.Errorf("datapath: list pod pins: %w", err)
	}
	for _, e := range ents {
		if c, err := strconv.ParseUint(e.Name(), 10, 64); err == nil && !slices.Contains(cookies, c) {
			cookies = append(cookies, c)
		}
	}
	slices.Sort(cookies)
	return cookies, nil
}

// Unenroll forgets a network namespace by cookie, for pods that are gone: map entries and the
// pinned sk_lookup link are removed. The reply routing is not touched (the netns is gone, or use
// Pod.Close). Unenrolling an unknown cookie is not an error.
func (d *Datapath) Unenroll(netnsCookie uint64) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return ErrClosed
	}
	if p := d.pods[netnsCookie]; p != nil {
		delete(d.pods, netnsCookie)
		return d.unenroll(p)
	}
	if err := d.forget(netnsCookie); err != nil {
		return fmt.Errorf("datapath: unenroll netns %d: %w", netnsCookie, err)
	}
	return nil
}
