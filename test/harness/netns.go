package harness

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
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
	if err := prepareNetNSDir(); err != nil {
		return NetNS{}, err
	}
	err := onLockedThread(func() (bool, error) {
		orig, err := netns.Get()
		if err != nil {
			return true, fmt.Errorf("netns: current: %w", err)
		}
		defer orig.Close()
		h, err := netns.NewNamed(name) // also switches the thread into the new namespace
		if err != nil {
			return true, fmt.Errorf("netns: create %s: %w", name, err)
		}
		h.Close()
		upErr := setLinkUp("lo")
		if err := netns.Set(orig); err != nil {
			return false, fmt.Errorf("netns: leave %s: %w", name, err)
		}
		return true, upErr
	})
	if err != nil {
		return NetNS{}, err
	}
	return NetNS{Name: name}, nil
}

// prepareNetNSDir makes /run/netns a shared bind mount of itself, as iproute2 does before it
// creates its first namespace. Without it, a later `ip netns add` by anyone would do so and
// hide the harness's namespace mounts beneath the new mount, where they can no longer be
// unmounted.
func prepareNetNSDir() error {
	if err := os.MkdirAll(netnsDir, 0o755); err != nil {
		return fmt.Errorf("netns: %w", err)
	}
	err := unix.Mount("", netnsDir, "none", unix.MS_SHARED|unix.MS_REC, "")
	if err == unix.EINVAL { // not a mount point yet
		if err := unix.Mount(netnsDir, netnsDir, "none", unix.MS_BIND|unix.MS_REC, ""); err != nil {
			return fmt.Errorf("netns: bind %s: %w", netnsDir, err)
		}
		err = unix.Mount("", netnsDir, "none", unix.MS_SHARED|unix.MS_REC, "")
	}
	if err != nil {
		return fmt.Errorf("netns: share %s: %w", netnsDir, err)
	}
	return nil
}

// deleteNetNS unmounts and removes a named namespace. A missing namespace is not an error. A
// namespace mount hidden by a later mount of /run/netns (EINVAL) is detached lazily.
func deleteNetNS(name string) error {
	p := filepath.Join(netnsDir, name)
	err := unix.Unmount(p, unix.MNT_DETACH)
	switch {
	case err == nil, err == unix.EINVAL: // EINVAL: not (or no longer visibly) a mount point
	case errors.Is(err, unix.ENOENT):
		return nil
	default:
		return fmt.Errorf("netns: unmount %s: %w", name, err)
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("netns: delete %s: %w", name, err)
	}
	return nil
}

// Do runs fn on an OS thread that is inside n, then returns the thread to its namespace. Sockets
// created by fn stay in n; processes forked by fn start in n.
func (n NetNS) Do(fn func() error) error {
	return onLockedThread(func() (bool, error) {
		orig, err := netns.Get()
		if err != nil {
			return true, fmt.Errorf("netns: current: %w", err)
		}
		defer orig.Close()
		target, err := netns.GetFromPath(n.Path())
		if err != nil {
			return true, fmt.Errorf("netns: open %s: %w", n.Name, err)
		}
		defer target.Close()
		if err := netns.Set(target); err != nil {
			return true, fmt.Errorf("netns: enter %s: %w", n.Name, err)
		}
		fnErr := fn()
		if err := netns.Set(orig); err != nil {
			return false, fmt.Errorf("netns: leave %s: %w", n.Name, err)
		}
		return true, fnErr
	})
}

// onLockedThread runs fn on a locked OS thread. fn reports whether the thread is clean (back in
// the namespace it started in): only a clean thread is unlocked and reused; any other stays
// locked and ends with its goroutine. Ending threads only then matters: PDEATHSIG, which the
// harness's processes use, fires when the forking thread ends, not the process.
func onLockedThread(fn func() (clean bool, err error)) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		clean, err := fn()
		if clean {
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
