package upstream

import (
	"errors"
	"net/http"
	"net/netip"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

func seedOutlier(maxPercent uint32) *clusterv3.OutlierDetection {
	return &clusterv3.OutlierDetection{
		Consecutive_5Xx:          wrapperspb.UInt32(3),
		EnforcingConsecutive_5Xx: wrapperspb.UInt32(100),
		Interval:                 durationpb.New(time.Second),
		BaseEjectionTime:         durationpb.New(30 * time.Second),
		MaxEjectionPercent:       wrapperspb.UInt32(maxPercent),
	}
}

func failing(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusInternalServerError) }

// TestOutlierEjectsAndReadmits: a host answering 500 is ejected after consecutive_5xx
// responses, gets no traffic, comes back after base_ejection_time, and a second ejection
// lasts twice as long.
func TestOutlierEjectsAndReadmits(t *testing.T) {
	clock := newClock()
	good := newServer(t, "good", nil, false)
	bad := newServer(t, "bad", failing, false)
	m := newTestManager(t, nil, clock)
	if err := m.Update(clustersOf(edsCluster("c", withOutlier(seedOutlier(100), 0))), loadsOf(cla("c", good.addr, bad.addr))); err != nil {
		t.Fatal(err)
	}
	c := mustCluster(t, m, "c")
	for range 6 { // round robin: 3 to each
		get(t, c, Pick{})
	}
	if st := c.Stats(); st.EjectionsActive != 1 || st.EjectionsTotal != 1 || st.HealthyEndpoints != 1 {
		t.Fatalf("stats %+v, want the bad host ejected", st)
	}
	before := bad.reqs.Load()
	for range 10 {
		if body, _, err := get(t, c, Pick{}); err != nil || body != "good" {
			t.Fatalf("got %q %v while the bad host is ejected", body, err)
		}
	}
	if bad.reqs.Load() != before {
		t.Fatal("the ejected host got requests")
	}
	clock.Advance(29 * time.Second)
	m.tick()
	if c.Stats().EjectionsActive != 1 {
		t.Fatal("re-admitted before base_ejection_time")
	}
	clock.Advance(time.Second)
	m.tick()
	if st := c.Stats(); st.EjectionsActive != 0 || st.HealthyEndpoints != 2 {
		t.Fatalf("stats %+v, want the host re-admitted after 30s", st)
	}
	for range 6 {
		get(t, c, Pick{})
	}
	if bad.reqs.Load() != before+3 {
		t.Fatalf("bad host got %d requests after re-admission, want 3", bad.reqs.Load()-before)
	}
	if c.Stats().EjectionsActive != 1 {
		t.Fatal("not ejected again")
	}
	clock.Advance(30 * time.Second)
	if _, err := c.pick(&Pick{}); err != nil || c.Stats().EjectionsActive != 1 {
		t.Fatal("the second ejection must last 2 × base_ejection_time")
	}
	clock.Advance(30 * time.Second)
	// re-admitted lazily at the next pick, without a tick
	h, _ := c.pick(&Pick{})
	h2, _ := c.pick(&Pick{})
	if st := c.Stats(); st.EjectionsActive != 0 || h.ep.Addr == h2.ep.Addr {
		t.Fatalf("stats %+v, picks %s %s: want re-admission at pick time", st, h.ep, h2.ep)
	}
}

func TestOutlierGatewayFailureAndConnectErrors(t *testing.T) {
	clock := newClock()
	good := newServer(t, "good", nil, false)
	down := netip.MustParseAddrPort("127.0.0.1:1")
	d := &loopDialer{fail: map[netip.AddrPort]bool{down: true}}
	m := newTestManager(t, d, clock)
	od := &clusterv3.OutlierDetection{
		EnforcingConsecutive_5Xx:           wrapperspb.UInt32(0),
		ConsecutiveGatewayFailure:          wrapperspb.UInt32(2),
		EnforcingConsecutiveGatewayFailure: wrapperspb.UInt32(100),
		MaxEjectionPercent:                 wrapperspb.UInt32(50),
	}
	if err := m.Update(clustersOf(edsCluster("c", withOutlier(od, 0))), loadsOf(cla("c", good.addr, down))); err != nil {
		t.Fatal(err)
	}
	c := mustCluster(t, m, "c")
	var fails int
	for range 4 {
		if _, _, err := get(t, c, Pick{}); err != nil {
			var ce *ConnectError
			if !errors.As(err, &ce) {
				t.Fatalf("got %v, want a connect error", err)
			}
			fails++
		}
	}
	if st := c.Stats(); fails != 2 || st.EjectionsActive != 1 {
		t.Fatalf("%d failures, stats %+v; want the unreachable host ejected after 2", fails, st)
	}
}

