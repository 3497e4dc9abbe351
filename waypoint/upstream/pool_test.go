package upstream

import (
	"errors"
	"io"
	"net/http"
	"net/netip"
	"sync"
	"testing"
	"time"
)

func TestRequestsReuseConnection(t *testing.T) {
	for _, h2 := range []bool{false, true} {
		s := newServer(t, "a", func(w http.ResponseWriter, r *http.Request) {
			if h2 != (r.ProtoMajor == 2) {
				t.Errorf("upstream got %s, want HTTP/2 %v", r.Proto, h2)
			}
			io.WriteString(w, "a")
		}, h2)
		m := newTestManager(t, nil, nil)
		if err := m.Update(clustersOf(edsCluster("c", withProtocol(h2, 0))), loadsOf(cla("c", s.addr))); err != nil {
			t.Fatal(err)
		}
		c := mustCluster(t, m, "c")
		if c.HTTP2() != h2 {
			t.Fatalf("HTTP2() = %v", c.HTTP2())
		}
		for range 5 {
			body, ep, err := get(t, c, Pick{})
			if err != nil || body != "a" || ep.Addr != s.addr {
				t.Fatalf("h2=%v: %q %v %v", h2, body, ep, err)
			}
		}
		if n := s.conns.Load(); n != 1 {
			t.Errorf("h2=%v: %d connections, want 1", h2, n)
		}
	}
}

// TestH2CMultiplexes checks that concurrent requests share one h2c connection.
func TestH2CMultiplexes(t *testing.T) {
	release := make(chan struct{})
	var started sync.WaitGroup
	started.Add(5)
	s := newServer(t, "a", func(w http.ResponseWriter, r *http.Request) {
		started.Done()
		<-release
		io.WriteString(w, r.Proto)
	}, true)
	m := newTestManager(t, nil, nil)
	if err := m.Update(clustersOf(edsCluster("c", withProtocol(true, 0))), loadsOf(cla("c", s.addr))); err != nil {
		t.Fatal(err)
	}
	c := mustCluster(t, m, "c")
	var wg sync.WaitGroup
	for range 5 {
		wg.Go(func() {
			body, _, err := get(t, c, Pick{})
			if err != nil || body != "HTTP/2.0" {
				t.Errorf("got %q, %v", body, err)
			}
		})
	}
	started.Wait()
	if st := c.Stats(); st.ActiveRequests != 5 || st.ActiveConnections != 1 {
		t.Errorf("stats %+v, want 5 active requests on 1 connection", st)
	}
	close(release)
	wg.Wait()
	if n := s.conns.Load(); n != 1 {
		t.Errorf("%d connections, want 1", n)
	}
}

// TestCircuitBreakerOverflow is the seed's circuit breaker: maxConnections 1 and
// http1MaxPendingRequests 1 under 20 concurrent slow requests give 1 in flight, 1 pending
// and 18 immediate overflows, as in Envoy.
func TestCircuitBreakerOverflow(t *testing.T) {
	release := make(chan struct{})
	inHandler := make(chan struct{}, 20)
	s := newServer(t, "a", func(w http.ResponseWriter, r *http.Request) {
		inHandler <- struct{}{}
		<-release
		io.WriteString(w, "a")
	}, false)
	m := newTestManager(t, nil, nil)
	if err := m.Update(clustersOf(edsCluster("c", withLimits(1, 1, 1000))), loadsOf(cla("c", s.addr))); err != nil {
		t.Fatal(err)
	}
	c := mustCluster(t, m, "c")
	type result struct {
		body string
		err  error
	}
	results := make(chan result, 20)
	send := func() {
		body, _, err := get(t, c, Pick{})
		results <- result{body, err}
	}
	go send()
	<-inHandler // the first request is in flight on the only connection
	for range 19 {
		go send()
	}
	var overflows int
	for range 18 {
		r := <-results
		var oe *OverflowError
		if !errors.As(r.err, &oe) || oe.Limit != "max_pending_requests" {
			t.Fatalf("got %q, %v; want an overflow of max_pending_requests", r.body, r.err)
		}
		overflows++
	}
	st := c.Stats()
	if st.ActiveRequests != 1 || st.PendingRequests != 1 || st.PendingOverflows != 18 || st.Overflows() != 18 || st.ActiveConnections != 1 {
		t.Errorf("stats %+v; want 1 active, 1 pending, 18 overflows, 1 connection", st)
	}
	close(release)
	for range 2 {
		if r := <-results; r.err != nil || r.body != "a" {
			t.Errorf("got %q, %v; want success", r.body, r.err)
		}
	}
	if overflows != 18 || s.reqs.Load() != 2 || s.conns.Load() != 1 {
		t.Errorf("overflows %d, upstream requests %d, connections %d; want 18, 2, 1", overflows, s.reqs.Load(), s.conns.Load())
	}
}

