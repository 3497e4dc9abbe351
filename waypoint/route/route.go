package route

import (
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/types/known/anypb"
)

// Kind is what a route does with a matched request.
type Kind int

// The route kinds.
const (
	KindForward  Kind = iota // route: forward to a cluster
	KindRedirect             // redirect: answer with a redirect
	KindDirect               // direct_response: answer with a fixed status and body
)

// Route is a compiled route. Exactly one of Forward, Redirect and Direct is set, per Kind.
type Route struct {
	Name     string
	Kind     Kind
	Forward  *Forward
	Redirect *Redirect
	Direct   *DirectResponse

	vh      *VirtualHost
	match   *routeMatch
	headers levelHeaders
	filters *filterConfigs
}

// VirtualHost returns the route's virtual host.
func (r *Route) VirtualHost() *VirtualHost { return r.vh }

// Forward is a compiled RouteAction.
type Forward struct {
	// Clusters holds the single cluster, or the weighted clusters in order.
	Clusters    []*Cluster
	totalWeight uint64
	weighted    bool
	// NotFoundStatus answers requests to a cluster the waypoint does not know
	// (cluster_not_found_response_code: 503 by default, 404 or 500).
	NotFoundStatus int
	// Timeout is the route timeout: Envoy's 15 s when unset, 0 for none.
	Timeout time.Duration
	// IdleTimeout is the stream idle timeout when HasIdleTimeout (0 disables it); otherwise the
	// connection manager's applies.
	IdleTimeout    time.Duration
	HasIdleTimeout bool
	// Retry is the route's retry policy, else its virtual host's; nil for no retries.
	Retry *RetryPolicy
	// Mirrors are the request mirror policies: the route's, else its virtual host's, else the
	// route configuration's (the most specific non-empty list wins, as in Envoy).
	Mirrors []*Mirror
	// HashPolicies compute the consistent-hash key (see Route.HashKey).
	HashPolicies []*HashPolicy
	// MaxStreamDuration is max_stream_duration.max_stream_duration when HasMaxStreamDuration.
	MaxStreamDuration    time.Duration
	HasMaxStreamDuration bool
	grpcHeaderMax        *time.Duration
	grpcHeaderOffset     time.Duration

	prefixRewrite   string
	hasPrefix       bool
	regexRewrite    *regexp.Regexp
	regexSub        string
	hostRewrite     string
	appendForwarded bool
}

// Cluster is one destination of a forwarding route: the route's cluster, or one weighted
// cluster with its own header mutations, per-filter configuration and host rewrite.
type Cluster struct {
	Name   string
	Weight uint32

	route       *Route
	headers     *levelHeaders // nil: not a weighted cluster
	filters     *filterConfigs
	hostRewrite string
}

// Route returns the cluster's route.
func (c *Cluster) Route() *Route { return c.route }

// DirectResponse is a compiled DirectResponseAction.
type DirectResponse struct {
	Status int
	Body   []byte
}

const envoyDefaultTimeout = 15 * time.Second

func compileRoute(path string, r *routev3.Route, vh *VirtualHost, maxBody uint32) (*Route, error) {
	// metadata, decorator, tracing and stat_prefix only label observability; buffer limits
	// only bound buffering.
	if err := onlyFields(path, r, "name", "match", "route", "redirect", "direct_response", "metadata", "decorator", "typed_per_filter_config", "request_headers_to_add", "request_headers_to_remove", "response_headers_to_add", "response_headers_to_remove", "tracing", "per_request_buffer_limit_bytes", "stat_prefix", "request_body_buffer_limit"); err != nil {
		return nil, err
	}
	rt := &Route{Name: r.GetName(), vh: vh}
	var err error
	if rt.match, err = compileRouteMatch(join(path, "match"), r.GetMatch()); err != nil {
		return nil, err
	}
	if rt.headers, err = compileLevelHeaders(path, r); err != nil {
		return nil, err
	}
	if rt.filters, err = compileFilterConfigs(path, r.GetTypedPerFilterConfig()); err != nil {
		return nil, err
	}
	switch a := r.GetAction().(type) {
	case *routev3.Route_Route:
		rt.Kind = KindForward
		rt.Forward, err = compileForward(join(path, "route"), a.Route, rt)
	case *routev3.Route_Redirect:
		rt.Kind = KindRedirect
		rt.Redirect, err = compileRedirect(join(path, "redirect"), a.Redirect, rt.match)
	case *routev3.Route_DirectResponse:
		rt.Kind = KindDirect
		rt.Direct, err = compileDirect(join(path, "direct_response"), a.DirectResponse, maxBody)
	default:
		err = fieldError(path, "route, redirect or direct_response is required")
	}
	if err != nil {
		return nil, err
	}
	return rt, nil
}

