//lint:file-ignore SA1019 the deprecated header matchers are still honoured, as Envoy does

package route

import (
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
)

// legacyHeaderMatch compiles the deprecated header matchers, which Envoy still honours.
func legacyHeaderMatch(path string, h *routev3.HeaderMatcher) (*StringMatcher, error) {
	switch s := h.GetHeaderMatchSpecifier().(type) {
	case *routev3.HeaderMatcher_ExactMatch:
		if s.ExactMatch == "" { // Envoy: an empty exact_match matches any value
			return &StringMatcher{kind: smPrefix}, nil
		}
		return &StringMatcher{kind: smExact, value: s.ExactMatch}, nil
	case *routev3.HeaderMatcher_PrefixMatch:
		return &StringMatcher{kind: smPrefix, value: s.PrefixMatch}, nil
	case *routev3.HeaderMatcher_SuffixMatch:
		return &StringMatcher{kind: smSuffix, value: s.SuffixMatch}, nil
	case *routev3.HeaderMatcher_ContainsMatch:
		return &StringMatcher{kind: smContains, value: s.ContainsMatch}, nil
	case *routev3.HeaderMatcher_SafeRegexMatch:
		re, err := compileRegex(join(path, "safe_regex_match"), s.SafeRegexMatch)
		if err != nil {
			return nil, err
		}
		return &StringMatcher{kind: smRegex, re: re}, nil
	}
	return nil, fieldError(path, "unknown header match")
}
