package route

import (
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"

	"github.com/weftmesh/weft/waypoint/match"
)

// StringMatcher is a compiled envoy.type.matcher.v3.StringMatcher (shared with RBAC).
type StringMatcher = match.String

// compileRegex compiles an Envoy RE2 regex for a full match, as Envoy's safe_regex matchers do.
func compileRegex(path string, r *matcherv3.RegexMatcher) (*regexp.Regexp, error) {
	if err := onlyFields(path, r, "regex", "google_re2"); err != nil {
		return nil, err
	}
	return match.CompileRegex(path, r)
}

// CompileStringMatcher compiles a StringMatcher; path names it in errors.
func CompileStringMatcher(path string, sm *matcherv3.StringMatcher) (*StringMatcher, error) {
	if sm == nil {
		return nil, fieldError(path, "a string matcher is required")
	}
	if err := onlyFields(path, sm, "exact", "prefix", "suffix", "contains", "safe_regex", "ignore_case"); err != nil {
		return nil, err
	}
	m, err := match.CompileString(path, sm)
	if err != nil {
		return nil, err
	}
	return &m, nil
}

// headerMatcher is a compiled HeaderMatcher.
type headerMatcher struct {
	name            string // lower case; pseudo-headers keep their colon
	str             *StringMatcher
	present         *bool
	rangeStart, end int64
	isRange         bool
	invert          bool
	missingAsEmpty  bool
}

func compileHeaderMatcher(path string, h *routev3.HeaderMatcher) (*headerMatcher, error) {
	if err := onlyFields(path, h, "name", "exact_match", "safe_regex_match", "range_match", "present_match", "prefix_match", "suffix_match", "contains_match", "string_match", "invert_match", "treat_missing_header_as_empty"); err != nil {
		return nil, err
	}
	if h.GetName() == "" {
		return nil, fieldError(join(path, "name"), "a header name is required")
	}
	m := &headerMatcher{name: strings.ToLower(h.GetName()), invert: h.GetInvertMatch(), missingAsEmpty: h.GetTreatMissingHeaderAsEmpty()}
	var err error
	switch s := h.GetHeaderMatchSpecifier().(type) {
	case nil:
		// Envoy: no specifier matches any request that has the header.
		t := true
		m.present = &t
	case *routev3.HeaderMatcher_ExactMatch, *routev3.HeaderMatcher_PrefixMatch, *routev3.HeaderMatcher_SuffixMatch, *routev3.HeaderMatcher_ContainsMatch, *routev3.HeaderMatcher_SafeRegexMatch:
		m.str, err = legacyHeaderMatch(path, h)
	case *routev3.HeaderMatcher_StringMatch:
		m.str, err = CompileStringMatcher(join(path, "string_match"), s.StringMatch)
	case *routev3.HeaderMatcher_PresentMatch:
		p := s.PresentMatch
		m.present = &p
	case *routev3.HeaderMatcher_RangeMatch:
		if s.RangeMatch == nil || s.RangeMatch.GetStart() >= s.RangeMatch.GetEnd() {
			return nil, fieldError(join(path, "range_match"), "start must be below end")
		}
		m.isRange, m.rangeStart, m.end = true, s.RangeMatch.GetStart(), s.RangeMatch.GetEnd()
	}
	if err != nil {
		return nil, err
	}
	return m, nil
}

// requestHeader returns the value of a header as Envoy sees it: pseudo-headers from the
// request line, several values joined with ",".
func requestHeader(r *http.Request, name string) (string, bool) {
	switch name {
	case ":authority", "host":
		return r.Host, r.Host != ""
	case ":method":
		return r.Method, true
	case ":path":
		if r.RequestURI != "" {
			return r.RequestURI, true
		}
		return r.URL.RequestURI(), true
	case ":scheme":
		return scheme(r), true
	}
	vs := r.Header.Values(name)
	switch len(vs) {
	case 0:
		return "", false
	case 1:
		return vs[0], true
	}
	return strings.Join(vs, ","), true
}

func scheme(r *http.Request) string {
	if r.URL != nil && r.URL.Scheme != "" {
		return r.URL.Scheme
	}
	if r.TLS != nil {
		return "https"
	}
	return "http"
}

// match follows Envoy's HeaderUtility: a present_match compares presence (inverted by
// invert_match); other matchers fail on a missing header unless treat_missing_header_as_empty.
func (m *headerMatcher) match(r *http.Request) bool {
	v, ok := requestHeader(r, m.name)
	if m.present != nil {
		return (ok == *m.present) != m.invert
	}
	if !ok && !m.missingAsEmpty {
		return false
	}
	var res bool
	if m.isRange {
		n, err := strconv.ParseInt(v, 10, 64)
		res = err == nil && n >= m.rangeStart && n < m.end
	} else {
		res = m.str.Match(v)
	}
	return res != m.invert
}

type queryMatcher struct {
	name    string
	str     *StringMatcher // nil: present_match
	present bool
}

func compileQueryMatcher(path string, q *routev3.QueryParameterMatcher) (*queryMatcher, error) {
	if err := onlyFields(path, q, "name", "string_match", "present_match"); err != nil {
		return nil, err
	}
	if q.GetName() == "" {
		return nil, fieldError(join(path, "name"), "a query parameter name is required")
	}
	m := &queryMatcher{name: q.GetName()}
	switch s := q.GetQueryParameterMatchSpecifier().(type) {
	case *routev3.QueryParameterMatcher_StringMatch:
		sm, err := CompileStringMatcher(join(path, "string_match"), s.StringMatch)
		if err != nil {
			return nil, err
		}
		m.str = sm
	case *routev3.QueryParameterMatcher_PresentMatch:
		m.present = s.PresentMatch
	default:
		return nil, fieldError(path, "string_match or present_match is required")
	}
	return m, nil
}