func compileDirect(path string, d *routev3.DirectResponseAction, maxBody uint32) (*DirectResponse, error) {
	if err := onlyFields(path, d, "status", "body"); err != nil {
		return nil, err
	}
	if d.GetStatus() < 200 || d.GetStatus() >= 600 {
		return nil, fieldError(join(path, "status"), "%d is not a status from 200 to 599", d.GetStatus())
	}
	out := &DirectResponse{Status: int(d.GetStatus())}
	if b := d.GetBody(); b != nil {
		switch s := b.GetSpecifier().(type) {
		case *corev3.DataSource_InlineString:
			out.Body = []byte(s.InlineString)
		case *corev3.DataSource_InlineBytes:
			out.Body = s.InlineBytes
		default:
			return nil, fieldError(join(path, "body"), "only inline_string and inline_bytes are supported")
		}
		if len(out.Body) > int(maxBody) {
			return nil, fieldError(join(path, "body"), "%d bytes exceed max_direct_response_body_size_bytes (%d)", len(out.Body), maxBody)
		}
	}
	return out, nil
}

func compileForward(path string, a *routev3.RouteAction, rt *Route) (*Forward, error) {
	if err := onlyFields(path, a, "cluster", "weighted_clusters", "cluster_not_found_response_code", "prefix_rewrite", "regex_rewrite", "host_rewrite_literal", "append_x_forwarded_host", "timeout", "idle_timeout", "retry_policy", "request_mirror_policies", "priority", "include_vh_rate_limits", "hash_policy", "max_stream_duration"); err != nil {
		return nil, err
	}
	f := &Forward{Timeout: envoyDefaultTimeout, NotFoundStatus: http.StatusServiceUnavailable, appendForwarded: a.GetAppendXForwardedHost()}
	if a.GetPriority() != corev3.RoutingPriority_DEFAULT {
		return nil, fieldError(join(path, "priority"), "only DEFAULT is supported")
	}
	switch a.GetClusterNotFoundResponseCode() {
	case routev3.RouteAction_SERVICE_UNAVAILABLE:
	case routev3.RouteAction_NOT_FOUND:
		f.NotFoundStatus = http.StatusNotFound
	case routev3.RouteAction_INTERNAL_SERVER_ERROR:
		f.NotFoundStatus = http.StatusInternalServerError
	default:
		return nil, fieldError(join(path, "cluster_not_found_response_code"), "unknown code %v", a.GetClusterNotFoundResponseCode())
	}
	switch c := a.GetClusterSpecifier().(type) {
	case *routev3.RouteAction_Cluster:
		if c.Cluster == "" {
			return nil, fieldError(join(path, "cluster"), "a cluster name is required")
		}
		f.Clusters = []*Cluster{{Name: c.Cluster, Weight: 1, route: rt}}
		f.totalWeight = 1
	case *routev3.RouteAction_WeightedClusters:
		if err := compileWeighted(join(path, "weighted_clusters"), c.WeightedClusters, f, rt); err != nil {
			return nil, err
		}
	default:
		return nil, fieldError(path, "cluster or weighted_clusters is required (cluster_header and cluster specifier plugins are not supported)")
	}
	var err error
	if t := a.GetTimeout(); t != nil {
		if f.Timeout, err = duration(join(path, "timeout"), t); err != nil {
			return nil, err
		}
	}
	if t := a.GetIdleTimeout(); t != nil {
		if f.IdleTimeout, err = duration(join(path, "idle_timeout"), t); err != nil {
			return nil, err
		}
		f.HasIdleTimeout = true
	}
	if m := a.GetMaxStreamDuration(); m != nil {
		p := join(path, "max_stream_duration")
		if err := onlyFields(p, m, "max_stream_duration", "grpc_timeout_header_max", "grpc_timeout_header_offset"); err != nil {
			return nil, err
		}
		if m.GetMaxStreamDuration() != nil {
			if f.MaxStreamDuration, err = duration(join(p, "max_stream_duration"), m.GetMaxStreamDuration()); err != nil {
				return nil, err
			}
			f.HasMaxStreamDuration = true
		}
		if m.GetGrpcTimeoutHeaderMax() != nil {
			d, err := duration(join(p, "grpc_timeout_header_max"), m.GetGrpcTimeoutHeaderMax())
			if err != nil {
				return nil, err
			}
			f.grpcHeaderMax = &d
		}
		if m.GetGrpcTimeoutHeaderOffset() != nil {
			if f.grpcHeaderOffset, err = duration(join(p, "grpc_timeout_header_offset"), m.GetGrpcTimeoutHeaderOffset()); err != nil {
				return nil, err
			}
		}
	}
	if rp := a.GetRetryPolicy(); rp != nil {
		if f.Retry, err = compileRetry(join(path, "retry_policy"), rp); err != nil {
			return nil, err
		}
	} else {
		f.Retry = rt.vh.retry
	}
	if f.Mirrors, err = compileMirrors(path, a.GetRequestMirrorPolicies()); err != nil {
		return nil, err
	}
	if len(f.Mirrors) == 0 {
		f.Mirrors = rt.vh.mirrors
	}
	if len(f.Mirrors) == 0 {
		f.Mirrors = rt.vh.table.mirrors
	}
	for i, h := range a.GetHashPolicy() {
		hp, err := compileHashPolicy(idx(path, "hash_policy", i), h)
		if err != nil {
			return nil, err
		}
		f.HashPolicies = append(f.HashPolicies, hp)
	}
	if v := a.GetPrefixRewrite(); v != "" {
		if a.GetRegexRewrite() != nil {
			return nil, fieldError(join(path, "prefix_rewrite"), "prefix_rewrite and regex_rewrite exclude each other; keep one")
		}
		f.prefixRewrite, f.hasPrefix = v, true
	}
	if rr := a.GetRegexRewrite(); rr != nil {
		if f.regexRewrite, f.regexSub, err = compileRegexRewrite(join(path, "regex_rewrite"), rr); err != nil {
			return nil, err
		}
	}
	if h := a.GetHostRewriteLiteral(); h != "" {
		f.hostRewrite = h
	}
	return f, nil
}

