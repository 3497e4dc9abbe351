package bench

import (
	"fmt"
	"io"
	"strings"
	"time"
)

// WriteMarkdown renders a run as a Markdown section: what ran where, then one table with a row
// per workload and scenario, the baseline first, then notes on suspect samples and failures.
//
// Figures are medians over the repetitions, with (min–max) when there was more than one. The two
// ratio columns divide a row's median by the median of the same workload in the row's baseline
// (Run.BaselineOf: the run's, or the scenario's own, e.g. no-mesh-same-node for weft-same-node;
// the text before the table names them): p99 latency (with the difference in ms) and throughput.
// A fixed-rate workload has no throughput ratio, a bulk workload no latency ratio.
//
// With more than one scenario, a second table gives every ratio of the scenarios that are not a
// baseline to their baseline (p50, p90, p99, p99.9 with the difference in ms, throughput). When the
// run accounted the mesh's agents (Run.Agents), a third table gives their CPU and peak memory per
// row; when it accounted a waypoint (Run.Waypoint), a fourth gives, per workload of the weft-l7
// scenario, the p99 overhead and the waypoint's CPU and memory per 1000 rps next to their targets.
// A scenario that does not run a workload (ScenarioResult.Workloads) has no row for it.
func WriteMarkdown(w io.Writer, r *Run) error {
	var b strings.Builder
	fmt.Fprintf(&b, "### weft-bench %s (%s)\n\n", r.ID, r.Mode)
	fmt.Fprintf(&b, "Machine: %s. Tools: %s.\n\n", machine(r.Env), tools(r.Env))
	fmt.Fprintf(&b, "Plan: %s. Figures are medians of the repetitions with (min–max); "+
		"ratios divide by the baseline's row of the same workload in this run. Baseline: %s.\n\n", planText(r.Plan), baselinesText(r))

	b.WriteString("| workload | scenario | p50 ms | p90 ms | p99 ms | p99.9 ms | throughput | errors | p99 vs baseline | throughput vs baseline |\n")
	b.WriteString("|---|---|--:|--:|--:|--:|--:|--:|--:|--:|\n")
	var notes []string
	for _, wl := range r.Plan.Workloads {
		for _, sc := range orderScenarios(r) {
			if !sc.Runs(wl.ID) {
				continue
			}
			res := sc.Result(wl.ID)
			if res == nil {
				res = &Result{Workload: wl.ID}
				notes = append(notes, fmt.Sprintf("%s, %s: not run", wl.ID, sc.Name))
			}
			b.WriteString(row(wl, sc.Name, res, baselineResult(r, sc, wl.ID)))
			for _, n := range res.Notes {
				notes = append(notes, fmt.Sprintf("%s, %s: %s", wl.ID, sc.Name, n))
			}
			if res.Error != "" {
				notes = append(notes, fmt.Sprintf("%s, %s: FAILED: %s", wl.ID, sc.Name, oneLine(res.Error)))
			}
		}
	}
	writeRatioTable(&b, r)
	writeAgentTable(&b, r)
	writeWaypointTable(&b, r)
	writePathTable(&b, r)
	writeControlPlane(&b, r.ControlPlane)
	if len(notes) > 0 {
		b.WriteString("\nNotes:\n\n")
		for _, n := range notes {
			fmt.Fprintf(&b, "- %s\n", n)
		}
	}
	_, err := io.WriteString(w, b.String())
	if err != nil {
		return fmt.Errorf("markdown: %w", err)
	}
	return nil
}

// orderScenarios returns the baseline first, then the others in run order.
func orderScenarios(r *Run) []*ScenarioResult {
	var out []*ScenarioResult
	if b := r.Scenario(r.Baseline); b != nil {
		out = append(out, b)
	}
	for i := range r.Scenarios {
		if r.Scenarios[i].Name != r.Baseline {
			out = append(out, &r.Scenarios[i])
		}
	}
	return out
}

// baselineResult returns the result of a workload in sc's baseline (Run.BaselineOf), or nil.
func baselineResult(r *Run, sc *ScenarioResult, workload string) *Result {
	b := r.Scenario(r.BaselineOf(sc))
	if b == nil {
		return nil
	}
	return b.Result(workload)
}

// isBaseline reports whether sc is its own baseline: the run's, or one such as
// no-mesh-same-node.
func isBaseline(r *Run, sc *ScenarioResult) bool { return r.BaselineOf(sc) == sc.Name }

