package bench

import (
	"fmt"
	"slices"
	"time"
)

// Mode selects the durations of a run.
type Mode string

// Modes of a run.
const (
	// Full gives medians and spreads: 3 repetitions of 5 s per load point, each after a 1 s
	// warm-up.
	Full Mode = "full"
	// Quick is a smoke run: the whole run including the cluster stays under 3 minutes.
	Quick Mode = "quick"
)

// Kind is the kind of load a workload applies.
type Kind string

// Workload kinds.
const (
	HTTP Kind = "http" // fortio load against the echo server
	Bulk Kind = "bulk" // bulk send to the bulk receiver
	// GRPC is fortio's gRPC unary load (-grpc: grpc.health.v1.Health/Check) against the echo
	// server's gRPC port.
	GRPC Kind = "grpc"
)

// Latency reports whether the workload measures request latency (fortio: HTTP or gRPC).
func (w Workload) Latency() bool { return w.Kind == HTTP || w.Kind == GRPC }

// Workload is one load point.
type Workload struct {
	ID    string `json:"id"`
	Title string `json:"title"`
	Kind  Kind   `json:"kind"`
	// HTTP
	QPS           int  `json:"qps,omitempty"` // 0 is as fast as possible
	Connections   int  `json:"connections,omitempty"`
	KeepAlive     bool `json:"keepAlive,omitempty"`
	ResponseBytes int  `json:"responseBytes,omitempty"` // ?size= padding of the echo response
	// Bulk
	Streams     int    `json:"streams,omitempty"`
	StreamBytes string `json:"streamBytes,omitempty"` // bytes per stream, bulk -bytes syntax
}

// Duration is a time.Duration that is a string ("15s") in JSON.
type Duration time.Duration

// MarshalText implements encoding.TextMarshaler.
func (d Duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("duration: %w", err)
	}
	*d = Duration(v)
	return nil
}

// Plan is what a run executes per scenario.
type Plan struct {
	Mode Mode `json:"mode"`
	// Warmup is a discarded run of each HTTP workload before its repetitions (a bulk workload is
	// warmed up with one discarded transfer of WarmupBytes per stream).
	Warmup      Duration `json:"warmup"`
	WarmupBytes string   `json:"warmupBytes"`
	// Duration is the length of one HTTP repetition.
	Duration    Duration `json:"duration"`
	Repetitions int      `json:"repetitions"`
	// Pause separates load points so that the previous one's sockets drain.
	Pause Duration `json:"pause"`
	// Resolution is fortio's histogram resolution (-r) in seconds.
	Resolution float64    `json:"resolution"`
	Workloads  []Workload `json:"workloads"`
	// LoadCPUs, when set, is the CPU list (taskset -c syntax, e.g. "0") the load generators are
	// pinned to, so that they do not share CPUs with the paths they measure.
	LoadCPUs string `json:"loadCPUs,omitempty"`
}

// NewPlan returns the plan of a mode.
func NewPlan(mode Mode) (Plan, error) {
	p := Plan{Mode: mode, Resolution: 0.00001, Pause: Duration(time.Second)}
	// The durations keep a run of every scenario (no-mesh, Weft L4, same-node and L7, the peers,
	// the iptables pass) and the control-plane benchmark before it (make bench) under 20 minutes
	// in full mode and under 3 minutes in quick mode, clusters included.
	single, multi := "1G", "256M"
	switch mode {
	case Full:
		p.Warmup, p.Duration, p.Repetitions, p.WarmupBytes = Duration(time.Second), Duration(5*time.Second), 3, "100M"
		p.Pause = Duration(500 * time.Millisecond)
	case Quick:
		p.Warmup, p.Duration, p.Repetitions, p.WarmupBytes = Duration(250*time.Millisecond), Duration(time.Second), 1, "50M"
		p.Pause = Duration(250 * time.Millisecond)
		single, multi = "500M", "125M"
	default:
		return Plan{}, fmt.Errorf("plan: unknown mode %q", mode)
	}
	const conns, size = 16, 1024
	p.Workloads = []Workload{
		{ID: "http-1000rps", Title: "HTTP/1.1 keep-alive, 1000 rps", Kind: HTTP, QPS: 1000, Connections: conns, KeepAlive: true, ResponseBytes: size},
		{ID: "http-3200rps", Title: "HTTP/1.1 keep-alive, 3200 rps", Kind: HTTP, QPS: 3200, Connections: conns, KeepAlive: true, ResponseBytes: size},
		{ID: "http-max", Title: "HTTP/1.1 keep-alive, max rate", Kind: HTTP, QPS: 0, Connections: conns, KeepAlive: true, ResponseBytes: size},
		{ID: "http-newconn", Title: "new connection per request, max rate", Kind: HTTP, QPS: 0, Connections: conns, KeepAlive: false, ResponseBytes: size},
		{ID: "grpc-1000rps", Title: "gRPC unary (health check), 1000 rps", Kind: GRPC, QPS: 1000, Connections: conns},
		{ID: "tcp-1stream", Title: "bulk TCP, 1 stream", Kind: Bulk, Streams: 1, StreamBytes: single},
		{ID: "tcp-4streams", Title: "bulk TCP, 4 streams", Kind: Bulk, Streams: 4, StreamBytes: multi},
	}
	return p, nil
}

