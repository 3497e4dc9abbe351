package iptables

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/weftmesh/weft/nodeagent/datapath"
	"github.com/weftmesh/weft/nodeagent/podnet"
)

// Names of Weft's chains in the nat table of an enrolled pod's netns.
const (
	ChainOutput     = "WEFT_OUTPUT"
	ChainPrerouting = "WEFT_PREROUTING"
)

// DefaultInboundPort is the agent's plaintext inbound listener (15006) in every pod.
const DefaultInboundPort uint16 = 15006

// execTimeout bounds one iptables invocation.
const execTimeout = 15 * time.Second

// Config configures the capture. Zero values take the eBPF data path's defaults
// (datapath.Default…), so the agent's sockets are configured the same in both modes.
type Config struct {
	// AgentMark and AgentMarkMask: a socket whose SO_MARK&AgentMarkMask equals AgentMark is the
	// agent's own and is never redirected.
	AgentMark, AgentMarkMask uint32
	// UpstreamMark is the SO_MARK of the agent's transparent upstream sockets; the reply routing
	// matches it. It must count as an agent mark and differ from AgentMark.
	UpstreamMark uint32
	// OutboundPort, InboundPort and HBONEPort are the agent's listeners in every pod.
	OutboundPort, InboundPort, HBONEPort uint16
	// ReplyTable is the routing table of the reply route in each pod.
	ReplyTable int
	// IPTables and IP6Tables name the iptables and ip6tables binaries; "-restore" and "-save"
	// are appended. Empty: "iptables" and "ip6tables" from PATH (nft or legacy, whichever the
	// node's alternatives select).
	IPTables, IP6Tables string
}

func (c Config) withDefaults() (Config, error) {
	def := func(v *uint32, d uint32) {
		if *v == 0 {
			*v = d
		}
	}
	def(&c.AgentMark, datapath.DefaultAgentMark)
	def(&c.AgentMarkMask, datapath.DefaultAgentMarkMask)
	def(&c.UpstreamMark, datapath.DefaultUpstreamMark)
	for _, p := range []struct {
		v *uint16
		d uint16
	}{{&c.OutboundPort, datapath.DefaultOutboundPort}, {&c.InboundPort, DefaultInboundPort}, {&c.HBONEPort, datapath.DefaultHBONEPort}} {
		if *p.v == 0 {
			*p.v = p.d
		}
	}
	if c.ReplyTable == 0 {
		c.ReplyTable = datapath.DefaultReplyTable
	}
	if c.IPTables == "" {
		c.IPTables = "iptables"
	}
	if c.IP6Tables == "" {
		c.IP6Tables = "ip6tables"
	}
	switch {
	case c.AgentMark&^c.AgentMarkMask != 0:
		return c, fmt.Errorf("iptables: AgentMark %#x has bits outside AgentMarkMask %#x", c.AgentMark, c.AgentMarkMask)
	case c.UpstreamMark&c.AgentMarkMask != c.AgentMark || c.UpstreamMark == c.AgentMark:
		return c, fmt.Errorf("iptables: UpstreamMark %#x must match AgentMark %#x under AgentMarkMask %#x and differ from it", c.UpstreamMark, c.AgentMark, c.AgentMarkMask)
	case c.OutboundPort == c.InboundPort || c.OutboundPort == c.HBONEPort || c.InboundPort == c.HBONEPort:
		return c, fmt.Errorf("iptables: OutboundPort %d, InboundPort %d and HBONEPort %d must differ", c.OutboundPort, c.InboundPort, c.HBONEPort)
	}
	return c, nil
}

// Capture installs and removes the redirect rules of enrolled pods. It is safe for concurrent
// use.
type Capture struct {
	cfg Config
}

// New checks the configuration and that the iptables binaries are installed.
func New(cfg Config) (*Capture, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	for _, base := range []string{cfg.IPTables, cfg.IP6Tables} {
		for _, suffix := range []string{"-restore", "-save"} {
			if _, err := exec.LookPath(base + suffix); err != nil {
				return nil, fmt.Errorf("iptables: capture needs %s%s (install the iptables package, or set the binary): %w", base, suffix, err)
			}
		}
	}
	return &Capture{cfg: cfg}, nil
}

// Config returns the effective configuration, defaults filled in.
func (c *Capture) Config() Config { return c.cfg }

// PodConfig describes a pod to enroll.
type PodConfig struct {
	// NetNSPath is the pod's network namespace.
	NetNSPath string
	// IPs are the pod's addresses; inbound TCP to them is redirected. Their families decide which
	// of iptables and ip6tables get rules.
	IPs []netip.Addr
	// Gateways are the node-side addresses kubelet probes come from; their connections reach the
	// application directly.
	Gateways []netip.Addr
	// ExcludeInboundPorts and ExcludeOutboundPorts are never redirected.
	ExcludeInboundPorts, ExcludeOutboundPorts []uint16
	// BypassInbound leaves inbound connections alone; outbound ones are still redirected.
	BypassInbound bool
}

func (pc PodConfig) families() ([]int, error) {
	switch {
	case pc.NetNSPath == "":
		return nil, errors.New("PodConfig.NetNSPath is empty")
	case len(pc.IPs) == 0:
		return nil, errors.New("PodConfig.IPs is empty: a pod needs at least one address")
	}
	var fams []int
	for _, ip := range append(slices.Clone(pc.IPs), pc.Gateways...) {
		if !ip.IsValid() {
			return nil, fmt.Errorf("invalid address %v in PodConfig.IPs or Gateways", ip)
		}
	}
	for _, ip := range pc.IPs {
		if f := family(ip); !slices.Contains(fams, f) {
			fams = append(fams, f)
		}
	}
	slices.Sort(fams)
	return fams, nil
}

