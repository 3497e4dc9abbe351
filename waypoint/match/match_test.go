package match

import (
	"strings"
	"testing"

	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
)

func TestString(t *testing.T) {
	for _, tc := range []struct {
		name  string
		m     *matcherv3.StringMatcher
		yes   []string
		no    []string
		error string
	}{
		{name: "exact", m: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: "GET"}}, yes: []string{"GET"}, no: []string{"get", "GETS", ""}},
		{name: "exact ignore_case folds ASCII only", m: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: "Straße"}, IgnoreCase: true},
			yes: []string{"STRAßE", "straße"}, no: []string{"STRASSE"}},
		{name: "prefix", m: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Prefix{Prefix: "/api/"}, IgnoreCase: true}, yes: []string{"/api/x", "/API/"}, no: []string{"/ap", "/v1/api/"}},
		{name: "suffix", m: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Suffix{Suffix: ".svc"}}, yes: []string{"a.svc"}, no: []string{"a.SVC", "svc"}},
		{name: "contains", m: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Contains{Contains: "adm"}, IgnoreCase: true}, yes: []string{"/ADMIN", "xadm"}, no: []string{"ad"}},
		{name: "regex is a full match", m: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: "/v[0-9]+"}}},
			yes: []string{"/v1", "/v42"}, no: []string{"/v1/x", "x/v1"}},
		{name: "regex ignores ignore_case", m: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: "a"}}, IgnoreCase: true},
			yes: []string{"a"}, no: []string{"A"}},
		{name: "malformed regex refused even when wrapping would hide it", m: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: "a)|(b"}}},
			error: "p.safe_regex.regex"},
		{name: "no pattern", m: &matcherv3.StringMatcher{}, error: "p: no match pattern"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := CompileString("p", tc.m)
			if tc.error != "" {
				if err == nil || !strings.Contains(err.Error(), tc.error) {
					t.Fatalf("error %v, want one naming %s", err, tc.error)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			for _, v := range tc.yes {
				if !s.Match(v) {
					t.Errorf("%q does not match", v)
				}
			}
			for _, v := range tc.no {
				if s.Match(v) {
					t.Errorf("%q matches", v)
				}
			}
			if n := testing.AllocsPerRun(10, func() { s.Match("/API/X") }); n != 0 {
				t.Errorf("Match allocates %v times", n)
			}
		})
	}
}