// HTTPTime returns how long the HTTP workloads of one scenario load the network: warm-ups,
// repetitions and pauses (bulk transfers end when their bytes are through and are not included).
func (p Plan) HTTPTime() time.Duration {
	var d time.Duration
	for _, w := range p.Workloads {
		if w.Latency() {
			d += time.Duration(p.Warmup) + time.Duration(p.Repetitions)*time.Duration(p.Duration) + time.Duration(p.Pause)
		}
	}
	return d
}

// LoadTime returns how long the HTTP workloads of a run of n interleaved scenarios load the
// network (Runner.Run): with one scenario HTTPTime; with more, every repetition of every
// scenario has its own warm-up and pause. Switching between scenarios and bulk transfers are
// not included.
func (p Plan) LoadTime(n int) time.Duration {
	if n <= 1 {
		return p.HTTPTime()
	}
	var d time.Duration
	for _, w := range p.Workloads {
		if w.Latency() {
			d += time.Duration(n*p.Repetitions) * (time.Duration(p.Warmup) + time.Duration(p.Duration) + time.Duration(p.Pause))
		}
	}
	return d
}

// FixedRateHTTP returns the IDs of the plan's HTTP workloads at a fixed rate (QPS > 0), in plan
// order: the load points of the L7 scenario.
func (p Plan) FixedRateHTTP() []string {
	var ids []string
	for _, w := range p.Workloads {
		if w.Kind == HTTP && w.QPS > 0 {
			ids = append(ids, w.ID)
		}
	}
	return ids
}

// FixedRate returns the IDs of the plan's HTTP and gRPC workloads at a fixed rate, in plan order.
func (p Plan) FixedRate() []string {
	var ids []string
	for _, w := range p.Workloads {
		if w.Latency() && w.QPS > 0 {
			ids = append(ids, w.ID)
		}
	}
	return ids
}

// IDs returns the IDs of the plan's workloads that match keep, in plan order.
func (p Plan) IDs(keep func(Workload) bool) []string {
	var ids []string
	for _, w := range p.Workloads {
		if keep(w) {
			ids = append(ids, w.ID)
		}
	}
	return ids
}

// LoadTimeOf is LoadTime for interleaved scenarios that each run only some workloads: one entry
// per scenario, the IDs it runs (nil: all). A workload run by one scenario alone has one
// warm-up, as with LoadTime(1).
func (p Plan) LoadTimeOf(scenarios ...[]string) time.Duration {
	var d time.Duration
	for _, w := range p.Workloads {
		if !w.Latency() {
			continue
		}
		n := 0
		for _, ids := range scenarios {
			if ids == nil || slices.Contains(ids, w.ID) {
				n++
			}
		}
		switch {
		case n == 1:
			d += time.Duration(p.Warmup) + time.Duration(p.Repetitions)*time.Duration(p.Duration) + time.Duration(p.Pause)
		case n > 1:
			d += time.Duration(n*p.Repetitions) * (time.Duration(p.Warmup) + time.Duration(p.Duration) + time.Duration(p.Pause))
		}
	}
	return d
}
