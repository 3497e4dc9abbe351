//lint:file-ignore SA1019 Envoy still accepts the deprecated matchers, so the waypoint implements them as Envoy does.

package rbac

import (
	"fmt"
	"net/textproto"
	"regexp"
	"strings"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"

	"github.com/weftmesh/weft/waypoint/match"
)

// stringMatcher is a compiled envoy.type.matcher.v3.StringMatcher (shared with the routes).
type stringMatcher = match.String

func compileString(path string, m *matcherv3.StringMatcher) (stringMatcher, error) {
	s, err := match.CompileString(path, m)
	if err != nil {
		return s, fmt.Errorf("rbac: %w", err)
	}
	return s, nil
}

func compileRegex(path string, m *matcherv3.RegexMatcher) (*regexp.Regexp, error) {
	re, err := match.CompileRegex(path, m)
	if err != nil {
		return nil, fmt.Errorf("rbac: %w", err)
	}
	return re, nil
}

// headerSource is where a header's value comes from.
type headerSource uint8

const (
	fromHeader headerSource = iota
	fromMethod
	fromHost
	fromPath
)

type headerKind uint8

const (
	headerString   headerKind = iota // str
	headerAnyValue                   // exact_match "": any value (Envoy's deprecated form)
	headerRange                      // [start, end)
	headerPresent                    // present
)

// headerMatcher is a compiled envoy.config.route.v3.HeaderMatcher.
type headerMatcher struct {
	source       headerSource
	key          string // canonical key in Request.Header
	kind         headerKind
	str          stringMatcher
	start, end   int64
	present      bool
	invert       bool
	treatMissing bool
}

func compileHeader(path string, h *routev3.HeaderMatcher) (matcher, error) {
	m := &headerMatcher{invert: h.GetInvertMatch(), treatMissing: h.GetTreatMissingHeaderAsEmpty()}
	name := strings.ToLower(h.GetName())
	switch name {
	case ":method":
		m.source = fromMethod
	case ":authority", "host":
		m.source = fromHost
	case ":path":
		m.source = fromPath
	case "":
		return nil, fmt.Errorf("rbac: %s.name: must be set, e.g. x-user", path)
	default:
		if strings.HasPrefix(name, ":") {
			return nil, fmt.Errorf("rbac: %s.name: the pseudo-header %s is not available in the waypoint; match :method, :authority or :path", path, name)
		}
		m.key = textproto.CanonicalMIMEHeaderKey(name)
	}
	var err error
	switch x := h.GetHeaderMatchSpecifier().(type) {
	case *routev3.HeaderMatcher_StringMatch:
		m.str, err = compileString(path+".string_match", x.StringMatch)
	case *routev3.HeaderMatcher_ExactMatch:
		if x.ExactMatch == "" {
			m.kind = headerAnyValue
		}
		m.str = match.Literal(&matcherv3.StringMatcher_Exact{Exact: x.ExactMatch})
	case *routev3.HeaderMatcher_PrefixMatch:
		m.str = match.Literal(&matcherv3.StringMatcher_Prefix{Prefix: x.PrefixMatch})
	case *routev3.HeaderMatcher_SuffixMatch:
		m.str = match.Literal(&matcherv3.StringMatcher_Suffix{Suffix: x.SuffixMatch})
	case *routev3.HeaderMatcher_ContainsMatch:
		m.str = match.Literal(&matcherv3.StringMatcher_Contains{Contains: x.ContainsMatch})
	case *routev3.HeaderMatcher_SafeRegexMatch:
		var re *regexp.Regexp
		re, err = compileRegex(path+".safe_regex_match", x.SafeRegexMatch)
		m.str = match.Regex(re)
	case *routev3.HeaderMatcher_RangeMatch:
		m.kind, m.start, m.end = headerRange, x.RangeMatch.GetStart(), x.RangeMatch.GetEnd()
	case *routev3.HeaderMatcher_PresentMatch:
		m.kind, m.present = headerPresent, x.PresentMatch
	case nil:
		// Envoy: no specifier means a presence match.
		m.kind, m.present = headerPresent, true
	default:
		return nil, fmt.Errorf("rbac: %s: unsupported header match %T", path, x)
	}
	if err != nil {
		return nil, err
	}
	return m, nil
}

// value returns the request's value of the header; ok is false when it is missing.
func (h *headerMatcher) value(r *Request) (v string, ok bool) {
	switch h.source {
	case fromMethod:
		return r.Method, r.Method != ""
	case fromHost:
		return r.Host, r.Host != ""
	case fromPath:
		return r.Path, r.Path != ""
	}
	vs := r.Header[h.key]
	switch len(vs) {
	case 0:
		return "", false
	case 1:
		return vs[0], true
	}
	return strings.Join(vs, ","), true
}

// match follows Envoy's HeaderUtility::matchHeaders.
func (h *headerMatcher) match(r *Request) bool {
	v, ok := h.value(r)
	if !ok && !h.treatMissing {
		// A missing header matches only a presence match asking for its absence.
		return h.kind == headerPresent && h.present == h.invert
	}
	var m bool
	switch h.kind {
	case headerString:
		m = h.str.Match(v)
	case headerAnyValue:
		m = true
	case headerRange:
		n, okInt := parseInt64(v)
		m = okInt && h.start <= n && n < h.end
	case headerPresent:
		m = h.present
	}
	return m != h.invert
}

// parseInt64 parses a decimal integer as absl::SimpleAtoi does: surrounding ASCII
// whitespace and one sign allowed. It does not allocate.
func parseInt64(s string) (int64, bool) {
	isSpace := func(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r' }
	for len(s) > 0 && isSpace(s[0]) {
		s = s[1:]
	}
	for len(s) > 0 && isSpace(s[len(s)-1]) {
		s = s[:len(s)-1]
	}
	neg := false
	if len(s) > 0 && (s[0] == '+' || s[0] == '-') {
		neg = s[0] == '-'
		s = s[1:]
	}
	if s == "" {
		return 0, false
	}
	// Accumulate negatively so that the minimum int64 fits.
	const minInt64 = -1 << 63
	var n int64
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		d := int64(c - '0')
		if n < (minInt64+d)/10 {
			return 0, false
		}
		n = n*10 - d
	}
	if !neg {
		if n == minInt64 {
			return 0, false
		}
		n = -n
	}
	return n, true
}
