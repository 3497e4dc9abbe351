package bench

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Executor runs a host binary inside a pod's network namespace and returns its combined output;
// *harness.Cluster is one.
type Executor interface {
	Exec(ctx context.Context, namespace, pod string, argv ...string) ([]byte, error)
}

// Target is where a scenario's load goes: the pod the load generators run in and the addresses
// they load.
type Target struct {
	Namespace  string `json:"namespace"`
	ClientPod  string `json:"clientPod"`
	ClientNode string `json:"clientNode"`
	ServerNode string `json:"serverNode"`
	HTTPURL    string `json:"httpURL"`  // echo server base URL, e.g. http://198.18.2.4:8080/
	BulkAddr   string `json:"bulkAddr"` // bulk receiver host:port
	// GRPCAddr is the echo server's gRPC host:port ("" when the scenario has no gRPC path).
	GRPCAddr string `json:"grpcAddr,omitempty"`
}

// Scenario is one data path to measure.
type Scenario struct {
	Name        string
	Description string
	Target      Target
	// Enter makes this scenario's data path the one in force, e.g. enrols the namespace in the
	// mesh and checks that traffic takes the tunnel. The runner calls it before a measurement
	// whenever the previous one was another scenario's. nil: nothing to switch.
	Enter func(ctx context.Context) error
	// Workloads are the IDs of the plan's workloads this scenario runs (e.g. only the
	// fixed-rate HTTP ones); nil runs all.
	Workloads []string
	// Meter, when set, measures this scenario's repetitions in addition to Runner.Meter, e.g.
	// the CPU and memory of a peer's processes (PeerMeter).
	Meter Meter
	// Path names what carries this scenario's connections, for the resources of the path
	// (Path* metrics): PathAgents (the node agents), PathWaypoint (agents and waypoint),
	// PathPeers (the scenario's Meter, a PeerMeter); "" is PathAgents.
	Path string
	// Baseline names the scenario this one's ratios divide by (ScenarioResult.Baseline), e.g.
	// the same-node no-mesh scenario for the same-node Weft one; "" is the run's Baseline.
	Baseline string
}

// Runner runs a plan's workloads for scenarios.
type Runner struct {
	Exec   Executor
	Fortio string // host path of the fortio binary
	Bulk   string // host path of the bulk binary
	Plan   Plan
	// Meter, when set, measures every repetition (not the warm-ups), e.g. the mesh agents' CPU
	// and memory (AgentMeter); its metrics join the repetition's sample.
	Meter Meter
	// Profiler, when set, profiles the mesh's processes during the first repetition of every
	// workload of the scenarios on their path (the profiling costs CPU: such a run is for the
	// profiles, not for the figures).
	Profiler *Profiler
	// Progress receives one line per repetition (nil: none).
	Progress func(format string, args ...any)
	Log      *slog.Logger // nil: discard

	fortioVersion string // as reported in fortio's results
}

// FortioVersion returns the fortio version reported by the results so far ("" before any).
func (r *Runner) FortioVersion() string { return r.fortioVersion }

// execSlack bounds how long a load tool may take beyond its own duration (start-up, last
// requests, JSON output).
const execSlack = 30 * time.Second

// bulkTimeout bounds one bulk transfer.
const bulkTimeout = 2 * time.Minute

