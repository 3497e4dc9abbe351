package datapath

import (
	"errors"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/weftmesh/weft/test/privileged"
)

// TestPrivilegedOutbound attaches the data path to a temporary cgroup, enrolls a pod netns and
// makes real connects from a thread inside both: captured ones land on the agent's 127.0.0.1 /
// ::1 port 15001 listeners, which recover the original destination with OriginalDst; the others
// reach the real destination in the peer netns.
func TestPrivilegedOutbound(t *testing.T) {
	privileged.Require(t)
	d, cfg := attachTemp(t)
	pod, peer := podAndPeer(t)
	cookie := pod.cookie(t)

	// The agent's outbound listeners answer with the original destination.
	agentLC, appLC := d.AgentListenConfig(), net.ListenConfig{}
	origDst := func(c net.Conn) string {
		dst, err := d.OriginalDst(cookie, c.RemoteAddr().(*net.TCPAddr).AddrPort())
		if err != nil {
			return "outbound error: " + err.Error()
		}
		return "outbound " + dst.String()
	}
	serve(t, pod.listen(t, agentLC, "tcp4", "127.0.0.1:15001"), origDst)
	serve(t, pod.listen(t, agentLC, "tcp6", "[::1]:15001"), origDst)
	// Real destinations.
	serve(t, peer.listen(t, appLC, "tcp", ":9090"), named("peer"))
	serve(t, peer.listen(t, appLC, "tcp", ":9091"), named("peer"))
	serve(t, pod.listen(t, appLC, "tcp4", "127.0.0.1:9092"), named("pod loopback"))
	serve(t, pod.listen(t, appLC, "tcp", ":9093"), named("pod app"))
	udpEcho(t, peer, "198.18.0.2:9094")

	if _, err := d.EnrollPod(PodConfig{
		NetNSPath:            pod.path,
		IPs:                  []netip.Addr{podIP4, podIP6},
		ExcludeOutboundPorts: []uint16{9091},
		BypassInbound:        true,
	}); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name string
		from *testNS
		dial dialOpts
		want string
		stat Stat // the counter that must move by one; StatConnectSeen alone for "not enrolled"
	}{
		{"ipv4 redirected", pod, dialOpts{network: "tcp4", addr: "198.18.0.2:9090"}, "outbound 198.18.0.2:9090", StatConnectRedirected},
		{"ipv6 redirected", pod, dialOpts{network: "tcp6", addr: "[2001:db8::2]:9090"}, "outbound [2001:db8::2]:9090", StatConnectRedirected},
		{"ipv4-mapped on an ipv6 socket", pod, dialOpts{network: "tcp6-mapped", addr: "198.18.0.2:9090"}, "outbound 198.18.0.2:9090", StatConnectRedirected},
		{"mptcp client", pod, dialOpts{network: "tcp4", addr: "198.18.0.2:9090", mptcp: true}, "outbound 198.18.0.2:9090", StatConnectRedirected},
		{"bound source address", pod, dialOpts{network: "tcp4", addr: "198.18.0.2:9090", local: "198.18.0.1:0"}, "outbound 198.18.0.2:9090", StatConnectRedirected},
		{"foreign mark captured", pod, dialOpts{network: "tcp4", addr: "198.18.0.2:9090", control: MarkControl(0x111)}, "outbound 198.18.0.2:9090", StatConnectRedirected},
		{"excluded port", pod, dialOpts{network: "tcp4", addr: "198.18.0.2:9091"}, "peer", StatConnectExemptPort},
		{"excluded port ipv6", pod, dialOpts{network: "tcp6", addr: "[2001:db8::2]:9091"}, "peer", StatConnectExemptPort},
		{"agent mark", pod, dialOpts{network: "tcp4", addr: "198.18.0.2:9090", control: MarkControl(cfg.AgentMark)}, "peer", StatConnectExemptAgent},
		{"agent mark ipv6", pod, dialOpts{network: "tcp6", addr: "[2001:db8::2]:9090", control: MarkControl(cfg.AgentMark)}, "peer", StatConnectExemptAgent},
		{"upstream mark", pod, dialOpts{network: "tcp4", addr: "198.18.0.2:9090", control: MarkControl(cfg.UpstreamMark)}, "peer", StatConnectExemptAgent},
		{"loopback", pod, dialOpts{network: "tcp4", addr: "127.0.0.1:9092"}, "pod loopback", StatConnectExemptLoopback},
		{"not enrolled", peer, dialOpts{network: "tcp4", addr: "198.18.0.1:9093"}, "pod app", StatConnectSeen},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			delta := statDelta(t, d)
			var got string
			privileged.InCgroup(t, cfg.CgroupPath, func() { got = tt.from.mustDialLine(t, tt.dial) })
			if got != tt.want {
				t.Errorf("server said %q, want %q", got, tt.want)
			}
			st := delta()
			if st[tt.stat] != 1 || st[StatConnectSeen] != 1 {
				t.Errorf("counters moved: %s; want %v=1", st.nonZero(), tt.stat)
			}
			if tt.stat == StatConnectSeen && st[StatConnectEnrolled] != 0 {
				t.Errorf("connect from a netns that is not enrolled counted as enrolled: %s", st.nonZero())
			}
		})
	}

	t.Run("udp untouched", func(t *testing.T) {
		delta := statDelta(t, d)
		privileged.InCgroup(t, cfg.CgroupPath, func() {
			pod.do(t, func() error {
				c, err := net.DialTimeout("udp4", "198.18.0.2:9094", ioTimeout)
				if err != nil {
					return err
				}
				defer c.Close()
				c.SetDeadline(time.Now().Add(ioTimeout))
				if _, err := c.Write([]byte("ping")); err != nil {
					return err
				}
				buf := make([]byte, 16)
				n, err := c.Read(buf)
				if err != nil || string(buf[:n]) != "ping" {
					t.Errorf("udp echo: %q, %v", buf[:n], err)
				}
				return nil
			})
		})
		if st := delta(); st.nonZero() != "" {
			t.Errorf("udp moved counters: %s", st.nonZero())
		}
	})

	t.Run("original destination is consumed", func(t *testing.T) {
		_, err := d.OriginalDst(cookie, netip.MustParseAddrPort("127.0.0.1:1"))
		if !errors.Is(err, ErrNoOriginalDst) {
			t.Errorf("unknown peer: %v, want ErrNoOriginalDst", err)
		}
	})

	t.Run("unenrolled", func(t *testing.T) {
		pods, err := d.EnrolledPods()
		if err != nil || len(pods) != 1 || pods[0] != cookie {
			t.Fatalf("enrolled pods %v (%v), want [%d]", pods, err, cookie)
		}
		if err := d.Unenroll(cookie); err != nil {
			t.Fatal(err)
		}
		var got string
		privileged.InCgroup(t, cfg.CgroupPath, func() {
			got = pod.mustDialLine(t, dialOpts{network: "tcp4", addr: "198.18.0.2:9090"})
		})
		if got != "peer" {
			t.Errorf("after unenroll the server said %q, want peer", got)
		}
	})
}

// udpEcho echoes datagrams on addr inside n until cleanup.
func udpEcho(t *testing.T, n *testNS, addr string) {
	t.Helper()
	var pc net.PacketConn
	n.do(t, func() (err error) { pc, err = net.ListenPacket("udp4", addr); return err })
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 1500)
		for {
			k, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			pc.WriteTo(buf[:k], from)
		}
	}()
	t.Cleanup(func() { pc.Close(); <-done })
}
