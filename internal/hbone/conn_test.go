package hbone_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/weftmesh/weft/internal/hbone"
)

// TestLargeTransfer moves 64 MiB each way at once through one stream, far beyond every window,
// and compares digests.
func TestLargeTransfer(t *testing.T) {
	size := 64 << 20
	if testing.Short() {
		size = 8 << 20
	}
	down := make([]byte, size)
	up := make([]byte, size)
	_, _ = rand.Read(down)
	_, _ = rand.Read(up)
	upstreamDigest := make(chan [32]byte, 1)
	e := newEnv(t, nil)
	addr := upstream(t, func(c *net.TCPConn) {
		wrote := make(chan struct{})
		go func() {
			defer close(wrote)
			_, _ = c.Write(down)
			_ = c.CloseWrite()
		}()
		h := sha256.New()
		_, _ = io.Copy(h, c)
		upstreamDigest <- [32]byte(h.Sum(nil))
		<-wrote
	})
	s := e.dial(t, addr)
	writeErr := make(chan error, 1)
	go func() {
		// Odd-sized writes.
		var err error
		for p := up; len(p) > 0 && err == nil; {
			n := min(len(p), 100_000+len(p)%300_000)
			_, err = s.Write(p[:n])
			p = p[n:]
		}
		if err == nil {
			err = s.CloseWrite()
		}
		writeErr <- err
	}()
	h := sha256.New()
	_ = s.SetReadDeadline(time.Now().Add(2 * time.Minute))
	n, err := io.Copy(h, s)
	if err != nil {
		t.Fatalf("read after %d bytes: %v", n, err)
	}
	if err := <-writeErr; err != nil {
		t.Fatalf("write: %v", err)
	}
	if n != int64(size) || [32]byte(h.Sum(nil)) != sha256.Sum256(down) {
		t.Fatalf("downloaded %d bytes with a different digest, want %d identical bytes", n, size)
	}
	select {
	case d := <-upstreamDigest:
		if d != sha256.Sum256(up) {
			t.Fatal("upstream received different bytes")
		}
	case <-time.After(time.Minute):
		t.Fatal("upstream did not finish")
	}
}

// TestManyStreamsBeyondServerLimit opens, at once, many more streams than the server allows
// per connection: the pool spreads them over connections, each within the limit, and all work.
func TestManyStreamsBeyondServerLimit(t *testing.T) {
	const limit, streams = 5, 60
	e := newEnv(t, nil, func(s *hbone.Server, _ *hbone.PoolConfig) { s.MaxConcurrentStreams = limit })
	up := upstream(t, echo)
	var (
		wg     sync.WaitGroup
		mu     sync.Mutex
		opened []*hbone.Stream
	)
	for range streams {
		wg.Go(func() {
			s := e.dial(t, up)
			mu.Lock()
			opened = append(opened, s)
			mu.Unlock()
		})
	}
	wg.Wait()
	// Every stream is open at the same time, so no connection carries more than the limit.
	if n, min := e.ln.accepted.Load(), int32(streams/limit); n < min {
		t.Fatalf("%d connections for %d open streams at %d per connection, want at least %d", n, streams, limit, min)
	}
	for _, s := range opened {
		wg.Go(func() { roundTrip(t, s, "hello") })
	}
	wg.Wait()
	t.Logf("%d streams on %d connections", streams, e.ln.accepted.Load())
}

// TestUpstreamFailureResetsStream checks that an upstream that fails (rather than half-closing)
// fails the client's stream rather than ending it cleanly.
func TestUpstreamFailureResetsStream(t *testing.T) {
	e := newEnv(t, nil)
	up := upstream(t, func(c *net.TCPConn) {
		_, _ = c.Write([]byte("partial"))
		_ = c.SetLinger(0) // close with a TCP reset
		_, _ = c.Read(make([]byte, 1))
	})
	s := e.dial(t, up)
	if _, err := s.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	_ = s.SetReadDeadline(time.Now().Add(5 * time.Second))
	b, err := io.ReadAll(s)
	if err == nil || isTimeout(err) {
		t.Fatalf("read %q then %v, want a reset", b, err)
	}
}