// Run measures every workload of the plan for every scenario and returns one ScenarioResult per
// scenario, in the order given.
//
// The scenarios are interleaved to limit drift: for each workload and each repetition, every
// scenario in turn is entered (Scenario.Enter, when the data path changes) and measured. A
// discarded warm-up precedes every measurement that does not directly follow one of the same
// workload in the same scenario, so with several scenarios every repetition has its own
// warm-up on the path just entered, and with one scenario each workload has one warm-up.
//
// A scenario with Workloads runs only those; it has no Result for the others.
//
// A failure ends that workload for that scenario: its Result gets Error and keeps the samples
// measured so far, and the run goes on; only ctx's end stops it early.
func (r *Runner) Run(ctx context.Context, scenarios ...Scenario) []ScenarioResult {
	out := make([]ScenarioResult, len(scenarios))
	for i, sc := range scenarios {
		out[i] = ScenarioResult{Name: sc.Name, Description: sc.Description, Target: sc.Target, Workloads: sc.Workloads, Path: sc.Path, Baseline: sc.Baseline}
	}
	type point struct{ workload, scenario int }
	last := point{-1, -1} // the previous measurement
	entered := -1         // the scenario whose data path is in force, -1 if unknown
	for wi, w := range r.Plan.Workloads {
		acc := make([]pointResult, len(scenarios))
		for rep := 1; rep <= r.Plan.Repetitions; rep++ {
			for si, sc := range scenarios {
				a := &acc[si]
				if !out[si].Runs(w.ID) || a.err != "" {
					continue
				}
				if err := ctx.Err(); err != nil {
					a.err = err.Error()
					continue
				}
				if last.workload >= 0 {
					sleep(ctx, time.Duration(r.Plan.Pause))
				}
				if entered != si && sc.Enter != nil {
					if err := sc.Enter(ctx); err != nil {
						entered = -1
						r.logger().Warn("entering scenario failed", "scenario", sc.Name, "workload", w.ID, "err", err)
						a.err = fmt.Sprintf("repetition %d: enter %s: %v", rep, sc.Name, err)
						continue
					}
				}
				entered = si
				warm := last != point{wi, si}
				last = point{wi, si}
				r.measure(ctx, sc, w, rep, warm, a)
			}
		}
		for si := range scenarios {
			if out[si].Runs(w.ID) {
				out[si].Results = append(out[si].Results, acc[si].result(w.ID))
			}
		}
	}
	return out
}

// pointResult collects the repetitions of one workload in one scenario.
type pointResult struct {
	samples []Sample
	notes   []string
	err     string // set once a repetition failed: no further repetitions
}

func (a *pointResult) result(workload string) Result {
	res := NewResult(workload, a.samples)
	res.Notes = a.notes
	res.Error = a.err
	return res
}

// measure runs one repetition, after a warm-up when warm is set, and adds it to a.
func (r *Runner) measure(ctx context.Context, sc Scenario, w Workload, rep int, warm bool, a *pointResult) {
	log := r.logger().With("scenario", sc.Name, "workload", w.ID, "rep", rep)
	if warm {
		if err := r.warmup(ctx, sc.Target, w); err != nil {
			log.Warn("warm-up failed", "err", err)
			a.err = fmt.Sprintf("repetition %d: %v", rep, err)
			return
		}
	}
	var stop func() (Sample, error)
	var meterErr error
	if m := scenarioMeter(r.Meter, sc.Meter); m != nil {
		stop, meterErr = m.Start()
	}
	var stopProfile func() error
	if r.Profiler != nil && rep == 1 {
		stopProfile = r.Profiler.Start(ctx, sc, w, time.Duration(r.Plan.Duration))
	}
	s, err := r.once(ctx, sc.Target, w, fmt.Sprintf("%s %s %d", sc.Name, w.ID, rep))
	if stopProfile != nil {
		if perr := stopProfile(); perr != nil {
			log.Warn("profiling failed", "err", perr)
		}
	}
	if stop != nil {
		var m Sample
		if m, meterErr = stop(); meterErr == nil && err == nil {
			maps.Copy(s, m)
			deriveAgentMetrics(w, s)
			derivePeerMetrics(w, s)
			derivePathMetrics(sc.Path, w, s)
		}
	}
	if err != nil {
		log.Warn("repetition failed", "err", err)
		a.err = fmt.Sprintf("repetition %d: %v", rep, err)
		return
	}
	if meterErr != nil {
		log.Warn("accounting failed", "err", meterErr)
		a.notes = append(a.notes, fmt.Sprintf("rep %d: no resource accounting: %v", rep, meterErr))
	}
	a.samples = append(a.samples, s)
	a.notes = appendNotes(a.notes, w, s, rep)
	r.progress("%s %-13s rep %d/%d: %s", sc.Name, w.ID, rep, r.Plan.Repetitions, describe(w, s))
}

