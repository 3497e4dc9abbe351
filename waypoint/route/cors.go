package route

import (
	"net/http"

	corsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/cors/v3"
	"google.golang.org/protobuf/types/known/anypb"
)

// corsPolicy is one level's compiled corsv3.CorsPolicy; optional booleans are nil when unset.
type corsPolicy struct {
	origins                          []*StringMatcher
	methods, headers, expose, maxAge string
	credentials, privateNetwork      *bool
	forwardNotMatching               *bool
	enabled                          Fraction
	shadow                           *Fraction
}

func compileCORSPolicy(path string, a *anypb.Any) (*corsPolicy, error) {
	cp := &corsv3.CorsPolicy{}
	if err := a.UnmarshalTo(cp); err != nil {
		return nil, fieldError(path, "expected a %s: %v", "envoy.extensions.filters.http.cors.v3.CorsPolicy", err)
	}
	if err := onlyFields(path, cp, "allow_origin_string_match", "allow_methods", "allow_headers", "expose_headers", "max_age", "allow_credentials", "filter_enabled", "shadow_enabled", "allow_private_network_access", "forward_not_matching_preflights"); err != nil {
		return nil, err
	}
	out := &corsPolicy{methods: cp.GetAllowMethods(), headers: cp.GetAllowHeaders(), expose: cp.GetExposeHeaders(), maxAge: cp.GetMaxAge()}
	for i, o := range cp.GetAllowOriginStringMatch() {
		m, err := CompileStringMatcher(idx(path, "allow_origin_string_match", i), o)
		if err != nil {
			return nil, err
		}
		out.origins = append(out.origins, m)
	}
	if v := cp.GetAllowCredentials(); v != nil {
		b := v.GetValue()
		out.credentials = &b
	}
	if v := cp.GetAllowPrivateNetworkAccess(); v != nil {
		b := v.GetValue()
		out.privateNetwork = &b
	}
	if v := cp.GetForwardNotMatchingPreflights(); v != nil {
		b := v.GetValue()
		out.forwardNotMatching = &b
	}
	var err error
	if out.enabled, err = runtimeFraction(join(path, "filter_enabled"), cp.GetFilterEnabled(), Fraction{Num: 1, Den: 1}); err != nil {
		return nil, err
	}
	if cp.GetShadowEnabled() != nil {
		f, err := runtimeFraction(join(path, "shadow_enabled"), cp.GetShadowEnabled(), Fraction{})
		if err != nil {
			return nil, err
		}
		out.shadow = &f
	}
	return out, nil
}

// CORS is the CORS policy of a request: the policies of the route's levels, most specific
// first, each field taken from the first level that sets it, as Envoy's cors filter merges
// them.
type CORS struct {
	policies []*corsPolicy
}

// CORSResult is what the cors filter does with one request.
type CORSResult struct {
	// Preflight: answer the request directly with status 200 and Header, without forwarding.
	Preflight bool
	// Header: for a preflight the response headers; otherwise the headers to set on the
	// upstream's response (empty when the origin is not allowed or the request is not CORS).
	Header http.Header
}

func (c *CORS) first(get func(*corsPolicy) string) string {
	for _, p := range c.policies {
		if v := get(p); v != "" {
			return v
		}
	}
	return ""
}

func (c *CORS) firstBool(get func(*corsPolicy) *bool, def bool) bool {
	for _, p := range c.policies {
		if v := get(p); v != nil {
			return *v
		}
	}
	return def
}

func (c *CORS) originAllowed(origin string) bool {
	for _, p := range c.policies {
		if len(p.origins) == 0 {
			continue
		}
		for _, m := range p.origins {
			if m.Match("*") || m.Match(origin) {
				return true
			}
		}
		return false
	}
	return false
}

// Evaluate applies the policy to r as Envoy's cors filter does: requests without Origin are
// not CORS; a preflight (OPTIONS with Origin and Access-Control-Request-Method) is answered
// directly unless its origin is not allowed and forward_not_matching_preflights (default
// true) forwards it; other requests from an allowed origin get Access-Control-Allow-Origin,
// -Allow-Credentials and -Expose-Headers on their response. A nil CORS does nothing.
func (c *CORS) Evaluate(r *http.Request, rnd Rand) CORSResult {
	if c == nil || len(c.policies) == 0 {
		return CORSResult{}
	}
	enabled := c.policies[0].enabled.Hit(rnd)
	if !enabled {
		return CORSResult{} // shadow mode only counts, which the waypoint does not
	}
	origin := r.Header.Get("Origin")
	if origin == "" {
		return CORSResult{}
	}
	allowed := c.originAllowed(origin)
	credentials := c.firstBool(func(p *corsPolicy) *bool { return p.credentials }, false)
	reqMethod := r.Header.Get("Access-Control-Request-Method")
	if r.Method != http.MethodOptions || reqMethod == "" {
		if !allowed {
			return CORSResult{}
		}
		h := http.Header{"Access-Control-Allow-Origin": {origin}}
		if credentials {
			h.Set("Access-Control-Allow-Credentials", "true")
		}
		if v := c.first(func(p *corsPolicy) string { return p.expose }); v != "" {
			h.Set("Access-Control-Expose-Headers", v)
		}
		return CORSResult{Header: h}
	}
	if !allowed && c.firstBool(func(p *corsPolicy) *bool { return p.forwardNotMatching }, true) {
		return CORSResult{}
	}
	h := http.Header{}
	if allowed {
		h.Set("Access-Control-Allow-Origin", origin)
	}
	if credentials {
		h.Set("Access-Control-Allow-Credentials", "true")
	}
	if v := c.first(func(p *corsPolicy) string { return p.methods }); v == "*" {
		h.Set("Access-Control-Allow-Methods", reqMethod)
	} else if v != "" {
		h.Set("Access-Control-Allow-Methods", v)
	}
	if v := c.first(func(p *corsPolicy) string { return p.headers }); v == "*" {
		if rh := r.Header.Get("Access-Control-Request-Headers"); rh != "" {
			h.Set("Access-Control-Allow-Headers", rh)
		}
	} else if v != "" {
		h.Set("Access-Control-Allow-Headers", v)
	}
	if v := c.first(func(p *corsPolicy) string { return p.maxAge }); v != "" {
		h.Set("Access-Control-Max-Age", v)
	}
	if c.firstBool(func(p *corsPolicy) *bool { return p.privateNetwork }, false) && r.Header.Get("Access-Control-Request-Private-Network") == "true" {
		h.Set("Access-Control-Allow-Private-Network", "true")
	}
	return CORSResult{Preflight: true, Header: h}
}
