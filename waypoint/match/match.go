// Package match holds Envoy's string matcher (envoy.type.matcher.v3.StringMatcher) as the
// waypoint's routes and RBAC policies both use it: exact, prefix, suffix and contains, with
// ignore_case folding ASCII letters only (as Envoy does), and safe_regex as an RE2 full match
// (ignore_case has no effect on it). Matching does not allocate.
package match

import (
	"fmt"
	"regexp"
	"strings"

	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
)

type kind uint8

const (
	exact kind = iota
	prefix
	suffix
	contains
	regex
)

// String is a compiled StringMatcher. The zero value matches only "".
type String struct {
	kind       kind
	pattern    string
	ignoreCase bool
	re         *regexp.Regexp // anchored: RE2 full match
}

// CompileString compiles m; errors name the field below path and the fix.
func CompileString(path string, m *matcherv3.StringMatcher) (String, error) {
	s := String{ignoreCase: m.GetIgnoreCase()}
	switch x := m.GetMatchPattern().(type) {
	case *matcherv3.StringMatcher_Exact:
		s.kind, s.pattern = exact, x.Exact
	case *matcherv3.StringMatcher_Prefix:
		s.kind, s.pattern = prefix, x.Prefix
	case *matcherv3.StringMatcher_Suffix:
		s.kind, s.pattern = suffix, x.Suffix
	case *matcherv3.StringMatcher_Contains:
		s.kind, s.pattern = contains, x.Contains
	case *matcherv3.StringMatcher_SafeRegex:
		re, err := CompileRegex(path+".safe_regex", x.SafeRegex)
		if err != nil {
			return s, err
		}
		s.kind, s.re, s.ignoreCase = regex, re, false // Envoy: ignore_case has no effect
	case *matcherv3.StringMatcher_Custom:
		return s, fmt.Errorf("%s.custom: custom string matchers are not supported by the waypoint; use exact, prefix, suffix, contains or safe_regex", path)
	case nil:
		return s, fmt.Errorf("%s: no match pattern; set exact, prefix, suffix, contains or safe_regex", path)
	default:
		return s, fmt.Errorf("%s: unsupported string matcher %T", path, x)
	}
	return s, nil
}

// CompileRegex compiles an RE2 expression for a full match, as Envoy's safe_regex.
func CompileRegex(path string, m *matcherv3.RegexMatcher) (*regexp.Regexp, error) {
	if m == nil {
		return nil, fmt.Errorf("%s: must be set, e.g. regex: \"/api/v[0-9]+/.*\"", path)
	}
	// Compile it alone first: wrapping could make a malformed expression such as "a)|(b"
	// valid.
	if _, err := regexp.Compile(m.GetRegex()); err != nil {
		return nil, fmt.Errorf("%s.regex: %q is not a valid RE2 expression: %w", path, m.GetRegex(), err)
	}
	re, err := regexp.Compile(`\A(?:` + m.GetRegex() + `)\z`)
	if err != nil {
		return nil, fmt.Errorf("%s.regex: %q is not a valid RE2 expression: %w", path, m.GetRegex(), err)
	}
	return re, nil
}

// Match reports whether v matches.
func (s *String) Match(v string) bool {
	switch s.kind {
	case exact:
		if s.ignoreCase {
			return equalFoldASCII(v, s.pattern)
		}
		return v == s.pattern
	case prefix:
		if s.ignoreCase {
			return len(v) >= len(s.pattern) && equalFoldASCII(v[:len(s.pattern)], s.pattern)
		}
		return strings.HasPrefix(v, s.pattern)
	case suffix:
		if s.ignoreCase {
			return len(v) >= len(s.pattern) && equalFoldASCII(v[len(v)-len(s.pattern):], s.pattern)
		}
		return strings.HasSuffix(v, s.pattern)
	case contains:
		if s.ignoreCase {
			return containsFoldASCII(v, s.pattern)
		}
		return strings.Contains(v, s.pattern)
	case regex:
		return s.re.MatchString(v)
	}
	return false
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

// Regex is a String matching re (compiled by CompileRegex), for the older matcher fields that
// carry a regex of their own.
func Regex(re *regexp.Regexp) String { return String{kind: regex, re: re} }

// Literal is a String of the older literal matcher fields (exact_match, prefix_match, …):
// f is one of the StringMatcher patterns, e.g. &matcherv3.StringMatcher_Prefix{Prefix: "/a"}.
func Literal(f any) String {
	switch x := f.(type) {
	case *matcherv3.StringMatcher_Exact:
		return String{kind: exact, pattern: x.Exact}
	case *matcherv3.StringMatcher_Prefix:
		return String{kind: prefix, pattern: x.Prefix}
	case *matcherv3.StringMatcher_Suffix:
		return String{kind: suffix, pattern: x.Suffix}
	case *matcherv3.StringMatcher_Contains:
		return String{kind: contains, pattern: x.Contains}
	}
	panic(fmt.Sprintf("match.Literal: %T is not a literal pattern", f))
}
