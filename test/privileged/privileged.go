// Package privileged gates Weft's privileged tests and gives them the kernel facilities they need:
// a cgroup v2 mount, bpffs, temporary cgroups and pin directories. A test named TestPrivileged…
// calls Require first; it skips with one loud line only where root, network namespaces, cgroup v2
// or the bpf system call are truly absent, and fails where the host should support them.
package privileged

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ErrUnsupportedHost means the machine lacks what the harness needs: root, network namespaces,
// cgroup v2 or the bpf system call. It is the only reason privileged tests may skip.
var ErrUnsupportedHost = errors.New("host cannot run the privileged harness")

// Check reports whether this process can build harness clusters. Errors wrapping
// ErrUnsupportedHost mean a capability is truly absent; any other error is a failure on a host
// that should support it.
func Check() error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("%w: not running as root (euid %d)", ErrUnsupportedHost, os.Geteuid())
	}
	if _, err := os.Stat("/proc/self/ns/net"); err != nil {
		return fmt.Errorf("%w: no network namespaces: %v", ErrUnsupportedHost, err)
	}
	if _, err := os.Stat("/sys/fs/cgroup"); err != nil {
		return fmt.Errorf("%w: no cgroup filesystem: %v", ErrUnsupportedHost, err)
	}
	if _, err := Cgroup2Root(); err != nil {
		return fmt.Errorf("cgroup v2: %w", err)
	}
	if err := probeBPF(); err != nil {
		return err
	}
	return nil
}

// probeBPF creates and closes a one-element array map.
func probeBPF() error {
	attr := struct {
		mapType, keySize, valueSize, maxEntries, flags uint32
	}{unix.BPF_MAP_TYPE_ARRAY, 4, 4, 1, 0}
	fd, _, errno := unix.Syscall(unix.SYS_BPF, unix.BPF_MAP_CREATE, uintptr(unsafe.Pointer(&attr)), unsafe.Sizeof(attr))
	switch {
	case errno == unix.ENOSYS:
		return fmt.Errorf("%w: kernel has no bpf system call", ErrUnsupportedHost)
	case errno != 0:
		return fmt.Errorf("bpf: creating a map as root failed: %w", errno)
	}
	unix.Close(int(fd))
	return nil
}

// Require gates a TestPrivileged… test: it skips with one loud line when the host truly
// cannot run it, and fails when the host should support it but something is broken. With
// WEFT_REQUIRE_PRIVILEGED=1 (set by CI) a skip is a failure too. With -short (make test-unit)
// privileged tests are left out on purpose.
func Require(t testing.TB) {
	t.Helper()
	if testing.Short() {
		t.Skip("privileged test: not run with -short (make test-unit); make test runs it")
	}
	err := Check()
	switch {
	case err == nil:
	case errors.Is(err, ErrUnsupportedHost) && os.Getenv("WEFT_REQUIRE_PRIVILEGED") != "1":
		t.Skipf("!!!!! SKIPPING PRIVILEGED TEST %s: %v !!!!!", t.Name(), err)
	default:
		t.Fatalf("privileged test %s cannot run on a host that should support it: %v", t.Name(), err)
	}
}

// ownCgroup2Mount is where the harness mounts cgroup v2 when the machine has no cgroup2 mount
// (hosts that still run cgroup v1 only). On a hybrid or pure v2 host the existing mount is used.
const ownCgroup2Mount = "/run/weft-harness-cgroup2"

// Cgroup2Root returns a cgroup v2 mount point, mounting one at ownCgroup2Mount if none exists.
func Cgroup2Root() (string, error) {
	if p, err := findMount("cgroup2"); err != nil {
		return "", err
	} else if p != "" {
		return p, nil
	}
	if err := os.MkdirAll(ownCgroup2Mount, 0o755); err != nil {
		return "", fmt.Errorf("cgroup2: %w", err)
	}
	if err := unix.Mount("cgroup2", ownCgroup2Mount, "cgroup2", 0, ""); err != nil {
		return "", fmt.Errorf("cgroup2: mount at %s: %w", ownCgroup2Mount, err)
	}
	return ownCgroup2Mount, nil
}

// BPFFSRoot returns the bpffs mount at /sys/fs/bpf, mounting it when absent, as a node agent's
// DaemonSet mounts it on a real node.
func BPFFSRoot() (string, error) {
	const root = "/sys/fs/bpf"
	var st unix.Statfs_t
	if err := unix.Statfs(root, &st); err == nil && st.Type == unix.BPF_FS_MAGIC {
		return root, nil
	}
	if err := unix.Mount("bpffs", root, "bpf", 0, "mode=0700"); err != nil {
		return "", fmt.Errorf("bpffs: mount at %s: %w", root, err)
	}
	return root, nil
}

// findMount returns the first mount point of the given filesystem type, or "".
func findMount(fstype string) (string, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return "", fmt.Errorf("mountinfo: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// id parent major:minor root mountpoint options [optional...] - fstype source superopts
		fields := strings.Fields(sc.Text())
		for i, fld := range fields {
			if fld == "-" && i+1 < len(fields) && fields[i+1] == fstype {
				return fields[4], nil
			}
		}
	}
	return "", sc.Err()
}
