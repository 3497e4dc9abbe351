package iptables

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/weftmesh/weft/nodeagent/datapath"
)

// ip6tSOOriginalDst is IP6T_SO_ORIGINAL_DST (linux/netfilter_ipv6/ip6_tables.h), at SOL_IPV6.
const ip6tSOOriginalDst = 80

// OriginalDst returns the destination a REDIRECTed connection c (accepted by one of the agent's
// listeners) was going to, from its conntrack entry: SO_ORIGINAL_DST for IPv4,
// IP6T_SO_ORIGINAL_DST for IPv6. A connection that was not redirected (its original destination
// is its local address) gives an error wrapping datapath.ErrNoOriginalDst, so that a direct
// connection to a listener is never proxied to itself.
func OriginalDst(c net.Conn) (netip.AddrPort, error) {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return netip.AddrPort{}, fmt.Errorf("iptables: original destination: %T has no socket", c)
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("iptables: original destination: %w", err)
	}
	local := addrPort(c.LocalAddr())
	var dst netip.AddrPort
	var gerr error
	err = rc.Control(func(fd uintptr) { dst, gerr = getOriginalDst(int(fd), local.Addr().Unmap().Is4()) })
	if err == nil {
		err = gerr
	}
	switch {
	case errors.Is(err, unix.ENOENT), err == nil && dst == netip.AddrPortFrom(local.Addr().Unmap(), local.Port()):
		return netip.AddrPort{}, fmt.Errorf("iptables: original destination of %v → %v: %w", c.RemoteAddr(), local, datapath.ErrNoOriginalDst)
	case err != nil:
		return netip.AddrPort{}, fmt.Errorf("iptables: original destination of %v → %v: %w", c.RemoteAddr(), local, err)
	}
	return dst, nil
}

// getOriginalDst reads the conntrack original destination of socket fd.
func getOriginalDst(fd int, ipv4 bool) (netip.AddrPort, error) {
	if ipv4 {
		// struct sockaddr_in fits the 16-byte multiaddr of an ipv6_mreq buffer (20 bytes).
		m, err := unix.GetsockoptIPv6Mreq(fd, unix.SOL_IP, unix.SO_ORIGINAL_DST)
		if err != nil {
			return netip.AddrPort{}, fmt.Errorf("SO_ORIGINAL_DST: %w", err)
		}
		sa := m.Multiaddr // family (host order), port (network order), address
		return netip.AddrPortFrom(netip.AddrFrom4([4]byte(sa[4:8])), binary.BigEndian.Uint16(sa[2:4])), nil
	}
	// struct sockaddr_in6 (28 bytes) is the first member of the 32-byte ip6_mtuinfo.
	info, err := unix.GetsockoptIPv6MTUInfo(fd, unix.SOL_IPV6, ip6tSOOriginalDst)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("IP6T_SO_ORIGINAL_DST: %w", err)
	}
	var port [2]byte // the raw field holds network order; read it back as stored
	binary.NativeEndian.PutUint16(port[:], info.Addr.Port)
	return netip.AddrPortFrom(netip.AddrFrom16(info.Addr.Addr).Unmap(), binary.BigEndian.Uint16(port[:])), nil
}

func addrPort(a net.Addr) netip.AddrPort {
	if ta, ok := a.(*net.TCPAddr); ok {
		return ta.AddrPort()
	}
	ap, _ := netip.ParseAddrPort(a.String())
	return ap
}
