package iptables

import (
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/weftmesh/weft/nodeagent/datapath"
	"github.com/weftmesh/weft/nodeagent/podnet"
	"github.com/weftmesh/weft/test/privileged"
)

// Test topology, in namespaces the test creates: "pod" 198.18.0.1 / 2001:db8::1 and "peer"
// 198.18.0.2 / 2001:db8::2 with the gateway 198.18.0.254 beside it, on a veth pair.
var (
	podIP4  = netip.MustParseAddr("198.18.0.1")
	podIP6  = netip.MustParseAddr("2001:db8::1")
	peerIP4 = netip.MustParseAddr("198.18.0.2")
	peerIP6 = netip.MustParseAddr("2001:db8::2")
	gwIP4   = netip.MustParseAddr("198.18.0.254")
)

type testNS struct {
	h    netns.NsHandle
	path string
}

func newTestNS(t *testing.T) *testNS {
	h, path := privileged.NewNetNS(t)
	return &testNS{h: h, path: path}
}

func (n *testNS) do(t *testing.T, fn func() error) {
	t.Helper()
	if err := podnet.Do(n.path, fn); err != nil {
		t.Fatal(err)
	}
}

func vethPair(t *testing.T, a, b *testNS, aAddrs, bAddrs []netip.Addr) {
	t.Helper()
	h, err := netlink.NewHandleAt(a.h)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	if err := h.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "eth0"}, PeerName: "eth0", PeerNamespace: netlink.NsFd(b.h)}); err != nil {
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
			t.Fatal(err)
		}
		for _, ip := range side.addrs {
			bits := 24
			if ip.Is6() {
				bits = 64
			}
			addr := &netlink.Addr{IPNet: &net.IPNet{IP: ip.AsSlice(), Mask: net.CIDRMask(bits, ip.BitLen())}, Flags: unix.IFA_F_NODAD}
			if err := h.AddrAdd(l, addr); err != nil {
				t.Fatalf("add %v: %v", ip, err)
			}
		}
		if err := h.LinkSetUp(l); err != nil {
			t.Fatal(err)
		}
		h.Close()
	}
	for _, ns := range []*testNS{a, b} {
		h, err := netlink.NewHandleAt(ns.h)
		if err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(2 * time.Second)
		for {
			l, err := h.LinkByName("eth0")
			if err != nil {
				t.Fatal(err)
			}
			if l.Attrs().OperState == netlink.OperUp {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("eth0 is %v after 2s", l.Attrs().OperState)
			}
			time.Sleep(10 * time.Millisecond)
		}
		h.Close()
	}
}

