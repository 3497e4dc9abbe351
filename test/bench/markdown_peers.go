package bench

import (
	"fmt"
	"strings"
)

// pathProcesses describes a scenario's Path for a table.
func pathProcesses(r *Run, sc *ScenarioResult) string {
	switch sc.Path {
	case PathNone:
		return "none"
	case PathWaypoint:
		return fmt.Sprintf("%d node agents + waypoint", len(r.Agents))
	case PathPeers:
		for _, p := range r.Peers {
			if p.Scenario == sc.Name {
				nodes := make([]string, len(p.Pods))
				for i, a := range p.Pods {
					nodes[i] = a.Node
				}
				return fmt.Sprintf("%d %s pods (%s)", len(p.Pods), strings.SplitN(sc.Name, "-", 2)[0], strings.Join(nodes, ", "))
			}
		}
		return "peer pods"
	}
	return fmt.Sprintf("%d node agents", len(r.Agents))
}

// writePathTable renders, per workload and scenario, the resources of the processes on the
// scenario's path (Path* metrics): node agents, agents and waypoint, or the peer's processes,
// with the CPU per 1000 rps (per Gbit/s for bulk) as a ratio to weft-l4's.
func writePathTable(b *strings.Builder, r *Run) {
	has := false
	for i := range r.Scenarios {
		for _, res := range r.Scenarios[i].Results {
			if _, ok := res.Summary[PathVCPU]; ok {
				has = true
			}
		}
	}
	if !has {
		return
	}
	l4 := r.Scenario(WeftL4Scenario)
	fmt.Fprintf(b, "\nResources of the processes on each path, so that Weft and the peers compare at equal work: %s and %s, the node agents; "+
		"%s, agents and waypoint; a peer, its own pods (host-network pods on the nodes, accounted as the agents are: cgroup CPU, VmHWM). "+
		"The idle node agents of the peer rows are not included. \"vs %s\" divides the CPU per 1000 rps (per Gbit/s) by %s's.\n\n",
		WeftL4Scenario, WeftSameNodeScenario, WeftL7Scenario, WeftL4Scenario, WeftL4Scenario)
	b.WriteString("| workload | scenario | processes | throughput | vCPU | vCPU per 1000 rps | vCPU per Gbit/s | peak RSS MiB | CPU vs " + WeftL4Scenario + " |\n")
	b.WriteString("|---|---|---|--:|--:|--:|--:|--:|--:|\n")
	for _, wl := range r.Plan.Workloads {
		for _, sc := range orderScenarios(r) {
			if !sc.Runs(wl.ID) || sc.Path == PathNone {
				continue
			}
			res := sc.Result(wl.ID)
			if res == nil {
				res = &Result{Workload: wl.ID}
			}
			s := res.Summary
			cells := []string{wl.ID, sc.Name, pathProcesses(r, sc), throughputCell(wl, s),
				statCell(s, PathVCPU, "%.3f"), statCell(s, PathVCPUPerKRPS, "%.3f"), statCell(s, PathVCPUPerGbps, "%.3f"),
				statCell(s, PathRSS, "%.1f"), pathRatioCell(wl, res, l4)}
			b.WriteString("| " + strings.Join(cells, " | ") + " |\n")
		}
	}
}

func pathRatioCell(w Workload, res *Result, l4 *ScenarioResult) string {
	if l4 == nil {
		return "—"
	}
	base := l4.Result(w.ID)
	if base == nil {
		return "—"
	}
	m := PathVCPUPerKRPS
	if w.Kind == Bulk {
		m = PathVCPUPerGbps
	}
	v, ok := Ratio(res.Summary, base.Summary, m)
	if !ok {
		return "—"
	}
	return fmt.Sprintf("%.2f×", v)
}

// writeControlPlane renders the controller's figures of a weft-scale run.
func writeControlPlane(b *strings.Builder, cp *ControlPlane) {
	if cp == nil {
		return
	}
	fmt.Fprintf(b, "\nControl plane (weft-scale %s, %s mode, file %s): %d services, %d pods, %d agents. "+
		"Initial sync of every agent p50 %.0f ms, p99 %.0f ms; controller peak RSS %.0f MiB, %.1f CPU-seconds over the run. "+
		"Propagation is from the API write until the last affected agent ACKed the change (first agent: p50 of the first ACK).\n\n",
		cp.ID, cp.Mode, cp.File, cp.Services, cp.Pods, cp.Agents, cp.SyncP50Ms, cp.SyncP99Ms, cp.ControllerPeakRSSMiB, cp.ControllerCPUSeconds)
	b.WriteString("| change | n | failed | agents affected (median) | propagation p50 ms | propagation p99 ms | first agent p50 ms |\n")
	b.WriteString("|---|--:|--:|--:|--:|--:|--:|\n")
	for _, c := range cp.Changes {
		fmt.Fprintf(b, "| %s | %d | %d | %.0f | %.0f | %.0f | %.0f |\n", c.Kind, c.N, c.Failed, c.Affected, c.LastP50Ms, c.LastP99Ms, c.FirstP50)
	}
}