func TestMaxRequestsOverflow(t *testing.T) {
	release := make(chan struct{})
	inHandler := make(chan struct{}, 4)
	s := newServer(t, "a", func(w http.ResponseWriter, r *http.Request) {
		inHandler <- struct{}{}
		<-release
	}, true)
	m := newTestManager(t, nil, nil)
	if err := m.Update(clustersOf(edsCluster("c", withProtocol(true, 0), withLimits(100, 100, 2))), loadsOf(cla("c", s.addr))); err != nil {
		t.Fatal(err)
	}
	c := mustCluster(t, m, "c")
	errs := make(chan error, 2)
	for range 2 {
		go func() { _, _, err := get(t, c, Pick{}); errs <- err }()
	}
	<-inHandler
	<-inHandler
	_, _, err := get(t, c, Pick{})
	var oe *OverflowError
	if !errors.As(err, &oe) || oe.Limit != "max_requests" {
		t.Fatalf("third request: %v, want max_requests overflow", err)
	}
	close(release)
	for range 2 {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}

func TestMaxRequestsPerConnection(t *testing.T) {
	tests := []struct {
		name    string
		h2      bool
		perConn uint32
		want    int64
	}{
		{"http1 unlimited", false, 0, 1},
		{"http1 two per connection", false, 2, 3},
		{"http1 one per connection", false, 1, 6},
		{"h2c two per connection", true, 2, 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newServer(t, "a", nil, tt.h2)
			m := newTestManager(t, nil, nil)
			if err := m.Update(clustersOf(edsCluster("c", withProtocol(tt.h2, tt.perConn))), loadsOf(cla("c", s.addr))); err != nil {
				t.Fatal(err)
			}
			c := mustCluster(t, m, "c")
			for range 6 {
				if _, _, err := get(t, c, Pick{}); err != nil {
					t.Fatal(err)
				}
			}
			if got := s.conns.Load(); got != tt.want {
				t.Errorf("%d connections for 6 requests, want %d", got, tt.want)
			}
			deadline := time.Now().Add(2 * time.Second)
			for c.Stats().ActiveConnections > 1 && time.Now().Before(deadline) {
				time.Sleep(5 * time.Millisecond)
			}
			if st := c.Stats(); st.ActiveConnections > 1 || st.ActiveRequests != 0 {
				t.Errorf("stats after the requests %+v; want at most 1 connection open, none active", st)
			}
		})
	}
}

func TestRetryBudget(t *testing.T) {
	m := newTestManager(t, nil, nil)
	if err := m.Update(clustersOf(edsCluster("c", withLimits(1, 1, 1))), nil); err != nil {
		t.Fatal(err)
	}
	c := mustCluster(t, m, "c")
	d1, err1 := c.TryRetry()
	d2, err2 := c.TryRetry()
	_, err3 := c.TryRetry()
	var oe *OverflowError
	if err1 != nil || err2 != nil || !errors.As(err3, &oe) || oe.Limit != "max_retries" {
		t.Fatalf("retries: %v %v %v; want two allowed then max_retries overflow", err1, err2, err3)
	}
	d1()
	d1() // idempotent
	if _, err := c.TryRetry(); err != nil {
		t.Errorf("after a retry finished: %v", err)
	}
	d2()
	if st := c.Stats(); st.RetryOverflows != 1 || st.ActiveRetries != 1 {
		t.Errorf("stats %+v", st)
	}
}

func TestConnectFailure(t *testing.T) {
	s := newServer(t, "a", nil, false)
	d := &loopDialer{fail: map[netip.AddrPort]bool{s.addr: true}}
	m := newTestManager(t, d, nil)
	if err := m.Update(clustersOf(edsCluster("c")), loadsOf(cla("c", s.addr))); err != nil {
		t.Fatal(err)
	}
	c := mustCluster(t, m, "c")
	_, ep, err := get(t, c, Pick{})
	var ce *ConnectError
	if !errors.As(err, &ce) || ep == nil || ep.Addr != s.addr {
		t.Fatalf("got %v at %v, want a ConnectError at %v", err, ep, s.addr)
	}
	if st := c.Stats(); st.ConnectFailures != 1 || st.ActiveConnections != 0 || st.PendingRequests != 0 || st.ActiveRequests != 0 {
		t.Errorf("stats %+v", st)
	}
}
