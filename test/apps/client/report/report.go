// Package report aggregates the results of test-client requests: counts by
// status, by responding app name and version (how tests check canary
// weights), errors by kind and latency percentiles. Reports marshal to the
// JSON printed by "client -json", so tests can decode that output with
// this package.
package report

import (
	"fmt"
	"maps"
	"math"
	"slices"
	"strings"
	"sync"
	"time"
)

// maxErrorSamples bounds the distinct error messages kept in a Report.
const maxErrorSamples = 5

// Service identifies one app instance in a response.
type Service struct {
	Name    string
	Version string
	Pod     string // the responder's pod name, if it tells
	Peer    string // the client address the responder saw (IP), if it tells
}

// Sample is the result of one request.
type Sample struct {
	// Status is the protocol status: an HTTP code ("200"), a gRPC health
	// status or code ("SERVING", "Unavailable"), or "ok" for TCP. Empty
	// when no response arrived.
	Status string
	// OK reports whether the request succeeded.
	OK bool
	// Services lists the apps that produced the response, the responding
	// app first, then (for /chain responses) its upstreams depth first.
	// Empty when the responder could not be identified.
	Services []Service
	// Reply is the raw reply of line protocols (TCP); it is not aggregated
	// except that a Report keeps the last one.
	Reply string
	// Latency is the request's duration.
	Latency time.Duration
	// Err is the transport or protocol error, if any.
	Err error
}

// Latency holds latency statistics in milliseconds.
type Latency struct {
	Min  float64 `json:"min"`
	Mean float64 `json:"mean"`
	P50  float64 `json:"p50"`
	P90  float64 `json:"p90"`
	P99  float64 `json:"p99"`
	Max  float64 `json:"max"`
}

// Report is the aggregate of a run.
type Report struct {
	Kind    string  `json:"kind"`
	Target  string  `json:"target"`
	Count   int     `json:"count"`
	OK      int     `json:"ok"`
	Failed  int     `json:"failed"`
	Seconds float64 `json:"seconds"`
	RPS     float64 `json:"rps"`
	// Status counts responses by Sample.Status.
	Status map[string]int `json:"status"`
	// Names and Versions count the responding (top-level) app by name
	// and by version, over identified responses of any status.
	Names    map[string]int `json:"names"`
	Versions map[string]int `json:"versions"`
	// Pods and Peers count, for the responding app, its pod name and the client address it saw
	// (how mesh tests check that the source IP is preserved).
	Pods  map[string]int `json:"pods,omitempty"`
	Peers map[string]int `json:"peers,omitempty"`
	// Services counts every app of every response tree: name -> version
	// -> count. It shows version shares of apps deeper in a chain.
	Services map[string]map[string]int `json:"services"`
	// Errors counts failed requests without a response by ErrorKind.
	Errors       map[string]int `json:"errors"`
	ErrorSamples []string       `json:"error_samples,omitempty"`
	Latency      Latency        `json:"latency_ms"`
	// Reply is the last Sample.Reply (TCP).
	Reply string `json:"reply,omitempty"`
}

// Recorder accumulates Samples; it is safe for concurrent use.
type Recorder struct {
	mu        sync.Mutex
	r         Report
	latencies []time.Duration
}

// NewRecorder returns a Recorder for a run of the given kind (http, grpc,
// tcp) against target.
func NewRecorder(kind, target string) *Recorder {
	return &Recorder{r: Report{
		Kind:     kind,
		Target:   target,
		Status:   make(map[string]int),
		Names:    make(map[string]int),
		Versions: make(map[string]int),
		Pods:     make(map[string]int),
		Peers:    make(map[string]int),
		Services: make(map[string]map[string]int),
		Errors:   make(map[string]int),
	}}
}

