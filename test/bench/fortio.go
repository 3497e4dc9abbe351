package bench

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// FortioResult holds the fields of fortio's JSON result (fhttp.HTTPRunnerResults, the same in
// fortio.org/fortio v1.68.0 and v1.75.3) that the benchmark uses. Importing fortio as a library
// would pull its gRPC, UI and scripting dependencies into the module for a dozen fields.
type FortioResult struct {
	RunType           string
	Labels            string
	StartTime         time.Time
	RequestedQPS      string
	RequestedDuration string
	ActualQPS         float64
	ActualDuration    time.Duration // nanoseconds in the JSON
	NumThreads        int
	Version           string
	DurationHistogram FortioHistogram
	// ErrorsDurationHistogram holds the durations of the failed calls only.
	ErrorsDurationHistogram FortioHistogram
	RetCodes                map[string]int64 // HTTP status → count; "-1" is a socket error
	SocketCount             int64
	URL                     string
	DisableKeepAlive        bool
	Resolution              float64
}

// FortioHistogram is fortio's stats.HistogramData; values are in seconds.
type FortioHistogram struct {
	Count       int64
	Min         float64
	Max         float64
	Sum         float64
	Avg         float64
	StdDev      float64
	Data        []FortioBucket
	Percentiles []FortioPercentile
}

// FortioBucket is one histogram bucket: values in (Start, End], Percent cumulative.
type FortioBucket struct {
	Start   float64
	End     float64
	Percent float64
	Count   int64
}

// FortioPercentile is one percentile fortio computed (-p flag).
type FortioPercentile struct {
	Percentile float64
	Value      float64
}

// ParseFortio reads fortio's JSON result from out, which may be the combined output of
// `fortio load -json -`: log lines before and after the pretty-printed JSON object are skipped.
func ParseFortio(out []byte) (*FortioResult, error) {
	var r FortioResult
	if err := decodeIndentedJSON(out, &r); err != nil {
		return nil, fmt.Errorf("fortio result: %w", err)
	}
	if r.DurationHistogram.Count == 0 && len(r.RetCodes) == 0 {
		return nil, errors.New("fortio result: no calls recorded")
	}
	return &r, nil
}

// decodeIndentedJSON decodes the first JSON object of out that starts on a line of its own
// with "{", as json.MarshalIndent and an indenting Encoder write it. One-line JSON logs (fortio's
// and the test apps' slog lines start with `{"`) do not match.
func decodeIndentedJSON(out []byte, v any) error {
	start := -1
	switch {
	case bytes.HasPrefix(out, []byte("{\n")):
		start = 0
	default:
		if i := bytes.Index(out, []byte("\n{\n")); i >= 0 {
			start = i + 1
		}
	}
	if start < 0 {
		return fmt.Errorf("no JSON object in output: %q", truncate(out, 512))
	}
	if err := json.NewDecoder(bytes.NewReader(out[start:])).Decode(v); err != nil {
		return fmt.Errorf("decode: %w", err)
	}
	return nil
}

// Percentile returns the p-th percentile in seconds: fortio's own value when it computed p,
// otherwise the same linear interpolation within the histogram buckets that fortio uses
// (stats.HistogramData.CalcPercentile), so any percentile is available from the histogram.
func (h *FortioHistogram) Percentile(p float64) float64 {
	for _, fp := range h.Percentiles {
		if fp.Percentile == p {
			return fp.Value
		}
	}
	return h.calcPercentile(p)
}

func (h *FortioHistogram) calcPercentile(p float64) float64 {
	if len(h.Data) == 0 || h.Count == 0 {
		return math.NaN()
	}
	if p >= 100 {
		return h.Max
	}
	prev := 100 / float64(h.Count) // the minimum covers at least one call
	if p <= prev {
		return h.Min
	}
	for _, b := range h.Data {
		if p <= b.Percent {
			return b.Start + (p-prev)/(b.Percent-prev)*(b.End-b.Start)
		}
		prev = b.Percent
	}
	return h.Max
}

// Errors returns the calls that did not answer 2xx (socket errors included). For a gRPC run
// (RunType "GRPC …"), whose codes are health statuses or gRPC codes, every call that did not
// answer SERVING (health check) or OK (ping) is an error.
func (r *FortioResult) Errors() int64 {
	var n int64
	grpc := strings.HasPrefix(r.RunType, "GRPC")
	for code, c := range r.RetCodes {
		if grpc {
			if code != "SERVING" && code != "OK" {
				n += c
			}
			continue
		}
		if v, err := strconv.Atoi(code); err != nil || v < 200 || v > 299 {
			n += c
		}
	}
	return n
}

// Sample converts the result into a Sample: latency percentiles in milliseconds, achieved
// rate, calls, errors and sockets.
func (r *FortioResult) Sample() Sample {
	h := &r.DurationHistogram
	return Sample{
		P50:      1000 * h.Percentile(50),
		P90:      1000 * h.Percentile(90),
		P99:      1000 * h.Percentile(99),
		P999:     1000 * h.Percentile(99.9),
		RPS:      r.ActualQPS,
		Requests: float64(h.Count),
		Errors:   float64(r.Errors()),
		Sockets:  float64(r.SocketCount),
	}
}

func truncate(b []byte, n int) []byte {
	if len(b) <= n {
		return b
	}
	return append(b[:n:n], "…"...)
}
