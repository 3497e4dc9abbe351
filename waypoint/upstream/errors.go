package upstream

import (
	"errors"
	"fmt"
)

// OverflowError is a request refused by a circuit breaker: the proxy answers 503 with
// response flag UO and x-envoy-overloaded: true.
type OverflowError struct {
	Cluster string
	// Limit is the threshold reached: "max_pending_requests", "max_requests" or "max_retries".
	Limit string
	Max   uint64
}

func (e *OverflowError) Error() string {
	return fmt.Sprintf("cluster %s: circuit breaker %s (%d) reached", e.Cluster, e.Limit, e.Max)
}

// ErrNoHealthyUpstream is wrapped by RoundTrip's error when the cluster has no endpoint to
// pick (response flag UH).
var ErrNoHealthyUpstream = errors.New("no healthy upstream")

// ErrClosed is returned by a cluster whose Manager was closed.
var ErrClosed = errors.New("upstream manager closed")

// ConnectError is a failure to connect to an endpoint (response flag UF): the dial failed
// or timed out (connect_timeout).
type ConnectError struct {
	Cluster  string
	Endpoint *Endpoint
	Err      error
}

func (e *ConnectError) Error() string {
	return fmt.Sprintf("cluster %s: connecting to %s: %v", e.Cluster, e.Endpoint, e.Err)
}

func (e *ConnectError) Unwrap() error { return e.Err }