func compileWeighted(path string, wc *routev3.WeightedCluster, f *Forward, rt *Route) error {
	// runtime_key_prefix only names runtime keys, which the waypoint has not.
	if err := onlyFields(path, wc, "clusters", "total_weight", "runtime_key_prefix", "use_hash_policy"); err != nil {
		return err
	}
	if wc.GetUseHashPolicy().GetValue() {
		return fieldError(join(path, "use_hash_policy"), "not supported by the waypoint; remove it")
	}
	if len(wc.GetClusters()) == 0 {
		return fieldError(join(path, "clusters"), "at least one cluster is required")
	}
	f.weighted = true
	for i, cw := range wc.GetClusters() {
		p := idx(path, "clusters", i)
		if err := onlyFields(p, cw, "name", "weight", "request_headers_to_add", "request_headers_to_remove", "response_headers_to_add", "response_headers_to_remove", "typed_per_filter_config", "host_rewrite_literal"); err != nil {
			return err
		}
		if cw.GetName() == "" {
			return fieldError(join(p, "name"), "a cluster name is required")
		}
		hdr, err := compileLevelHeaders(p, cw)
		if err != nil {
			return err
		}
		fc, err := compileFilterConfigs(p, cw.GetTypedPerFilterConfig())
		if err != nil {
			return err
		}
		c := &Cluster{Name: cw.GetName(), Weight: cw.GetWeight().GetValue(), route: rt, headers: &hdr, filters: fc, hostRewrite: cw.GetHostRewriteLiteral()}
		f.Clusters = append(f.Clusters, c)
		f.totalWeight += uint64(c.Weight)
	}
	if f.totalWeight == 0 {
		return fieldError(path, "the sum of the weights must be positive")
	}
	//lint:ignore SA1019 the deprecated total_weight is still checked, as Envoy does
	if tw := wc.GetTotalWeight(); tw != nil && uint64(tw.GetValue()) != f.totalWeight {
		return fieldError(join(path, "total_weight"), "%d differs from the sum of the weights (%d); remove it or correct it", tw.GetValue(), f.totalWeight)
	}
	return nil
}

