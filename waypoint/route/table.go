package route

import (
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"slices"
	"strings"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"google.golang.org/protobuf/types/known/anypb"
)

// Rand is the source of randomness for runtime fractions, weighted clusters, mirrors, faults
// and retry back-off. It must be safe for concurrent use. *math/rand/v2.Rand satisfies it (but
// is not safe for concurrent use by itself).
type Rand interface {
	Uint64N(n uint64) uint64
}

type globalRand struct{}

func (globalRand) Uint64N(n uint64) uint64 { return rand.Uint64N(n) }

// Option configures Compile.
type Option func(*Table)

// WithRand sets the random source (default: math/rand/v2's top-level functions).
func WithRand(r Rand) Option { return func(t *Table) { t.rand = r } }

// Table is a compiled RouteConfiguration. It is immutable and safe for concurrent use.
type Table struct {
	// Name is the RouteConfiguration's name.
	Name string

	hosts      []*VirtualHost
	exact      map[string]*VirtualHost
	suffix     []wildcard // longest first
	prefix     []wildcard // longest first
	star       *VirtualHost
	ignorePort bool
	vhostHdr   string

	headers          levelHeaders
	filters          *filterConfigs
	mirrors          []*Mirror
	mostSpecificWins bool
	rand             Rand
}

type wildcard struct {
	affix string // the domain without its *
	vh    *VirtualHost
}

// VirtualHost is a compiled virtual host.
type VirtualHost struct {
	Name    string
	Domains []string
	Routes  []*Route

	table   *Table
	headers levelHeaders
	filters *filterConfigs
	retry   *RetryPolicy
	mirrors []*Mirror
}

// Rand returns the table's random source, for the proxy's own draws (fault, CORS, back-off).
func (t *Table) Rand() Rand { return t.rand }

// VirtualHosts returns the virtual hosts in configuration order.
func (t *Table) VirtualHosts() []*VirtualHost { return t.hosts }

// defaultMaxDirectBody is Envoy's default max_direct_response_body_size_bytes.
const defaultMaxDirectBody = 4096

// Compile compiles rc. Every field that would change routing but is not implemented is an
// error naming its path (virtual_hosts[1].routes[0].match.dynamic_metadata: ...), so that the
// waypoint refuses (NACKs) the configuration instead of serving it differently.
func Compile(rc *routev3.RouteConfiguration, opts ...Option) (*Table, error) {
	if rc == nil {
		return nil, fmt.Errorf("route configuration: nil")
	}
	t := &Table{Name: rc.GetName(), exact: map[string]*VirtualHost{}, rand: globalRand{}}
	for _, o := range opts {
		o(t)
	}
	if err := onlyFields("", rc, "name", "virtual_hosts", "response_headers_to_add", "response_headers_to_remove", "request_headers_to_add", "request_headers_to_remove", "most_specific_header_mutations_wins", "validate_clusters", "max_direct_response_body_size_bytes", "request_mirror_policies", "ignore_port_in_host_matching", "vhost_header", "ignore_path_parameters_in_path_matching", "typed_per_filter_config", "metadata"); err != nil {
		return nil, err
	}
	if rc.GetIgnorePathParametersInPathMatching() {
		return nil, fieldError("ignore_path_parameters_in_path_matching", "not supported by the waypoint; remove it")
	}
	t.ignorePort, t.mostSpecificWins = rc.GetIgnorePortInHostMatching(), rc.GetMostSpecificHeaderMutationsWins()
	t.vhostHdr = strings.ToLower(rc.GetVhostHeader())
	maxBody := uint32(defaultMaxDirectBody)
	if v := rc.GetMaxDirectResponseBodySizeBytes(); v != nil {
		maxBody = v.GetValue()
	}
	var err error
	if t.headers, err = compileLevelHeaders("", rc); err != nil {
		return nil, err
	}
	if t.filters, err = compileFilterConfigs("", rc.GetTypedPerFilterConfig()); err != nil {
		return nil, err
	}
	if t.mirrors, err = compileMirrors("", rc.GetRequestMirrorPolicies()); err != nil {
		return nil, err
	}
	seen := map[string]string{}
	for i, v := range rc.GetVirtualHosts() {
		p := idx("", "virtual_hosts", i)
		vh, err := compileVirtualHost(p, v, t, maxBody)
		if err != nil {
			return nil, err
		}
		t.hosts = append(t.hosts, vh)
		if len(vh.Domains) == 0 {
			return nil, fieldError(join(p, "domains"), "at least one domain is required")
		}
		for j, d := range vh.Domains {
			d = strings.ToLower(d)
			dp := idx(p, "domains", j)
			if prev, dup := seen[d]; dup {
				return nil, fieldError(dp, "domain %q is also a domain of %s; domains must be unique across virtual hosts", d, prev)
			}
			seen[d] = p
			switch {
			case d == "*":
				t.star = vh
			case strings.HasPrefix(d, "*"):
				t.suffix = append(t.suffix, wildcard{d[1:], vh})
			case strings.HasSuffix(d, "*"):
				t.prefix = append(t.prefix, wildcard{d[:len(d)-1], vh})
			case strings.Contains(d, "*"):
				return nil, fieldError(dp, "%q: a wildcard must start or end the domain", d)
			default:
				t.exact[d] = vh
			}
		}
	}
	longestFirst := func(a, b wildcard) int { return len(b.affix) - len(a.affix) }
	slices.SortStableFunc(t.suffix, longestFirst)
	slices.SortStableFunc(t.prefix, longestFirst)
	return t, nil
}

