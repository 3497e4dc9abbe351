package datapath

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"syscall"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"github.com/weftmesh/weft/test/privileged"
)

// skLookupCtx is struct bpf_sk_lookup (include/uapi/linux/bpf.h), the context of a
// BPF_PROG_TEST_RUN of an sk_lookup program. TestLayout checks it against the kernel's BTF.
type skLookupCtx struct {
	Cookie         uint64 // out: cookie of the selected socket
	Family         uint32
	Protocol       uint32
	RemoteIP4      [4]byte
	RemoteIP6      [16]byte
	RemotePort     [2]byte // network byte order
	Pad            uint16
	LocalIP4       [4]byte
	LocalIP6       [16]byte
	LocalPort      uint32 // host byte order
	IngressIfindex uint32
	Pad2           uint32
}

func newSkLookupCtx(proto uint32, remote, local netip.AddrPort) skLookupCtx {
	c := skLookupCtx{Protocol: proto, LocalPort: uint32(local.Port())}
	c.RemotePort = [2]byte{byte(remote.Port() >> 8), byte(remote.Port())}
	if local.Addr().Is4() {
		c.Family = unix.AF_INET
		c.RemoteIP4, c.LocalIP4 = remote.Addr().As4(), local.Addr().As4()
	} else {
		c.Family = unix.AF_INET6
		c.RemoteIP6, c.LocalIP6 = remote.Addr().As16(), local.Addr().As16()
	}
	return c
}

