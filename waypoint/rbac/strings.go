//lint:file-ignore SA1019 Envoy still accepts the deprecated matchers, so the waypoint implements them as Envoy does.

package rbac

import (
	"fmt"
	"net/textproto"
	"regexp"
	"strings"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
)

type stringKind uint8

const (
	strExact stringKind = iota
	strPrefix
	strSuffix
	strContains
	strRegex
)

// stringMatcher is a compiled envoy.type.matcher.v3.StringMatcher.
type stringMatcher struct {
	kind       stringKind
	pattern    string
	ignoreCase bool           // ASCII only, as Envoy; not for regexes
	re         *regexp.Regexp // anchored: RE2 full match
}

func (s *stringMatcher) match(v string) bool {
	switch s.kind {
	case strExact:
		if s.ignoreCase {
			return equalFoldASCII(v, s.pattern)
		}
		return v == s.pattern
	case strPrefix:
		if s.ignoreCase {
			return len(v) >= len(s.pattern) && equalFoldASCII(v[:len(s.pattern)], s.pattern)
		}
		return strings.HasPrefix(v, s.pattern)
	case strSuffix:
		if s.ignoreCase {
			return len(v) >= len(s.pattern) && equalFoldASCII(v[len(v)-len(s.pattern):], s.pattern)
		}
		return strings.HasSuffix(v, s.pattern)
	case strContains:
		if s.ignoreCase {
			return containsFoldASCII(v, s.pattern)
		}
		return strings.Contains(v, s.pattern)
	case strRegex:
		return s.re.MatchString(v)
	}
	return false
}

func compileString(path string, m *matcherv3.StringMatcher) (stringMatcher, error) {
	s := stringMatcher{ignoreCase: m.GetIgnoreCase()}
	switch x := m.GetMatchPattern().(type) {
	case *matcherv3.StringMatcher_Exact:
		s.kind, s.pattern = strExact, x.Exact
	case *matcherv3.StringMatcher_Prefix:
		s.kind, s.pattern = strPrefix, x.Prefix
	case *matcherv3.StringMatcher_Suffix:
		s.kind, s.pattern = strSuffix, x.Suffix
	case *matcherv3.StringMatcher_Contains:
		s.kind, s.pattern = strContains, x.Contains
	case *matcherv3.StringMatcher_SafeRegex:
		re, err := compileRegex(path+".safe_regex", x.SafeRegex)
		if err != nil {
			return s, err
		}
		s.kind, s.re, s.ignoreCase = strRegex, re, false // Envoy: ignore_case has no effect
	case *matcherv3.StringMatcher_Custom:
		return s, fmt.Errorf("rbac: %s.custom: custom string matchers are not supported by the waypoint; use exact, prefix, suffix, contains or safe_regex", path)
	case nil:
		return s, fmt.Errorf("rbac: %s: no match pattern; set exact, prefix, suffix, contains or safe_regex", path)
	default:
		return s, fmt.Errorf("rbac: %s: unsupported string matcher %T", path, x)
	}
	return s, nil
}

// compileRegex compiles an RE2 expression for a full match, as Envoy's safe_regex.
func compileRegex(path string, m *matcherv3.RegexMatcher) (*regexp.Regexp, error) {
	if m == nil {
		return nil, fmt.Errorf("rbac: %s: must be set, e.g. regex: \"/api/v[0-9]+/.*\"", path)
	}
	// Compile it alone first: wrapping could make a malformed expression such as "a)|(b"
	// valid.
	if _, err := regexp.Compile(m.GetRegex()); err != nil {
		return nil, fmt.Errorf("rbac: %s.regex: %q is not a valid RE2 expression: %w", path, m.GetRegex(), err)
	}
	re, err := regexp.Compile(`\A(?:` + m.GetRegex() + `)\z`)
	if err != nil {
		return nil, fmt.Errorf("rbac: %s.regex: %q is not a valid RE2 expression: %w", path, m.GetRegex(), err)
	}
	return re, nil
}

func lowerASCII(b byte) byte {
	if 'A' <= b && b <= 'Z' {
		return b + 'a' - 'A'
	}
	return b
}

func equalFoldASCII(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		if lowerASCII(a[i]) != lowerASCII(b[i]) {
			return false
		}
	}
	return true
}

func containsFoldASCII(s, sub string) bool {
	for i := 0; i+len(sub) <= len(s); i++ {
		if equalFoldASCII(s[i:i+len(sub)], sub) {
			return true
		}
	}
	return false
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
		m.str = stringMatcher{kind: strExact, pattern: x.ExactMatch}
	case *routev3.HeaderMatcher_PrefixMatch:
		m.str = stringMatcher{kind: strPrefix, pattern: x.PrefixMatch}
	case *routev3.HeaderMatcher_SuffixMatch:
		m.str = stringMatcher{kind: strSuffix, pattern: x.SuffixMatch}
	case *routev3.HeaderMatcher_ContainsMatch:
		m.str = stringMatcher{kind: strContains, pattern: x.ContainsMatch}
	case *routev3.HeaderMatcher_SafeRegexMatch:
		var re *regexp.Regexp
		re, err = compileRegex(path+".safe_regex_match", x.SafeRegexMatch)
		m.str = stringMatcher{kind: strRegex, re: re}
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
		m = h.str.match(v)
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
