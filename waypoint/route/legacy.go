//lint:file-ignore SA1019 the deprecated header matchers are still honoured, as Envoy does

package route

import (
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"

	"github.com/weftmesh/weft/waypoint/match"
)

// legacyHeaderMatch compiles the deprecated header matchers, which Envoy still honours.
func legacyHeaderMatch(path string, h *routev3.HeaderMatcher) (*StringMatcher, error) {
	switch s := h.GetHeaderMatchSpecifier().(type) {
	case *routev3.HeaderMatcher_ExactMatch:
		if s.ExactMatch == "" { // Envoy: an empty exact_match matches any value
			return literal(&matcherv3.StringMatcher_Prefix{}), nil
		}
		return literal(&matcherv3.StringMatcher_Exact{Exact: s.ExactMatch}), nil
	case *routev3.HeaderMatcher_PrefixMatch:
		return literal(&matcherv3.StringMatcher_Prefix{Prefix: s.PrefixMatch}), nil
	case *routev3.HeaderMatcher_SuffixMatch:
		return literal(&matcherv3.StringMatcher_Suffix{Suffix: s.SuffixMatch}), nil
	case *routev3.HeaderMatcher_ContainsMatch:
		return literal(&matcherv3.StringMatcher_Contains{Contains: s.ContainsMatch}), nil
	case *routev3.HeaderMatcher_SafeRegexMatch:
		re, err := compileRegex(join(path, "safe_regex_match"), s.SafeRegexMatch)
		if err != nil {
			return nil, err
		}
		m := match.Regex(re)
		return &m, nil
	}
	return nil, fieldError(path, "unknown header match")
}

func literal(f any) *StringMatcher {
	m := match.Literal(f)
	return &m
}
