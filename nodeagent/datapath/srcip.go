package datapath

import (
	"errors"
	"fmt"
	"net"
	"syscall"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Source-IP preservation. The agent's upstream connection to the application, made inside the
// destination pod's netns, binds to the source pod's address with IP_TRANSPARENT (see
// TransparentControl), so the application sees the real client. The application's replies go to
// that address, which is not local, and would leave through eth0. Inside the pod's netns:
//
//	net.ipv4.tcp_fwmark_accept = 1                      (an accepted socket inherits the SYN's mark)
//	ip rule add fwmark <UpstreamMark> lookup <ReplyTable> pref 32764   (IPv4 and IPv6)
//	ip route add local default dev lo table <ReplyTable>               (IPv4 and IPv6)
//
// The agent's SYN carries UpstreamMark over lo, the application's accepted socket inherits it,
// and every packet of that socket (the SYN-ACK too, routed with the request's mark) is routed to
// lo, where the agent's transparent socket receives it. No netfilter and no per-packet program.
// README.md explains why an eBPF program cannot do this without the same routing.

// replyRulePriority places the reply rule before the main table (32766).
const replyRulePriority = 32764

// replyRouting is the routing state that returns replies to the agent's transparent sockets.
type replyRouting struct {
	mark  uint32
	table int
}

func (r replyRouting) rule(family int) *netlink.Rule {
	rule := netlink.NewRule()
	rule.Family = family
	rule.Priority = replyRulePriority
	rule.Mark = r.mark
	mask := uint32(0xffffffff)
	rule.Mask = &mask
	rule.Table = r.table
	return rule
}

func (r replyRouting) route(family int) *netlink.Route {
	dst := &net.IPNet{IP: net.IPv4zero, Mask: net.CIDRMask(0, 32)}
	if family == unix.AF_INET6 {
		dst = &net.IPNet{IP: net.IPv6zero, Mask: net.CIDRMask(0, 128)}
	}
	return &netlink.Route{
		LinkIndex: loopbackIfindex,
		Dst:       dst,
		Family:    family,
		Table:     r.table,
		Type:      unix.RTN_LOCAL,
		Scope:     netlink.SCOPE_HOST,
	}
}

// loopbackIfindex is the index of lo in every network namespace.
const loopbackIfindex = 1

// install sets up the routing in the calling thread's network namespace for the given families
// (unix.AF_INET, unix.AF_INET6). It is idempotent.
func (r replyRouting) install(families []int) error {
	h, err := netlink.NewHandle()
	if err != nil {
		return fmt.Errorf("netlink: %w", err)
	}
	defer h.Close()
	for _, fam := range families {
		if err := h.RuleAdd(r.rule(fam)); err != nil && !errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("add reply rule (family %d): %w", fam, err)
		}
		if err := h.RouteReplace(r.route(fam)); err != nil {
			return fmt.Errorf("add reply route (family %d): %w", fam, err)
		}
	}
	return writeSysctl("net/ipv4/tcp_fwmark_accept", "1")
}

// remove undoes install; what is already gone is not an error. tcp_fwmark_accept returns to
// the kernel's default, 0.
func (r replyRouting) remove(families []int) error {
	return errors.Join(r.removeFamilies(families), writeSysctl("net/ipv4/tcp_fwmark_accept", "0"))
}

// removeFamilies removes the rules and routes of the given families only.
func (r replyRouting) removeFamilies(families []int) error {
	h, err := netlink.NewHandle()
	if err != nil {
		return fmt.Errorf("netlink: %w", err)
	}
	defer h.Close()
	var errs []error
	for _, fam := range families {
		if err := h.RuleDel(r.rule(fam)); err != nil && !errors.Is(err, unix.ENOENT) {
			errs = append(errs, fmt.Errorf("delete reply rule (family %d): %w", fam, err))
		}
		if err := h.RouteDel(r.route(fam)); err != nil && !errors.Is(err, unix.ESRCH) && !errors.Is(err, unix.ENOENT) {
			errs = append(errs, fmt.Errorf("delete reply route (family %d): %w", fam, err))
		}
	}
	return errors.Join(errs...)
}

// AgentListenConfig returns the configuration of the agent's listeners in pods: SO_MARK
// AgentMark, and plain TCP (Go listens with MPTCP by default, and neither sockmaps nor sk_lookup
// take MPTCP sockets).
func (d *Datapath) AgentListenConfig() net.ListenConfig {
	lc := net.ListenConfig{Control: MarkControl(d.cfg.AgentMark)}
	lc.SetMultipathTCP(false)
	return lc
}

// MarkControl returns a Control function for net.Dialer and net.ListenConfig that sets SO_MARK
// on the socket. The agent marks every socket it opens in a pod's netns with Config.AgentMark,
// so the outbound capture leaves them alone.
func MarkControl(mark uint32) func(network, address string, c syscall.RawConn) error {
	return func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_MARK, int(mark))
		})
		if err != nil {
			return err
		}
		if serr != nil {
			return fmt.Errorf("SO_MARK: %w", serr)
		}
		return nil
	}
}

// sockopt is one integer socket option.
type sockopt struct {
	level, opt, val int
	name            string
}

// TransparentControl returns a Control function for the agent's upstream connections to a local
// application: SO_MARK (Config.UpstreamMark, which the reply routing of enrolled pods matches)
// and IP_TRANSPARENT/IP_FREEBIND (IPV6_… on IPv6 sockets), so that net.Dialer.LocalAddr may be
// the source pod's address. Dial inside the destination pod's netns, from a process below
// Config.CgroupPath: the sockops program registers the connection there so that the pod's
// sk_lookup program lets it reach the application instead of steering it back to the agent.
func TransparentControl(mark uint32) func(network, address string, c syscall.RawConn) error {
	return func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			s := int(fd)
			fam, err := unix.GetsockoptInt(s, unix.SOL_SOCKET, unix.SO_DOMAIN)
			if err != nil {
				serr = fmt.Errorf("SO_DOMAIN: %w", err)
				return
			}
			opts := []sockopt{
				{unix.SOL_SOCKET, unix.SO_MARK, int(mark), "SO_MARK"},
				{unix.SOL_IP, unix.IP_TRANSPARENT, 1, "IP_TRANSPARENT"},
				{unix.SOL_IP, unix.IP_FREEBIND, 1, "IP_FREEBIND"},
			}
			if fam == unix.AF_INET6 {
				opts[1] = sockopt{unix.SOL_IPV6, unix.IPV6_TRANSPARENT, 1, "IPV6_TRANSPARENT"}
				opts[2] = sockopt{unix.SOL_IPV6, unix.IPV6_FREEBIND, 1, "IPV6_FREEBIND"}
			}
			for _, o := range opts {
				if err := unix.SetsockoptInt(s, o.level, o.opt, o.val); err != nil {
					serr = fmt.Errorf("%s: %w", o.name, err)
					return
				}
			}
		})
		if err != nil {
			return err
		}
		return serr
	}
}
