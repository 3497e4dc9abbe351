package echoserver

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
)

// ParseFailPattern parses a comma-separated list of HTTP status codes such
// as "503,503,200". Requests cycle through the list; 200 means "serve the
// request normally", any other code is returned as an injected fault. An
// empty string yields an empty pattern.
func ParseFailPattern(s string) ([]int, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, nil
	}
	var codes []int
	for f := range strings.SplitSeq(s, ",") {
		code, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil {
			return nil, fmt.Errorf("fail pattern: %w", err)
		}
		if code < 200 || code > 599 {
			return nil, fmt.Errorf("fail pattern: status %d out of range 200-599", code)
		}
		codes = append(codes, code)
	}
	return codes, nil
}

// FailEvery returns the pattern in which every nth request gets 503
// (n-1 successes followed by one failure). n <= 0 yields an empty pattern.
func FailEvery(n int) []int {
	if n <= 0 {
		return nil
	}
	codes := make([]int, n)
	for i := range codes {
		codes[i] = 200
	}
	codes[n-1] = 503
	return codes
}

// FailPattern cycles through a list of status codes, one step per request.
// It is safe for concurrent use.
type FailPattern struct {
	codes []int
	n     atomic.Uint64
}

// NewFailPattern returns a FailPattern cycling through codes.
func NewFailPattern(codes []int) *FailPattern {
	return &FailPattern{codes: codes}
}

// Next advances the pattern and returns the status code to inject, or 0
// when the request should be served normally.
func (p *FailPattern) Next() int {
	if p == nil || len(p.codes) == 0 {
		return 0
	}
	i := (p.n.Add(1) - 1) % uint64(len(p.codes))
	if c := p.codes[i]; c != 200 {
		return c
	}
	return 0
}

// errBadQuery marks query-parameter errors, which are answered with 400.
var errBadQuery = errors.New("bad query")