func family(ip netip.Addr) int {
	if ip.Unmap().Is4() {
		return unix.AF_INET
	}
	return unix.AF_INET6
}

// Pod is an enrolled pod.
type Pod struct {
	c        *Capture
	cookie   uint64
	path     string
	families []int
	replies  bool // reply routing installed

	mu     sync.Mutex
	closed bool
}

// NetNSCookie returns the cookie of the pod's network namespace.
func (p *Pod) NetNSCookie() uint64 { return p.cookie }

// EnrollPod installs the pod's redirect rules, for the families of its addresses, and the reply
// routing (unless BypassInbound). Enrolling an enrolled pod again replaces its rules. On error
// nothing of this enrollment is left. The agent's listeners should exist before: from then on
// the pod's connections are redirected to them.
func (c *Capture) EnrollPod(pc PodConfig) (*Pod, error) {
	fams, err := pc.families()
	if err != nil {
		return nil, fmt.Errorf("iptables: enroll: %w", err)
	}
	p := &Pod{c: c, path: pc.NetNSPath, families: fams, replies: !pc.BypassInbound}
	err = podnet.Do(pc.NetNSPath, func() error {
		var err error
		if p.cookie, err = podnet.Cookie(); err != nil {
			return err
		}
		if p.replies {
			if err := datapath.InstallReplyRouting(c.cfg.UpstreamMark, c.cfg.ReplyTable, fams); err != nil {
				return fmt.Errorf("reply routing: %w", err)
			}
		}
		for _, fam := range fams {
			if err := c.install(fam, pc); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		undo := podnet.Do(pc.NetNSPath, p.removeHere)
		return nil, fmt.Errorf("iptables: enroll %s: %w", pc.NetNSPath, errors.Join(err, undo))
	}
	return p, nil
}

// Close removes the pod's rules and reply routing (when its netns still exists); the pod's
// processes and sockets are not touched. Closing twice is a no-op.
func (p *Pod) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil
	}
	p.closed = true
	err := podnet.Do(p.path, func() error {
		c, err := podnet.Cookie()
		if err != nil {
			return err
		}
		if c != p.cookie {
			return errNetNSGone // the path names another netns by now
		}
		return p.removeHere()
	})
	if err == nil || errors.Is(err, errNetNSGone) || errors.Is(err, unix.ENOENT) {
		return nil
	}
	return fmt.Errorf("iptables: unenroll %s (netns %d): %w", p.path, p.cookie, err)
}

var errNetNSGone = errors.New("network namespace gone")

// removeHere removes the rules of every family and the reply routing in the calling thread's
// netns.
func (p *Pod) removeHere() error {
	var errs []error
	for _, fam := range []int{unix.AF_INET, unix.AF_INET6} {
		if err := p.c.remove(fam); err != nil {
			errs = append(errs, err)
		}
	}
	if p.replies {
		if err := datapath.RemoveReplyRouting(p.c.cfg.UpstreamMark, p.c.cfg.ReplyTable, p.families); err != nil {
			errs = append(errs, fmt.Errorf("reply routing: %w", err))
		}
	}
	return errors.Join(errs...)
}

// install applies the rules of one family in the calling thread's netns.
func (c *Capture) install(fam int, pc PodConfig) error {
	cur, err := c.save(fam)
	if err == nil {
		err = c.restore(fam, c.cfg.rules(fam, pc, presentJumps(cur)))
	}
	if err != nil {
		return fmt.Errorf("%s rules: %w", familyName(fam), err)
	}
	return nil
}

// remove deletes the chains and jumps of one family in the calling thread's netns; absent ones
// are not an error.
func (c *Capture) remove(fam int) error {
	cur, err := c.save(fam)
	if err != nil {
		if fam == unix.AF_INET6 && ipv6Disabled() {
			return nil
		}
		return err
	}
	if r := removal(cur); r != "" {
		return c.restore(fam, r)
	}
	return nil
}

// ipv6Disabled reports whether the calling thread's netns has IPv6 turned off, in which case
// ip6tables has nothing to remove.
func ipv6Disabled() bool {
	fd, err := unix.Socket(unix.AF_INET6, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return true
	}
	unix.Close(fd)
	return false
}

func (c *Capture) binary(fam int) string {
	if fam == unix.AF_INET6 {
		return c.cfg.IP6Tables
	}
	return c.cfg.IPTables
}

// save returns the current nat table of the calling thread's netns.
func (c *Capture) save(fam int) (string, error) {
	out, err := c.run(c.binary(fam)+"-save", nil, "-t", "nat")
	if err != nil {
		return "", err
	}
	return out, nil
}

// restore applies a restore payload atomically, leaving chains it does not name alone.
func (c *Capture) restore(fam int, payload string) error {
	_, err := c.run(c.binary(fam)+"-restore", strings.NewReader(payload), "--noflush", "--wait=5")
	return err
}

// run executes an iptables binary on the calling thread (its child inherits the thread's
// netns).
func (c *Capture) run(bin string, stdin *strings.Reader, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), execTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	if stdin != nil {
		cmd.Stdin = stdin
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("%s %s: %w: %s", bin, strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}
