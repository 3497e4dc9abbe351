package scale

import (
	"time"

	"github.com/weftmesh/weft/test/bench"
)

// SchemaVersion is the version of the JSON layout of Result.
const SchemaVersion = 1

// Result is everything one scale run measured; it is written as scale-<ID>.json.
type Result struct {
	Schema   int       `json:"schema"`
	ID       string    `json:"id"` // UTC start time, 20060102-150405
	Mode     string    `json:"mode"`
	Started  time.Time `json:"started"`
	Finished time.Time `json:"finished"`
	Env      bench.Env `json:"env"`
	Plan     Plan      `json:"plan"`
	// ControllerArgs is the controller's command line (its binary first).
	ControllerArgs []string `json:"controllerArgs"`

	Setup      Setup          `json:"setup"`
	Startup    Startup        `json:"startup"`
	PerAgent   PerAgent       `json:"perAgent"`
	Sync       Sync           `json:"sync"`
	Idle       Idle           `json:"idle"`
	Changes    []KindSummary  `json:"changes"`
	Samples    []ChangeSample `json:"samples"`
	Controller Totals         `json:"controller"`
	// Metrics are the controller's own metrics at the end of the run (weft_* and a few go_*).
	Metrics map[string]float64 `json:"metrics,omitempty"`
	// Errors are problems that make figures incomplete or suspect.
	Errors []string `json:"errors,omitempty"`
}

// Setup is how the simulated cluster was made.
type Setup struct {
	ControlPlaneSeconds float64 `json:"controlPlaneSeconds"` // start of etcd … kube-scheduler
	PopulateSeconds     float64 `json:"populateSeconds"`     // every object created
	Writes              int64   `json:"writes"`              // apiserver writes to create them
	WritesPerSecond     float64 `json:"writesPerSecond"`
	// Objects counts what the controller's informers list, by kind.
	Objects map[string]int `json:"objects"`
	// Resources is the number of resources the translation makes (workloads and services).
	Resources int `json:"resources"`
}

// Startup is the controller's start against the full cluster, before any agent connects.
type Startup struct {
	ReadySeconds float64 `json:"readySeconds"` // process start → /readyz ok (informers synced, first translation)
	CPUSeconds   float64 `json:"cpuSeconds"`
	RSSMiB       float64 `json:"rssMiB"` // when ready
}

// PerAgent is what each node's agent receives (from the agents' snapshots after the initial
// sync): workloads, services and both.
type PerAgent struct {
	Workloads bench.Stat `json:"workloads"`
	Services  bench.Stat `json:"services"`
	Resources bench.Stat `json:"resources"`
}

// Sync is the initial sync: every agent connects at once to a controller that is ready.
type Sync struct {
	// AllSeconds is the time from starting the agents until the last one applied a snapshot
	// with every resource its node receives; P50, P99 and Max are over the agents.
	AllSeconds float64 `json:"allSeconds"`
	P50Seconds float64 `json:"p50Seconds"`
	P99Seconds float64 `json:"p99Seconds"`
	Synced     int     `json:"synced"` // agents that synced within the timeout
	// AcceptedP50 and AcceptedMax are the times from starting the agents until the controller
	// accepted their streams (TLS, token review, first request; /debug/push connectedSince).
	AcceptedP50Seconds float64 `json:"acceptedP50Seconds,omitempty"`
	AcceptedMaxSeconds float64 `json:"acceptedMaxSeconds,omitempty"`
	// Controller CPU and resident memory growth during the sync, in total and per agent.
	ControllerCPUSeconds  float64 `json:"controllerCpuSeconds"`
	ControllerCPUPerAgent float64 `json:"controllerCpuSecondsPerAgent"`
	ControllerRSSMiB      float64 `json:"controllerRssMiB"` // after the sync
	ControllerRSSPerAgent float64 `json:"controllerRssKiBPerAgent"`
	// The simulated agents (this process): CPU during the sync and Go heap they hold.
	AgentsCPUSeconds   float64 `json:"agentsCpuSeconds"`
	AgentsHeapMiB      float64 `json:"agentsHeapMiB"`
	AgentsHeapPerAgent float64 `json:"agentsHeapMiBPerAgent"`
	// ContentCheck says how one agent's whole content compared with the translation.
	ContentCheck string `json:"contentCheck"`
}

// Idle is the connected, idle controller.
type Idle struct {
	Seconds float64 `json:"seconds"`
	VCPU    float64 `json:"vcpu"` // CPU seconds per second
}

// Quantiles summarises a latency in milliseconds.
type Quantiles struct {
	N   int     `json:"n"`
	P50 float64 `json:"p50"`
	P99 float64 `json:"p99"`
	Min float64 `json:"min"`
	Max float64 `json:"max"`
}

// NewQuantiles summarises values (no values: the zero Quantiles).
func NewQuantiles(values []float64) Quantiles {
	if len(values) == 0 {
		return Quantiles{}
	}
	s := bench.Summarize(values)
	return Quantiles{N: len(values), P50: bench.Percentile(values, 50), P99: bench.Percentile(values, 99), Min: s.Min, Max: s.Max}
}

