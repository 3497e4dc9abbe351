package bench

import (
	"fmt"
	"slices"
	"time"
)

// SchemaVersion is the version of the JSON layout of Run; bump it on incompatible changes.
const SchemaVersion = 1

// Scenario names.
const (
	// BaselineScenario is the name of the scenario every other scenario is compared with.
	BaselineScenario = "no-mesh"
	// WeftL4Scenario is Weft's L4 data path: eBPF capture, HBONE mTLS between the node agents.
	WeftL4Scenario = "weft-l4"
	// WeftL7Scenario is Weft's L7 path: the namespace's service traffic through its waypoint
	// (client agent → waypoint → server agent, HBONE mTLS on both hops).
	WeftL7Scenario = "weft-l7"
	// NoMeshSameNodeScenario is plain pod→pod with client and server on the same node: the
	// baseline of WeftSameNodeScenario.
	NoMeshSameNodeScenario = "no-mesh-same-node"
	// WeftSameNodeScenario is Weft's L4 path with client and server on the same node: the
	// client node's agent takes the connection and hands it to the server pod, no underlay hop.
	WeftSameNodeScenario = "weft-same-node"
)

// Run is everything one benchmark run measured. It is written as bench-<ID>.json.
type Run struct {
	Schema   int       `json:"schema"`
	ID       string    `json:"id"` // UTC start time, 20060102-150405
	Mode     Mode      `json:"mode"`
	Started  time.Time `json:"started"`
	Finished time.Time `json:"finished"`
	Env      Env       `json:"env"`
	Plan     Plan      `json:"plan"`
	// Baseline names the scenario that ratios are relative to, unless a scenario names its own
	// (ScenarioResult.Baseline).
	Baseline string `json:"baseline"`
	// Agents are the mesh's node agents whose CPU and memory every repetition accounts (the
	// Agent* metrics), empty when the run has none.
	Agents []Agent `json:"agents,omitempty"`
	// Waypoint is the waypoint pod whose CPU and memory every repetition accounts (the
	// Waypoint* metrics), nil when the run has none.
	Waypoint *Agent `json:"waypoint,omitempty"`
	// Peers are the peer scenarios' pods whose CPU and memory their repetitions account (the
	// Peer* metrics).
	Peers     []PeerPods       `json:"peers,omitempty"`
	Scenarios []ScenarioResult `json:"scenarios"`
	// ControlPlane holds the controller's figures of the newest weft-scale run, nil without one.
	ControlPlane *ControlPlane `json:"controlPlane,omitempty"`
}

// Env describes the machine and the tools of a run.
type Env struct {
	Kernel        string `json:"kernel"` // uname -r
	CPUModel      string `json:"cpuModel"`
	CPUs          int    `json:"cpus"`
	GoVersion     string `json:"goVersion"`
	FortioVersion string `json:"fortioVersion"`
	GitRevision   string `json:"gitRevision,omitempty"`
	// LoadAvg is /proc/loadavg's 1-minute load before the run: a load near CPUs means other
	// work shared the machine and the figures are noisy.
	LoadAvg float64 `json:"loadAvg"`
}

// ScenarioResult is one row per workload: one data path (no mesh, Weft L4, …) measured with
// every workload of the plan.
type ScenarioResult struct {
	Name        string `json:"name"`
	Description string `json:"description"`
	Target      Target `json:"target"`
	// Workloads are the IDs of the plan's workloads this scenario runs; empty means all.
	Workloads []string `json:"workloads,omitempty"`
	// Path is Scenario.Path: which processes the Path* metrics account.
	Path string `json:"path,omitempty"`
	// Baseline is Scenario.Baseline: the scenario its ratios divide by, "" for Run.Baseline.
	Baseline string   `json:"baseline,omitempty"`
	Results  []Result `json:"results"` // in the order of Plan.Workloads, those run
}

// Runs reports whether the scenario runs the workload with the given ID.
func (s *ScenarioResult) Runs(workload string) bool {
	return len(s.Workloads) == 0 || slices.Contains(s.Workloads, workload)
}

