package hbone_test

import (
	"context"
	"io"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/weftmesh/weft/internal/hbone"
)

// roundTrip sends msg through s, half-closes and reads the echo.
func roundTrip(t testing.TB, s net.Conn, msg string) {
	t.Helper()
	if _, err := io.WriteString(s, msg); err != nil {
		t.Fatal(err)
	}
	if err := s.(*hbone.Stream).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	if got := string(readAll(t, s, 5*time.Second)); got != msg {
		t.Fatalf("echo %q, want %q", got, msg)
	}
}

func TestPoolReusesOneConnection(t *testing.T) {
	e := newEnv(t, nil)
	up := upstream(t, echo)
	for range 20 {
		s := e.dial(t, up)
		roundTrip(t, s, "hello")
		_ = s.Close()
	}
	// Concurrent streams share it too.
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() {
			s := e.dial(t, up)
			roundTrip(t, s, "hi")
		})
	}
	wg.Wait()
	if n := e.ln.accepted.Load(); n != 1 {
		t.Fatalf("%d TCP connections for 40 streams, want 1", n)
	}
}

func TestPoolOpensAnotherConnectionPastMaxStreams(t *testing.T) {
	tests := []struct {
		name  string
		opt   envOption
		limit int
	}{
		{"server limit", func(s *hbone.Server, _ *hbone.PoolConfig) { s.MaxConcurrentStreams = 3 }, 3},
		{"pool limit", func(_ *hbone.Server, c *hbone.PoolConfig) { c.MaxStreamsPerConn = 2 }, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, nil, tt.opt)
			up := upstream(t, echo)
			var open []*hbone.Stream
			for range tt.limit {
				open = append(open, e.dial(t, up))
			}
			if n := e.ln.accepted.Load(); n != 1 {
				t.Fatalf("%d connections for %d streams, want 1", n, tt.limit)
			}
			extra := e.dial(t, up)
			if n := e.ln.accepted.Load(); n != 2 {
				t.Fatalf("%d connections for %d streams, want 2", n, tt.limit+1)
			}
			// Every stream works.
			for _, s := range append(open, extra) {
				roundTrip(t, s, "x")
			}
			// Once streams end, the first connection takes new ones again.
			for _, s := range open {
				_ = s.Close()
			}
			for range tt.limit - 1 {
				e.dial(t, up)
			}
			if n := e.ln.accepted.Load(); n != 2 {
				t.Fatalf("%d connections after reuse, want 2", n)
			}
		})
	}
}

func TestPoolConcurrentDialsShareConnections(t *testing.T) {
	const limit, streams = 3, 10
	e := newEnv(t, nil, func(_ *hbone.Server, c *hbone.PoolConfig) { c.MaxStreamsPerConn = limit })
	up := upstream(t, echo)
	var wg sync.WaitGroup
	var opened atomic.Int32
	for range streams {
		wg.Go(func() {
			e.dial(t, up)
			opened.Add(1)
		})
	}
	wg.Wait()
	if n, want := e.ln.accepted.Load(), int32((streams+limit-1)/limit); n != want {
		t.Fatalf("%d connections for %d concurrent streams at %d per connection, want %d", n, streams, limit, want)
	}
}

