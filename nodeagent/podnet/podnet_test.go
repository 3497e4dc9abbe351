package podnet

import (
	"context"
	"errors"
	"fmt"
	"net"
	"runtime"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netns"

	"github.com/weftmesh/weft/test/privileged"
)

func TestPrivilegedNSDial(t *testing.T) {
	privileged.Require(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, path := privileged.NewNetNS(t)
	// A listener on loopback inside the namespace: only a socket created there reaches it.
	ln, err := Listen(ctx, path, net.ListenConfig{}, "tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	ns, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()

	var controlled sync.Map
	d := &net.Dialer{Timeout: 3 * time.Second, ControlContext: func(_ context.Context, _, addr string, _ syscall.RawConn) error {
		controlled.Store(addr, true)
		return nil
	}}
	// Concurrent dials, each on whatever thread its goroutine runs: every one reaches the
	// namespace's listener, and no thread is left inside the namespace.
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for range 64 {
		wg.Go(func() {
			c, err := ns.Dial(ctx, d, "tcp4", ln.Addr().String())
			if err != nil {
				errs <- err
				return
			}
			c.Close()
			errs <- sameNetNS(ns.origin)
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if _, ok := controlled.Load(ln.Addr().String()); !ok {
		t.Error("the dialer's ControlContext did not run")
	}

	// The listener is the namespace's: from the test's own namespace the address is refused.
	if c, err := d.DialContext(ctx, "tcp4", ln.Addr().String()); err == nil {
		c.Close()
		t.Errorf("dial of %s outside the namespace connected; the test cannot tell namespaces apart", ln.Addr())
	}
	if _, err := ns.Dial(ctx, d, "tcp4", "localhost:80"); err == nil {
		t.Error("Dial of a host name succeeded; want an error (only IP literals)")
	}
	if err := ns.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := ns.Dial(ctx, d, "tcp4", ln.Addr().String()); !errors.Is(err, ErrClosed) {
		t.Errorf("Dial after Close: %v, want ErrClosed", err)
	}
}

// sameNetNS reports an error unless the calling thread is in the namespace want.
func sameNetNS(want netns.NsHandle) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	cur, err := netns.Get()
	if err != nil {
		return err
	}
	defer cur.Close()
	if !cur.Equal(want) {
		return fmt.Errorf("thread left in %s, want %s", cur, want)
	}
	return nil
}