func compileVirtualHost(path string, v *routev3.VirtualHost, t *Table, maxBody uint32) (*VirtualHost, error) {
	// virtual_clusters only name statistics; buffer limits only bound buffering.
	if err := onlyFields(path, v, "name", "domains", "routes", "require_tls", "virtual_clusters", "request_headers_to_add", "request_headers_to_remove", "response_headers_to_add", "response_headers_to_remove", "typed_per_filter_config", "retry_policy", "per_request_buffer_limit_bytes", "request_body_buffer_limit", "request_mirror_policies", "metadata", "include_request_attempt_count", "include_attempt_count_in_response", "include_is_timeout_retry_header"); err != nil {
		return nil, err
	}
	switch {
	case v.GetRequireTls() != routev3.VirtualHost_NONE:
		return nil, fieldError(join(path, "require_tls"), "only NONE is supported (the mesh tunnel is already mTLS)")
	case v.GetIncludeRequestAttemptCount(), v.GetIncludeAttemptCountInResponse(), v.GetIncludeIsTimeoutRetryHeader():
		return nil, fieldError(path, "include_request_attempt_count, include_attempt_count_in_response and include_is_timeout_retry_header are not supported by the waypoint; remove them")
	}
	vh := &VirtualHost{Name: v.GetName(), Domains: v.GetDomains(), table: t}
	var err error
	if vh.headers, err = compileLevelHeaders(path, v); err != nil {
		return nil, err
	}
	if vh.filters, err = compileFilterConfigs(path, v.GetTypedPerFilterConfig()); err != nil {
		return nil, err
	}
	if v.GetRetryPolicy() != nil {
		if vh.retry, err = compileRetry(join(path, "retry_policy"), v.GetRetryPolicy()); err != nil {
			return nil, err
		}
	}
	if vh.mirrors, err = compileMirrors(path, v.GetRequestMirrorPolicies()); err != nil {
		return nil, err
	}
	for i, r := range v.GetRoutes() {
		rt, err := compileRoute(idx(path, "routes", i), r, vh, maxBody)
		if err != nil {
			return nil, err
		}
		vh.Routes = append(vh.Routes, rt)
	}
	return vh, nil
}

// host returns the authority used to select the virtual host, lower case.
func (t *Table) host(r *http.Request) string {
	h := r.Host
	if t.vhostHdr != "" {
		h, _ = requestHeader(r, t.vhostHdr)
	}
	h = strings.ToLower(h)
	if t.ignorePort {
		if host, _, err := net.SplitHostPort(h); err == nil {
			h = host
			if strings.Contains(h, ":") {
				h = "[" + h + "]"
			}
		}
	}
	return h
}

// VirtualHostFor selects the virtual host of a host name with Envoy's domain rules: an
// exact domain, else the longest suffix wildcard (*.example.com, *-bar.example.com), else the
// longest prefix wildcard (example.*), else *. Wildcards never match an empty string. Host is
// compared case-insensitively, with its port unless ignore_port_in_host_matching is set.
func (t *Table) VirtualHostFor(host string) *VirtualHost {
	if vh := t.exact[host]; vh != nil {
		return vh
	}
	for _, w := range t.suffix {
		if len(host) > len(w.affix) && strings.HasSuffix(host, w.affix) {
			return w.vh
		}
	}
	for _, w := range t.prefix {
		if len(host) > len(w.affix) && strings.HasPrefix(host, w.affix) {
			return w.vh
		}
	}
	return t.star
}

// Match selects the virtual host of r by its :authority (or vhost_header), then the first
// route of that host whose match accepts r. ok is false when no route matches (Envoy answers
// 404); the virtual host is then returned when one matched the authority, nil otherwise.
func (t *Table) Match(r *http.Request) (*Route, *VirtualHost, bool) {
	if t == nil {
		return nil, nil, false
	}
	lower := r.Host
	if t.vhostHdr != "" || t.ignorePort || hasUpper(lower) {
		lower = t.host(r)
	}
	vh := t.VirtualHostFor(lower)
	if vh == nil {
		return nil, nil, false
	}
	rt, ok := t.MatchIn(vh, r)
	return rt, vh, ok
}

// MatchIn returns the first route of vh whose match accepts r. A waypoint uses it when it
// selects the virtual host by the tunnel's destination (the service VIP:port) rather than by
// the request's :authority.
func (t *Table) MatchIn(vh *VirtualHost, r *http.Request) (*Route, bool) {
	for _, rt := range vh.Routes {
		if rt.match.match(r, t.rand) {
			return rt, true
		}
	}
	return nil, false
}

func hasUpper(s string) bool {
	for i := 0; i < len(s); i++ {
		if 'A' <= s[i] && s[i] <= 'Z' {
			return true
		}
	}
	return false
}

// FilterConfig returns the virtual host's or else the route configuration's per-filter
// configuration of the filter name, nil when neither has one.
func (vh *VirtualHost) FilterConfig(name string) *anypb.Any {
	if a := vh.filters.get(name); a != nil {
		return a
	}
	return vh.table.filters.get(name)
}

func (f *filterConfigs) get(name string) *anypb.Any {
	if f == nil {
		return nil
	}
	return f.raw[name]
}
