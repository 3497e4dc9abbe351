package route

import (
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"google.golang.org/protobuf/types/known/anypb"
)

// RetryOn is a set of Envoy retry conditions.
type RetryOn uint32

// The retry conditions of retry_on.
const (
	Retry5xx RetryOn = 1 << iota
	RetryGatewayError
	RetryReset
	RetryResetBeforeRequest
	RetryConnectFailure
	RetryRetriable4xx
	RetryRefusedStream
	RetryRetriableStatusCodes
	RetryGRPCCancelled
	RetryGRPCDeadlineExceeded
	RetryGRPCResourceExhausted
	RetryGRPCUnavailable
	RetryGRPCInternal
)

var retryOnNames = map[string]RetryOn{
	"5xx":                    Retry5xx,
	"gateway-error":          RetryGatewayError,
	"reset":                  RetryReset,
	"reset-before-request":   RetryResetBeforeRequest,
	"connect-failure":        RetryConnectFailure,
	"retriable-4xx":          RetryRetriable4xx,
	"refused-stream":         RetryRefusedStream,
	"retriable-status-codes": RetryRetriableStatusCodes,
	"cancelled":              RetryGRPCCancelled,
	"deadline-exceeded":      RetryGRPCDeadlineExceeded,
	"resource-exhausted":     RetryGRPCResourceExhausted,
	"unavailable":            RetryGRPCUnavailable,
	"internal":               RetryGRPCInternal,
}

// RetryPolicy is a compiled RetryPolicy.
type RetryPolicy struct {
	On RetryOn
	// NumRetries is the number of retries after the first attempt (Envoy's default 1).
	NumRetries int
	// PerTryTimeout limits each attempt, 0 for none (the route timeout still applies).
	PerTryTimeout time.Duration
	// PerTryIdleTimeout limits each attempt's idle time, 0 for none.
	PerTryIdleTimeout time.Duration
	// RetriableStatusCodes are retried with retriable-status-codes.
	RetriableStatusCodes []int
	// BackOffBase and BackOffMax bound the jittered exponential back-off (Envoy's defaults
	// 25 ms and 10 × base).
	BackOffBase, BackOffMax time.Duration
	// PreviousHosts: retry_host_predicate previous_hosts, retries avoid the hosts already tried.
	PreviousHosts bool
	// HostSelectionMaxAttempts is host_selection_retry_max_attempts (Envoy's default 1).
	HostSelectionMaxAttempts int
}

const previousHostsPredicate = "envoy.retry_host_predicates.previous_hosts"

func compileRetry(path string, rp *routev3.RetryPolicy) (*RetryPolicy, error) {
	if err := onlyFields(path, rp, "retry_on", "num_retries", "per_try_timeout", "per_try_idle_timeout", "retry_host_predicate", "host_selection_retry_max_attempts", "retriable_status_codes", "retry_back_off"); err != nil {
		return nil, err
	}
	p := &RetryPolicy{NumRetries: 1, BackOffBase: 25 * time.Millisecond, HostSelectionMaxAttempts: 1}
	for tok := range strings.SplitSeq(rp.GetRetryOn(), ",") {
		tok = strings.TrimSpace(tok)
		if tok == "" {
			continue
		}
		on, ok := retryOnNames[tok]
		if !ok {
			return nil, fieldError(join(path, "retry_on"), "%q is not supported by the waypoint; use 5xx, gateway-error, reset, reset-before-request, connect-failure, retriable-4xx, refused-stream, retriable-status-codes, cancelled, deadline-exceeded, resource-exhausted, unavailable or internal", tok)
		}
		p.On |= on
	}
	if n := rp.GetNumRetries(); n != nil {
		p.NumRetries = int(n.GetValue())
	}
	var err error
	if t := rp.GetPerTryTimeout(); t != nil {
		if p.PerTryTimeout, err = duration(join(path, "per_try_timeout"), t); err != nil {
			return nil, err
		}
	}
	if t := rp.GetPerTryIdleTimeout(); t != nil {
		if p.PerTryIdleTimeout, err = duration(join(path, "per_try_idle_timeout"), t); err != nil {
			return nil, err
		}
	}
	for i, c := range rp.GetRetriableStatusCodes() {
		if c < 100 || c >= 600 {
			return nil, fieldError(idx(path, "retriable_status_codes", i), "%d is not an HTTP status", c)
		}
		p.RetriableStatusCodes = append(p.RetriableStatusCodes, int(c))
	}
	if b := rp.GetRetryBackOff(); b != nil {
		bp := join(path, "retry_back_off")
		if err := onlyFields(bp, b, "base_interval", "max_interval"); err != nil {
			return nil, err
		}
		if b.GetBaseInterval() == nil {
			return nil, fieldError(join(bp, "base_interval"), "required")
		}
		if p.BackOffBase, err = duration(join(bp, "base_interval"), b.GetBaseInterval()); err != nil {
			return nil, err
		}
		if p.BackOffBase < time.Millisecond {
			return nil, fieldError(join(bp, "base_interval"), "must be at least 1ms")
		}
		if b.GetMaxInterval() != nil {
			if p.BackOffMax, err = duration(join(bp, "max_interval"), b.GetMaxInterval()); err != nil {
				return nil, err
			}
			if p.BackOffMax < p.BackOffBase {
				return nil, fieldError(join(bp, "max_interval"), "must not be below base_interval")
			}
		}
	}
	if p.BackOffMax == 0 {
		p.BackOffMax = 10 * p.BackOffBase
	}
	for i, hp := range rp.GetRetryHostPredicate() {
		pp := idx(path, "retry_host_predicate", i)
		if hp.GetName() != previousHostsPredicate && !isPreviousHosts(hp.GetTypedConfig()) {
			return nil, fieldError(pp, "predicate %q is not supported by the waypoint; use %s", hp.GetName(), previousHostsPredicate)
		}
		p.PreviousHosts = true
	}
	if n := rp.GetHostSelectionRetryMaxAttempts(); n > 0 {
		p.HostSelectionMaxAttempts = int(n)
	}
	return p, nil
}

