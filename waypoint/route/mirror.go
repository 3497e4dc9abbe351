package route

import (
	"hash/fnv"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"time"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
)

// Mirror is a compiled RequestMirrorPolicy: a share of the requests is copied to Cluster,
// fire and forget.
type Mirror struct {
	Cluster string
	Share   Fraction
	// HostRewrite replaces the mirrored request's host when set.
	HostRewrite string
	// NoShadowSuffix: disable_shadow_host_suffix_append; otherwise the host gets "-shadow".
	NoShadowSuffix bool
}

func compileMirrors(path string, ms []*routev3.RouteAction_RequestMirrorPolicy) ([]*Mirror, error) {
	var out []*Mirror
	for i, m := range ms {
		p := idx(path, "request_mirror_policies", i)
		// trace_sampled only concerns tracing.
		if err := onlyFields(p, m, "cluster", "runtime_fraction", "trace_sampled", "disable_shadow_host_suffix_append", "host_rewrite_literal"); err != nil {
			return nil, err
		}
		if m.GetCluster() == "" {
			return nil, fieldError(join(p, "cluster"), "a cluster name is required (cluster_header is not supported)")
		}
		share, err := runtimeFraction(join(p, "runtime_fraction"), m.GetRuntimeFraction(), Fraction{Num: 1, Den: 1})
		if err != nil {
			return nil, err
		}
		out = append(out, &Mirror{Cluster: m.GetCluster(), Share: share, HostRewrite: m.GetHostRewriteLiteral(), NoShadowSuffix: m.GetDisableShadowHostSuffixAppend()})
	}
	return out, nil
}

// Host returns the authority of a mirrored request whose original authority is host: the
// rewrite if set, else host with "-shadow" appended to its name (before the port), as Envoy
// does unless disable_shadow_host_suffix_append.
func (m *Mirror) Host(host string) string {
	if m.HostRewrite != "" {
		return m.HostRewrite
	}
	if m.NoShadowSuffix {
		return host
	}
	if h, port, err := net.SplitHostPort(host); err == nil && !strings.Contains(h, ":") {
		return net.JoinHostPort(h+"-shadow", port)
	}
	return host + "-shadow"
}

// HashPolicy is a compiled RouteAction.HashPolicy.
type HashPolicy struct {
	// Exactly one of these is set.
	Header     string // header name
	Cookie     string // cookie name
	CookieTTL  time.Duration
	CookiePath string
	hasTTL     bool
	SourceIP   bool
	QueryParam string
	Terminal   bool
}

func compileHashPolicy(path string, h *routev3.RouteAction_HashPolicy) (*HashPolicy, error) {
	if err := onlyFields(path, h, "header", "cookie", "connection_properties", "query_parameter", "terminal"); err != nil {
		return nil, err
	}
	hp := &HashPolicy{Terminal: h.GetTerminal()}
	switch s := h.GetPolicySpecifier().(type) {
	case *routev3.RouteAction_HashPolicy_Header_:
		if err := onlyFields(join(path, "header"), s.Header, "header_name"); err != nil {
			return nil, err
		}
		hp.Header = s.Header.GetHeaderName()
		if hp.Header == "" {
			return nil, fieldError(join(path, "header.header_name"), "required")
		}
	case *routev3.RouteAction_HashPolicy_Cookie_:
		if err := onlyFields(join(path, "cookie"), s.Cookie, "name", "ttl", "path"); err != nil {
			return nil, err
		}
		hp.Cookie, hp.CookiePath = s.Cookie.GetName(), s.Cookie.GetPath()
		if hp.Cookie == "" {
			return nil, fieldError(join(path, "cookie.name"), "required")
		}
		if t := s.Cookie.GetTtl(); t != nil {
			d, err := duration(join(path, "cookie.ttl"), t)
			if err != nil {
				return nil, err
			}
			hp.CookieTTL, hp.hasTTL = d, true
		}
	case *routev3.RouteAction_HashPolicy_ConnectionProperties_:
		if !s.ConnectionProperties.GetSourceIp() {
			return nil, fieldError(join(path, "connection_properties.source_ip"), "must be true")
		}
		hp.SourceIP = true
	case *routev3.RouteAction_HashPolicy_QueryParameter_:
		hp.QueryParam = s.QueryParameter.GetName()
		if hp.QueryParam == "" {
			return nil, fieldError(join(path, "query_parameter.name"), "required")
		}
	default:
		return nil, fieldError(path, "header, cookie, connection_properties or query_parameter is required (filter_state is not supported)")
	}
	return hp, nil
}

func fnv64(parts ...string) uint64 {
	h := fnv.New64a()
	for _, p := range parts {
		h.Write([]byte(p))
		h.Write([]byte{0})
	}
	return h.Sum64()
}

// key computes one policy's hash; setCookie is the cookie to add to the response when a
// cookie policy with a TTL found no cookie (Envoy then generates one).
func (hp *HashPolicy) key(req *http.Request, client netip.AddrPort) (uint64, bool, *http.Cookie) {
	switch {
	case hp.Header != "":
		name := strings.ToLower(hp.Header)
		if strings.HasPrefix(name, ":") || name == "host" {
			v, ok := requestHeader(req, name)
			if !ok {
				return 0, false, nil
			}
			return fnv64(v), true, nil
		}
		vs := slices.Clone(req.Header.Values(name))
		if len(vs) == 0 {
			return 0, false, nil
		}
		slices.Sort(vs)
		return fnv64(vs...), true, nil
	case hp.Cookie != "":
		if c, err := req.Cookie(hp.Cookie); err == nil {
			return fnv64(c.Value), true, nil
		}
		if !hp.hasTTL {
			return 0, false, nil
		}
		// As Envoy, derive a cookie from the client address and set it on the response.
		value := hex16(fnv64(client.Addr().String()))
		c := &http.Cookie{Name: hp.Cookie, Value: value, Path: hp.CookiePath, HttpOnly: true}
		if hp.CookieTTL > 0 {
			c.MaxAge = int(hp.CookieTTL / time.Second)
		}
		return fnv64(value), true, c
	case hp.SourceIP:
		if !client.IsValid() {
			return 0, false, nil
		}
		return fnv64(client.Addr().String()), true, nil
	default:
		v, ok := queryParam(req.URL.RawQuery, hp.QueryParam)
		if !ok {
			return 0, false, nil
		}
		return fnv64(v), true, nil
	}
}

func hex16(v uint64) string {
	const digits = "0123456789abcdef"
	var b [16]byte
	for i := 15; i >= 0; i-- {
		b[i] = digits[v&0xf]
		v >>= 4
	}
	return string(b[:])
}

// HashKey computes the consistent-hash key of req from the route's hash policies, as Envoy
// combines them: each policy that yields a value is mixed in (rotate left by one, xor), and a
// terminal policy that yields a value ends the computation. ok is false when no policy
// yielded a value (the load balancer then picks as if there were no hash). setCookie, when
// not nil, must be added to the response (a cookie policy with a TTL generated it).
func (r *Route) HashKey(req *http.Request, client netip.AddrPort) (key uint64, ok bool, setCookie *http.Cookie) {
	if r.Forward == nil {
		return 0, false, nil
	}
	for _, hp := range r.Forward.HashPolicies {
		v, got, c := hp.key(req, client)
		if !got {
			continue
		}
		if c != nil {
			setCookie = c
		}
		if ok {
			key = (key<<1 | key>>63) ^ v
		} else {
			key, ok = v, true
		}
		if hp.Terminal {
			break
		}
	}
	return key, ok, setCookie
}