// socketCookie returns SO_COOKIE of a socket.
func socketCookie(t *testing.T, c syscall.Conn) uint64 {
	t.Helper()
	var cookie uint64
	err := withSocket(c, func(si socketInfo) (err error) {
		cookie, err = unix.GetsockoptUint64(si.fd, unix.SOL_SOCKET, unix.SO_COOKIE)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return cookie
}

// skLookupProgram returns the program attached to a pod's netns, through its pinned link.
func skLookupProgram(t *testing.T, d *Datapath, p *Pod) *ebpf.Program {
	t.Helper()
	l, err := link.LoadPinnedLink(d.podPin(p.NetNSCookie()), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	info, err := l.Info()
	if err != nil {
		t.Fatal(err)
	}
	prog, err := ebpf.NewProgramFromID(info.Program)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { prog.Close() })
	return prog
}

// TestPrivilegedInboundProgRun runs the sk_lookup programs of enrolled pods with
// BPF_PROG_TEST_RUN on synthetic lookups; pods, listeners and exclusions are set up with
// EnrollPod, as in production. (This kernel's test run refuses a non-zero ingress_ifindex; the
// program does not use it.)
func TestPrivilegedInboundProgRun(t *testing.T) {
	privileged.Require(t)
	d, _ := attachTemp(t)

	// Pod "split" has one IPv4 and one IPv6-only listener, pod "dual" one dual-stack listener
	// (closed before the last cases), pod "bypass" has inbound capture off.
	split, dual, bypass := newTestNS(t, "split"), newTestNS(t, "dual"), newTestNS(t, "bypass")
	agentLC := d.AgentListenConfig()
	in4 := split.listen(t, agentLC, "tcp4", "0.0.0.0:15006")
	in6 := split.listen(t, agentLC, "tcp6", "[::]:15006")
	inDual := dual.listen(t, agentLC, "tcp", ":15006")
	base := PodConfig{
		IPs:                 []netip.Addr{podIP4, podIP6},
		Gateways:            []netip.Addr{gwIP4, gwIP6},
		ExcludeInboundPorts: []uint16{9000, 9001},
	}
	enroll := func(ns *testNS, mod func(*PodConfig)) *ebpf.Program {
		cfg := base
		cfg.NetNSPath = ns.path
		mod(&cfg)
		p, err := d.EnrollPod(cfg)
		if err != nil {
			t.Fatal(err)
		}
		return skLookupProgram(t, d, p)
	}
	progSplit := enroll(split, func(c *PodConfig) { c.Inbound = []syscall.Conn{in4, in6} })
	progDual := enroll(dual, func(c *PodConfig) { c.Inbound = []syscall.Conn{inDual} })
	progBypass := enroll(bypass, func(c *PodConfig) { c.BypassInbound = true })
	cookie4, cookie6, cookieDual := socketCookie(t, in4), socketCookie(t, in6), socketCookie(t, inDual)

	client4 := netip.AddrPortFrom(peerIP4, 40000)
	client6 := netip.AddrPortFrom(peerIP6, 40000)
	ap := netip.AddrPortFrom
	// The sockops program registers the agent's upstream connections; here they are seeded.
	upstream4, upstream6 := ap(peerIP4, 40001), ap(peerIP6, 40001)
	for _, k := range []upstreamKey{
		{NetnsCookie: split.cookie(t), Client: upstream4.Addr().As16(), Server: podIP4.As16(), ClientPort: 40001, ServerPort: 8080},
		{NetnsCookie: split.cookie(t), Client: upstream6.Addr().As16(), Server: podIP6.As16(), ClientPort: 40001, ServerPort: 8080},
	} {
		if err := d.conn.Upstream.Put(&k, uint32(1)); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name    string
		prog    *ebpf.Program
		ctx     skLookupCtx
		verdict uint32 // SK_PASS 1, SK_DROP 0
		cookie  uint64 // selected socket, 0 for none
		stat    Stat   // counter that moves by one; numStats for none
	}{
		{"ipv4 steered", progSplit, newSkLookupCtx(unix.IPPROTO_TCP, client4, ap(podIP4, 8080)), 1, cookie4, StatInboundSteered},
		{"ipv6 steered", progSplit, newSkLookupCtx(unix.IPPROTO_TCP, client6, ap(podIP6, 8080)), 1, cookie6, StatInboundSteered},
		{"any port", progSplit, newSkLookupCtx(unix.IPPROTO_TCP, client4, ap(podIP4, 1)), 1, cookie4, StatInboundSteered},
		{"ipv4 to a dual-stack listener", progDual, newSkLookupCtx(unix.IPPROTO_TCP, client4, ap(podIP4, 8080)), 1, cookieDual, StatInboundSteered},
		{"ipv6 to a dual-stack listener", progDual, newSkLookupCtx(unix.IPPROTO_TCP, client6, ap(podIP6, 8080)), 1, cookieDual, StatInboundSteered},
		{"udp", progSplit, newSkLookupCtx(unix.IPPROTO_UDP, client4, ap(podIP4, 53)), 1, 0, numStats},
		{"hbone", progSplit, newSkLookupCtx(unix.IPPROTO_TCP, client4, ap(podIP4, 15008)), 1, 0, StatInboundExemptHBONE},
		{"hbone ipv6", progSplit, newSkLookupCtx(unix.IPPROTO_TCP, client6, ap(podIP6, 15008)), 1, 0, StatInboundExemptHBONE},
		{"excluded port", progSplit, newSkLookupCtx(unix.IPPROTO_TCP, client4, ap(podIP4, 9001)), 1, 0, StatInboundExemptPort},
		{"excluded port ipv6", progSplit, newSkLookupCtx(unix.IPPROTO_TCP, client6, ap(podIP6, 9000)), 1, 0, StatInboundExemptPort},
		{"probe from the gateway", progSplit, newSkLookupCtx(unix.IPPROTO_TCP, ap(gwIP4, 40000), ap(podIP4, 8080)), 1, 0, StatInboundExemptProbe},
		{"probe from the ipv6 gateway", progSplit, newSkLookupCtx(unix.IPPROTO_TCP, ap(gwIP6, 40000), ap(podIP6, 8080)), 1, 0, StatInboundExemptProbe},
		{"not a pod address", progSplit, newSkLookupCtx(unix.IPPROTO_TCP, client4, ap(netip.MustParseAddr("198.18.0.99"), 8080)), 1, 0, StatInboundExemptNotPod},
		{"agent upstream", progSplit, newSkLookupCtx(unix.IPPROTO_TCP, upstream4, ap(podIP4, 8080)), 1, 0, StatInboundExemptAgent},
		{"agent upstream ipv6", progSplit, newSkLookupCtx(unix.IPPROTO_TCP, upstream6, ap(podIP6, 8080)), 1, 0, StatInboundExemptAgent},
		{"agent upstream elsewhere", progDual, newSkLookupCtx(unix.IPPROTO_TCP, upstream4, ap(podIP4, 8080)), 1, cookieDual, StatInboundSteered},
		{"inbound capture off", progBypass, newSkLookupCtx(unix.IPPROTO_TCP, client4, ap(podIP4, 8080)), 1, 0, StatInboundExemptDisabled},
	}
	run := func(t *testing.T, prog *ebpf.Program, ctx skLookupCtx, verdict uint32, cookie uint64, stat Stat) {
		t.Helper()
		delta := statDelta(t, d)
		var out skLookupCtx
		ret, err := prog.Run(&ebpf.RunOptions{Context: ctx, ContextOut: &out})
		if err != nil {
			t.Fatal(err)
		}
		if ret != verdict || out.Cookie != cookie {
			t.Errorf("verdict %d, socket %d; want %d, %d", ret, out.Cookie, verdict, cookie)
		}
		st := delta()
		if stat == numStats {
			if st.nonZero() != "" {
				t.Errorf("counters moved: %s; want none", st.nonZero())
			}
			return
		}
		if st[stat] != 1 || st[StatInboundSeen] != 1 {
			t.Errorf("counters moved: %s; want %v=1", st.nonZero(), stat)
		}
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { run(t, tt.prog, tt.ctx, tt.verdict, tt.cookie, tt.stat) })
	}

	// Without a listener the pod's connections are refused: the agent is away, nothing bypasses it.
	inDual.Close()
	t.Run("no listener", func(t *testing.T) {
		run(t, progDual, newSkLookupCtx(unix.IPPROTO_TCP, client4, ap(podIP4, 8080)), 0, 0, StatInboundNoListener)
	})
	t.Run("hbone without a listener", func(t *testing.T) {
		run(t, progDual, newSkLookupCtx(unix.IPPROTO_TCP, client4, ap(podIP4, 15008)), 1, 0, StatInboundExemptHBONE)
	})
}

// TestPrivilegedInbound enrolls a pod netns and connects to it for real from the peer netns: new
// connections to the pod's addresses land on the agent's 15006 listener (which still sees the
// original destination as its local address), except HBONE, excluded ports, probes from the
// gateway and connections over lo, which reach their own listeners.
func TestPrivilegedInbound(t *testing.T) {
	privileged.Require(t)
	d, cfg := attachTemp(t)
	pod, peer := podAndPeer(t)

	agentLC, appLC := d.AgentListenConfig(), net.ListenConfig{}
	inbound := pod.listen(t, agentLC, "tcp", ":15006") // dual-stack
	serve(t, inbound, func(c net.Conn) string { return "inbound " + c.LocalAddr().String() })
	serve(t, pod.listen(t, agentLC, "tcp", ":15008"), named("hbone"))
	serve(t, pod.listen(t, appLC, "tcp", ":8080"), named("app"))
	serve(t, pod.listen(t, appLC, "tcp", ":8081"), named("app"))

	p, err := d.EnrollPod(PodConfig{
		NetNSPath:           pod.path,
		IPs:                 []netip.Addr{podIP4, podIP6},
		Gateways:            []netip.Addr{gwIP4, gwIP6},
		ExcludeInboundPorts: []uint16{8081},
		Inbound:             []syscall.Conn{inbound},
	})
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name string
		from *testNS
		dial dialOpts
		want string
		stat Stat
	}{
		{"ipv4 steered", peer, dialOpts{network: "tcp4", addr: "198.18.0.1:8080", local: "198.18.0.2:0"}, "inbound 198.18.0.1:8080", StatInboundSteered},
		{"ipv6 steered", peer, dialOpts{network: "tcp6", addr: "[2001:db8::1]:8080", local: "[2001:db8::2]:0"}, "inbound [2001:db8::1]:8080", StatInboundSteered},
		{"port without a listener steered", peer, dialOpts{network: "tcp4", addr: "198.18.0.1:7777"}, "inbound 198.18.0.1:7777", StatInboundSteered},
		{"hbone served directly", peer, dialOpts{network: "tcp4", addr: "198.18.0.1:15008"}, "hbone", StatInboundExemptHBONE},
		{"hbone served directly ipv6", peer, dialOpts{network: "tcp6", addr: "[2001:db8::1]:15008"}, "hbone", StatInboundExemptHBONE},
		{"excluded port", peer, dialOpts{network: "tcp4", addr: "198.18.0.1:8081"}, "app", StatInboundExemptPort},
		{"probe from the gateway", peer, dialOpts{network: "tcp4", addr: "198.18.0.1:8080", local: "198.18.0.254:0"}, "app", StatInboundExemptProbe},
		{"probe from the ipv6 gateway", peer, dialOpts{network: "tcp6", addr: "[2001:db8::1]:8080", local: "[2001:db8::fe]:0"}, "app", StatInboundExemptProbe},
		// The agent's upstream connections (SO_MARK UpstreamMark, below the node's cgroup) reach
		// the application; other local connections to the pod's address count as inbound, as
		// with Istio's iptables rules.
		{"agent upstream", pod, dialOpts{network: "tcp4", addr: "198.18.0.1:8080", control: MarkControl(cfg.UpstreamMark), inCgroup: cfg.CgroupPath}, "app", StatInboundExemptAgent},
		{"agent upstream ipv6", pod, dialOpts{network: "tcp6", addr: "[2001:db8::1]:8080", control: MarkControl(cfg.UpstreamMark), inCgroup: cfg.CgroupPath}, "app", StatInboundExemptAgent},
		{"local connection", pod, dialOpts{network: "tcp4", addr: "198.18.0.1:8080"}, "inbound 198.18.0.1:8080", StatInboundSteered},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			delta := statDelta(t, d)
			if got := tt.from.mustDialLine(t, tt.dial); got != tt.want {
				t.Errorf("server said %q, want %q", got, tt.want)
			}
			if st := delta(); st[tt.stat] != 1 {
				t.Errorf("counters moved: %s; want %v=1", st.nonZero(), tt.stat)
			}
		})
	}

	t.Run("enrolling again updates the pod", func(t *testing.T) {
		_, err := d.EnrollPod(PodConfig{
			NetNSPath:           pod.path,
			IPs:                 []netip.Addr{podIP4, podIP6},
			Gateways:            []netip.Addr{gwIP4, gwIP6},
			ExcludeInboundPorts: []uint16{8080, 8081},
			Inbound:             []syscall.Conn{inbound},
		})
		if err != nil {
			t.Fatal(err)
		}
		if got := peer.mustDialLine(t, dialOpts{network: "tcp4", addr: "198.18.0.1:8080", local: "198.18.0.2:0"}); got != "app" {
			t.Errorf("newly excluded port: %q, want app", got)
		}
		if got := peer.mustDialLine(t, dialOpts{network: "tcp4", addr: "198.18.0.1:7777", local: "198.18.0.2:0"}); got != "inbound 198.18.0.1:7777" {
			t.Errorf("other port: %q, want inbound", got)
		}
		if n := netnsLinks(t, pod); n != 1 {
			t.Errorf("%d sk_lookup programs attached, want 1", n)
		}
	})

	t.Run("no listener: refused", func(t *testing.T) {
		inbound.Close()
		delta := statDelta(t, d)
		_, err := peer.dialLine(t, dialOpts{network: "tcp4", addr: "198.18.0.1:7777", local: "198.18.0.2:0"})
		if !errors.Is(err, unix.ECONNREFUSED) {
			t.Errorf("dial with the agent away: %v, want connection refused", err)
		}
		if st := delta(); st[StatInboundNoListener] == 0 {
			t.Errorf("counters moved: %s; want %v", st.nonZero(), StatInboundNoListener)
		}
		// Probes still reach the application.
		if got := peer.mustDialLine(t, dialOpts{network: "tcp4", addr: "198.18.0.1:8080", local: "198.18.0.254:0"}); got != "app" {
			t.Errorf("probe with the agent away: %q, want app", got)
		}
	})

	t.Run("unenrolled", func(t *testing.T) {
		if err := p.Close(); err != nil {
			t.Fatal(err)
		}
		if got := peer.mustDialLine(t, dialOpts{network: "tcp4", addr: "198.18.0.1:8080"}); got != "app" {
			t.Errorf("after Close: %q, want app", got)
		}
		if n := netnsLinks(t, pod); n != 0 {
			t.Errorf("%d sk_lookup links still attached", n)
		}
		if _, err := os.Stat(d.podPin(p.NetNSCookie())); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("sk_lookup link still pinned: %v", err)
		}
		if pods, err := d.EnrolledPods(); err != nil || len(pods) != 0 {
			t.Errorf("enrolled pods after Close: %v, %v", pods, err)
		}
		var entries int
		var key listenerKey
		var val uint64
		for it := d.inbound.InboundSocks.Iterate(); it.Next(&key, &val); {
			entries++
		}
		if entries != 0 {
			t.Errorf("%d inbound listeners left in the map", entries)
		}
	})
}