func isPreviousHosts(a *anypb.Any) bool {
	return a != nil && strings.HasSuffix(a.GetTypeUrl(), "envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate")
}

// RetriableResponse reports whether a response with status and headers h should be retried:
// 5xx for any 5xx, gateway-error for 502/503/504, retriable-4xx for 409,
// retriable-status-codes for the listed statuses, and the gRPC conditions by the grpc-status
// header of a trailers-only response.
func (p *RetryPolicy) RetriableResponse(status int, h http.Header) bool {
	if p == nil {
		return false
	}
	switch {
	case p.On&Retry5xx != 0 && status >= 500 && status < 600,
		p.On&RetryGatewayError != 0 && (status == 502 || status == 503 || status == 504),
		p.On&RetryRetriable4xx != 0 && status == 409,
		p.On&RetryRetriableStatusCodes != 0 && slices.Contains(p.RetriableStatusCodes, status):
		return true
	}
	gs := h.Get("Grpc-Status")
	if gs == "" {
		return false
	}
	code, err := strconv.Atoi(gs)
	if err != nil {
		return false
	}
	switch code {
	case 1:
		return p.On&RetryGRPCCancelled != 0
	case 4:
		return p.On&RetryGRPCDeadlineExceeded != 0
	case 8:
		return p.On&RetryGRPCResourceExhausted != 0
	case 13:
		return p.On&RetryGRPCInternal != 0
	case 14:
		return p.On&RetryGRPCUnavailable != 0
	}
	return false
}

// Failure is how an attempt failed without a response.
type Failure int

// The failures of an attempt.
const (
	FailureConnect       Failure = iota // the upstream connection could not be made
	FailureRefusedStream                // the upstream refused the stream (HTTP/2 REFUSED_STREAM)
	FailureReset                        // the upstream reset or closed the stream
	FailurePerTryTimeout                // the attempt's per_try_timeout expired
)

// RetriableFailure reports whether an attempt that failed without a response should be
// retried, as Envoy decides: 5xx and gateway-error retry every reset and per-try timeout;
// reset any reset; connect-failure and refused-stream their own; reset-before-request any
// reset when no request byte was sent.
func (p *RetryPolicy) RetriableFailure(f Failure, requestSent bool) bool {
	if p == nil {
		return false
	}
	if p.On&(Retry5xx|RetryGatewayError) != 0 {
		return true
	}
	if f == FailurePerTryTimeout {
		return false
	}
	switch {
	case p.On&RetryReset != 0,
		p.On&RetryResetBeforeRequest != 0 && !requestSent,
		p.On&RetryConnectFailure != 0 && f == FailureConnect,
		p.On&RetryRefusedStream != 0 && f == FailureRefusedStream:
		return true
	}
	return false
}

// BackOff returns the wait before retry number n (1 for the first retry): Envoy's fully
// jittered exponential back-off, min(random % (base × (2^n − 1)), max).
func (p *RetryPolicy) BackOff(n int, rnd Rand) time.Duration {
	n = min(max(n, 1), 30)
	limit := p.BackOffBase * time.Duration(uint64(1)<<n-1)
	if limit <= 0 || limit/time.Duration(uint64(1)<<n-1) != p.BackOffBase {
		return p.BackOffMax // overflow
	}
	return min(time.Duration(rnd.Uint64N(uint64(limit))), p.BackOffMax)
}
