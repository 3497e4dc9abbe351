package harness

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/weftmesh/weft/test/privileged"
)

// stateRoot holds one directory per run: owner pid, kubeconfigs, logs, pod volumes.
const stateRoot = "/run/weft-harness"

// newRunID returns a short random run ID.
func newRunID() string {
	b := make([]byte, 3)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand never fails on Linux
	}
	return hex.EncodeToString(b)
}

// createRunDir creates a run's state directory with the owner's pid already inside, by renaming
// a hidden directory into place, so that no concurrent Clean ever sees a run without an owner.
func createRunDir(dir string) error {
	tmp := filepath.Join(filepath.Dir(dir), "."+filepath.Base(dir))
	if err := os.MkdirAll(tmp, 0o755); err != nil {
		return fmt.Errorf("harness: %w", err)
	}
	if err := os.WriteFile(filepath.Join(tmp, "owner.pid"), []byte(strconv.Itoa(os.Getpid())), 0o644); err != nil {
		return fmt.Errorf("harness: %w", err)
	}
	if err := os.Rename(tmp, dir); err != nil {
		return fmt.Errorf("harness: %w", err)
	}
	return nil
}

// MarkDetached records that the run in dir was started to stay up in the background, so that
// StopDetached may end it.
func MarkDetached(dir string) error {
	return os.WriteFile(filepath.Join(dir, "detached"), nil, 0o644)
}

// isRunID reports whether s has the form of a run ID: six lowercase hex digits.
func isRunID(s string) bool {
	if len(s) != 6 {
		return false
	}
	for _, r := range s {
		if !('0' <= r && r <= '9' || 'a' <= r && r <= 'f') {
			return false
		}
	}
	return true
}

// runPrefix is the prefix of every name a run creates.
func runPrefix(runID string) string { return "weft-" + runID }

// Clean removes what harness runs left behind: their processes (by cgroup), network namespaces,
// cgroups, bpffs pins and state directories. With runID empty it cleans every run whose owner
// process is gone (all runs if force is set); otherwise just that run. It returns what it removed.
func Clean(runID string, force bool) ([]string, error) {
	runs, err := knownRuns()
	if err != nil {
		return nil, err
	}
	if runID != "" {
		runs = []string{runID}
	}
	var removed []string
	var errs []error
	for _, id := range runs {
		if runID == "" && !force && ownerAlive(id) {
			continue
		}
		r, err := cleanRun(id)
		removed = append(removed, r...)
		if err != nil {
			errs = append(errs, err)
		}
	}
	return removed, errors.Join(errs...)
}

// knownRuns lists run IDs found in any of the places a run leaves traces.
func knownRuns() ([]string, error) {
	ids := map[string]bool{}
	add := func(dir string, parse func(name string) string) {
		entries, err := os.ReadDir(dir)
		if err != nil {
			return
		}
		for _, e := range entries {
			if id := parse(e.Name()); id != "" {
				ids[id] = true
			}
		}
	}
	fromPrefixed := func(name string) string {
		rest, ok := strings.CutPrefix(name, "weft-")
		if !ok {
			return ""
		}
		id, _, _ := strings.Cut(rest, "-")
		if !isRunID(id) {
			return "" // another test's name, e.g. weft-test-…
		}
		return id
	}
	add(stateRoot, func(name string) string {
		if !isRunID(name) {
			return "" // a run being created (".id"), or a log file
		}
		return name
	})
	add(netnsDir, fromPrefixed)
	add("/sys/fs/bpf", fromPrefixed)
	if cg, err := privileged.Cgroup2Root(); err == nil {
		add(cg, fromPrefixed)
	}
	out := make([]string, 0, len(ids))
	for id := range ids {
		out = append(out, id)
	}
	sort.Strings(out)
	return out, nil
}

