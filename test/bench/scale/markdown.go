package scale

import (
	"fmt"
	"io"
	"strings"
)

// WriteMarkdown renders a result as a Markdown section: the cluster, the initial sync, a
// table of change latencies per kind, and the controller's resources.
func WriteMarkdown(w io.Writer, r *Result) error {
	var b strings.Builder
	p := r.Plan
	s := p.Size
	fmt.Fprintf(&b, "### weft-scale %s (%s)\n\n", r.ID, r.Mode)
	busy := ""
	if r.Env.CPUs > 0 && r.Env.LoadAvg > float64(r.Env.CPUs)/2 {
		busy = " (**busy machine: figures are noisy**)"
	}
	fmt.Fprintf(&b, "Machine: %d × %s, Linux %s, load average %.2f before the run%s. %s, git %s. "+
		"Everything — etcd, kube-apiserver, the controller and all %d simulated agents — shares these CPUs.\n\n",
		r.Env.CPUs, orDash(r.Env.CPUModel), orDash(r.Env.Kernel), r.Env.LoadAvg, busy, orDash(r.Env.GoVersion), orDash(r.Env.GitRevision), s.Nodes)
	fmt.Fprintf(&b, "Cluster: %d nodes with one simulated agent each, %d namespaces (%d labelled ambient), %d services, %d pods; "+
		"the controller translates them into %d resources, and each agent receives %s of them (%s workloads, %s services). "+
		"Filled in %.0f s (%d apiserver writes, %.0f/s) after a %.0f s control-plane start.\n\n",
		s.Nodes, s.Namespaces, s.AmbientNamespaces(), s.Services(), s.Pods(), r.Setup.Resources,
		statText(r.PerAgent.Resources.Median, r.PerAgent.Resources.Min, r.PerAgent.Resources.Max),
		statText(r.PerAgent.Workloads.Median, r.PerAgent.Workloads.Min, r.PerAgent.Workloads.Max),
		statText(r.PerAgent.Services.Median, r.PerAgent.Services.Min, r.PerAgent.Services.Max),
		r.Setup.PopulateSeconds, r.Setup.Writes, r.Setup.WritesPerSecond, r.Setup.ControlPlaneSeconds)
	sy := r.Sync
	fmt.Fprintf(&b, "Controller start to ready (informers synced, first translation): %.2f s, %.2f CPU-s, RSS %.0f MiB. "+
		"**Initial sync** (all %d agents connect at once): last agent complete after **%.2f s** (p50 %.2f s, p99 %.2f s); "+
		"the controller had accepted every stream (TLS, token review) after %.2f s (p50 %.2f s); "+
		"controller %.2f CPU-s (%.0f ms per agent), RSS %.0f MiB after it (%+.0f KiB per agent). Content check: %s.\n\n",
		r.Startup.ReadySeconds, r.Startup.CPUSeconds, r.Startup.RSSMiB, s.Nodes, sy.AllSeconds, sy.P50Seconds, sy.P99Seconds,
		sy.AcceptedMaxSeconds, sy.AcceptedP50Seconds,
		sy.ControllerCPUSeconds, 1000*sy.ControllerCPUPerAgent, sy.ControllerRSSMiB, sy.ControllerRSSPerAgent, orDash(sy.ContentCheck))

	fmt.Fprintf(&b, "Changes (%d of each kind, taking turns, one at a time; latency from the apiserver write's return to the "+
		"last affected agent's apply, which its ACK follows at once):\n\n", p.ChangesPerKind)
	b.WriteString("| change | n | affected agents | names changed per agent | **last agent p50 ms** | **last agent p99 ms** | max ms | first agent p50 ms | controller pushed p50 ms | controller sent to last agent p50 / p99 ms | controller CPU ms per change | agent CPU ms per affected agent | spurious applies | failed |\n")
	b.WriteString("|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n")
	for _, k := range r.Changes {
		perAgent := "—"
		if k.Affected.Median > 0 {
			perAgent = fmt.Sprintf("%.1f", k.AgentsCPUms/k.Affected.Median)
		}
		fmt.Fprintf(&b, "| `%s` | %d | %s | %s | **%s** | **%s** | %s | %s | %s | %s / %s | %.0f | %s | %d | %d |\n",
			k.Kind, k.N, statText(k.Affected.Median, k.Affected.Min, k.Affected.Max), statText(k.Names.Median, k.Names.Min, k.Names.Max),
			msCell(k.Last.P50, k.Last.N), msCell(k.Last.P99, k.Last.N), msCell(k.Last.Max, k.Last.N), msCell(k.First.P50, k.First.N),
			msCell(k.Push.P50, k.Push.N), msCell(k.Sent.P50, k.Sent.N), msCell(k.Sent.P99, k.Sent.N), k.ControllerCPUms, perAgent, k.Spurious, k.Failed)
	}
	b.WriteString("\n")
	for _, k := range r.Changes {
		fmt.Fprintf(&b, "- `%s`: %s.\n", k.Kind, k.Description)
	}
	b.WriteString("\n")

	c := r.Controller
	b.WriteString("| resources | value |\n|---|--:|\n")
	fmt.Fprintf(&b, "| controller peak RSS (whole run) | %.0f MiB |\n", c.PeakRSSMiB)
	fmt.Fprintf(&b, "| controller RSS, ready, no agent | %.0f MiB |\n", r.Startup.RSSMiB)
	fmt.Fprintf(&b, "| controller RSS per connected agent | %+.0f KiB |\n", sy.ControllerRSSPerAgent)
	fmt.Fprintf(&b, "| controller CPU, initial sync | %.2f s (%.0f ms per agent) |\n", sy.ControllerCPUSeconds, 1000*sy.ControllerCPUPerAgent)
	fmt.Fprintf(&b, "| controller CPU, idle with %d agents | %.3f vCPU |\n", s.Nodes, r.Idle.VCPU)
	fmt.Fprintf(&b, "| controller CPU, change phase | %.1f s in %.0f s (%.2f vCPU) |\n", c.ChangesCPUSeconds, c.ChangesSeconds, c.ChangesVCPU)
	fmt.Fprintf(&b, "| kube-apiserver + etcd CPU, change phase | %.1f s |\n", c.APIServerCPUSeconds)
	fmt.Fprintf(&b, "| controller CPU, whole run | %.1f s |\n", c.CPUSeconds)
	if n, sum := r.Metrics["weft_controller_xds_push_seconds_count"], r.Metrics["weft_controller_xds_push_seconds_sum"]; n > 0 {
		fmt.Fprintf(&b, "| controller pushes, mean push time | %.0f, %.0f ms |\n", n, 1000*sum/n)
	}
	fmt.Fprintf(&b, "| simulated agents' CPU, initial sync (all) | %.1f s |\n", sy.AgentsCPUSeconds)
	fmt.Fprintf(&b, "| simulated agents' Go heap after the sync | %.0f MiB (%.1f MiB per agent) |\n", sy.AgentsHeapMiB, sy.AgentsHeapPerAgent)

	var notes []string
	notes = append(notes, r.Errors...)
	for _, smp := range r.Samples {
		if smp.Error != "" {
			notes = append(notes, fmt.Sprintf("%s (%s): %s", smp.Kind, smp.Detail, smp.Error))
		}
	}
	if len(notes) > 0 {
		b.WriteString("\nNotes:\n\n")
		for _, n := range notes {
			fmt.Fprintf(&b, "- %s\n", strings.ReplaceAll(n, "\n", " "))
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func statText(median, lo, hi float64) string {
	if lo == hi {
		return fmt.Sprintf("%.0f", median)
	}
	return fmt.Sprintf("%.0f (%.0f–%.0f)", median, lo, hi)
}

func msCell(v float64, n int) string {
	if n == 0 {
		return "—"
	}
	return fmt.Sprintf("%.0f", v)
}

func orDash(s string) string {
	if s == "" {
		return "—"
	}
	return s
}