func TestPoolKeysByIdentityAndSource(t *testing.T) {
	e := newEnv(t, nil)
	up := upstream(t, echo)
	base := e.request(up)
	variants := []func(r *hbone.Request){
		func(*hbone.Request) {},
		func(r *hbone.Request) { r.Source = otherID }, // another source identity
		func(r *hbone.Request) { r.ForwardedFor = netip.MustParseAddrPort("10.9.9.9:1") }, // another source pod
		func(r *hbone.Request) { r.Authority = netip.MustParseAddrPort("127.0.0.1:1") },   // same key: other authority
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	for _, v := range variants {
		req := base
		v(&req)
		if c, err := e.pool.Dial(ctx, req); err == nil {
			_ = c.Close()
		}
	}
	if n := e.ln.accepted.Load(); n != 3 {
		t.Fatalf("%d connections, want 3 (source identity and source IP are part of the key, authority is not)", n)
	}
}

func TestPoolIdleRelease(t *testing.T) {
	e := newEnv(t, nil, func(_ *hbone.Server, c *hbone.PoolConfig) { c.IdleTimeout = 200 * time.Millisecond })
	up := upstream(t, echo)
	s := e.dial(t, up)
	// An open stream keeps the connection, however long.
	time.Sleep(400 * time.Millisecond)
	roundTrip(t, s, "still here")
	_ = s.Close()
	waitFor(t, 5*time.Second, "the idle connection to be closed", func() bool { return e.ln.open.Load() == 0 })
	roundTrip(t, e.dial(t, up), "again")
	if n := e.ln.accepted.Load(); n != 2 {
		t.Fatalf("%d connections, want 2: a new one after the idle release", n)
	}
}

func TestPoolEvict(t *testing.T) {
	e := newEnv(t, nil)
	up := upstream(t, echo)
	s := e.dial(t, up)
	if n := e.pool.Evict(netip.MustParseAddr("10.0.0.1")); n != 0 {
		t.Fatalf("Evict of another IP closed %d connections", n)
	}
	if n := e.pool.Evict(e.addr.Addr()); n != 1 {
		t.Fatalf("Evict closed %d connections, want 1", n)
	}
	// The stream on the evicted connection ends.
	_ = s.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := s.Read(make([]byte, 1)); err == nil || isTimeout(err) {
		t.Fatalf("Read on an evicted connection = %v, want an error", err)
	}
	waitFor(t, 5*time.Second, "the evicted connection to be closed", func() bool { return e.ln.open.Load() == 0 })
	roundTrip(t, e.dial(t, up), "fresh")
	if n := e.ln.accepted.Load(); n != 2 {
		t.Fatalf("%d connections, want 2: the evicted one is not reused", n)
	}
}

// freezer is a TCP proxy that can stop forwarding on its current connections while keeping
// them open, like a peer that vanished without closing. Later connections work.
type freezer struct {
	addr netip.AddrPort

	mu     sync.Mutex
	frozen chan struct{} // closed by freeze for the connections accepted before
}

func newFreezer(t testing.TB, target netip.AddrPort) *freezer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &freezer{addr: ln.Addr().(*net.TCPAddr).AddrPort(), frozen: make(chan struct{})}
	stop := make(chan struct{})
	var conns sync.WaitGroup
	t.Cleanup(func() {
		close(stop)
		_ = ln.Close()
		conns.Wait()
	})
	forward := func(dst, src net.Conn, frozen <-chan struct{}) {
		buf := make([]byte, 32<<10)
		for {
			n, err := src.Read(buf)
			select {
			case <-frozen:
				<-stop
				return
			default:
			}
			if n > 0 {
				if _, err := dst.Write(buf[:n]); err != nil {
					return
				}
			}
			if err != nil {
				return
			}
		}
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("tcp", target.String())
			if err != nil {
				_ = c.Close()
				continue
			}
			f.mu.Lock()
			frozen := f.frozen
			f.mu.Unlock()
			conns.Add(2)
			go func() { defer conns.Done(); forward(s, c, frozen) }()
			go func() { defer conns.Done(); forward(c, s, frozen) }()
			go func() { <-stop; _ = c.Close(); _ = s.Close() }()
		}
	}()
	return f
}

func (f *freezer) freeze() {
	f.mu.Lock()
	defer f.mu.Unlock()
	close(f.frozen)
	f.frozen = make(chan struct{})
}

func TestKeepAliveDetectsDeadPeer(t *testing.T) {
	e := newEnv(t, nil, func(_ *hbone.Server, c *hbone.PoolConfig) {
		c.KeepAliveInterval = 100 * time.Millisecond
		c.KeepAliveTimeout = 200 * time.Millisecond
	})
	up := upstream(t, echo)
	f := newFreezer(t, e.addr)
	req := e.request(up)
	req.Addr = f.addr
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	c, err := e.pool.Dial(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	f.freeze()
	start := time.Now()
	readErr := make(chan error, 1)
	go func() {
		_, err := c.Read(make([]byte, 1))
		readErr <- err
	}()
	select {
	case err := <-readErr:
		if err == nil {
			t.Fatal("Read succeeded through a frozen peer")
		}
		t.Logf("dead peer detected after %v: %v", time.Since(start), err)
	case <-time.After(5 * time.Second):
		t.Fatal("keep-alive did not detect the dead peer within 5 s")
	}
	// The pool forgets the dead connection: the next stream opens a new one.
	c2, err := e.pool.Dial(ctx, req)
	if err != nil {
		t.Fatalf("Dial after the dead peer: %v", err)
	}
	_ = c2.Close()
}
