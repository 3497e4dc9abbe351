// Package podnet runs code inside a pod's network namespace: the node agent's listeners and
// upstream connections live in the pods' namespaces (sockets keep the namespace they were created
// in), while the agent itself runs in the node's.
package podnet

import (
	"context"
	"fmt"
	"net"
	"runtime"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Do runs fn on a locked OS thread that has joined the network namespace at path, then returns
// the thread to its own namespace. Sockets fn creates stay in that namespace. If the thread
// cannot return, it stays locked and dies with its goroutine.
func Do(path string, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("current netns: %w", err)
			return
		}
		defer orig.Close()
		target, err := netns.GetFromPath(path)
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("open netns %s: %w", path, err)
			return
		}
		defer target.Close()
		if err := netns.Set(target); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("enter netns %s: %w", path, err)
			return
		}
		fnErr := fn()
		if err := netns.Set(orig); err != nil {
			errc <- fmt.Errorf("leave netns %s: %w", path, err)
			return
		}
		runtime.UnlockOSThread()
		errc <- fnErr
	}()
	return <-errc
}

// Listen opens a listener with lc inside the namespace at path.
func Listen(ctx context.Context, path string, lc net.ListenConfig, network, addr string) (net.Listener, error) {
	var ln net.Listener
	err := Do(path, func() error {
		var err error
		ln, err = lc.Listen(ctx, network, addr)
		return err
	})
	return ln, err
}

// Dial connects with d from inside the namespace at path.
func Dial(ctx context.Context, path string, d *net.Dialer, network, addr string) (net.Conn, error) {
	var c net.Conn
	err := Do(path, func() error {
		var err error
		c, err = d.DialContext(ctx, network, addr)
		return err
	})
	return c, err
}

// Cookie returns the cookie of the calling thread's network namespace (call it inside Do).
func Cookie() (uint64, error) {
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return 0, fmt.Errorf("netns cookie: %w", err)
	}
	defer unix.Close(fd)
	c, err := unix.GetsockoptUint64(fd, unix.SOL_SOCKET, unix.SO_NETNS_COOKIE)
	if err != nil {
		return 0, fmt.Errorf("netns cookie: SO_NETNS_COOKIE: %w", err)
	}
	return c, nil
}
