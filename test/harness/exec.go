package harness

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/weftmesh/weft/test/harness/podshim"
)

// podNetNSName names a pod's network namespace in its node's netns directory.
func podNetNSName(runID string, uid types.UID) string {
	return runPrefix(runID) + "-pod-" + string(uid)[:8]
}

// PodNetNS returns the network namespace a running pod lives in.
func (c *Cluster) PodNetNS(pod *corev1.Pod) (NetNS, error) {
	n := c.Node(pod.Spec.NodeName)
	if n == nil {
		return NetNS{}, fmt.Errorf("pod %s/%s: node %q is not a harness node", pod.Namespace, pod.Name, pod.Spec.NodeName)
	}
	if pod.Spec.HostNetwork {
		return n.NetNS, nil
	}
	ns := NetNS{Name: podNetNSName(c.RunID, pod.UID), Dir: n.netnsDir()}
	if _, err := os.Stat(ns.Path()); err != nil {
		return NetNS{}, fmt.Errorf("pod %s/%s: no sandbox yet: %w", pod.Namespace, pod.Name, err)
	}
	return ns, nil
}

// Exec runs argv inside a pod's network namespace and cgroup with the pod's /etc/resolv.conf, as
// `kubectl exec` would, and returns its combined output. argv[0] is a binary on the host, e.g. from
// Binary.
func (c *Cluster) Exec(ctx context.Context, namespace, podName string, argv ...string) ([]byte, error) {
	pod, err := c.Client.CoreV1().Pods(namespace).Get(ctx, podName, metav1.GetOptions{})
	if err != nil {
		return nil, fmt.Errorf("exec: %w", err)
	}
	ns, err := c.PodNetNS(pod)
	if err != nil {
		return nil, fmt.Errorf("exec: %w", err)
	}
	dir := filepath.Join(c.Dir, "pods", pod.Namespace+"_"+pod.Name+"_"+string(pod.UID))
	spec := podshim.Spec{NetNSPath: ns.Path(), Argv: argv, Env: []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"}}
	if resolv := filepath.Join(dir, "etc", "resolv.conf"); fileExists(resolv) {
		spec.Mounts = []podshim.Mount{{Source: resolv, Target: "/etc/resolv.conf", ReadOnly: true}}
	}
	b, err := json.Marshal(spec)
	if err != nil {
		return nil, fmt.Errorf("exec: %w", err)
	}
	f, err := os.CreateTemp(c.Dir, "exec-*.json")
	if err != nil {
		return nil, fmt.Errorf("exec: %w", err)
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(b); err != nil {
		f.Close()
		return nil, fmt.Errorf("exec: %w", err)
	}
	f.Close()
	cg, err := os.Open(filepath.Join(c.Node(pod.Spec.NodeName).CgroupDir, "pod-"+string(pod.UID)))
	if err != nil {
		return nil, fmt.Errorf("exec: pod cgroup: %w", err)
	}
	defer cg.Close()
	cmd := exec.CommandContext(ctx, c.shim, f.Name())
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr = &syscall.SysProcAttr{
		UseCgroupFD: true,
		CgroupFD:    int(cg.Fd()),
		Pdeathsig:   syscall.SIGKILL,
	}
	if err := cmd.Run(); err != nil {
		return out.Bytes(), fmt.Errorf("exec %s in %s/%s: %w\n%s", filepath.Base(argv[0]), namespace, podName, err, out.Bytes())
	}
	return out.Bytes(), nil
}

// Binary returns the path of a binary of the harness image table (e.g. "client").
func (c *Cluster) Binary(image string) string {
	b, err := c.images.Resolve(image)
	if err != nil {
		return ""
	}
	return b
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// ContainerLog returns what a running pod's container has written to stdout and stderr (the
// harness keeps no logs of deleted pods).
func (c *Cluster) ContainerLog(ctx context.Context, namespace, podName, container string) ([]byte, error) {
	pod, err := c.Client.CoreV1().Pods(namespace).Get(ctx, podName, metav1.GetOptions{})
	if err != nil {
		return nil, fmt.Errorf("logs: %w", err)
	}
	return os.ReadFile(filepath.Join(c.Dir, "pods", pod.Namespace+"_"+pod.Name+"_"+string(pod.UID), container+".log"))
}
