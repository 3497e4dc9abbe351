package datapath

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/weftmesh/weft/nodeagent/podnet"
	"github.com/weftmesh/weft/test/privileged"
)

// Test topology. Addresses are in test ranges and exist only inside the namespaces the tests
// create: "pod" 198.18.0.1 / 2001:db8::1, "peer" 198.18.0.2 / 2001:db8::2 with the gateway
// addresses 198.18.0.254 / 2001:db8::fe beside them.
var (
	podIP4  = netip.MustParseAddr("198.18.0.1")
	podIP6  = netip.MustParseAddr("2001:db8::1")
	peerIP4 = netip.MustParseAddr("198.18.0.2")
	peerIP6 = netip.MustParseAddr("2001:db8::2")
	gwIP4   = netip.MustParseAddr("198.18.0.254")
	gwIP6   = netip.MustParseAddr("2001:db8::fe")
)

const ioTimeout = 3 * time.Second

// testNS is a network namespace created for one test. It lives as long as the test holds its
// file descriptor, so nothing is left behind even when the test binary dies.
type testNS struct {
	name string
	h    netns.NsHandle
	path string
}

func newTestNS(t *testing.T, name string) *testNS {
	h, path := privileged.NewNetNS(t)
	return &testNS{name: name, h: h, path: path}
}

func (n *testNS) do(t *testing.T, fn func() error) {
	t.Helper()
	if err := podnet.Do(n.path, fn); err != nil {
		t.Fatalf("in netns %s: %v", n.name, err)
	}
}

func (n *testNS) cookie(t *testing.T) uint64 {
	t.Helper()
	var c uint64
	n.do(t, func() (err error) { c, err = currentNetNSCookie(); return err })
	return c
}

// veth connects a and b with a veth pair named eth0 on both sides and gives each side its
// addresses (host routes of the /24 and /64 come with them).
func veth(t *testing.T, a, b *testNS, aAddrs, bAddrs []netip.Addr) {
	t.Helper()
	h, err := netlink.NewHandleAt(a.h)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	err = h.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "eth0"}, PeerName: "eth0", PeerNamespace: netlink.NsFd(b.h)})
	if err != nil {
		t.Fatalf("veth: %v", err)
	}
	for _, side := range []struct {
		ns    *testNS
		addrs []netip.Addr
	}{{a, aAddrs}, {b, bAddrs}} {
		h, err := netlink.NewHandleAt(side.ns.h)
		if err != nil {
			t.Fatal(err)
		}
		l, err := h.LinkByName("eth0")
		if err != nil {
			h.Close()
			t.Fatal(err)
		}
		for _, ip := range side.addrs {
			bits := 24
			if ip.Is6() {
				bits = 64
			}
			addr := &netlink.Addr{IPNet: &net.IPNet{IP: ip.AsSlice(), Mask: net.CIDRMask(bits, ip.BitLen())}, Flags: unix.IFA_F_NODAD}
			if err := h.AddrAdd(l, addr); err != nil {
				h.Close()
				t.Fatalf("%s: add %v: %v", side.ns.name, ip, err)
			}
		}
		if err := h.LinkSetUp(l); err != nil {
			h.Close()
			t.Fatal(err)
		}
		h.Close()
	}
	// Until the kernel's link watcher sees the carrier, the device drops what it is given, and
	// the first SYN would only be retransmitted a second later.
	for _, ns := range []*testNS{a, b} {
		waitOperUp(t, ns)
	}
}