// baselinesText names the run's baseline and those of the scenarios with another one, e.g.
// "no-mesh, except no-mesh-same-node for weft-same-node".
func baselinesText(r *Run) string {
	var other []string
	for i := range r.Scenarios {
		sc := &r.Scenarios[i]
		if b := r.BaselineOf(sc); b != r.Baseline && b != sc.Name {
			other = append(other, b+" for "+sc.Name)
		}
	}
	if len(other) == 0 {
		return r.Baseline
	}
	return r.Baseline + ", except " + strings.Join(other, ", ")
}

func row(w Workload, scenario string, res, base *Result) string {
	cells := []string{workloadTitle(w), scenario}
	s := res.Summary
	if w.Latency() {
		for _, m := range []Metric{P50, P90, P99, P999} {
			cells = append(cells, statCell(s, m, "%.3f"))
		}
	} else {
		cells = append(cells, "—", "—", "—", "—")
	}
	cells = append(cells, throughputCell(w, s), errorsCell(w, s), p99RatioCell(w, res, base), throughputRatioCell(w, res))
	return "| " + strings.Join(cells, " | ") + " |\n"
}

// workloadTitle adds the fixed parameters to a workload's title.
func workloadTitle(w Workload) string {
	switch w.Kind {
	case HTTP:
		return fmt.Sprintf("%s, %d conns, %s", w.Title, w.Connections, sizeText(w.ResponseBytes))
	case Bulk:
		return fmt.Sprintf("%s, %s per stream", w.Title, w.StreamBytes)
	case GRPC:
		return fmt.Sprintf("%s, %d conns", w.Title, w.Connections)
	}
	return w.Title
}

func sizeText(n int) string {
	if n >= 1024 && n%1024 == 0 {
		return fmt.Sprintf("%d KiB", n/1024)
	}
	return fmt.Sprintf("%d B", n)
}

func statCell(s map[Metric]Stat, m Metric, format string) string {
	st, ok := s[m]
	if !ok || st.N == 0 {
		return "—"
	}
	if st.N == 1 || st.Min == st.Max {
		return fmt.Sprintf(format, st.Median)
	}
	return fmt.Sprintf(format+" ("+format+"–"+format+")", st.Median, st.Min, st.Max)
}

func rateUnit(w Workload) string {
	if w.Kind == HTTP && !w.KeepAlive {
		return "conn/s"
	}
	return "rps"
}

func throughputCell(w Workload, s map[Metric]Stat) string {
	switch w.Kind {
	case HTTP, GRPC:
		c := statCell(s, RPS, "%.0f")
		if c == "—" {
			return c
		}
		return c + " " + rateUnit(w)
	case Bulk:
		c := statCell(s, Gbps, "%.2f")
		if c == "—" {
			return c
		}
		return c + " Gbit/s"
	}
	return "—"
}

// errorsCell shows the errors of all repetitions, and for HTTP their share of the requests.
func errorsCell(w Workload, s map[Metric]Stat) string {
	e, ok := s[Errors]
	if !ok || e.N == 0 {
		return "—"
	}
	if e.Sum == 0 {
		return "0"
	}
	if req := s[Requests].Sum; w.Latency() && req > 0 {
		return fmt.Sprintf("%.0f (%.2g %%)", e.Sum, 100*e.Sum/req)
	}
	return fmt.Sprintf("%.0f", e.Sum)
}

func p99RatioCell(w Workload, res, base *Result) string {
	ratio, ok := res.Ratios[P99]
	if !w.Latency() || !ok {
		return "—"
	}
	if base == nil || res == base {
		return fmt.Sprintf("%.2f×", ratio)
	}
	d := res.Summary[P99].Median - base.Summary[P99].Median
	return fmt.Sprintf("%.2f× (%+.3f ms)", ratio, d)
}

func throughputRatioCell(w Workload, res *Result) string {
	m := RPS
	switch {
	case w.Kind == Bulk:
		m = Gbps
	case w.QPS > 0:
		return "—" // the rate is fixed
	}
	ratio, ok := res.Ratios[m]
	if !ok {
		return "—"
	}
	return fmt.Sprintf("%.2f×", ratio)
}

func machine(e Env) string {
	cpu := e.CPUModel
	if cpu == "" {
		cpu = "unknown CPU"
	}
	s := fmt.Sprintf("%d × %s, Linux %s, load average %.2f before the run", e.CPUs, cpu, e.Kernel, e.LoadAvg)
	if e.CPUs > 0 && e.LoadAvg > 0.5*float64(e.CPUs) {
		s += " (**busy machine: figures are noisy**)"
	}
	return s
}

func tools(e Env) string {
	parts := []string{e.GoVersion, "fortio " + orUnknown(e.FortioVersion)}
	parts = append(parts, "git "+orUnknown(e.GitRevision))
	return strings.Join(parts, ", ")
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}