// queryParam returns the first value of a query parameter, percent-decoded as Envoy decodes
// query strings for matching ('+' stays a plus).
func queryParam(raw, name string) (string, bool) {
	for raw != "" {
		var kv string
		kv, raw, _ = strings.Cut(raw, "&")
		k, v, _ := strings.Cut(kv, "=")
		if dk, err := url.PathUnescape(k); err == nil {
			k = dk
		}
		if k != name {
			continue
		}
		if dv, err := url.PathUnescape(v); err == nil {
			v = dv
		}
		return v, true
	}
	return "", false
}

func (m *queryMatcher) match(rawQuery string) bool {
	v, ok := queryParam(rawQuery, m.name)
	if m.str == nil {
		return ok == m.present
	}
	return ok && m.str.Match(v)
}

// routeMatch is a compiled RouteMatch.
type routeMatch struct {
	kind          int // pmPrefix...
	value         string
	re            *regexp.Regexp
	caseSensitive bool
	headers       []*headerMatcher
	query         []*queryMatcher
	grpc          bool
	fraction      *Fraction
}

const (
	pmPrefix = iota
	pmPath
	pmRegex
	pmSeparated
)

func compileRouteMatch(path string, m *routev3.RouteMatch) (*routeMatch, error) {
	if m == nil {
		return nil, fieldError(path, "a match is required")
	}
	if err := onlyFields(path, m, "prefix", "path", "safe_regex", "path_separated_prefix", "case_sensitive", "runtime_fraction", "headers", "query_parameters", "grpc"); err != nil {
		return nil, err
	}
	out := &routeMatch{caseSensitive: m.GetCaseSensitive() == nil || m.GetCaseSensitive().GetValue()}
	switch p := m.GetPathSpecifier().(type) {
	case *routev3.RouteMatch_Prefix:
		out.kind, out.value = pmPrefix, p.Prefix
	case *routev3.RouteMatch_Path:
		out.kind, out.value = pmPath, p.Path
	case *routev3.RouteMatch_SafeRegex:
		re, err := compileRegex(join(path, "safe_regex"), p.SafeRegex)
		if err != nil {
			return nil, err
		}
		out.kind, out.re = pmRegex, re
	case *routev3.RouteMatch_PathSeparatedPrefix:
		v := p.PathSeparatedPrefix
		if strings.ContainsAny(v, "?#") || strings.HasSuffix(v, "/") && v != "/" {
			return nil, fieldError(join(path, "path_separated_prefix"), "%q must not contain ? or # nor end with /", v)
		}
		out.kind, out.value = pmSeparated, v
	default:
		return nil, fieldError(path, "a path specifier (prefix, path, safe_regex or path_separated_prefix) is required")
	}
	if !out.caseSensitive {
		out.value = strings.ToLower(out.value)
	}
	if rf := m.GetRuntimeFraction(); rf != nil {
		f, err := runtimeFraction(join(path, "runtime_fraction"), rf, Fraction{})
		if err != nil {
			return nil, err
		}
		out.fraction = &f
	}
	for i, h := range m.GetHeaders() {
		hm, err := compileHeaderMatcher(idx(path, "headers", i), h)
		if err != nil {
			return nil, err
		}
		out.headers = append(out.headers, hm)
	}
	for i, q := range m.GetQueryParameters() {
		qm, err := compileQueryMatcher(idx(path, "query_parameters", i), q)
		if err != nil {
			return nil, err
		}
		out.query = append(out.query, qm)
	}
	if g := m.GetGrpc(); g != nil {
		if err := onlyFields(join(path, "grpc"), g); err != nil {
			return nil, err
		}
		out.grpc = true
	}
	return out, nil
}

// requestPath is the :path without query string and fragment, as Envoy matches it.
func requestPath(r *http.Request) string {
	p := r.URL.EscapedPath()
	if p == "" && r.URL.Opaque != "" {
		p = r.URL.Opaque
	}
	return p
}

// matchedPrefixLen matches the path specifier against p and returns how much of p the
// prefix (or the whole path) covered, -1 when it does not match.
func (m *routeMatch) matchPath(p string) int {
	switch m.kind {
	case pmRegex:
		if m.re.MatchString(p) {
			return len(p)
		}
		return -1
	case pmPath:
		if m.eq(p, m.value) {
			return len(p)
		}
		return -1
	}
	if len(p) < len(m.value) || !m.eq(p[:len(m.value)], m.value) {
		return -1
	}
	if m.kind == pmSeparated && len(p) > len(m.value) && p[len(m.value)] != '/' {
		return -1
	}
	return len(m.value)
}

func (m *routeMatch) eq(a, b string) bool {
	if m.caseSensitive {
		return a == b
	}
	return strings.EqualFold(a, b)
}

// IsGRPC reports whether r is a gRPC request by its content-type, as Envoy decides.
func IsGRPC(r *http.Request) bool {
	ct := r.Header.Get("Content-Type")
	return ct == "application/grpc" || strings.HasPrefix(ct, "application/grpc+") || strings.HasPrefix(ct, "application/grpc;")
}

func (m *routeMatch) match(r *http.Request, rnd Rand) bool {
	if m.matchPath(requestPath(r)) < 0 {
		return false
	}
	if m.grpc && !IsGRPC(r) {
		return false
	}
	for _, h := range m.headers {
		if !h.match(r) {
			return false
		}
	}
	for _, q := range m.query {
		if !q.match(r.URL.RawQuery) {
			return false
		}
	}
	if m.fraction != nil && !m.fraction.Hit(rnd) {
		return false
	}
	return true
}
