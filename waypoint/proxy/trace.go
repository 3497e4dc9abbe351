package proxy

import (
	"crypto/rand"
	"encoding/hex"
	"net/http"
	"strings"
)

// traceHeaders gives every request an x-request-id (kept when the client sent one) and makes
// the waypoint a hop of the request's trace, as Envoy does: a W3C traceparent keeps its trace
// ID and flags and gets a new parent (span) ID; a request without one starts a trace, not
// sampled. B3 headers, when present, get a child span the same way (x-b3-parentspanid is the
// client's span). tracestate, baggage and the other B3 headers pass through unchanged. It
// returns the request ID.
func traceHeaders(h http.Header) string {
	id := h.Get("x-request-id")
	if id == "" {
		id = uuid()
		h.Set("x-request-id", id)
	}
	if tp := h.Get("traceparent"); validTraceparent(tp) {
		h.Set("traceparent", tp[:36]+randomHex(8)+tp[52:])
	} else {
		h.Set("traceparent", "00-"+randomHex(16)+"-"+randomHex(8)+"-00")
	}
	if h.Get("x-b3-traceid") != "" {
		if span := h.Get("x-b3-spanid"); span != "" {
			h.Set("x-b3-parentspanid", span)
		}
		h.Set("x-b3-spanid", randomHex(8))
	}
	return id
}

// validTraceparent accepts version 00 traceparents: 00-<32 hex>-<16 hex>-<2 hex>, IDs not all
// zero.
func validTraceparent(tp string) bool {
	if len(tp) != 55 || tp[:3] != "00-" || tp[35] != '-' || tp[52] != '-' {
		return false
	}
	trace, span, flags := tp[3:35], tp[36:52], tp[53:]
	for _, part := range []string{trace, span, flags} {
		if _, err := hex.DecodeString(part); err != nil || strings.ToLower(part) != part {
			return false
		}
	}
	return strings.Trim(trace, "0") != "" && strings.Trim(span, "0") != ""
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// uuid returns a random (version 4) UUID, the form of Envoy's x-request-id.
func uuid() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}
