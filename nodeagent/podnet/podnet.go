// Package podnet runs code inside a pod's network namespace: the node agent's listeners and
// upstream connections live in the pods' namespaces (sockets keep the namespace they were created
// in), while the agent itself runs in the node's.
package podnet

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"sync"
	"syscall"

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

// NS is an open network namespace to dial from, for the connections a pod's traffic needs
// (one or more per proxied connection). Unlike Dial, it keeps the namespace open, so a dial
// costs two setns calls and no file opens, and it holds the OS thread only while the socket is
// created: the connect runs on an ordinary goroutine.
type NS struct {
	path           string
	mu             sync.RWMutex // held shared by dials, exclusively by Close
	closed         bool
	target, origin netns.NsHandle
}

// ErrClosed is returned by NS.Dial after Close.
var ErrClosed = errors.New("podnet: namespace closed")

// Open opens the network namespace at path, and the caller's namespace to return to.
func Open(path string) (*NS, error) {
	target, err := netns.GetFromPath(path)
	if err != nil {
		return nil, fmt.Errorf("open netns %s: %w", path, err)
	}
	runtime.LockOSThread() // the namespace of this very thread, not of one it may move to
	origin, err := netns.Get()
	runtime.UnlockOSThread()
	if err != nil {
		target.Close()
		return nil, fmt.Errorf("current netns: %w", err)
	}
	return &NS{path: path, target: target, origin: origin}, nil
}

// Path returns the path the namespace was opened at.
func (ns *NS) Path() string { return ns.path }

// Close closes the namespace; later dials fail with ErrClosed, dials in progress finish first.
func (ns *NS) Close() error {
	ns.mu.Lock()
	defer ns.mu.Unlock()
	if ns.closed {
		return nil
	}
	ns.closed = true
	return errors.Join(ns.target.Close(), ns.origin.Close())
}

// Dial connects to addr, an IP literal with a port, from a socket created inside the namespace.
// d's Control or ControlContext, when set, runs on the socket as usual.
func (ns *NS) Dial(ctx context.Context, d *net.Dialer, network, addr string) (net.Conn, error) {
	if _, err := netip.ParseAddrPort(addr); err != nil {
		// A name could resolve to several addresses, and a second socket would not be created
		// inside the namespace.
		return nil, fmt.Errorf("podnet: dial %s: want an IP address and port: %w", addr, err)
	}
	ns.mu.RLock()
	defer ns.mu.RUnlock()
	if ns.closed {
		return nil, ErrClosed
	}
	runtime.LockOSThread()
	if err := netns.Set(ns.target); err != nil {
		runtime.UnlockOSThread()
		return nil, fmt.Errorf("enter netns %s: %w", ns.path, err)
	}
	inside := true
	var leaveErr error
	leave := func() {
		if !inside {
			return
		}
		inside = false
		if err := netns.Set(ns.origin); err != nil {
			// The thread stays locked and dies with its goroutine.
			leaveErr = fmt.Errorf("leave netns %s: %w", ns.path, err)
			return
		}
		runtime.UnlockOSThread()
	}
	dd := *d
	control, controlCtx := d.Control, d.ControlContext
	dd.Control = nil
	// ControlContext runs once the socket exists, before bind and connect: the socket keeps
	// the namespace it was created in, so the thread can leave it here.
	dd.ControlContext = func(ctx context.Context, network, address string, c syscall.RawConn) error {
		leave()
		switch {
		case leaveErr != nil:
			return leaveErr
		case controlCtx != nil:
			return controlCtx(ctx, network, address, c)
		case control != nil:
			return control(network, address, c)
		}
		return nil
	}
	c, err := dd.DialContext(ctx, network, addr)
	leave() // when no socket was created
	if leaveErr != nil {
		if c != nil {
			c.Close()
		}
		return nil, leaveErr
	}
	return c, err
}
