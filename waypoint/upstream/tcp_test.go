package upstream

import (
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// tcpServer accepts on loopback, writes its name on every connection and keeps it open
// until the client closes.
func tcpServer(t *testing.T, name string) netip.AddrPort {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_, _ = io.WriteString(c, name)
				_, _ = io.Copy(io.Discard, c)
			}()
		}
	}()
	return netip.MustParseAddrPort(ln.Addr().String())
}

func readName(t *testing.T, c net.Conn, n int) string {
	t.Helper()
	buf := make([]byte, n)
	if _, err := io.ReadFull(c, buf); err != nil {
		t.Fatal(err)
	}
	return string(buf)
}

func TestDialTCPRoundRobinAndRelease(t *testing.T) {
	a, b := tcpServer(t, "a"), tcpServer(t, "b")
	m := newTestManager(t, nil, nil)
	if err := m.Update(clustersOf(edsCluster("c")), loadsOf(cla("c", a, b))); err != nil {
		t.Fatal(err)
	}
	c := mustCluster(t, m, "c")
	seen := map[string]int{}
	for range 4 {
		conn, ep, err := c.DialTCP(context.Background(), Pick{})
		if err != nil {
			t.Fatal(err)
		}
		name := readName(t, conn, 1)
		if want := map[string]netip.AddrPort{"a": a, "b": b}[name]; ep.Addr != want {
			t.Errorf("endpoint %s answered as %q", ep, name)
		}
		seen[name]++
		if st := c.Stats(); st.ActiveConnections != 1 {
			t.Errorf("open connection: %d active, want 1", st.ActiveConnections)
		}
		if err := conn.Close(); err != nil {
			t.Fatal(err)
		}
		_ = conn.Close() // a second Close releases nothing more
	}
	if seen["a"] != 2 || seen["b"] != 2 {
		t.Errorf("round robin spread %v, want 2 each", seen)
	}
	if st := c.Stats(); st.ActiveConnections != 0 || st.ConnectionsTotal != 4 {
		t.Errorf("stats %+v; want 0 active, 4 total", st)
	}
}

func TestDialTCPMaxConnections(t *testing.T) {
	a := tcpServer(t, "a")
	m := newTestManager(t, nil, nil)
	if err := m.Update(clustersOf(edsCluster("c", withLimits(1, 1024, 1024))), loadsOf(cla("c", a))); err != nil {
		t.Fatal(err)
	}
	c := mustCluster(t, m, "c")
	first, _, err := c.DialTCP(context.Background(), Pick{})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		release  bool
		wantFail bool
	}{
		{"second while the first is open", false, true},
		{"after the first closed", true, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.release {
				first.Close()
			}
			conn, ep, err := c.DialTCP(context.Background(), Pick{})
			var oe *OverflowError
			switch {
			case tt.wantFail && (!errors.As(err, &oe) || oe.Limit != "max_connections" || ep == nil):
				t.Fatalf("got %v (endpoint %v), want an overflow of max_connections", err, ep)
			case !tt.wantFail && err != nil:
				t.Fatal(err)
			case !tt.wantFail:
				if got := readName(t, conn, 1); got != "a" {
					t.Errorf("read %q", got)
				}
				conn.Close()
			}
		})
	}
	if st := c.Stats(); st.ConnectionOverflows != 1 || st.ActiveConnections != 0 {
		t.Errorf("stats %+v; want 1 overflow, 0 active", st)
	}
}

func TestDialTCPConnectFailureEjects(t *testing.T) {
	clock := newClock()
	good := tcpServer(t, "g")
	down := netip.MustParseAddrPort("127.0.0.1:1")
	d := &loopDialer{fail: map[netip.AddrPort]bool{down: true}}
	m := newTestManager(t, d, clock)
	od := &clusterv3.OutlierDetection{
		EnforcingConsecutive_5Xx:           wrapperspb.UInt32(0),
		ConsecutiveGatewayFailure:          wrapperspb.UInt32(2),
		EnforcingConsecutiveGatewayFailure: wrapperspb.UInt32(100),
		MaxEjectionPercent:                 wrapperspb.UInt32(50),
	}
	if err := m.Update(clustersOf(edsCluster("c", withOutlier(od, 0))), loadsOf(cla("c", good, down))); err != nil {
		t.Fatal(err)
	}
	c := mustCluster(t, m, "c")
	var fails int
	for range 6 {
		conn, ep, err := c.DialTCP(context.Background(), Pick{})
		if err != nil {
			var ce *ConnectError
			if !errors.As(err, &ce) || ep == nil || ep.Addr != down {
				t.Fatalf("got %v from %v, want a connect error from %s", err, ep, down)
			}
			fails++
			continue
		}
		if got := readName(t, conn, 1); got != "g" {
			t.Errorf("read %q", got)
		}
		conn.Close()
	}
	st := c.Stats()
	if fails != 2 || st.EjectionsActive != 1 || st.ConnectFailures != 2 || st.ActiveConnections != 0 {
		t.Fatalf("%d failures, stats %+v; want the unreachable host ejected after 2 connect failures", fails, st)
	}
}

func TestDialTCPNoEndpoints(t *testing.T) {
	m := newTestManager(t, nil, nil)
	if err := m.Update(clustersOf(edsCluster("c")), loadsOf(cla("c"))); err != nil {
		t.Fatal(err)
	}
	_, ep, err := mustCluster(t, m, "c").DialTCP(context.Background(), Pick{})
	if !errors.Is(err, ErrNoHealthyUpstream) || ep != nil {
		t.Fatalf("got %v, %v; want ErrNoHealthyUpstream without endpoint", err, ep)
	}
}
