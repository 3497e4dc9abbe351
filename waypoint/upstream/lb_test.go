package upstream

import (
	"errors"
	"fmt"
	"net/netip"
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
)

func addrs(n int) []netip.AddrPort {
	out := make([]netip.AddrPort, n)
	for i := range out {
		out[i] = netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 0, 0, byte(i + 1)}), 8080)
	}
	return out
}

// pickCluster is a cluster of n endpoints (never dialled) for load-balancer tests.
func pickCluster(t *testing.T, n int, opts ...clusterOpt) *Cluster {
	t.Helper()
	m := newTestManager(t, nil, nil)
	if err := m.Update(clustersOf(edsCluster("c", opts...)), loadsOf(cla("c", addrs(n)...))); err != nil {
		t.Fatal(err)
	}
	return mustCluster(t, m, "c")
}

func pickN(t *testing.T, c *Cluster, n int, p func(i int) Pick) map[netip.AddrPort]int {
	t.Helper()
	counts := map[netip.AddrPort]int{}
	for i := range n {
		pp := p(i)
		h, err := c.pick(&pp)
		if err != nil {
			t.Fatal(err)
		}
		counts[h.ep.Addr]++
		c.mu.Lock()
		h.active--
		c.mu.Unlock()
	}
	return counts
}

func TestLoadBalancingDistribution(t *testing.T) {
	tests := []struct {
		policy   clusterv3.Cluster_LbPolicy
		min, max int // per host, of 3000 picks over 3 hosts
	}{
		{clusterv3.Cluster_ROUND_ROBIN, 1000, 1000},
		{clusterv3.Cluster_RANDOM, 850, 1150},
		{clusterv3.Cluster_LEAST_REQUEST, 850, 1150},
		{clusterv3.Cluster_RING_HASH, 700, 1300}, // no hash: random over the ring
		{clusterv3.Cluster_MAGLEV, 850, 1150},
	}
	for _, tt := range tests {
		t.Run(tt.policy.String(), func(t *testing.T) {
			c := pickCluster(t, 3, withLB(tt.policy))
			counts := pickN(t, c, 3000, func(int) Pick { return Pick{} })
			if len(counts) != 3 {
				t.Fatalf("picked %d hosts, want 3: %v", len(counts), counts)
			}
			for a, n := range counts {
				if n < tt.min || n > tt.max {
					t.Errorf("%s got %d of 3000, want %d..%d", a, n, tt.min, tt.max)
				}
			}
		})
	}
}

// TestLeastRequestAvoidsBusyHost: with two hosts, power of two choices never picks the
// busier one when both are drawn, so the busy host gets about a quarter of the picks.
func TestLeastRequestAvoidsBusyHost(t *testing.T) {
	c := pickCluster(t, 2, withLB(clusterv3.Cluster_LEAST_REQUEST))
	busy := c.hosts[0]
	c.mu.Lock()
	busy.active = 10
	c.mu.Unlock()
	counts := pickN(t, c, 4000, func(int) Pick { return Pick{} })
	if n := counts[busy.ep.Addr]; n < 800 || n > 1200 {
		t.Errorf("busy host got %d of 4000, want about 1000 (both choices on it)", n)
	}
}

func TestConsistentHash(t *testing.T) {
	for _, policy := range []clusterv3.Cluster_LbPolicy{clusterv3.Cluster_RING_HASH, clusterv3.Cluster_MAGLEV} {
		t.Run(policy.String(), func(t *testing.T) {
			c := pickCluster(t, 5, withLB(policy))
			before := map[uint64]netip.AddrPort{}
			spread := map[netip.AddrPort]int{}
			for k := range uint64(2000) {
				key := hash64(fmt.Sprint("user-", k))
				for range 3 { // sticky
					h, err := c.pick(&Pick{HashKey: key, HasHash: true})
					if err != nil {
						t.Fatal(err)
					}
					if prev, ok := before[key]; ok && prev != h.ep.Addr {
						t.Fatalf("key %d moved from %s to %s", k, prev, h.ep.Addr)
					}
					before[key] = h.ep.Addr
				}
				spread[before[key]]++
			}
			for a, n := range spread {
				if n < 200 {
					t.Errorf("%s got %d of 2000 keys; the hash spreads badly", a, n)
				}
			}
			// Removing a host moves only (most of) its keys.
			removed := addrs(5)[4]
			c.setEndpoints(specsOf(addrs(4)...))
			moved := 0
			for key, was := range before {
				h, err := c.pick(&Pick{HashKey: key, HasHash: true})
				if err != nil {
					t.Fatal(err)
				}
				if h.ep.Addr == removed {
					t.Fatal("picked a removed host")
				}
				if was != removed && h.ep.Addr != was {
					moved++
				}
			}
			if moved > len(before)/8 { // the ring scales its replicas with the host count, as Envoy
				t.Errorf("%d of %d keys of remaining hosts moved; want few", moved, len(before))
			}
			// A retry excluding the chosen host gets another one.
			key := hash64("retry")
			first, _ := c.pick(&Pick{HashKey: key, HasHash: true})
			second, _ := c.pick(&Pick{HashKey: key, HasHash: true, Exclude: []*Endpoint{first.ep}})
			if first.ep.Addr == second.ep.Addr {
				t.Errorf("excluded host %s picked again", first.ep)
			}
		})
	}
}

func specsOf(as ...netip.AddrPort) []endpointSpec {
	out := make([]endpointSpec, len(as))
	for i, a := range as {
		out[i] = endpointSpec{ep: Endpoint{Addr: a}, port: a.Port()}
	}
	return out
}

func TestExclude(t *testing.T) {
	c := pickCluster(t, 3, withLB(clusterv3.Cluster_RANDOM))
	all := c.Endpoints()
	counts := pickN(t, c, 300, func(int) Pick { return Pick{Exclude: all[:2]} })
	if counts[all[2].Addr] != 300 {
		t.Errorf("picks %v; want every pick on the one host not excluded", counts)
	}
	counts = pickN(t, c, 30, func(int) Pick { return Pick{Exclude: all} })
	if len(counts) == 0 {
		t.Error("excluding every host must still pick one")
	}
}

func TestNoEndpoints(t *testing.T) {
	c := pickCluster(t, 0)
	if _, _, err := get(t, c, Pick{}); !errors.Is(err, ErrNoHealthyUpstream) {
		t.Errorf("got %v, want ErrNoHealthyUpstream", err)
	}
}