// TestServerKeepAliveDetectsDeadClient: a client that vanishes without closing is detected by
// the server's PINGs, which then closes the upstream.
func TestServerKeepAliveDetectsDeadClient(t *testing.T) {
	e := newEnv(t, nil, func(s *hbone.Server, _ *hbone.PoolConfig) {
		s.KeepAliveInterval = 100 * time.Millisecond
		s.KeepAliveTimeout = 200 * time.Millisecond
	})
	ended := make(chan error, 1)
	up := upstream(t, func(c *net.TCPConn) {
		_, err := io.Copy(io.Discard, c)
		ended <- err
	})
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
	select {
	case <-ended:
	case <-time.After(5 * time.Second):
		t.Fatal("the server did not notice the dead client within 5 s")
	}
}

// TestShutdownDrains: Shutdown sends GOAWAY, lets open streams finish (in both directions,
// half-close included) and returns once they have.
func TestShutdownDrains(t *testing.T) {
	e := newEnv(t, nil)
	up := upstream(t, echo)
	s := e.dial(t, up)
	if _, err := s.Write([]byte("before")); err != nil {
		t.Fatal(err)
	}
	shut := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		shut <- e.server.Shutdown(ctx)
	}()
	// New streams are not accepted: the listener is gone.
	waitFor(t, 5*time.Second, "the listener to close", func() bool {
		c, err := net.DialTimeout("tcp", e.addr.String(), time.Second)
		if err == nil {
			_ = c.Close()
		}
		return err != nil
	})
	select {
	case err := <-shut:
		t.Fatalf("Shutdown returned %v while a stream was open", err)
	case <-time.After(200 * time.Millisecond):
	}
	// The open stream still works, and its end ends the connection.
	if _, err := s.Write([]byte(" after")); err != nil {
		t.Fatal(err)
	}
	_ = s.CloseWrite()
	if got := string(readAll(t, s, 5*time.Second)); got != "before after" {
		t.Fatalf("echo %q, want %q", got, "before after")
	}
	_ = s.Close()
	select {
	case err := <-shut:
		if err != nil {
			t.Fatalf("Shutdown: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Shutdown did not return after the last stream ended")
	}
	waitFor(t, 5*time.Second, "the connection to close", func() bool { return e.ln.open.Load() == 0 })
}

// TestGoAwayStopsNewStreams: streams dialled after the server sent GOAWAY do not go to the
// draining connection (they need a new one, which the closed listener refuses here), while the
// stream it carries keeps working until it ends.
func TestGoAwayStopsNewStreams(t *testing.T) {
	e := newEnv(t, nil)
	up := upstream(t, echo)
	old := e.dial(t, up)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		_ = e.server.Shutdown(ctx)
	}()
	time.Sleep(100 * time.Millisecond) // the GOAWAY arrives
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	if c, err := e.pool.Dial(ctx, e.request(up)); err == nil {
		_ = c.Close()
		t.Fatal("Dial succeeded on a connection that received GOAWAY, with the server's listener closed")
	}
	roundTrip(t, old, "still served")
}

// TestWriteAfterPeerReset: writes on a stream the server reset fail, reads too.
func TestWriteAfterPeerReset(t *testing.T) {
	e := newEnv(t, nil)
	up := upstream(t, func(c *net.TCPConn) {
		_, _ = c.Read(make([]byte, 1))
		_ = c.SetLinger(0) // fail with a TCP reset once data arrives
	})
	s := e.dial(t, up)
	deadline := time.Now().Add(5 * time.Second)
	var err error
	for err == nil && time.Now().Before(deadline) {
		_, err = s.Write(bytes.Repeat([]byte("x"), 1<<10))
		time.Sleep(10 * time.Millisecond)
	}
	if err == nil {
		t.Fatal("writes kept succeeding after the upstream failed")
	}
	if errors.Is(err, net.ErrClosed) {
		t.Fatalf("write error %v, want the peer's reset", err)
	}
}