// Add records s.
func (rec *Recorder) Add(s Sample) {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	r := &rec.r
	r.Count++
	rec.latencies = append(rec.latencies, s.Latency)
	if s.OK {
		r.OK++
	} else {
		r.Failed++
	}
	if s.Status != "" {
		r.Status[s.Status]++
	}
	if s.Err != nil {
		r.Errors[ErrorKind(s.Err)]++
		if msg := s.Err.Error(); len(r.ErrorSamples) < maxErrorSamples && !slices.Contains(r.ErrorSamples, msg) {
			r.ErrorSamples = append(r.ErrorSamples, msg)
		}
	}
	if len(s.Services) > 0 {
		top := s.Services[0]
		r.Names[orUnknown(top.Name)]++
		r.Versions[orUnknown(top.Version)]++
		if top.Pod != "" {
			r.Pods[top.Pod]++
		}
		if top.Peer != "" {
			r.Peers[top.Peer]++
		}
		for _, svc := range s.Services {
			name := orUnknown(svc.Name)
			m := r.Services[name]
			if m == nil {
				m = make(map[string]int)
				r.Services[name] = m
			}
			m[orUnknown(svc.Version)]++
		}
	}
	if s.Reply != "" {
		r.Reply = s.Reply
	}
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}

// Report returns the aggregate so far; elapsed is the run's wall time.
func (rec *Recorder) Report(elapsed time.Duration) Report {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	r := rec.r
	r.Status = maps.Clone(r.Status)
	r.Names = maps.Clone(r.Names)
	r.Versions = maps.Clone(r.Versions)
	r.Errors = maps.Clone(r.Errors)
	r.ErrorSamples = slices.Clone(r.ErrorSamples)
	r.Services = make(map[string]map[string]int, len(rec.r.Services))
	for k, v := range rec.r.Services {
		r.Services[k] = maps.Clone(v)
	}
	r.Seconds = elapsed.Seconds()
	if r.Seconds > 0 {
		r.RPS = float64(r.Count) / r.Seconds
	}
	r.Latency = Summarize(slices.Clone(rec.latencies))
	return r
}

// Summarize computes latency statistics of ds, which it sorts in place.
func Summarize(ds []time.Duration) Latency {
	if len(ds) == 0 {
		return Latency{}
	}
	slices.Sort(ds)
	var sum time.Duration
	for _, d := range ds {
		sum += d
	}
	return Latency{
		Min:  ms(ds[0]),
		Mean: ms(sum / time.Duration(len(ds))),
		P50:  ms(Percentile(ds, 50)),
		P90:  ms(Percentile(ds, 90)),
		P99:  ms(Percentile(ds, 99)),
		Max:  ms(ds[len(ds)-1]),
	}
}

// Percentile returns the nearest-rank p-th percentile (0 < p <= 100) of
// sorted, or 0 when sorted is empty.
func Percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(math.Ceil(p / 100 * float64(len(sorted))))
	rank = max(1, min(rank, len(sorted)))
	return sorted[rank-1]
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// Share returns the fraction of identified responses whose responding app
// has the given version (0 when none were identified).
func (r Report) Share(version string) float64 {
	return share(r.Versions, version)
}

// ServiceShare returns the fraction of occurrences of app name, anywhere in
// the response trees, that had the given version.
func (r Report) ServiceShare(name, version string) float64 {
	return share(r.Services[name], version)
}

func share(m map[string]int, key string) float64 {
	total := 0
	for _, n := range m {
		total += n
	}
	if total == 0 {
		return 0
	}
	return float64(m[key]) / float64(total)
}

// Summary returns a one-line human-readable summary.
func (r Report) Summary() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s: %d requests, %d ok, %d failed in %.3fs (%.1f/s)",
		r.Kind, r.Target, r.Count, r.OK, r.Failed, r.Seconds, r.RPS)
	writeCounts(&b, "status", r.Status)
	writeCounts(&b, "versions", r.Versions)
	writeCounts(&b, "names", r.Names)
	writeCounts(&b, "errors", r.Errors)
	l := r.Latency
	fmt.Fprintf(&b, "; latency p50=%.2fms p90=%.2fms p99=%.2fms max=%.2fms", l.P50, l.P90, l.P99, l.Max)
	return b.String()
}

func writeCounts(b *strings.Builder, label string, m map[string]int) {
	if len(m) == 0 {
		return
	}
	fmt.Fprintf(b, "; %s", label)
	for _, k := range slices.Sorted(maps.Keys(m)) {
		fmt.Fprintf(b, " %s=%d", k, m[k])
	}
}
