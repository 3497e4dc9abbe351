package datapath

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/weftmesh/weft/nodeagent/podnet"
	"github.com/weftmesh/weft/test/privileged"
)

// TestPrivilegedSourceIP proves source-IP preservation. A "source pod" and a "destination pod"
// share a veth pair; the destination is enrolled and runs an application that reports the peer
// it sees. The test plays the agent: it accepts the steered connection on 15006 and connects to
// the application inside the destination netns, bound with IP_TRANSPARENT to the source pod's
// address (TransparentControl), then relays bytes. The application must see the source pod's
// address and the bytes must make the round trip. Without the reply routing EnrollPod installs
// (before enrolling, after Close) the same upstream connect must fail.
func TestPrivilegedSourceIP(t *testing.T) {
	privileged.Require(t)
	d, cfg := attachTemp(t)
	srcPod, dstPod := newTestNS(t, "source pod"), newTestNS(t, "destination pod")
	srcIPs := []netip.Addr{netip.MustParseAddr("198.18.0.1"), netip.MustParseAddr("2001:db8::1")}
	dstIPs := []netip.Addr{netip.MustParseAddr("198.18.0.2"), netip.MustParseAddr("2001:db8::2")}
	veth(t, srcPod, dstPod, srcIPs, dstIPs)

	// The application: reports the peer it sees, then echoes.
	app := dstPod.listen(t, net.ListenConfig{}, "tcp", ":8080")
	var wg sync.WaitGroup
	t.Cleanup(func() { app.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := app.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				c.SetDeadline(time.Now().Add(ioTimeout))
				fmt.Fprintf(c, "app saw %s\n", c.RemoteAddr().(*net.TCPAddr).AddrPort())
				io.Copy(c, c)
			}()
		}
	}()

	// upstream connects to the application as the agent does: inside the destination netns,
	// bound to the client's address, marked with UpstreamMark.
	upstream := func(client netip.Addr, app string, timeout time.Duration) (net.Conn, error) {
		var c net.Conn
		err := podnet.Do(dstPod.path, func() (err error) {
			dl := net.Dialer{
				LocalAddr: net.TCPAddrFromAddrPort(netip.AddrPortFrom(client, 0)),
				Control:   TransparentControl(cfg.UpstreamMark),
				Timeout:   timeout,
			}
			c, err = dl.Dial("tcp", app)
			return err
		})
		return c, err
	}

	// The agent's own sockets live below the node's cgroup, as a DaemonSet's do: the sockops
	// program registers their upstream connections.
	privileged.InCgroup(t, cfg.CgroupPath, func() {
		for _, client := range srcIPs {
			app := net.JoinHostPort(dstIPs[0].String(), "8080")
			if client.Is6() {
				app = net.JoinHostPort(dstIPs[1].String(), "8080")
			}
			if c, err := upstream(client, app, 500*time.Millisecond); !isTimeout(err) {
				closeConn(c)
				t.Fatalf("transparent connect from %v before the reply routing exists: %v, want a timeout", client, err)
			}
		}

		inbound := dstPod.listen(t, d.AgentListenConfig(), "tcp", ":15006")
		pod, err := d.EnrollPod(PodConfig{NetNSPath: dstPod.path, IPs: dstIPs, Inbound: []syscall.Conn{inbound}})
		if err != nil {
			t.Fatal(err)
		}
		checkReplyRouting(t, dstPod, cfg, true)

		// The agent: accept, connect upstream with the client's address, relay.
		relayErrs := make(chan error, 4)
		var relays sync.WaitGroup
		relays.Add(1)
		go func() {
			defer relays.Done()
			for {
				c, err := inbound.Accept()
				if err != nil {
					return
				}
				client := c.RemoteAddr().(*net.TCPAddr).AddrPort().Addr().Unmap()
				up, err := upstream(client, c.LocalAddr().String(), ioTimeout)
				if err != nil {
					relayErrs <- fmt.Errorf("upstream from %v: %w", client, err)
					c.Close()
					continue
				}
				relays.Add(1)
				go func() {
					defer relays.Done()
					relay(c, up)
				}()
			}
		}()
		stopAgent := sync.OnceFunc(func() { inbound.Close(); relays.Wait() })
		defer stopAgent()

		for i := range srcIPs {
			t.Run(fmt.Sprintf("ipv%d", 4+2*i), func(t *testing.T) {
				delta := statDelta(t, d)
				target := netip.AddrPortFrom(dstIPs[i], 8080)
				var saw, echo string
				var local netip.AddrPort
				srcPod.do(t, func() error {
					c, err := net.DialTimeout("tcp", target.String(), ioTimeout)
					if err != nil {
						return err
					}
					defer c.Close()
					c.SetDeadline(time.Now().Add(ioTimeout))
					local = c.LocalAddr().(*net.TCPAddr).AddrPort()
					r := bufio.NewReader(c)
					if saw, err = r.ReadString('\n'); err != nil {
						return fmt.Errorf("read greeting: %w (agent: %v)", err, drain(relayErrs))
					}
					if _, err := fmt.Fprintln(c, "ping"); err != nil {
						return err
					}
					echo, err = r.ReadString('\n')
					return err
				})
				ap, err := netip.ParseAddrPort(strings.TrimPrefix(strings.TrimSpace(saw), "app saw "))
				if err != nil || ap.Addr().Unmap() != local.Addr().Unmap() {
					t.Errorf("application saw %q, want the source pod %v", saw, local.Addr())
				}
				if echo != "ping\n" {
					t.Errorf("echo %q, want ping", echo)
				}
				st := delta()
				if st[StatInboundSteered] != 1 || st[StatInboundExemptAgent] != 1 || st[StatUpstreamTracked] != 1 {
					t.Errorf("counters moved: %s; want one steered, one agent upstream", st.nonZero())
				}
			})
		}

		// Removing the reply routing cuts the replies of live upstream connections: let the
		// relays finish first.
		stopAgent()
		if err := pod.Close(); err != nil {
			t.Fatal(err)
		}
		checkReplyRouting(t, dstPod, cfg, false)
		if c, err := upstream(srcIPs[0], net.JoinHostPort(dstIPs[0].String(), "8080"), 500*time.Millisecond); !isTimeout(err) {
			closeConn(c)
			t.Errorf("transparent connect after the pod was unenrolled: %v, want a timeout", err)
		}
	})
}

