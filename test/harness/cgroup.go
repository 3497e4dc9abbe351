package harness

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"
)

// killCgroup kills every process in the cgroup tree at dir and waits, bounded, until it is empty.
func killCgroup(dir string) error {
	if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err := os.WriteFile(filepath.Join(dir, "cgroup.kill"), []byte("1"), 0o644); err != nil {
		return fmt.Errorf("cgroup: kill %s: %w", dir, err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if populated, _ := cgroupPopulated(dir); !populated {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("cgroup: %s still has processes after kill", dir)
}

// cgroupPopulated reports whether any process lives in the tree at dir.
func cgroupPopulated(dir string) (bool, error) {
	b, err := os.ReadFile(filepath.Join(dir, "cgroup.events"))
	if err != nil {
		return false, err
	}
	return strings.Contains(string(b), "populated 1"), nil
}

// removeCgroupTree removes dir and its child cgroups, deepest first. The cgroups must be empty.
func removeCgroupTree(dir string) error {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("cgroup: %w", err)
	}
	for _, e := range entries {
		if e.IsDir() {
			if err := removeCgroupTree(filepath.Join(dir, e.Name())); err != nil {
				return err
			}
		}
	}
	if err := unix.Rmdir(dir); err != nil && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("cgroup: remove %s: %w", dir, err)
	}
	return nil
}

// PodCgroupDir returns the cgroup v2 directory a pod's processes run in on its harness node
// (<Node.CgroupDir>/pod-<uid>), where cpu.stat and cgroup.procs account for them.
func (c *Cluster) PodCgroupDir(pod *corev1.Pod) (string, error) {
	n := c.Node(pod.Spec.NodeName)
	if n == nil {
		return "", fmt.Errorf("pod %s/%s: node %q is not a harness node", pod.Namespace, pod.Name, pod.Spec.NodeName)
	}
	return filepath.Join(n.CgroupDir, "pod-"+string(pod.UID)), nil
}