func (n *testNS) listen(t *testing.T, lc net.ListenConfig, network, addr string) *net.TCPListener {
	t.Helper()
	ln, err := podnet.Listen(context.Background(), n.path, lc, network, addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln.(*net.TCPListener)
}

// dial connects from inside n, optionally from local and with control, sends one line and
// returns the connection.
func (n *testNS) dial(t *testing.T, d *net.Dialer, addr netip.AddrPort) net.Conn {
	t.Helper()
	if d.Timeout == 0 {
		d.Timeout = 3 * time.Second
	}
	ns, err := podnet.Open(n.path)
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	c, err := ns.Dial(context.Background(), d, "tcp", addr.String())
	if err != nil {
		t.Fatalf("dial %v: %v", addr, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// accept returns the next connection of ln, failing after 3 s.
func accept(t *testing.T, ln *net.TCPListener) net.Conn {
	t.Helper()
	ln.SetDeadline(time.Now().Add(3 * time.Second))
	c, err := ln.Accept()
	if err != nil {
		t.Fatalf("accept on %v: %v", ln.Addr(), err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func natTable(t *testing.T, n *testNS, save string) string {
	t.Helper()
	var out []byte
	n.do(t, func() (err error) {
		out, err = execOut(save, "-t", "nat")
		return err
	})
	return string(out)
}

// TestPrivilegedIPTablesCapture enrolls a pod netns with real iptables rules and shows, for IPv4
// and IPv6, outbound connections redirected to the 15001 listener with their original
// destination, inbound plaintext redirected to 15006 with its original destination, HBONE,
// probes and the agent's own sockets left alone, source-IP preservation working through the
// shared reply routing, and everything gone after Close.
func TestPrivilegedIPTablesCapture(t *testing.T) {
	privileged.Require(t)
	c, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	pod, peer := newTestNS(t), newTestNS(t)
	vethPair(t, pod, peer, []netip.Addr{podIP4, podIP6}, []netip.Addr{peerIP4, peerIP6, gwIP4})

	agentLC := net.ListenConfig{Control: datapath.MarkControl(datapath.DefaultAgentMark)}
	agentLC.SetMultipathTCP(false)
	out4 := pod.listen(t, agentLC, "tcp4", "127.0.0.1:15001")
	out6 := pod.listen(t, agentLC, "tcp6", "[::1]:15001")
	in4 := pod.listen(t, agentLC, "tcp4", "0.0.0.0:15006")
	in6 := pod.listen(t, agentLC, "tcp6", "[::]:15006")
	hbone := pod.listen(t, agentLC, "tcp4", "0.0.0.0:15008")
	app4 := pod.listen(t, net.ListenConfig{}, "tcp4", "0.0.0.0:8080")
	remote4 := peer.listen(t, net.ListenConfig{}, "tcp4", "0.0.0.0:9000")
	remote6 := peer.listen(t, net.ListenConfig{}, "tcp6", "[::]:9000")

	p, err := c.EnrollPod(PodConfig{NetNSPath: pod.path, IPs: []netip.Addr{podIP4, podIP6}, Gateways: []netip.Addr{gwIP4}})
	if err != nil {
		t.Fatal(err)
	}
	for _, save := range []string{"iptables-save", "ip6tables-save"} {
		if tbl := natTable(t, pod, save); !strings.Contains(tbl, "-A OUTPUT -p tcp -j WEFT_OUTPUT") || !strings.Contains(tbl, "REDIRECT --to-ports 15006") {
			t.Fatalf("%s after enroll:\n%s", save, tbl)
		}
	}
	// Enrolling again replaces the rules instead of adding jumps.
	if _, err := c.EnrollPod(PodConfig{NetNSPath: pod.path, IPs: []netip.Addr{podIP4, podIP6}, Gateways: []netip.Addr{gwIP4}}); err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(natTable(t, pod, "iptables-save"), "-j WEFT_OUTPUT"); n != 1 {
		t.Fatalf("%d OUTPUT jumps after enrolling twice, want 1", n)
	}

	t.Run("outbound", func(t *testing.T) {
		for _, tt := range []struct {
			ln  *net.TCPListener
			dst netip.AddrPort
		}{{out4, netip.AddrPortFrom(peerIP4, 9000)}, {out6, netip.AddrPortFrom(peerIP6, 9000)}} {
			pod.dial(t, &net.Dialer{}, tt.dst)
			got, err := OriginalDst(accept(t, tt.ln))
			if err != nil || got != tt.dst {
				t.Errorf("outbound to %v: original destination %v, %v", tt.dst, got, err)
			}
		}
	})
	t.Run("agent sockets not captured", func(t *testing.T) {
		pod.dial(t, &net.Dialer{Control: datapath.MarkControl(datapath.DefaultAgentMark)}, netip.AddrPortFrom(peerIP4, 9000))
		accept(t, remote4)
		pod.dial(t, &net.Dialer{Control: datapath.MarkControl(datapath.DefaultAgentMark)}, netip.AddrPortFrom(peerIP6, 9000))
		accept(t, remote6)
	})
	t.Run("inbound plaintext", func(t *testing.T) {
		for _, tt := range []struct {
			ln  *net.TCPListener
			dst netip.AddrPort
		}{{in4, netip.AddrPortFrom(podIP4, 8080)}, {in6, netip.AddrPortFrom(podIP6, 8080)}} {
			peer.dial(t, &net.Dialer{}, tt.dst)
			c := accept(t, tt.ln)
			got, err := OriginalDst(c)
			if err != nil || got != tt.dst {
				t.Errorf("inbound to %v: original destination %v, %v (local %v)", tt.dst, got, err, c.LocalAddr())
			}
		}
	})
	t.Run("hbone and probes not captured", func(t *testing.T) {
		peer.dial(t, &net.Dialer{}, netip.AddrPortFrom(podIP4, 15008))
		accept(t, hbone)
		probe := &net.Dialer{LocalAddr: net.TCPAddrFromAddrPort(netip.AddrPortFrom(gwIP4, 0))}
		peer.dial(t, probe, netip.AddrPortFrom(podIP4, 8080))
		accept(t, app4)
	})
	t.Run("direct connection has no original destination", func(t *testing.T) {
		pod.dial(t, &net.Dialer{Control: datapath.MarkControl(datapath.DefaultAgentMark)}, netip.MustParseAddrPort("127.0.0.1:15001"))
		if _, err := OriginalDst(accept(t, out4)); !errors.Is(err, datapath.ErrNoOriginalDst) {
			t.Errorf("err = %v, want ErrNoOriginalDst", err)
		}
	})
	t.Run("transparent upstream keeps the source", func(t *testing.T) {
		d := &net.Dialer{Control: datapath.TransparentControl(datapath.DefaultUpstreamMark), LocalAddr: net.TCPAddrFromAddrPort(netip.AddrPortFrom(peerIP4, 0))}
		up := pod.dial(t, d, netip.AddrPortFrom(podIP4, 8080))
		app := accept(t, app4)
		if got := app.RemoteAddr().(*net.TCPAddr).AddrPort().Addr(); got != peerIP4 {
			t.Errorf("app sees source %v, want %v", got, peerIP4)
		}
		if _, err := app.Write([]byte("pong\n")); err != nil {
			t.Fatal(err)
		}
		up.SetReadDeadline(time.Now().Add(3 * time.Second))
		buf := make([]byte, 5)
		if _, err := io.ReadFull(up, buf); err != nil || string(buf) != "pong\n" {
			t.Errorf("reply %q, %v", buf, err)
		}
	})

	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	for _, save := range []string{"iptables-save", "ip6tables-save"} {
		if tbl := natTable(t, pod, save); strings.Contains(tbl, "WEFT_") {
			t.Fatalf("%s after Close still has Weft's rules:\n%s", save, tbl)
		}
	}
	t.Run("after close", func(t *testing.T) {
		pod.dial(t, &net.Dialer{}, netip.AddrPortFrom(peerIP4, 9000))
		accept(t, remote4)
		peer.dial(t, &net.Dialer{}, netip.AddrPortFrom(podIP4, 8080))
		accept(t, app4)
	})
	if err := p.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

func execOut(bin string, args ...string) ([]byte, error) {
	return exec.Command(bin, args...).Output()
}
