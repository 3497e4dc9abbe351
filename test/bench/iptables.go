package bench

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"

	"github.com/weftmesh/weft/test/harness"
	"github.com/weftmesh/weft/test/mesh"
)

// WeftIPTablesScenario is weft-l4 with the node agents started with --capture=iptables: Istio's
// in-pod iptables REDIRECT rules bring the connections to the agents instead of eBPF, the rest of
// the path is the same. Its ratios to weft-l4 show what the eBPF capture buys.
const WeftIPTablesScenario = "weft-iptables"

// Capture modes of the node agent (--capture).
const (
	CaptureEBPF     = "ebpf"
	CaptureIPTables = "iptables"
)

// captureSwitchTimeout bounds a rollout of the node agents with another capture mode.
const captureSwitchTimeout = 3 * time.Minute

// SetCaptureArgs returns the node agent's arguments with the capture mode set: any --capture
// (or -capture) argument is removed, and --capture=mode appended unless mode is ebpf, the
// default.
func SetCaptureArgs(args []string, mode string) []string {
	out := slices.DeleteFunc(slices.Clone(args), func(a string) bool {
		return strings.HasPrefix(strings.TrimLeft(a, "-"), "capture=") || strings.TrimLeft(a, "-") == "capture"
	})
	if mode != CaptureEBPF {
		out = append(out, "--capture="+mode)
	}
	return out
}

// SetCapture switches the node agents (DaemonSet weft-system/weft-nodeagent) to a capture mode
// and waits until a ready agent with it runs on every node and no other agent pod is left. A
// DaemonSet already in that mode is left alone. Switch with no namespace enrolled: an agent
// leaves its capture in place when it stops (fail closed), and only the iptables agent removes
// what the eBPF one left (not the reverse).
func SetCapture(ctx context.Context, c *harness.Cluster, mode string) error {
	dss := c.Client.AppsV1().DaemonSets("weft-system")
	changed := false
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		ds, err := dss.Get(ctx, "weft-nodeagent", metav1.GetOptions{})
		if err != nil {
			return err
		}
		ctr := &ds.Spec.Template.Spec.Containers[0]
		args := SetCaptureArgs(ctr.Args, mode)
		if slices.Equal(args, ctr.Args) {
			return nil
		}
		ctr.Args, changed = args, true
		_, err = dss.Update(ctx, ds, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		return fmt.Errorf("capture %s: patch the node agents: %w", mode, err)
	}
	if !changed {
		return nil
	}
	return harness.WaitFor(ctx, captureSwitchTimeout, "node agents running with capture "+mode, func(ctx context.Context) (bool, error) {
		pods, err := c.Client.CoreV1().Pods("weft-system").List(ctx, metav1.ListOptions{LabelSelector: "app=weft-nodeagent"})
		if err != nil {
			return false, err
		}
		ready := 0
		for _, p := range pods.Items {
			args := p.Spec.Containers[0].Args
			if p.DeletionTimestamp != nil || !slices.Equal(SetCaptureArgs(args, mode), args) {
				return false, nil // an agent of the old mode is still there
			}
			if mesh.PodReady(p) {
				ready++
			}
		}
		return len(pods.Items) == len(c.Nodes) && ready == len(c.Nodes), nil
	})
}

// IPTablesPass measures the weft-iptables scenario after the interleaved run: switching the
// capture mode restarts every node agent (a DaemonSet rollout, tens of seconds), too slow to do
// twice per repetition. It unenrolls the namespace, rolls the agents out with --capture=iptables,
// and runs every workload of runner's plan with the namespace enrolled (sw.Enroll), its agents'
// CPU and memory accounted from the new agent pods, which it returns. The weft-iptables rows are
// therefore not interleaved with the others: drift between the passes is not controlled.
// runner is a copy; its Meter is replaced.
func IPTablesPass(ctx context.Context, c *harness.Cluster, runner Runner, sw *MeshSwitch) (ScenarioResult, []Agent, error) {
	sc := Scenario{
		Name: WeftIPTablesScenario,
		Description: "Weft L4 with the node agents started with --capture=iptables: iptables REDIRECT rules in the pods' network namespaces " +
			"(nat OUTPUT → 15001, PREROUTING → 15006, as Istio's in-pod redirection) instead of eBPF, original destinations from SO_ORIGINAL_DST; " +
			"otherwise as weft-l4. Measured in a second pass after the interleaved scenarios",
		Target: sw.Target,
		Path:   PathAgents,
	}
	fail := func(err error) (ScenarioResult, []Agent, error) {
		return ScenarioResult{Name: sc.Name, Description: sc.Description, Target: sc.Target, Path: sc.Path}, nil, fmt.Errorf("%s: %w", WeftIPTablesScenario, err)
	}
	if err := sw.Unenroll(ctx); err != nil {
		return fail(err)
	}
	if err := SetCapture(ctx, c, CaptureIPTables); err != nil {
		return fail(err)
	}
	agents, err := NodeAgents(ctx, c)
	if err != nil {
		return fail(err)
	}
	sc.Enter = func(ctx context.Context) error {
		if err := sw.Enroll(ctx); err != nil {
			return err
		}
		return checkIPTablesCapture(ctx, c, sw.Target)
	}
	runner.Meter = &AgentMeter{Agents: agents}
	res := runner.Run(ctx, sc)
	return res[0], agents, nil
}

// checkIPTablesCapture checks that the client pod's traffic is captured by Weft's iptables
// chains, not by eBPF.
func checkIPTablesCapture(ctx context.Context, c *harness.Cluster, t Target) error {
	out, err := c.Exec(ctx, t.Namespace, t.ClientPod, "/usr/sbin/iptables-save", "-t", "nat")
	if err != nil {
		return fmt.Errorf("iptables-save in %s: %w: %s", t.ClientPod, err, out)
	}
	if !strings.Contains(string(out), "-A OUTPUT -p tcp -j WEFT_OUTPUT") {
		return fmt.Errorf("client pod %s has no WEFT_OUTPUT jump: the agents do not capture with iptables:\n%s", t.ClientPod, out)
	}
	return nil
}
