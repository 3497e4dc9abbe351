// Package podshim is the tiny container runtime of the harness: it turns the current process into
// a pod's container by bind-mounting the pod's volumes in a private mount namespace, setting the
// pod's hostname, entering the pod's network namespace and then executing the container's binary.
//
// The harness starts the shim with a fresh UTS namespace and inside the pod's cgroup (exec.Cmd's
// SysProcAttr does that); the shim does what SysProcAttr cannot: a mount namespace whose mounts
// are slaves of the host's (mounts made on the host later, such as new network namespaces under
// /var/run/netns, propagate in, as with Kubernetes' HostToContainer propagation; nothing
// propagates out), the volume mounts, setns into a network namespace, then exec.
package podshim

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"

	"golang.org/x/sys/unix"
)

// Spec is what the shim needs to start one container.
type Spec struct {
	NetNSPath string   `json:"netnsPath"` // network namespace to enter
	Hostname  string   `json:"hostname"`
	Mounts    []Mount  `json:"mounts"`
	Dir       string   `json:"dir,omitempty"` // working directory
	Argv      []string `json:"argv"`          // argv[0] is the absolute path of the binary
	Env       []string `json:"env"`
	// CreatedDirsFile, when set, receives one line per directory the shim had to create on the
	// host filesystem as a mount point, so that cleanup can remove it.
	CreatedDirsFile string `json:"createdDirsFile,omitempty"`
}

// Mount is a bind mount of Source (a file or directory) at Target.
type Mount struct {
	Source   string `json:"source"`
	Target   string `json:"target"`
	ReadOnly bool   `json:"readOnly,omitempty"`
}

// Load reads a Spec written as JSON.
func Load(path string) (Spec, error) {
	var s Spec
	b, err := os.ReadFile(path)
	if err != nil {
		return s, fmt.Errorf("podshim: %w", err)
	}
	if err := json.Unmarshal(b, &s); err != nil {
		return s, fmt.Errorf("podshim: %s: %w", path, err)
	}
	if len(s.Argv) == 0 || !filepath.IsAbs(s.Argv[0]) {
		return s, fmt.Errorf("podshim: %s: argv[0] must be an absolute path", path)
	}
	return s, nil
}

// Exec prepares the process as s says and replaces it with the container's binary. It returns
// only on error.
func Exec(s Spec) error {
	// unshare, setns and exec must happen on one thread: the new program inherits its namespaces.
	runtime.LockOSThread()
	if err := unix.Unshare(unix.CLONE_NEWNS); err != nil {
		return fmt.Errorf("podshim: mount namespace: %w", err)
	}
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_SLAVE, ""); err != nil {
		return fmt.Errorf("podshim: make / a slave mount: %w", err)
	}
	// Open the network namespace and every source before mounting anything: a mount may hide
	// a path named later.
	netnsFD := -1
	if s.NetNSPath != "" {
		fd, err := unix.Open(s.NetNSPath, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("podshim: open netns: %w", err)
		}
		netnsFD = fd
	}
	sources := make([]*os.File, len(s.Mounts))
	for i, m := range s.Mounts {
		f, err := os.OpenFile(m.Source, unix.O_PATH|unix.O_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("podshim: mount source: %w", err)
		}
		sources[i] = f
	}
	for i, m := range s.Mounts {
		if err := bindMount(sources[i], m, s.CreatedDirsFile); err != nil {
			return err
		}
		sources[i].Close()
	}
	if s.Hostname != "" {
		if err := unix.Sethostname([]byte(s.Hostname)); err != nil {
			return fmt.Errorf("podshim: hostname: %w", err)
		}
	}
	if netnsFD >= 0 {
		if err := unix.Setns(netnsFD, unix.CLONE_NEWNET); err != nil {
			return fmt.Errorf("podshim: enter netns %s: %w", s.NetNSPath, err)
		}
		unix.Close(netnsFD)
	}
	if s.Dir != "" {
		if err := os.Chdir(s.Dir); err != nil {
			return fmt.Errorf("podshim: %w", err)
		}
	}
	if err := unix.Exec(s.Argv[0], s.Argv, s.Env); err != nil {
		return fmt.Errorf("podshim: exec %s: %w", s.Argv[0], err)
	}
	return nil
}

// bindMount mounts the opened source of m at m.Target, creating a missing mount point (recorded
// in createdDirs).
func bindMount(src *os.File, m Mount, createdDirs string) error {
	fi, err := src.Stat()
	if err != nil {
		return fmt.Errorf("podshim: mount source: %w", err)
	}
	if err := ensureMountPoint(m.Target, fi.IsDir(), createdDirs); err != nil {
		return err
	}
	if err := unix.Mount(fmt.Sprintf("/proc/self/fd/%d", src.Fd()), m.Target, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("podshim: bind %s at %s: %w", m.Source, m.Target, err)
	}
	if m.ReadOnly {
		if err := unix.Mount("", m.Target, "", unix.MS_BIND|unix.MS_REMOUNT|unix.MS_RDONLY, ""); err != nil {
			return fmt.Errorf("podshim: read-only %s: %w", m.Target, err)
		}
	}
	return nil
}

// ensureMountPoint creates target (a directory, or an empty file when dir is false) and any
// missing parents, recording each created path.
func ensureMountPoint(target string, dir bool, createdDirs string) error {
	if _, err := os.Stat(target); err == nil {
		return nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("podshim: %w", err)
	}
	var missing []string
	for p := filepath.Dir(target); p != "/"; p = filepath.Dir(p) {
		if _, err := os.Stat(p); err == nil {
			break
		}
		missing = append(missing, p)
	}
	if dir {
		missing = append([]string{target}, missing...)
	}
	if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
		return fmt.Errorf("podshim: mount point: %w", err)
	}
	if dir {
		if err := os.Mkdir(target, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
			return fmt.Errorf("podshim: mount point: %w", err)
		}
	} else {
		f, err := os.OpenFile(target, os.O_CREATE|os.O_WRONLY, 0o644)
		if err != nil {
			return fmt.Errorf("podshim: mount point: %w", err)
		}
		f.Close()
		missing = append([]string{target}, missing...)
	}
	return record(createdDirs, missing)
}

func record(file string, paths []string) error {
	if file == "" || len(paths) == 0 {
		return nil
	}
	f, err := os.OpenFile(file, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return fmt.Errorf("podshim: record mount points: %w", err)
	}
	defer f.Close()
	for _, p := range paths {
		if _, err := fmt.Fprintln(f, p); err != nil {
			return fmt.Errorf("podshim: record mount points: %w", err)
		}
	}
	return nil
}
