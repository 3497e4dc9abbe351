package datapath

import (
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"

	"github.com/weftmesh/weft/test/privileged"
)

// TestPrivilegedRestart plays an agent restart: every Go handle is closed, capture keeps working
// while no agent holds a handle, and a new Attach and EnrollPod take over the very same pinned
// links (same link IDs, one program per hook) and maps (counters carry on).
func TestPrivilegedRestart(t *testing.T) {
	privileged.Require(t)
	cg, pins := privileged.TempCgroupAndPins(t)
	cfg := Config{CgroupPath: cg, PinDir: pins}
	var current atomic.Pointer[Datapath] // the running agent's handle; nil while it is away
	d, err := Attach(cfg)
	if err != nil {
		t.Fatal(err)
	}
	current.Store(d)
	t.Cleanup(func() {
		if d := current.Load(); d != nil {
			if err := d.Detach(); err != nil {
				t.Errorf("detach: %v", err)
			}
		}
	})

	pod, peer := podAndPeer(t)
	cookie := pod.cookie(t)
	agentLC := d.AgentListenConfig()
	serve(t, pod.listen(t, agentLC, "tcp4", "127.0.0.1:15001"), func(c net.Conn) string {
		d := current.Load()
		if d == nil {
			return "outbound (agent away)"
		}
		dst, err := d.OriginalDst(cookie, c.RemoteAddr().(*net.TCPAddr).AddrPort())
		if err != nil {
			return "outbound error: " + err.Error()
		}
		return "outbound " + dst.String()
	})
	// The listener outlives the agent's handles, as after a hand-over.
	inbound := pod.listen(t, agentLC, "tcp", ":15006")
	serve(t, inbound, named("inbound"))
	serve(t, peer.listen(t, net.ListenConfig{}, "tcp", ":9090"), named("peer"))
	podCfg := PodConfig{NetNSPath: pod.path, IPs: []netip.Addr{podIP4, podIP6}, Gateways: []netip.Addr{gwIP4}, Inbound: []syscall.Conn{inbound}}
	if _, err := d.EnrollPod(podCfg); err != nil {
		t.Fatal(err)
	}

	check := func(t *testing.T, wantOutbound string) {
		t.Helper()
		var got string
		privileged.InCgroup(t, cg, func() {
			got = pod.mustDialLine(t, dialOpts{network: "tcp4", addr: "198.18.0.2:9090"})
		})
		if got != wantOutbound {
			t.Errorf("outbound: %q, want %q", got, wantOutbound)
		}
		if got := peer.mustDialLine(t, dialOpts{network: "tcp4", addr: "198.18.0.1:8080", local: "198.18.0.2:0"}); got != "inbound" {
			t.Errorf("inbound: %q, want inbound", got)
		}
		for _, at := range []ebpf.AttachType{ebpf.AttachCGroupInet4Connect, ebpf.AttachCGroupInet6Connect, ebpf.AttachCGroupSockOps} {
			if n := cgroupPrograms(t, cg, at); n != 1 {
				t.Errorf("%v: %d programs attached, want 1", at, n)
			}
		}
		if n := netnsLinks(t, pod); n != 1 {
			t.Errorf("sk_lookup: %d programs attached, want 1", n)
		}
	}

	check(t, "outbound 198.18.0.2:9090")
	ids := pinnedLinkIDs(t, pins, cookie)
	before, err := d.Stats()
	if err != nil {
		t.Fatal(err)
	}

	// The agent stops: all handles closed, pins and attachments stay.
	current.Store(nil)
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	t.Run("agent away", func(t *testing.T) { check(t, "outbound (agent away)") })

	// A new agent.
	d, err = Attach(cfg)
	if err != nil {
		t.Fatal(err)
	}
	current.Store(d)
	if _, err := d.EnrollPod(podCfg); err != nil {
		t.Fatal(err)
	}
	t.Run("restarted", func(t *testing.T) {
		check(t, "outbound 198.18.0.2:9090")
		after := pinnedLinkIDs(t, pins, cookie)
		for pin, id := range ids {
			if after[pin] != id {
				t.Errorf("%s: link %d replaced by %d", pin, id, after[pin])
			}
		}
		st, err := d.Stats()
		if err != nil {
			t.Fatal(err)
		}
		// Two more redirects and steerings since "before": one while away, one now.
		if st[StatConnectRedirected] != before[StatConnectRedirected]+2 || st[StatInboundSteered] != before[StatInboundSteered]+2 {
			t.Errorf("counters did not carry over: before %s, after %s", before.nonZero(), st.nonZero())
		}
	})
}

// pinnedLinkIDs returns the IDs of the links pinned for the node and for one pod.
func pinnedLinkIDs(t *testing.T, pins string, cookie uint64) map[string]link.ID {
	t.Helper()
	ids := map[string]link.ID{}
	for _, pin := range []string{pinConnect4, pinConnect6, pinSockops, filepath.Join(pinPods, strconv.FormatUint(cookie, 10))} {
		l, err := link.LoadPinnedLink(filepath.Join(pins, pin), nil)
		if err != nil {
			t.Fatalf("pinned link %s: %v", pin, err)
		}
		info, err := l.Info()
		l.Close()
		if err != nil {
			t.Fatal(err)
		}
		ids[pin] = info.ID
	}
	return ids
}

// cgroupPrograms counts the programs attached to a cgroup for one attach type.
func cgroupPrograms(t *testing.T, cgroup string, at ebpf.AttachType) int {
	t.Helper()
	f, err := os.Open(cgroup)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	res, err := link.QueryPrograms(link.QueryOptions{Target: int(f.Fd()), Attach: at})
	if err != nil {
		t.Fatal(err)
	}
	return len(res.Programs)
}