func planText(p Plan) string {
	var bulk []string
	for _, w := range p.Workloads {
		if w.Kind == Bulk {
			bulk = append(bulk, fmt.Sprintf("%d × %s", w.Streams, w.StreamBytes))
		}
	}
	s := fmt.Sprintf("%s mode; each HTTP load point: %s warm-up, then %d × %s",
		p.Mode, time.Duration(p.Warmup), p.Repetitions, time.Duration(p.Duration))
	if len(bulk) > 0 {
		transfers := "transfers"
		if p.Repetitions == 1 {
			transfers = "transfer"
		}
		s += fmt.Sprintf("; each bulk load point: %s per stream warm-up, then %d %s of %s",
			p.WarmupBytes, p.Repetitions, transfers, strings.Join(bulk, " / "))
	}
	if p.LoadCPUs != "" {
		s += "; load generators pinned to CPUs " + p.LoadCPUs
	}
	return s
}

func oneLine(s string) string {
	s = strings.ReplaceAll(s, "\n", " ")
	if len(s) > 300 {
		s = s[:300] + "…"
	}
	return s
}

// writeRatioTable renders the ratios of every scenario that is not a baseline to its baseline.
func writeRatioTable(b *strings.Builder, r *Run) {
	var scenarios []*ScenarioResult
	for _, sc := range orderScenarios(r) {
		if !isBaseline(r, sc) {
			scenarios = append(scenarios, sc)
		}
	}
	if r.Scenario(r.Baseline) == nil || len(scenarios) == 0 {
		return
	}
	fmt.Fprintf(b, "\nRatios to the baseline, median ÷ median (latency above 1.00× and throughput below 1.00× are costs). Baseline: %s.\n\n", baselinesText(r))
	b.WriteString("| workload | scenario | p50 | p90 | p99 | p99.9 | throughput |\n")
	b.WriteString("|---|---|--:|--:|--:|--:|--:|\n")
	for _, wl := range r.Plan.Workloads {
		for _, sc := range scenarios {
			if !sc.Runs(wl.ID) {
				continue
			}
			baseRes := baselineResult(r, sc, wl.ID)
			res := sc.Result(wl.ID)
			if res == nil {
				res = &Result{Workload: wl.ID}
			}
			cells := []string{wl.ID, sc.Name}
			for _, m := range []Metric{P50, P90, P99, P999} {
				cells = append(cells, latencyRatioCell(wl, m, res, baseRes))
			}
			cells = append(cells, throughputRatioCell(wl, res))
			b.WriteString("| " + strings.Join(cells, " | ") + " |\n")
		}
	}
}

func latencyRatioCell(w Workload, m Metric, res, base *Result) string {
	ratio, ok := res.Ratios[m]
	if !w.Latency() || !ok || base == nil {
		return "—"
	}
	return fmt.Sprintf("%.2f× (%+.3f ms)", ratio, res.Summary[m].Median-base.Summary[m].Median)
}

// writeAgentTable renders the mesh agents' resources per workload and scenario.
func writeAgentTable(b *strings.Builder, r *Run) {
	if len(r.Agents) == 0 {
		return
	}
	var nodes []string
	for _, a := range r.Agents {
		nodes = append(nodes, a.Node)
	}
	perNode := strings.Join(nodes, " / ")
	b.WriteString("\nNode agents' resources during each repetition, from the kernel's accounting of the agent pods " +
		"(CPU: usage_usec of the pod's cgroup; memory: VmHWM of its processes, reset when the repetition starts). " +
		"vCPU is CPU time ÷ wall time of the repetition; per 1000 rps is CPU-seconds per 1000 requests (or connections), " +
		"per Gbit/s CPU-seconds per gigabit; peak RSS adds up each agent's peak. " +
		"Kernel work for the mesh that the kernel charges to other tasks (the applications' system calls, softirq work done while they run) is not included.\n\n")
	fmt.Fprintf(b, "| workload | scenario | throughput | agents' vCPU | vCPU %s | vCPU per 1000 rps | vCPU per Gbit/s | peak RSS MiB | peak RSS MiB %s |\n", perNode, perNode)
	b.WriteString("|---|---|--:|--:|--:|--:|--:|--:|--:|\n")
	for _, wl := range r.Plan.Workloads {
		for _, sc := range orderScenarios(r) {
			if !sc.Runs(wl.ID) {
				continue
			}
			res := sc.Result(wl.ID)
			if res == nil {
				res = &Result{Workload: wl.ID}
			}
			s := res.Summary
			cells := []string{wl.ID, sc.Name, throughputCell(wl, s),
				statCell(s, AgentVCPU, "%.3f"), nodeCell(s, AgentVCPU, nodes, "%.3f"),
				statCell(s, AgentVCPUPerKRPS, "%.3f"), statCell(s, AgentVCPUPerGbps, "%.3f"),
				statCell(s, AgentRSS, "%.1f"), nodeCell(s, AgentRSS, nodes, "%.1f")}
			b.WriteString("| " + strings.Join(cells, " | ") + " |\n")
		}
	}
}

