package echoserver

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"
)

// ForwardedHeaders are the request headers /chain copies onto upstream
// calls: request id, end user and the W3C and B3 trace context.
func ForwardedHeaders() []string {
	return []string{
		"X-Request-Id", "End-User",
		"Traceparent", "Tracestate",
		"B3", "X-B3-Traceid", "X-B3-Spanid", "X-B3-Parentspanid", "X-B3-Sampled", "X-B3-Flags",
		"X-Ot-Span-Context",
	}
}

// callUpstreams calls every configured upstream concurrently and returns
// the results in configuration order.
func (s *Server) callUpstreams(ctx context.Context, in *http.Request) []Upstream {
	fwd := make(http.Header)
	for _, k := range ForwardedHeaders() {
		if v := in.Header.Values(k); len(v) > 0 {
			fwd[k] = v
		}
	}
	out := make([]Upstream, len(s.cfg.Calls))
	var wg sync.WaitGroup
	for i, u := range s.cfg.Calls {
		wg.Go(func() { out[i] = s.call(ctx, u, fwd) })
	}
	wg.Wait()
	return out
}

func (s *Server) call(ctx context.Context, url string, fwd http.Header) (res Upstream) {
	res.URL = url
	start := time.Now()
	defer func() { res.LatencyMS = float64(time.Since(start).Microseconds()) / 1000 }()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		res.Error = fmt.Sprintf("chain: new request: %v", err)
		return res
	}
	for k, v := range fwd {
		req.Header[k] = v
	}
	resp, err := s.client.Do(req)
	if err != nil {
		res.Error = fmt.Sprintf("chain: %v", err)
		return res
	}
	defer resp.Body.Close()
	res.Status = resp.StatusCode
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxUpstream))
	if err != nil {
		res.Error = fmt.Sprintf("chain: read body: %v", err)
		return res
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	if json.Valid(body) {
		res.Response = json.RawMessage(body)
	} else {
		res.Body = string(body[:min(len(body), maxBodyString)])
	}
	return res
}
