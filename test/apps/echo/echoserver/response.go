package echoserver

import (
	"encoding/json"
	"net/http"
)

// Response is the JSON document the echo server returns for every request
// except the probes. Clients decode it to learn which instance answered.
type Response struct {
	Name         string      `json:"name"`
	Version      string      `json:"version"`
	PodName      string      `json:"pod_name"`
	PodNamespace string      `json:"pod_namespace"`
	PodIP        string      `json:"pod_ip"`
	Hostname     string      `json:"hostname"`
	Method       string      `json:"method"`
	Host         string      `json:"host"`
	Path         string      `json:"path"`
	Query        string      `json:"query"`
	RemoteAddr   string      `json:"remote_addr"`
	Proto        string      `json:"proto"`
	Headers      http.Header `json:"headers"`
	// Status is the HTTP status code of this response.
	Status int `json:"status"`
	// Fault is "pattern" when the status was injected by the fail pattern
	// and "query" when it was requested with ?status=.
	Fault string `json:"fault,omitempty"`
	// Error explains a non-2xx status, if any.
	Error string `json:"error,omitempty"`
	// Upstreams holds the results of the calls made for /chain, in the
	// order the upstream URLs were configured.
	Upstreams []Upstream `json:"upstreams,omitempty"`
	// Padding holds the ?size=N padding; it is always the last field.
	Padding string `json:"padding,omitempty"`
}

// Upstream is the result of one call made by /chain.
type Upstream struct {
	URL       string  `json:"url"`
	Status    int     `json:"status,omitempty"`
	LatencyMS float64 `json:"latency_ms"`
	Error     string  `json:"error,omitempty"`
	// Response is the upstream's body when it is valid JSON (normally
	// another echo Response).
	Response json.RawMessage `json:"response,omitempty"`
	// Body is the upstream's body (truncated) when it is not JSON.
	Body string `json:"body,omitempty"`
}

// Failed reports whether the upstream call failed: a transport error or a
// status of 400 or above.
func (u Upstream) Failed() bool { return u.Error != "" || u.Status >= 400 }