func TestMaxEjectionPercent(t *testing.T) {
	tests := []struct {
		name        string
		hosts       int
		maxPercent  uint32
		wantEjected int
	}{
		{"half of three", 3, 50, 1},
		{"all of three", 3, 100, 3},
		{"default 10 percent of two", 2, 10, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock := newClock()
			var addrs []netip.AddrPort
			for range tt.hosts {
				addrs = append(addrs, newServer(t, "bad", failing, false).addr)
			}
			m := newTestManager(t, nil, clock)
			if err := m.Update(clustersOf(edsCluster("c", withOutlier(seedOutlier(tt.maxPercent), 100))), loadsOf(cla("c", addrs...))); err != nil {
				t.Fatal(err)
			}
			c := mustCluster(t, m, "c")
			for range 3 * tt.hosts * 3 {
				get(t, c, Pick{})
			}
			if st := c.Stats(); st.EjectionsActive != tt.wantEjected {
				t.Errorf("%d ejected, want %d", st.EjectionsActive, tt.wantEjected)
			}
		})
	}
}

// TestPanicThreshold: below healthy_panic_threshold every host is picked, ejected ones
// included; a threshold of 0 never panics.
func TestPanicThreshold(t *testing.T) {
	for _, tt := range []struct {
		threshold float64
		wantErr   bool
		wantHosts int
	}{{0, false, 1}, {60, false, 2}} {
		c := pickCluster(t, 2, withOutlier(seedOutlier(100), tt.threshold))
		c.mu.Lock()
		c.ejectLocked(c.hosts[0], c.now(), "test")
		c.mu.Unlock()
		counts := pickN(t, c, 100, func(int) Pick { return Pick{} })
		if len(counts) != tt.wantHosts {
			t.Errorf("threshold %v: picked %v, want %d hosts", tt.threshold, counts, tt.wantHosts)
		}
	}
	c := pickCluster(t, 1, withOutlier(seedOutlier(100), 0))
	c.mu.Lock()
	c.ejectLocked(c.hosts[0], c.now(), "test")
	c.mu.Unlock()
	if _, err := c.pick(&Pick{}); !errors.Is(err, ErrNoHealthyUpstream) {
		t.Errorf("every host ejected without panic: %v, want ErrNoHealthyUpstream", err)
	}
}

func TestSuccessRateEjection(t *testing.T) {
	clock := newClock()
	od := &clusterv3.OutlierDetection{
		Consecutive_5Xx: wrapperspb.UInt32(1000), Interval: durationpb.New(10 * time.Second),
		MaxEjectionPercent: wrapperspb.UInt32(100), SuccessRateRequestVolume: wrapperspb.UInt32(10),
	}
	m := newTestManager(t, nil, clock)
	if err := m.Update(clustersOf(edsCluster("c", withOutlier(od, 0))), loadsOf(cla("c", addrs(5)...))); err != nil {
		t.Fatal(err)
	}
	c := mustCluster(t, m, "c")
	c.mu.Lock()
	for i, h := range c.hosts {
		for j := range 20 {
			code := 200
			if i == 0 && j%2 == 0 {
				code = 503
			}
			c.recordHTTPLocked(h, code)
		}
	}
	c.mu.Unlock()
	clock.Advance(10 * time.Second)
	m.tick()
	c.mu.Lock()
	ejected := c.hosts[0].od.ejected
	c.mu.Unlock()
	if st := c.Stats(); !ejected || st.EjectionsActive != 1 {
		t.Errorf("stats %+v; want the host with a 50%% success rate ejected", st)
	}
}