// warmup runs the workload once and discards the result.
func (r *Runner) warmup(ctx context.Context, t Target, w Workload) error {
	var err error
	switch w.Kind {
	case HTTP, GRPC:
		if r.Plan.Warmup > 0 {
			_, err = r.fortio(ctx, t, w, time.Duration(r.Plan.Warmup), "warmup")
		}
	case Bulk:
		if r.Plan.WarmupBytes != "" {
			ww := w
			ww.StreamBytes = r.Plan.WarmupBytes
			_, err = r.bulk(ctx, t, ww)
		}
	}
	if err != nil {
		return fmt.Errorf("warm-up: %w", err)
	}
	return nil
}

func (r *Runner) once(ctx context.Context, t Target, w Workload, label string) (Sample, error) {
	switch w.Kind {
	case HTTP, GRPC:
		return r.fortio(ctx, t, w, time.Duration(r.Plan.Duration), label)
	case Bulk:
		return r.bulk(ctx, t, w)
	}
	return nil, fmt.Errorf("workload %s: unknown kind %q", w.ID, w.Kind)
}

func (r *Runner) fortio(ctx context.Context, t Target, w Workload, d time.Duration, label string) (Sample, error) {
	argv, err := FortioArgs(r.Fortio, t, w, d, r.Plan.Resolution, label)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, d+execSlack)
	defer cancel()
	out, err := r.Exec.Exec(ctx, t.Namespace, t.ClientPod, r.pinned(argv)...)
	if err != nil {
		return nil, fmt.Errorf("fortio: %w", err)
	}
	res, err := ParseFortio(out)
	if err != nil {
		return nil, err
	}
	if res.Version != "" {
		r.fortioVersion = res.Version
	}
	return res.Sample(), nil
}

func (r *Runner) bulk(ctx context.Context, t Target, w Workload) (Sample, error) {
	argv := BulkArgs(r.Bulk, t, w)
	ctx, cancel := context.WithTimeout(ctx, bulkTimeout+execSlack)
	defer cancel()
	out, err := r.Exec.Exec(ctx, t.Namespace, t.ClientPod, r.pinned(argv)...)
	if err != nil {
		return nil, fmt.Errorf("bulk: %w", err)
	}
	rep, err := ParseBulk(out)
	if err != nil {
		return nil, err
	}
	return BulkSample(rep), nil
}

// taskset is util-linux's taskset, which every Debian system has.
const taskset = "/usr/bin/taskset"

// pinned prefixes argv with taskset when the plan pins the load generators.
func (r *Runner) pinned(argv []string) []string {
	if r.Plan.LoadCPUs == "" {
		return argv
	}
	return append([]string{taskset, "-c", r.Plan.LoadCPUs}, argv...)
}

// FortioArgs returns the fortio command line of an HTTP or gRPC workload: JSON result on
// stdout, percentiles 50/90/99/99.9 at the plan's histogram resolution, requests spread
// uniformly over the connections at a fixed rate. A gRPC workload (-grpc) calls the standard
// health check of Target.GRPCAddr, one unary call per request, over Connections HTTP/2
// connections.
func FortioArgs(bin string, t Target, w Workload, d time.Duration, resolution float64, label string) ([]string, error) {
	dest := ""
	if w.Kind == GRPC {
		if _, _, err := net.SplitHostPort(t.GRPCAddr); err != nil {
			return nil, fmt.Errorf("fortio: workload %s: target gRPC address %q: want host:port", w.ID, t.GRPCAddr)
		}
		dest = t.GRPCAddr
	} else {
		u, err := url.Parse(t.HTTPURL)
		if err != nil || u.Host == "" {
			return nil, fmt.Errorf("fortio: target URL %q: %v", t.HTTPURL, err)
		}
		if w.ResponseBytes > 0 {
			q := u.Query()
			q.Set("size", strconv.Itoa(w.ResponseBytes))
			u.RawQuery = q.Encode()
		}
		dest = u.String()
	}
	argv := []string{bin, "load",
		"-json", "-",
		"-qps", strconv.Itoa(w.QPS),
		"-c", strconv.Itoa(w.Connections),
		"-t", d.String(),
		"-r", strconv.FormatFloat(resolution, 'g', -1, 64),
		"-p", "50,90,99,99.9",
		"-loglevel", "Warning",
		"-labels", label,
	}
	if w.QPS > 0 {
		argv = append(argv, "-uniform")
	}
	if w.Kind == GRPC {
		argv = append(argv, "-grpc")
	} else if !w.KeepAlive {
		argv = append(argv, "-keepalive=false")
	}
	return append(argv, dest), nil
}

