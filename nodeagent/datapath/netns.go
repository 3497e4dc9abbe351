package datapath

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"

	"github.com/weftmesh/weft/nodeagent/podnet"
	"golang.org/x/sys/unix"
)

// errNetNSGone means a pod's network namespace no longer exists at its path.
var errNetNSGone = errors.New("network namespace gone")

// inPodNetNS is inNetNS for the netns with the given cookie: a path that is missing, or names
// another netns by now (a reused PID), gives an error wrapping errNetNSGone and fn is not run.
func inPodNetNS(path string, cookie uint64, fn func() error) error {
	err := podnet.Do(path, func() error {
		c, err := currentNetNSCookie()
		if err != nil {
			return err
		}
		if c != cookie {
			return fmt.Errorf("%s is netns %d, not %d: %w", path, c, cookie, errNetNSGone)
		}
		return fn()
	})
	if errors.Is(err, os.ErrNotExist) && !errors.Is(err, errNetNSGone) {
		return fmt.Errorf("%w: %w", errNetNSGone, err)
	}
	return err
}

// currentNetNSCookie returns the cookie of the calling thread's network namespace.
func currentNetNSCookie() (uint64, error) { return podnet.Cookie() }

// writeSysctl sets a sysctl of the calling thread's network namespace.
func writeSysctl(name, value string) error {
	p := filepath.Join("/proc/sys", filepath.FromSlash(name))
	if err := os.WriteFile(p, []byte(value), 0o644); err != nil {
		return fmt.Errorf("sysctl %s=%s: %w", name, value, err)
	}
	return nil
}

// socketInfo is what EnrollPod checks about a listening socket handed to it.
type socketInfo struct {
	fd          int // valid only inside withSocket's callback
	netnsCookie uint64
	family      int
	protocol    int
	listening   bool
	v6only      bool
}

// withSocket calls fn with the file descriptor and properties of a socket.
func withSocket(c syscall.Conn, fn func(socketInfo) error) error {
	rc, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var fnErr error
	err = rc.Control(func(fd uintptr) {
		si := socketInfo{fd: int(fd)}
		if si.netnsCookie, fnErr = unix.GetsockoptUint64(si.fd, unix.SOL_SOCKET, unix.SO_NETNS_COOKIE); fnErr != nil {
			fnErr = fmt.Errorf("SO_NETNS_COOKIE: %w", fnErr)
			return
		}
		if si.family, fnErr = unix.GetsockoptInt(si.fd, unix.SOL_SOCKET, unix.SO_DOMAIN); fnErr != nil {
			fnErr = fmt.Errorf("SO_DOMAIN: %w", fnErr)
			return
		}
		if si.protocol, fnErr = unix.GetsockoptInt(si.fd, unix.SOL_SOCKET, unix.SO_PROTOCOL); fnErr != nil {
			fnErr = fmt.Errorf("SO_PROTOCOL: %w", fnErr)
			return
		}
		var acc int
		if acc, fnErr = unix.GetsockoptInt(si.fd, unix.SOL_SOCKET, unix.SO_ACCEPTCONN); fnErr != nil {
			fnErr = fmt.Errorf("SO_ACCEPTCONN: %w", fnErr)
			return
		}
		si.listening = acc == 1
		if si.family == unix.AF_INET6 {
			var only int
			if only, fnErr = unix.GetsockoptInt(si.fd, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY); fnErr != nil {
				fnErr = fmt.Errorf("IPV6_V6ONLY: %w", fnErr)
				return
			}
			si.v6only = only == 1
		}
		fnErr = fn(si)
	})
	if err != nil {
		return err
	}
	return fnErr
}
