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

// NetNS is a named network namespace created by the harness: a namespace file bind-mounted in
// Dir (/run/netns for nodes and the underlay; the node's own netns directory for pods, which the
// node sees as its /var/run/netns).
type NetNS struct {
	Name string
	Dir  string // empty means /run/netns
}

// Path is the bind-mounted namespace file, the form CNI plugins and setns take.
func (n NetNS) Path() string {
	if n.Dir == "" {
		return filepath.Join(netnsDir, n.Name)
	}
	return filepath.Join(n.Dir, n.Name)
}

// newNetNS creates a named network namespace in /run/netns.
func newNetNS(name string) (NetNS, error) { return newNetNSIn("", name) }

// newNetNSIn creates a named network namespace in dir (a shared mount, see shareDir) with its
// loopback device up, without changing the namespace of the calling thread.
func newNetNSIn(dir, name string) (NetNS, error) {
	ns := NetNS{Name: name, Dir: dir}
	if err := shareDir(filepath.Dir(ns.Path())); err != nil {
		return NetNS{}, err
	}
	f, err := os.OpenFile(ns.Path(), os.O_CREATE|os.O_EXCL|os.O_RDONLY, 0o444)
	if err != nil {
		return NetNS{}, fmt.Errorf("netns: create %s: %w", name, err)
	}
	f.Close()
	err = onLockedThread(func() (bool, error) {
		orig, err := netns.Get()
		if err != nil {
			return true, fmt.Errorf("netns: current: %w", err)
		}
		defer orig.Close()
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			return true, fmt.Errorf("netns: create %s: %w", name, err)
		}
		self := fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid())
		mountErr := unix.Mount(self, ns.Path(), "none", unix.MS_BIND, "")
		upErr := setLinkUp("lo")
		if err := netns.Set(orig); err != nil {
			return false, fmt.Errorf("netns: leave %s: %w", name, err)
		}
		if mountErr != nil {
			return true, fmt.Errorf("netns: bind %s: %w", name, mountErr)
		}
		return true, upErr
	})
	if err != nil {
		os.Remove(ns.Path())
		return NetNS{}, err
	}
	return ns, nil
}

// shareDir makes dir a shared bind mount of itself, as iproute2 does with /run/netns before it
// creates its first namespace. Namespace mounts made in it then propagate to the mount
// namespaces of pods that mount it (their mounts are slaves of the host's); and, for
// /run/netns, a later `ip netns add` by anyone no longer hides the harness's mounts beneath a new
// mount, where they could not be unmounted.
func shareDir(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("netns: %w", err)
	}
	err := unix.Mount("", dir, "none", unix.MS_SHARED|unix.MS_REC, "")
	if err == unix.EINVAL { // not a mount point yet
		if err := unix.Mount(dir, dir, "none", unix.MS_BIND|unix.MS_REC, ""); err != nil {
			return fmt.Errorf("netns: bind %s: %w", dir, err)
		}
		err = unix.Mount("", dir, "none", unix.MS_SHARED|unix.MS_REC, "")
	}
	if err != nil {
		return fmt.Errorf("netns: share %s: %w", dir, err)
	}
	return nil
}

// deleteNetNS unmounts and removes a namespace of /run/netns (see deleteNetNSAt).
func deleteNetNS(name string) error { return deleteNetNSAt(filepath.Join(netnsDir, name)) }

// deleteNetNSAt unmounts and removes the namespace file at path. A missing namespace is not an
// error. A namespace mount hidden by a later mount of its directory (EINVAL) is detached lazily.
func deleteNetNSAt(p string) error {
	err := unix.Unmount(p, unix.MNT_DETACH)
	switch {
	case err == nil, err == unix.EINVAL: // EINVAL: not (or no longer visibly) a mount point
	case errors.Is(err, unix.ENOENT):
		return nil
	default:
		return fmt.Errorf("netns: unmount %s: %w", p, err)
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("netns: delete %s: %w", p, err)
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