// netnsLinks counts the sk_lookup programs attached to a netns.
func netnsLinks(t *testing.T, ns *testNS) int {
	t.Helper()
	res, err := link.QueryPrograms(link.QueryOptions{Target: int(ns.h), Attach: ebpf.AttachSkLookup})
	if err != nil {
		t.Fatal(fmt.Errorf("query sk_lookup: %w", err))
	}
	return len(res.Programs)
}

// TestPrivilegedEnrollErrors checks that EnrollPod refuses sockets it must not hand to the kernel
// and leaves nothing behind when it does.
func TestPrivilegedEnrollErrors(t *testing.T) {
	privileged.Require(t)
	d, _ := attachTemp(t)
	pod, other := newTestNS(t, "pod"), newTestNS(t, "other")
	mptcp := net.ListenConfig{}
	mptcp.SetMultipathTCP(true)
	var udp net.PacketConn
	pod.do(t, func() (err error) { udp, err = net.ListenPacket("udp4", "127.0.0.1:0"); return err })
	t.Cleanup(func() { udp.Close() })

	tests := []struct {
		name    string
		path    string
		inbound syscall.Conn
		wantErr string
	}{
		{"listener of another netns", pod.path, other.listen(t, d.AgentListenConfig(), "tcp", ":15006"), "not the pod's"},
		{"mptcp listener", pod.path, pod.listen(t, mptcp, "tcp", ":15006"), "MPTCP"},
		{"udp socket", pod.path, udp.(*net.UDPConn), "not a listening TCP socket"},
		{"no such netns", "/proc/self/fd/100000", pod.listen(t, d.AgentListenConfig(), "tcp", ":15007"), "no such file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := d.EnrollPod(PodConfig{NetNSPath: tt.path, IPs: []netip.Addr{podIP4}, Inbound: []syscall.Conn{tt.inbound}})
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("EnrollPod: %v, want an error containing %q", err, tt.wantErr)
			}
			if pods, err := d.EnrolledPods(); err != nil || len(pods) != 0 {
				t.Errorf("enrolled pods after a failed enrollment: %v, %v", pods, err)
			}
			if n := netnsLinks(t, pod); n != 0 {
				t.Errorf("%d sk_lookup programs left attached", n)
			}
		})
	}
}
