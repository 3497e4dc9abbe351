package harness

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"

	"github.com/vishvananda/netns"
)

// netnsDir is where named network namespaces live, as iproute2's `ip netns` keeps them.
const netnsDir = "/run/netns"

// NetNS is a named network namespace created by the harness.
type NetNS struct {
	Name string
}

// Path is the bind-mounted namespace file, the form CNI plugins and setns take.
func (n NetNS) Path() string { return filepath.Join(netnsDir, n.Name) }

// newNetNS creates a named network namespace with its loopback device up, without changing the
// namespace of the calling thread.
func newNetNS(name string) (NetNS, error) {
	err := onLockedThread(func() error {
		orig, err := netns.Get()
		if err != nil {
			return fmt.Errorf("netns: current: %w", err)
		}
		defer orig.Close()
		h, err := netns.NewNamed(name) // also switches the thread into the new namespace
		if err != nil {
			return fmt.Errorf("netns: create %s: %w", name, err)
		}
		h.Close()
		upErr := setLinkUp("lo")
		if err := netns.Set(orig); err != nil {
			return fmt.Errorf("netns: leave %s: %w", name, err)
		}
		return upErr
	})
	if err != nil {
		return NetNS{}, err
	}
	return NetNS{Name: name}, nil
}

// deleteNetNS unmounts and removes a named namespace. A missing namespace is not an error.
func deleteNetNS(name string) error {
	err := netns.DeleteNamed(name)
	if err != nil && !os.IsNotExist(err) {
		return fmt.Errorf("netns: delete %s: %w", name, err)
	}
	return nil
}

// Do runs fn on an OS thread that is inside n, then returns the thread to its namespace. Sockets
// created by fn stay in n; processes forked by fn start in n.
func (n NetNS) Do(fn func() error) error {
	return onLockedThread(func() error {
		orig, err := netns.Get()
		if err != nil {
			return fmt.Errorf("netns: current: %w", err)
		}
		defer orig.Close()
		target, err := netns.GetFromPath(n.Path())
		if err != nil {
			return fmt.Errorf("netns: open %s: %w", n.Name, err)
		}
		defer target.Close()
		if err := netns.Set(target); err != nil {
			return fmt.Errorf("netns: enter %s: %w", n.Name, err)
		}
		fnErr := fn()
		if err := netns.Set(orig); err != nil {
			// The thread is stuck in the wrong namespace: keep it locked so the runtime discards it.
			return fmt.Errorf("netns: leave %s: %w", n.Name, err)
		}
		return fnErr
	})
}

// onLockedThread runs fn on a locked OS thread. If fn leaves the thread in an unknown state (an
// error from netns.Set), the thread is not unlocked and dies with the goroutine.
func onLockedThread(fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		err := fn()
		if err == nil {
			runtime.UnlockOSThread()
		}
		errc <- err
	}()
	return <-errc
}

// DialContext opens a TCP connection from inside n.
func (n NetNS) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	var conn net.Conn
	err := n.Do(func() error {
		var d net.Dialer
		c, err := d.DialContext(ctx, network, addr)
		conn = c
		return err
	})
	return conn, err
}

// Listen opens a listener inside n.
func (n NetNS) Listen(network, addr string) (net.Listener, error) {
	var ln net.Listener
	err := n.Do(func() error {
		l, err := net.Listen(network, addr)
		ln = l
		return err
	})
	return ln, err
}

// writeSysctl sets a per-namespace sysctl of the calling thread's network namespace; call it inside Do.
func writeSysctl(name, value string) error {
	p := filepath.Join("/proc/sys", filepath.FromSlash(name))
	if err := os.WriteFile(p, []byte(value), 0o644); err != nil {
		return fmt.Errorf("sysctl %s=%s: %w", name, value, err)
	}
	return nil
}