// isTimeout reports whether a dial failed by timing out: the SYN-ACK never came back.
func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func closeConn(c net.Conn) {
	if c != nil {
		c.Close()
	}
}

// relay copies between a and b in both directions and closes both when both sides are done,
// or when ioTimeout has passed.
func relay(a, b net.Conn) {
	a.SetDeadline(time.Now().Add(ioTimeout))
	b.SetDeadline(time.Now().Add(ioTimeout))
	done := make(chan struct{}, 2)
	cp := func(dst, src net.Conn) {
		io.Copy(dst, src)
		if tc, ok := dst.(*net.TCPConn); ok {
			tc.CloseWrite()
		}
		done <- struct{}{}
	}
	go cp(a, b)
	go cp(b, a)
	<-done
	<-done
	a.Close()
	b.Close()
}

func drain(errs chan error) []error {
	var out []error
	for {
		select {
		case err := <-errs:
			out = append(out, err)
		default:
			return out
		}
	}
}

// checkReplyRouting checks that the rule, routes and sysctl of the reply routing are present in
// ns (or all gone).
func checkReplyRouting(t *testing.T, ns *testNS, cfg Config, want bool) {
	t.Helper()
	h, err := netlink.NewHandleAt(ns.h)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	for _, fam := range []int{unix.AF_INET, unix.AF_INET6} {
		rules, err := h.RuleList(fam)
		if err != nil {
			t.Fatal(err)
		}
		var found bool
		for _, r := range rules {
			found = found || (r.Mark == cfg.UpstreamMark && r.Table == cfg.ReplyTable)
		}
		routes, err := h.RouteListFiltered(fam, &netlink.Route{Table: cfg.ReplyTable}, netlink.RT_FILTER_TABLE)
		if err != nil {
			t.Fatal(err)
		}
		if found != want || (len(routes) == 1) != want {
			t.Errorf("family %d: rule present %v, %d routes in table %d; want present %v", fam, found, len(routes), cfg.ReplyTable, want)
		}
	}
	var v []byte
	ns.do(t, func() (err error) {
		v, err = os.ReadFile("/proc/sys/net/ipv4/tcp_fwmark_accept")
		return err
	})
	if got := strings.TrimSpace(string(v)); (got == "1") != want {
		t.Errorf("tcp_fwmark_accept = %s, want enabled %v", got, want)
	}
}
