package route

import (
	"net/http"
	"time"

	faultv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/fault/v3"
	"google.golang.org/protobuf/types/known/anypb"
)

// Names of the HTTP filters whose per-route configuration this package compiles.
const (
	FaultFilter = "envoy.filters.http.fault"
	CorsFilter  = "envoy.filters.http.cors"
	// RBACFilterPrefix starts the names of RBAC filters; their per-route configuration is kept
	// as is for the RBAC package.
	RBACFilterPrefix = "envoy.filters.http.rbac"
)

// Fault is a compiled faultv3.HTTPFault: an optional fixed delay and an optional abort,
// each applied to its own fraction of the requests.
type Fault struct {
	Delay      time.Duration
	DelayShare Fraction // zero Num: never
	hasDelay   bool
	// AbortHTTP is the HTTP status of an abort, 0 for a gRPC abort or none.
	AbortHTTP int
	// AbortGRPC is the gRPC status of an abort, -1 for none.
	AbortGRPC  int
	AbortShare Fraction
	hasAbort   bool
	// AbortBody is the body of an aborted response (response_body), empty for Envoy's default.
	AbortBody string
	headers   []*headerMatcher
}

// CompileFault compiles the per-route configuration of the fault filter. Header-controlled
// faults, rate limits, upstream cluster and downstream node restrictions and
// max_active_faults are refused.
func CompileFault(path string, a *anypb.Any) (*Fault, error) {
	hf := &faultv3.HTTPFault{}
	if err := a.UnmarshalTo(hf); err != nil {
		return nil, fieldError(path, "expected a %s: %v", "envoy.extensions.filters.http.fault.v3.HTTPFault", err)
	}
	// The *_runtime fields only rename runtime keys, which the waypoint has not: their
	// defaults apply, as in Envoy without runtime overrides.
	if err := onlyFields(path, hf, "delay", "abort", "headers", "delay_percent_runtime", "abort_percent_runtime", "delay_duration_runtime", "abort_http_status_runtime", "abort_grpc_status_runtime", "max_active_faults_runtime", "response_rate_limit_percent_runtime", "disable_downstream_cluster_stats", "filter_metadata"); err != nil {
		return nil, err
	}
	f := &Fault{AbortGRPC: -1}
	if d := hf.GetDelay(); d != nil {
		p := join(path, "delay")
		if err := onlyFields(p, d, "fixed_delay", "percentage"); err != nil {
			return nil, err
		}
		if d.GetFixedDelay() == nil {
			return nil, fieldError(join(p, "fixed_delay"), "required (header-controlled delays are not supported)")
		}
		v, err := duration(join(p, "fixed_delay"), d.GetFixedDelay())
		if err != nil {
			return nil, err
		}
		share, err := fraction(join(p, "percentage"), d.GetPercentage())
		if err != nil {
			return nil, err
		}
		f.Delay, f.DelayShare, f.hasDelay = v, share, true
	}
	if ab := hf.GetAbort(); ab != nil {
		p := join(path, "abort")
		if err := onlyFields(p, ab, "http_status", "grpc_status", "percentage", "response_body"); err != nil {
			return nil, err
		}
		switch e := ab.GetErrorType().(type) {
		case *faultv3.FaultAbort_HttpStatus:
			if e.HttpStatus < 200 || e.HttpStatus >= 600 {
				return nil, fieldError(join(p, "http_status"), "%d is not a status from 200 to 599", e.HttpStatus)
			}
			f.AbortHTTP = int(e.HttpStatus)
		case *faultv3.FaultAbort_GrpcStatus:
			f.AbortGRPC = int(e.GrpcStatus)
		default:
			return nil, fieldError(p, "http_status or grpc_status is required (header-controlled aborts are not supported)")
		}
		share, err := fraction(join(p, "percentage"), ab.GetPercentage())
		if err != nil {
			return nil, err
		}
		f.AbortShare, f.hasAbort, f.AbortBody = share, true, ab.GetResponseBody()
	}
	for i, h := range hf.GetHeaders() {
		hm, err := compileHeaderMatcher(idx(path, "headers", i), h)
		if err != nil {
			return nil, err
		}
		f.headers = append(f.headers, hm)
	}
	return f, nil
}

// Applies reports whether the fault applies to r (its headers restriction).
func (f *Fault) Applies(r *http.Request) bool {
	for _, h := range f.headers {
		if !h.match(r) {
			return false
		}
	}
	return true
}

// Decide draws the fault for one request: the delay to wait (0 for none), then the abort as
// an HTTP status (0 for none) or a gRPC status (-1 for none; the HTTP status is then 200 and
// the gRPC status goes into grpc-status, as Envoy answers gRPC aborts). The delay and the abort
// are drawn independently, delay first. A nil Fault injects nothing. The caller checks
// Applies (the headers restriction) first.
func (f *Fault) Decide(rnd Rand) (delay time.Duration, abortStatus int, abortGRPC int) {
	abortGRPC = -1
	if f == nil {
		return 0, 0, -1
	}
	if f.hasDelay && f.DelayShare.Hit(rnd) {
		delay = f.Delay
	}
	if f.hasAbort && f.AbortShare.Hit(rnd) {
		if f.AbortGRPC >= 0 {
			return delay, http.StatusOK, f.AbortGRPC
		}
		return delay, f.AbortHTTP, -1
	}
	return delay, 0, -1
}

// compileFilterConfigs checks a typed_per_filter_config map: fault and CORS configurations
// are compiled, RBAC ones kept for their own package, others refused.
func compileFilterConfigs(path string, m map[string]*anypb.Any) (*filterConfigs, error) {
	if len(m) == 0 {
		return nil, nil
	}
	fc := &filterConfigs{raw: m}
	for name, a := range m {
		p := join(path, "typed_per_filter_config["+name+"]")
		switch {
		case name == FaultFilter:
			f, err := CompileFault(p, a)
			if err != nil {
				return nil, err
			}
			fc.fault = f
		case name == CorsFilter:
			c, err := compileCORSPolicy(p, a)
			if err != nil {
				return nil, err
			}
			fc.cors = c
		case len(name) >= len(RBACFilterPrefix) && name[:len(RBACFilterPrefix)] == RBACFilterPrefix:
		default:
			return nil, fieldError(p, "the waypoint has no HTTP filter %q; use %s, %s or an RBAC filter", name, FaultFilter, CorsFilter)
		}
	}
	return fc, nil
}

// filterConfigs is one level's typed_per_filter_config.
type filterConfigs struct {
	raw   map[string]*anypb.Any
	fault *Fault
	cors  *corsPolicy
}