// KindSummary summarises the changes of one kind.
type KindSummary struct {
	Kind        string `json:"kind"`
	Description string `json:"description"`
	N           int    `json:"n"`
	Failed      int    `json:"failed"` // changes that did not reach every affected agent in time, or could not be made
	// Affected is the number of affected agents per change (median, min, max).
	Affected bench.Stat `json:"affected"`
	// Names is the number of resource names a change alters for an affected agent (median over
	// changes of the largest per agent).
	Names bench.Stat `json:"names"`
	// Last is the latency of the last affected agent, First of the first, in ms from t0.
	Last  Quantiles `json:"lastMs"`
	First Quantiles `json:"firstMs"`
	// Push is t0 → the controller's push (its debounce included), Sent t0 → the last affected
	// agent sent the response, both from the controller's /debug/push.
	Push Quantiles `json:"pushMs"`
	Sent Quantiles `json:"sentMs"`
	// ControllerCPUms and AgentsCPUms are mean CPU milliseconds per change (write to settle).
	ControllerCPUms float64 `json:"controllerCpuMsPerChange"`
	AgentsCPUms     float64 `json:"agentsCpuMsPerChange"`
	// Spurious counts snapshots applied by agents that were not affected.
	Spurious int `json:"spurious"`
}

// ChangeSample is one measured change.
type ChangeSample struct {
	Kind     string `json:"kind"`
	Detail   string `json:"detail"`
	Affected int    `json:"affected"`
	Reached  int    `json:"reached"`
	Names    int    `json:"names"` // largest number of names altered for one affected agent
	// WriteMs is the duration of the apiserver writes; t0 is their end.
	WriteMs float64 `json:"writeMs"`
	FirstMs float64 `json:"firstMs,omitempty"`
	P50Ms   float64 `json:"p50Ms,omitempty"`
	LastMs  float64 `json:"lastMs,omitempty"`
	// From the controller's /debug/push, relative to t0: its last push, and the last response
	// sent and ACK seen among the affected agents.
	PushMs float64 `json:"pushMs,omitempty"`
	SentMs float64 `json:"sentMs,omitempty"`
	AckMs  float64 `json:"ackMs,omitempty"`
	// CPU milliseconds from the first write to the end of the settle pause.
	ControllerCPUms float64 `json:"controllerCpuMs"`
	AgentsCPUms     float64 `json:"agentsCpuMs"`
	// Applies is the number of snapshots applied by affected agents, Spurious by the others.
	Applies  int    `json:"applies"`
	Spurious int    `json:"spurious"`
	Error    string `json:"error,omitempty"`
}

// Totals are the controller's figures over the whole run.
type Totals struct {
	PeakRSSMiB float64 `json:"peakRssMiB"` // VmHWM at the end (and the sampled peak, if higher)
	CPUSeconds float64 `json:"cpuSeconds"` // from process start to the end of the changes
	// ChangesCPUSeconds and ChangesSeconds are CPU and wall time of the change phase;
	// ChangesVCPU is their ratio.
	ChangesCPUSeconds float64 `json:"changesCpuSeconds"`
	ChangesSeconds    float64 `json:"changesSeconds"`
	ChangesVCPU       float64 `json:"changesVcpu"`
	// APIServerCPUSeconds is kube-apiserver + etcd CPU during the change phase, for scale.
	APIServerCPUSeconds float64 `json:"apiserverEtcdCpuSeconds"`
}

// Summarize fills r.Changes from r.Samples, in the order of Kinds.
func (r *Result) Summarize() {
	r.Changes = nil
	for _, k := range Kinds {
		var ks KindSummary
		ks.Kind, ks.Description = k.Kind, k.Description
		var affected, names, last, first, push, sent []float64
		var cpuC, cpuA float64
		for _, s := range r.Samples {
			if s.Kind != k.Kind {
				continue
			}
			ks.N++
			ks.Spurious += s.Spurious
			cpuC += s.ControllerCPUms
			cpuA += s.AgentsCPUms
			if s.Error != "" {
				ks.Failed++
				continue
			}
			affected = append(affected, float64(s.Affected))
			names = append(names, float64(s.Names))
			last = append(last, s.LastMs)
			first = append(first, s.FirstMs)
			if s.PushMs > 0 {
				push = append(push, s.PushMs)
			}
			if s.SentMs > 0 {
				sent = append(sent, s.SentMs)
			}
		}
		if ks.N == 0 {
			continue
		}
		ks.Affected, ks.Names = bench.Summarize(affected), bench.Summarize(names)
		ks.Last, ks.First, ks.Push, ks.Sent = NewQuantiles(last), NewQuantiles(first), NewQuantiles(push), NewQuantiles(sent)
		ks.ControllerCPUms, ks.AgentsCPUms = cpuC/float64(ks.N), cpuA/float64(ks.N)
		r.Changes = append(r.Changes, ks)
	}
}