// nodeCell shows the medians of a per-node metric, one per node.
func nodeCell(s map[Metric]Stat, m Metric, nodes []string, format string) string {
	var vals []string
	for _, n := range nodes {
		st, ok := s[NodeMetric(m, n)]
		if !ok || st.N == 0 {
			vals = append(vals, "—")
			continue
		}
		vals = append(vals, fmt.Sprintf(format, st.Median))
	}
	return strings.Join(vals, " / ")
}

// mibPerMB converts MiB to MB (10^6 bytes).
const mibPerMB = 1 << 20 / 1e6

// writeWaypointTable renders the L7 scenario's figures against the targets of Weft's L7 path.
func writeWaypointTable(b *strings.Builder, r *Run) {
	l7 := r.Scenario(WeftL7Scenario)
	if r.Waypoint == nil || l7 == nil {
		return
	}
	base := r.Scenario(r.BaselineOf(l7))
	fmt.Fprintf(b, "\n%s through the waypoint (pod %s on %s) against the targets per 1000 rps: p99 overhead ≤ %+.1f ms "+
		"over %s, waypoint CPU ≤ %.2f vCPU, waypoint peak RSS ≤ %.0f MB (10^6 B). The waypoint is accounted as the agents are "+
		"(its pod's cgroup, VmHWM of its process); the node agents' share of the path is in the table above.\n\n",
		WeftL7Scenario, r.Waypoint.Pod, r.Waypoint.Node, TargetL7P99OverheadMs, r.BaselineOf(l7), TargetL7VCPUPerKRPS, TargetL7RSSMBPerKRPS)
	b.WriteString("| workload | throughput | p99 ms | p99 overhead | waypoint vCPU | waypoint vCPU per 1000 rps | waypoint peak RSS MiB | waypoint peak RSS per 1000 rps | agents' vCPU per 1000 rps |\n")
	b.WriteString("|---|--:|--:|--:|--:|--:|--:|--:|--:|\n")
	for _, wl := range r.Plan.Workloads {
		if !wl.Latency() || !l7.Runs(wl.ID) {
			continue
		}
		res := l7.Result(wl.ID)
		if res == nil {
			res = &Result{Workload: wl.ID}
		}
		var baseRes *Result
		if base != nil {
			baseRes = base.Result(wl.ID)
		}
		s := res.Summary
		cells := []string{wl.ID, throughputCell(wl, s), statCell(s, P99, "%.3f"), p99OverheadCell(res, baseRes),
			statCell(s, WaypointVCPU, "%.3f"),
			targetCell(s, WaypointVCPUPerKRPS, 1, "%.3f", TargetL7VCPUPerKRPS),
			statCell(s, WaypointRSS, "%.1f"),
			targetCell(s, WaypointRSSPerKRPS, mibPerMB, "%.1f MB", TargetL7RSSMBPerKRPS),
			statCell(s, AgentVCPUPerKRPS, "%.3f")}
		b.WriteString("| " + strings.Join(cells, " | ") + " |\n")
	}
}

// p99OverheadCell is the p99 difference to the baseline's median against its target.
func p99OverheadCell(res, base *Result) string {
	v, ok1 := res.Summary[P99]
	if base == nil {
		return "—"
	}
	bv, ok2 := base.Summary[P99]
	if !ok1 || !ok2 || v.N == 0 || bv.N == 0 {
		return "—"
	}
	d := v.Median - bv.Median
	return fmt.Sprintf("%+.3f ms %s", d, verdict(d <= TargetL7P99OverheadMs))
}

// targetCell is a metric's median times scale, formatted, with whether it meets target (at
// most).
func targetCell(s map[Metric]Stat, m Metric, scale float64, format string, target float64) string {
	st, ok := s[m]
	if !ok || st.N == 0 {
		return "—"
	}
	v := st.Median * scale
	return fmt.Sprintf(format+" %s", v, verdict(v <= target))
}

func verdict(met bool) string {
	if met {
		return "(met)"
	}
	return "(**missed**)"
}
