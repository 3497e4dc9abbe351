package proxy

import (
	"net/http"
	"regexp"
	"testing"
)

func TestTraceHeaders(t *testing.T) {
	uuidRE := regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)
	tpRE := regexp.MustCompile(`^00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$`)
	const client = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

	t.Run("new", func(t *testing.T) {
		h := http.Header{}
		id := traceHeaders(h)
		if !uuidRE.MatchString(id) || h.Get("x-request-id") != id {
			t.Errorf("x-request-id = %q (returned %q), want a v4 UUID", h.Get("x-request-id"), id)
		}
		if tp := h.Get("traceparent"); !tpRE.MatchString(tp) || tp[53:] != "00" {
			t.Errorf("traceparent = %q, want a new unsampled one", tp)
		}
	})
	t.Run("propagated", func(t *testing.T) {
		h := http.Header{"X-Request-Id": {"abc"}, "Traceparent": {client}, "Tracestate": {"k=v"},
			"X-B3-Traceid": {"80f198ee56343ba864fe8b2a57d3eff7"}, "X-B3-Spanid": {"e457b5a2e4d86bd1"}, "X-B3-Sampled": {"1"}}
		if id := traceHeaders(h); id != "abc" {
			t.Errorf("request id = %q, want the client's", id)
		}
		tp := h.Get("traceparent")
		if !tpRE.MatchString(tp) || tp[:36] != client[:36] || tp[52:] != client[52:] || tp[36:52] == client[36:52] {
			t.Errorf("traceparent = %q, want the client's trace and flags with a new span", tp)
		}
		if h.Get("tracestate") != "k=v" || h.Get("x-b3-sampled") != "1" || h.Get("x-b3-traceid") != "80f198ee56343ba864fe8b2a57d3eff7" {
			t.Errorf("pass-through headers changed: %v", h)
		}
		if h.Get("x-b3-parentspanid") != "e457b5a2e4d86bd1" || h.Get("x-b3-spanid") == "e457b5a2e4d86bd1" {
			t.Errorf("b3 span = %q parent %q, want a child of the client's span", h.Get("x-b3-spanid"), h.Get("x-b3-parentspanid"))
		}
	})
	t.Run("invalid traceparent replaced", func(t *testing.T) {
		for _, bad := range []string{"garbage", "00-00000000000000000000000000000000-00f067aa0ba902b7-01", "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01"} {
			h := http.Header{"Traceparent": {bad}}
			traceHeaders(h)
			if tp := h.Get("traceparent"); !tpRE.MatchString(tp) || tp[3:35] == bad[3:min(35, len(bad))] {
				t.Errorf("traceparent %q became %q, want a new trace", bad, tp)
			}
		}
	})
}