// BulkArgs returns the bulk command line of a bulk workload.
func BulkArgs(bin string, t Target, w Workload) []string {
	return []string{bin, "send",
		"-to", t.BulkAddr,
		"-bytes", w.StreamBytes,
		"-streams", strconv.Itoa(w.Streams),
		"-timeout", bulkTimeout.String(),
		"-json",
	}
}

// appendNotes records what makes a sample suspect: errors, a fixed rate not reached, keep-alive
// connections that were reopened.
func appendNotes(notes []string, w Workload, s Sample, rep int) []string {
	if e := s[Errors]; e > 0 {
		notes = append(notes, fmt.Sprintf("rep %d: %.0f errors", rep, e))
	}
	if !w.Latency() {
		return notes
	}
	if w.QPS > 0 && s[RPS] < 0.95*float64(w.QPS) {
		notes = append(notes, fmt.Sprintf("rep %d: %.0f of %d rps achieved", rep, s[RPS], w.QPS))
	}
	if w.Kind == HTTP && w.KeepAlive && s[Sockets] > float64(w.Connections) {
		notes = append(notes, fmt.Sprintf("rep %d: %.0f sockets for %d keep-alive connections", rep, s[Sockets], w.Connections))
	}
	return notes
}

// describe renders a sample for progress lines.
func describe(w Workload, s Sample) string {
	var b strings.Builder
	if w.Kind == Bulk {
		fmt.Fprintf(&b, "%.2f Gbit/s", s[Gbps])
	} else {
		fmt.Fprintf(&b, "p50 %.3f p90 %.3f p99 %.3f p99.9 %.3f ms, %.0f %s", s[P50], s[P90], s[P99], s[P999], s[RPS], rateUnit(w))
	}
	fmt.Fprintf(&b, ", %.0f errors", s[Errors])
	if v, ok := s[AgentVCPU]; ok {
		fmt.Fprintf(&b, "; agents %.3f vCPU", v)
		if k, ok := s[AgentVCPUPerKRPS]; ok {
			fmt.Fprintf(&b, " (%.3f per 1000 rps)", k)
		}
		fmt.Fprintf(&b, ", peak RSS %.1f MiB", s[AgentRSS])
	}
	if v, ok := s[PeerVCPU]; ok {
		fmt.Fprintf(&b, "; peers %.3f vCPU", v)
		if k, ok := s[PeerVCPUPerKRPS]; ok {
			fmt.Fprintf(&b, " (%.3f per 1000 rps)", k)
		}
		fmt.Fprintf(&b, ", peak RSS %.1f MiB", s[PeerRSS])
	}
	if v, ok := s[WaypointVCPU]; ok {
		fmt.Fprintf(&b, "; waypoint %.3f vCPU", v)
		if k, ok := s[WaypointVCPUPerKRPS]; ok {
			fmt.Fprintf(&b, " (%.3f per 1000 rps)", k)
		}
		fmt.Fprintf(&b, ", peak RSS %.1f MiB", s[WaypointRSS])
	}
	return b.String()
}

func (r *Runner) progress(format string, args ...any) {
	if r.Progress != nil {
		r.Progress(format, args...)
	}
}

func (r *Runner) logger() *slog.Logger {
	if r.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return r.Log
}

func sleep(ctx context.Context, d time.Duration) {
	if d <= 0 {
		return
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