// Result is what one workload measured in one scenario.
type Result struct {
	Workload string `json:"workload"` // Workload.ID
	// Samples holds one entry per repetition, warm-up excluded.
	Samples []Sample `json:"samples"`
	// Summary is the median, min and max of every metric over the samples.
	Summary map[Metric]Stat `json:"summary"`
	// Ratios is, per metric of RatioMetrics, the median of this result divided by the median of
	// the scenario's baseline's result for the same workload (Run.BaselineOf; 1 for the
	// baseline itself).
	Ratios map[Metric]float64 `json:"ratios,omitempty"`
	// Notes flag suspect samples: errors, a fixed rate not reached, reopened connections.
	Notes []string `json:"notes,omitempty"`
	// Error is set when the workload could not be measured; Samples then holds what was.
	Error string `json:"error,omitempty"`
}

// Sample is one repetition of a workload: metric → value.
type Sample map[Metric]float64

// Metric names a figure of a Sample. Latencies are in milliseconds.
type Metric string

// Metrics of HTTP and bulk samples.
const (
	P50      Metric = "p50_ms"
	P90      Metric = "p90_ms"
	P99      Metric = "p99_ms"
	P999     Metric = "p99.9_ms"
	RPS      Metric = "rps"      // achieved requests (or, without keep-alive, connections) per second
	Requests Metric = "requests" // completed requests, errors included
	Errors   Metric = "errors"   // requests that failed or did not answer 2xx
	Sockets  Metric = "sockets"  // TCP connections opened by the load generator
	Gbps     Metric = "gbps"     // bulk throughput, Gbit/s over all streams
	Bytes    Metric = "bytes"    // bulk bytes transferred over all streams
)

// Metrics of the node agents' resources during a repetition (AgentMeter), summed over the
// agents of Run.Agents. NodeMetric gives the figure of one node's agent.
const (
	// AgentCPU is the CPU time the agents used, in seconds (user + system, from their cgroups).
	AgentCPU Metric = "agent_cpu_s"
	// AgentVCPU is AgentCPU divided by the wall time of the repetition: the average number of
	// CPUs the agents kept busy.
	AgentVCPU Metric = "agent_vcpu"
	// AgentVCPUPerKRPS is the agents' CPU per 1000 requests (connections without keep-alive)
	// per second, AgentCPU × 1000 / Requests: vCPU per 1000 rps. HTTP workloads only.
	AgentVCPUPerKRPS Metric = "agent_vcpu_per_krps"
	// AgentVCPUPerGbps is AgentCPU per gigabit transferred: vCPU per Gbit/s. Bulk workloads only.
	AgentVCPUPerGbps Metric = "agent_vcpu_per_gbps"
	// AgentRSS is the agents' peak resident memory during the repetition in MiB (VmHWM, reset
	// when the repetition starts); the sum over the agents of each one's peak.
	AgentRSS Metric = "agent_peak_rss_mib"
)

// Metrics of the waypoint's resources during a repetition (WaypointMeter), measured as the
// Agent* metrics are, for the waypoint pod of Run.Waypoint.
const (
	WaypointCPU         Metric = "waypoint_cpu_s"
	WaypointVCPU        Metric = "waypoint_vcpu"
	WaypointVCPUPerKRPS Metric = "waypoint_vcpu_per_krps"
	WaypointRSS         Metric = "waypoint_peak_rss_mib"
	// WaypointRSSPerKRPS is WaypointRSS per 1000 achieved requests per second,
	// WaypointRSS × 1000 / RPS: MiB per 1000 rps. HTTP workloads only.
	WaypointRSSPerKRPS Metric = "waypoint_peak_rss_mib_per_krps"
)

// Targets of Weft's L7 path (issue 6), per 1000 rps through the waypoint.
const (
	// TargetL7P99OverheadMs is the p99 latency the waypoint path may add to no-mesh, in ms.
	TargetL7P99OverheadMs = 0.5
	// TargetL7VCPUPerKRPS is the waypoint's CPU per 1000 rps.
	TargetL7VCPUPerKRPS = 0.15
	// TargetL7RSSMBPerKRPS is the waypoint's peak memory per 1000 rps in MB (10^6 bytes).
	TargetL7RSSMBPerKRPS = 40.0
)

