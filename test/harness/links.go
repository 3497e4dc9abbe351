package harness

import (
	"fmt"
	"net"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// setLinkUp brings up a link of the calling thread's namespace.
func setLinkUp(name string) error {
	l, err := netlink.LinkByName(name)
	if err != nil {
		return fmt.Errorf("link %s: %w", name, err)
	}
	if err := netlink.LinkSetUp(l); err != nil {
		return fmt.Errorf("link %s up: %w", name, err)
	}
	return nil
}

// addAddr assigns cidr (an address with its prefix length) to a link of the calling thread's namespace.
func addAddr(link, cidr string) error {
	l, err := netlink.LinkByName(link)
	if err != nil {
		return fmt.Errorf("link %s: %w", link, err)
	}
	a, err := netlink.ParseAddr(cidr)
	if err != nil {
		return fmt.Errorf("address %s: %w", cidr, err)
	}
	if err := netlink.AddrAdd(l, a); err != nil {
		return fmt.Errorf("add %s to %s: %w", cidr, link, err)
	}
	return nil
}

// addAddrNoDAD assigns an IPv6 address that is usable at once (no duplicate address detection:
// the harness owns every address of its namespaces).
func addAddrNoDAD(link, cidr string) error {
	l, err := netlink.LinkByName(link)
	if err != nil {
		return fmt.Errorf("link %s: %w", link, err)
	}
	a, err := netlink.ParseAddr(cidr)
	if err != nil {
		return fmt.Errorf("address %s: %w", cidr, err)
	}
	a.Flags = unix.IFA_F_NODAD
	if err := netlink.AddrAdd(l, a); err != nil {
		return fmt.Errorf("add %s to %s: %w", cidr, link, err)
	}
	return nil
}

// addRoute routes dst (a CIDR) via gw in the calling thread's namespace.
func addRoute(dst string, gw net.IP) error {
	_, n, err := net.ParseCIDR(dst)
	if err != nil {
		return fmt.Errorf("route %s: %w", dst, err)
	}
	if err := netlink.RouteReplace(&netlink.Route{Dst: n, Gw: gw}); err != nil {
		return fmt.Errorf("route %s via %s: %w", dst, gw, err)
	}
	return nil
}

// addBridge creates a bridge in the calling thread's namespace and brings it up.
func addBridge(name string) error {
	if err := netlink.LinkAdd(&netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: name}}); err != nil {
		return fmt.Errorf("bridge %s: %w", name, err)
	}
	return setLinkUp(name)
}