// ownerAlive reports whether the process that started run id still runs (a zombie, whose
// parent has not reaped it yet, does not).
func ownerAlive(id string) bool {
	b, err := os.ReadFile(filepath.Join(stateRoot, id, "owner.pid"))
	if err != nil {
		return false
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return false
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// pid (comm) state ...; comm may contain spaces and parentheses.
	rest := string(stat[strings.LastIndexByte(string(stat), ')')+1:])
	return !strings.HasPrefix(strings.TrimSpace(rest), "Z")
}

// cleanRun removes everything of one run, in dependency order: processes first, then network
// namespaces, cgroups, pins, mount-point directories the run created, and its state directory.
func cleanRun(id string) ([]string, error) {
	prefix := runPrefix(id)
	var removed []string
	var errs []error
	note := func(what string, err error) {
		if err != nil {
			errs = append(errs, err)
			return
		}
		removed = append(removed, what)
	}
	if cg, err := privileged.Cgroup2Root(); err == nil {
		dir := filepath.Join(cg, prefix)
		if _, err := os.Stat(dir); err == nil {
			note("processes of cgroup "+dir, killCgroup(dir))
			note("cgroup "+dir, removeCgroupTree(dir))
		}
	}
	if entries, err := os.ReadDir(netnsDir); err == nil {
		for _, e := range entries {
			if strings.HasPrefix(e.Name(), prefix+"-") {
				note("netns "+e.Name(), deleteNetNS(e.Name()))
			}
		}
	}
	pins := filepath.Join("/sys/fs/bpf", prefix)
	if _, err := os.Stat(pins); err == nil {
		note("bpffs "+pins, os.RemoveAll(pins))
	}
	state := filepath.Join(stateRoot, id)
	if dirs, _ := filepath.Glob(filepath.Join(state, "nodes", "*", "netns")); len(dirs) > 0 {
		for _, d := range dirs {
			note("pod namespaces of "+filepath.Base(filepath.Dir(d)), removeNetNSDir(d))
		}
	}
	removeCreatedDirs(state)
	if _, err := os.Stat(state); err == nil {
		note("state "+state, os.RemoveAll(state))
	}
	if len(errs) > 0 {
		return removed, fmt.Errorf("clean run %s: %w", id, errors.Join(errs...))
	}
	return removed, nil
}

// removeNetNSDir deletes every namespace in a node's netns directory and unmounts the directory
// (a shared self-bind, see shareDir).
func removeNetNSDir(dir string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil
	}
	var errs []error
	for _, e := range entries {
		errs = append(errs, deleteNetNSAt(filepath.Join(dir, e.Name())))
	}
	if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil && err != unix.EINVAL {
		errs = append(errs, fmt.Errorf("unmount %s: %w", dir, err))
	}
	return errors.Join(errs...)
}

// createdDirsFile lists directories on the host filesystem that pod shims created as mount
// points (a container runtime would create them inside the image instead).
const createdDirsFile = "created-dirs"

// removeCreatedDirs removes the recorded mount points (directories, empty files) that are still
// empty, deepest first.
func removeCreatedDirs(state string) {
	b, err := os.ReadFile(filepath.Join(state, createdDirsFile))
	if err != nil {
		return
	}
	dirs := strings.Fields(string(b))
	sort.Slice(dirs, func(i, j int) bool { return len(dirs[i]) > len(dirs[j]) })
	for _, d := range dirs {
		fi, err := os.Lstat(d)
		if err != nil || !fi.IsDir() && fi.Size() != 0 {
			continue // gone, or a file somebody has written to since
		}
		_ = os.Remove(d) // fails, as it should, for a directory not empty or still mounted
	}
}

// Leftovers lists what of run id still exists on the host: network namespaces, the cgroup (and
// so any process in it), bpffs pins and the state directory. Empty after a clean Close.
func Leftovers(id string) []string {
	prefix := runPrefix(id)
	var out []string
	if entries, err := os.ReadDir(netnsDir); err == nil {
		for _, e := range entries {
			if strings.HasPrefix(e.Name(), prefix+"-") {
				out = append(out, "netns "+e.Name())
			}
		}
	}
	if cg, err := privileged.Cgroup2Root(); err == nil {
		if _, err := os.Stat(filepath.Join(cg, prefix)); err == nil {
			out = append(out, "cgroup "+filepath.Join(cg, prefix))
		}
	}
	for _, p := range []string{filepath.Join("/sys/fs/bpf", prefix), filepath.Join(stateRoot, id)} {
		if _, err := os.Stat(p); err == nil {
			out = append(out, p)
		}
	}
	return out
}

// DetachedOwners returns the pids of the live processes that own detached runs (see MarkDetached).
func DetachedOwners() []int {
	entries, err := os.ReadDir(stateRoot)
	if err != nil {
		return nil
	}
	var pids []int
	for _, e := range entries {
		dir := filepath.Join(stateRoot, e.Name())
		if !fileExists(filepath.Join(dir, "detached")) || !ownerAlive(e.Name()) {
			continue
		}
		b, _ := os.ReadFile(filepath.Join(dir, "owner.pid"))
		if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
			pids = append(pids, pid)
		}
	}
	return pids
}