// compileRegexRewrite compiles a RegexMatchAndSubstitute; Envoy's \N substitutions become
// Go's ${N}.
func compileRegexRewrite(path string, rr *matcherv3.RegexMatchAndSubstitute) (*regexp.Regexp, string, error) {
	if err := onlyFields(path, rr, "pattern", "substitution"); err != nil {
		return nil, "", err
	}
	if rr.GetPattern() == nil {
		return nil, "", fieldError(join(path, "pattern"), "required")
	}
	if err := onlyFields(join(path, "pattern"), rr.GetPattern(), "regex", "google_re2"); err != nil {
		return nil, "", err
	}
	re, err := regexp.Compile(rr.GetPattern().GetRegex())
	if err != nil {
		return nil, "", fieldError(join(path, "pattern.regex"), "invalid RE2 regular expression %q: %v", rr.GetPattern().GetRegex(), err)
	}
	var b strings.Builder
	sub := rr.GetSubstitution()
	for i := 0; i < len(sub); i++ {
		switch c := sub[i]; {
		case c == '$':
			b.WriteString("$$")
		case c == '\\' && i+1 < len(sub) && sub[i+1] >= '0' && sub[i+1] <= '9':
			b.WriteString("${" + string(sub[i+1]) + "}")
			i++
		case c == '\\' && i+1 < len(sub) && sub[i+1] == '\\':
			b.WriteByte('\\')
			i++
		case c == '\\':
			return nil, "", fieldError(join(path, "substitution"), "%q: a backslash must be followed by a digit or a backslash", sub)
		default:
			b.WriteByte(c)
		}
	}
	return re, b.String(), nil
}

// Pick chooses the destination of one request: the route's cluster, or a weighted cluster
// drawn with the table's random source (random % total weight, walking the clusters in
// order, as Envoy does). Pick is nil for redirect and direct-response routes.
func (r *Route) Pick() *Cluster {
	if r.Forward == nil {
		return nil
	}
	f := r.Forward
	if !f.weighted {
		return f.Clusters[0]
	}
	v := r.vh.table.rand.Uint64N(f.totalWeight)
	for _, c := range f.Clusters {
		if v < uint64(c.Weight) {
			return c
		}
		v -= uint64(c.Weight)
	}
	return f.Clusters[len(f.Clusters)-1]
}

// FilterConfig returns the most specific per-filter configuration of the filter name: the
// route's, else its virtual host's, else the route configuration's; nil for none.
func (r *Route) FilterConfig(name string) *anypb.Any {
	if a := r.filters.get(name); a != nil {
		return a
	}
	return r.vh.FilterConfig(name)
}

// FilterConfig is Route.FilterConfig with the weighted cluster's configuration first.
func (c *Cluster) FilterConfig(name string) *anypb.Any {
	if a := c.filters.get(name); a != nil {
		return a
	}
	return c.route.FilterConfig(name)
}

// levels lists the per-filter configurations from the most specific to the least.
func (r *Route) levels(c *Cluster) []*filterConfigs {
	out := make([]*filterConfigs, 0, 4)
	if c != nil && c.filters != nil {
		out = append(out, c.filters)
	}
	return append(out, r.filters, r.vh.filters, r.vh.table.filters)
}

// Fault returns the most specific fault configuration of the route (c, the picked cluster,
// may be nil), nil when no level has one: the fault filter then does nothing.
func (r *Route) Fault(c *Cluster) *Fault {
	for _, l := range r.levels(c) {
		if l != nil && l.fault != nil {
			return l.fault
		}
	}
	return nil
}

// CORS returns the CORS policies of the route's levels (c may be nil), nil when none has one.
func (r *Route) CORS(c *Cluster) *CORS {
	var ps []*corsPolicy
	for _, l := range r.levels(c) {
		if l != nil && l.cors != nil {
			ps = append(ps, l.cors)
		}
	}
	if len(ps) == 0 {
		return nil
	}
	return &CORS{policies: ps}
}