// NodeMetric names the per-node figure of an agent metric, e.g. "agent_vcpu@node-1".
func NodeMetric(m Metric, node string) Metric { return m + "@" + Metric(node) }

// RatioMetrics are the metrics that get a ratio to the baseline. A latency ratio above 1 and a
// throughput ratio below 1 are costs of the scenario.
var RatioMetrics = []Metric{P50, P90, P99, P999, RPS, Gbps}

// Stat summarises the samples of one metric.
type Stat struct {
	N      int     `json:"n"`
	Median float64 `json:"median"`
	Min    float64 `json:"min"`
	Max    float64 `json:"max"`
	Sum    float64 `json:"sum"`
}

// Scenario returns the scenario with the given name, or nil.
func (r *Run) Scenario(name string) *ScenarioResult {
	for i := range r.Scenarios {
		if r.Scenarios[i].Name == name {
			return &r.Scenarios[i]
		}
	}
	return nil
}

// Workload returns the plan's workload with the given ID, or nil.
func (r *Run) Workload(id string) *Workload {
	for i := range r.Plan.Workloads {
		if r.Plan.Workloads[i].ID == id {
			return &r.Plan.Workloads[i]
		}
	}
	return nil
}

// Result returns the scenario's result for a workload, or nil.
func (s *ScenarioResult) Result(workload string) *Result {
	for i := range s.Results {
		if s.Results[i].Workload == workload {
			return &s.Results[i]
		}
	}
	return nil
}

// NewResult summarises samples into a Result.
func NewResult(workload string, samples []Sample) Result {
	res := Result{Workload: workload, Samples: samples, Summary: map[Metric]Stat{}}
	var metrics []Metric
	for _, s := range samples {
		for m := range s {
			if !slices.Contains(metrics, m) {
				metrics = append(metrics, m)
			}
		}
	}
	for _, m := range metrics {
		var vals []float64
		for _, s := range samples {
			if v, ok := s[m]; ok {
				vals = append(vals, v)
			}
		}
		res.Summary[m] = Summarize(vals)
	}
	return res
}

// BaselineOf returns the name of the scenario whose results sc's ratios divide by: sc.Baseline,
// or the run's Baseline when sc has none.
func (r *Run) BaselineOf(sc *ScenarioResult) string {
	if sc.Baseline != "" {
		return sc.Baseline
	}
	return r.Baseline
}

// ComputeRatios fills Result.Ratios of every scenario relative to its baseline scenario
// (BaselineOf). A metric gets no ratio when either side lacks it or the baseline median is zero.
func (r *Run) ComputeRatios() error {
	if r.Scenario(r.Baseline) == nil {
		return fmt.Errorf("ratios: baseline scenario %q not in run", r.Baseline)
	}
	for si := range r.Scenarios {
		if b := r.BaselineOf(&r.Scenarios[si]); r.Scenario(b) == nil {
			return fmt.Errorf("ratios: baseline scenario %q of %s not in run", b, r.Scenarios[si].Name)
		}
	}
	for si := range r.Scenarios {
		base := r.Scenario(r.BaselineOf(&r.Scenarios[si]))
		for ri := range r.Scenarios[si].Results {
			res := &r.Scenarios[si].Results[ri]
			res.Ratios = nil
			b := base.Result(res.Workload)
			if b == nil {
				continue
			}
			for _, m := range RatioMetrics {
				if ratio, ok := Ratio(res.Summary, b.Summary, m); ok {
					if res.Ratios == nil {
						res.Ratios = map[Metric]float64{}
					}
					res.Ratios[m] = ratio
				}
			}
		}
	}
	return nil
}

// Ratio returns the median of m in s divided by its median in base.
func Ratio(s, base map[Metric]Stat, m Metric) (float64, bool) {
	v, ok1 := s[m]
	b, ok2 := base[m]
	if !ok1 || !ok2 || v.N == 0 || b.N == 0 || b.Median == 0 {
		return 0, false
	}
	return v.Median / b.Median, true
}