// waitOperUp waits, at most two seconds, for eth0 in ns to be operationally up.
func waitOperUp(t *testing.T, ns *testNS) {
	t.Helper()
	h, err := netlink.NewHandleAt(ns.h)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	deadline := time.Now().Add(2 * time.Second)
	for {
		l, err := h.LinkByName("eth0")
		if err != nil {
			t.Fatal(err)
		}
		if l.Attrs().OperState == netlink.OperUp {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: eth0 is %v after 2s", ns.name, l.Attrs().OperState)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// podAndPeer creates the two namespaces of the test topology.
func podAndPeer(t *testing.T) (pod, peer *testNS) {
	pod, peer = newTestNS(t, "pod"), newTestNS(t, "peer")
	veth(t, pod, peer, []netip.Addr{podIP4, podIP6}, []netip.Addr{peerIP4, peerIP6, gwIP4, gwIP6})
	return pod, peer
}

// listen opens a TCP listener inside n, closed at cleanup. Applications use Go's defaults
// (net.ListenConfig{}), the agent Datapath.AgentListenConfig.
func (n *testNS) listen(t *testing.T, lc net.ListenConfig, network, addr string) *net.TCPListener {
	t.Helper()
	var ln net.Listener
	n.do(t, func() (err error) {
		ln, err = lc.Listen(context.Background(), network, addr)
		return err
	})
	t.Cleanup(func() { ln.Close() })
	return ln.(*net.TCPListener)
}

// serve answers every connection on ln with one line, reply(conn), and closes it. The accept
// loop ends when ln is closed; cleanup waits for it.
func serve(t *testing.T, ln net.Listener, reply func(net.Conn) string) {
	t.Helper()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.SetDeadline(time.Now().Add(ioTimeout))
			fmt.Fprintln(c, reply(c))
			c.Close()
		}
	}()
	t.Cleanup(func() { ln.Close(); wg.Wait() })
}

// named is a reply function that answers the server's name.
func named(name string) func(net.Conn) string {
	return func(net.Conn) string { return name }
}

// dialOpts says how a test client connects. Network "tcp6-mapped" dials an IPv4 address from an
// IPv6 socket.
type dialOpts struct {
	network string
	addr    string
	local   string                                      // source address (ip:port), optional
	control func(string, string, syscall.RawConn) error // socket options, optional
	mptcp   bool                                        // dial with MPTCP
	// inCgroup, when set, makes the connect from inside that cgroup (the whole test process
	// moves there for the duration).
	inCgroup string
}

// dialLine connects from inside n and returns the first line the server sends.
func (n *testNS) dialLine(t *testing.T, o dialOpts) (string, error) {
	t.Helper()
	if o.inCgroup != "" {
		var line string
		var err error
		inner := o
		inner.inCgroup = ""
		privileged.InCgroup(t, o.inCgroup, func() { line, err = n.dialLine(t, inner) })
		return line, err
	}
	var line string
	err := podnet.Do(n.path, func() error {
		d := net.Dialer{Timeout: ioTimeout, Control: o.control}
		d.SetMultipathTCP(o.mptcp)
		if o.local != "" {
			la, err := net.ResolveTCPAddr(o.network, o.local)
			if err != nil {
				return err
			}
			d.LocalAddr = la
		}
		var c net.Conn
		var err error
		if o.network == "tcp6-mapped" {
			c, err = dialMapped(o.addr)
		} else {
			c, err = d.Dial(o.network, o.addr)
		}
		if err != nil {
			return err
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(ioTimeout))
		line, err = bufio.NewReader(c).ReadString('\n')
		line = strings.TrimSpace(line)
		return err
	})
	return line, err
}

// dialMapped connects an IPv6 socket to the IPv4 address addr as ::ffff:a.b.c.d, which Go's
// dialer never does by itself.
func dialMapped(addr string) (net.Conn, error) {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		return nil, err
	}
	fd, err := unix.Socket(unix.AF_INET6, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	f := os.NewFile(uintptr(fd), "mapped")
	defer f.Close()
	tv := unix.NsecToTimeval(ioTimeout.Nanoseconds()) // bounds the blocking connect
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_SNDTIMEO, &tv); err != nil {
		return nil, err
	}
	if err := unix.Connect(fd, &unix.SockaddrInet6{Port: int(ap.Port()), Addr: ap.Addr().As16()}); err != nil {
		return nil, fmt.Errorf("connect [::ffff:%v]: %w", ap, err)
	}
	return net.FileConn(f)
}

// mustDialLine is dialLine failing the test on error.
func (n *testNS) mustDialLine(t *testing.T, o dialOpts) string {
	t.Helper()
	line, err := n.dialLine(t, o)
	if err != nil {
		t.Fatalf("dial %s %s from %s: %v", o.network, o.addr, n.name, err)
	}
	return line
}

// attachTemp attaches the data path to a temporary cgroup and pin directory, detached at cleanup.
func attachTemp(t *testing.T) (*Datapath, Config) {
	t.Helper()
	cg, pins := privileged.TempCgroupAndPins(t)
	cfg := Config{CgroupPath: cg, PinDir: pins}
	d, err := Attach(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := d.Detach(); err != nil && !errors.Is(err, ErrClosed) {
			t.Errorf("detach: %v", err)
		}
	})
	return d, d.Config()
}

// statDelta returns a function that reports how much each counter moved since it was made.
func statDelta(t *testing.T, d *Datapath) func() Stats {
	t.Helper()
	before, err := d.Stats()
	if err != nil {
		t.Fatal(err)
	}
	return func() Stats {
		t.Helper()
		after, err := d.Stats()
		if err != nil {
			t.Fatal(err)
		}
		for i := range after {
			after[i] -= before[i]
		}
		return after
	}
}

// nonZero formats the counters that moved.
func (s Stats) nonZero() string {
	var parts []string
	for i, v := range s {
		if v != 0 {
			parts = append(parts, fmt.Sprintf("%v=%d", Stat(i), v))
		}
	}
	return strings.Join(parts, " ")
}