// ApplyResponseHeaders applies the response header mutations of the route, its virtual host
// and the route configuration to h (for redirects, direct responses and local replies of a
// route); Cluster.ApplyResponseHeaders adds the weighted cluster's.
func (r *Route) ApplyResponseHeaders(h http.Header) {
	applyLevels(h, r.vh.table.mostSpecificWins, true, &r.headers, &r.vh.headers, &r.vh.table.headers)
}

// ApplyResponseHeaders applies the response header mutations in Envoy's order: weighted
// cluster, route, virtual host, route configuration (reversed with
// most_specific_header_mutations_wins).
func (c *Cluster) ApplyResponseHeaders(h http.Header) {
	r := c.route
	applyLevels(h, r.vh.table.mostSpecificWins, true, c.headers, &r.headers, &r.vh.headers, &r.vh.table.headers)
}

// PrepareRequest rewrites req for forwarding to c, as Envoy's router does: the path
// (prefix_rewrite or regex_rewrite, keeping the query), the host (the weighted cluster's or
// the route's host_rewrite_literal, with x-forwarded-host when append_x_forwarded_host), then
// the request header mutations of the weighted cluster, route, virtual host and route
// configuration.
func (c *Cluster) PrepareRequest(req *http.Request) {
	r := c.route
	f := r.Forward
	if f.hasPrefix || f.regexRewrite != nil {
		setPath(req, r.rewritePath(requestPath(req), f.hasPrefix, f.prefixRewrite, f.regexRewrite, f.regexSub))
	}
	if h := cmpOr(c.hostRewrite, f.hostRewrite); h != "" {
		if f.appendForwarded && req.Host != "" {
			req.Header.Add("X-Forwarded-Host", req.Host)
		}
		req.Host = h
	}
	applyLevels(req.Header, r.vh.table.mostSpecificWins, false, c.headers, &r.headers, &r.vh.headers, &r.vh.table.headers)
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// rewritePath rewrites an escaped path: a prefix rewrite swaps the part the route's prefix
// matched (the whole path for path and regex matches); a regex rewrite replaces every match.
func (r *Route) rewritePath(p string, hasPrefix bool, prefix string, re *regexp.Regexp, sub string) string {
	if hasPrefix {
		n := r.match.matchPath(p)
		if n < 0 {
			n = 0
		}
		return prefix + p[n:]
	}
	if re != nil {
		return re.ReplaceAllString(p, sub)
	}
	return p
}

// setPath sets an escaped path on req, keeping its query.
func setPath(req *http.Request, escaped string) {
	u := *req.URL
	p, err := url.PathUnescape(escaped)
	if err != nil {
		p = escaped
	}
	u.Path, u.RawPath = p, escaped // EscapedPath ignores RawPath if it does not encode Path
	req.URL = &u
	req.RequestURI = ""
}

// StreamDuration returns the stream duration limit of req, as Envoy derives it: with
// grpc_timeout_header_max set and a grpc-timeout header, the header's value (capped by a
// non-zero maximum, minus the offset); otherwise max_stream_duration. ok is false for none.
func (f *Forward) StreamDuration(req *http.Request) (d time.Duration, ok bool) {
	if f.grpcHeaderMax != nil {
		if v, ok := parseGRPCTimeout(req.Header.Get("Grpc-Timeout")); ok {
			if *f.grpcHeaderMax > 0 && v > *f.grpcHeaderMax {
				v = *f.grpcHeaderMax
			}
			if f.grpcHeaderOffset > 0 && v > f.grpcHeaderOffset {
				v -= f.grpcHeaderOffset
			}
			return v, true
		}
	}
	return f.MaxStreamDuration, f.HasMaxStreamDuration
}

// parseGRPCTimeout parses a grpc-timeout header value (at most 8 digits and a unit).
func parseGRPCTimeout(v string) (time.Duration, bool) {
	if len(v) < 2 || len(v) > 9 {
		return 0, false
	}
	var n int64
	for _, c := range v[:len(v)-1] {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	unit := map[byte]time.Duration{'H': time.Hour, 'M': time.Minute, 'S': time.Second, 'm': time.Millisecond, 'u': time.Microsecond, 'n': time.Nanosecond}[v[len(v)-1]]
	if unit == 0 {
		return 0, false
	}
	return time.Duration(n) * unit, true
}
