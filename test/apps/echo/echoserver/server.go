// Package echoserver implements the echo test application: an HTTP handler
// that answers with a JSON description of the request and of the serving
// instance, with probes, fault injection, payload padding and upstream
// chaining, plus an optional gRPC health server and a TCP echo server.
package echoserver

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Paths with special meaning; every other path is echoed.
const (
	PathHealthz = "/healthz"
	PathReadyz  = "/readyz"
	PathChain   = "/chain"
)

// Response headers naming the serving instance, set on every echo response
// so clients can identify it without decoding the body.
const (
	HeaderName    = "X-Echo-Name"
	HeaderVersion = "X-Echo-Version"
)

// Defaults for Config limits.
const (
	DefaultMaxDelay = 30 * time.Second
	DefaultMaxSize  = 64 << 20
)

const (
	padChunk      = 32 << 10
	maxPooledBuf  = 1 << 20
	maxUpstream   = 1 << 20
	maxBodyString = 4 << 10
	padOpen       = `,"padding":"`
	padClose      = "\"}\n"
)

// Config describes an echo instance.
type Config struct {
	Name         string
	Version      string
	PodName      string
	PodNamespace string
	PodIP        string
	Hostname     string
	// FailPattern is the status-code cycle of ParseFailPattern/FailEvery.
	FailPattern []int
	// Calls are the upstream URLs requested for each request to /chain.
	Calls []string
	// MaxDelay bounds ?delay=; zero means DefaultMaxDelay.
	MaxDelay time.Duration
	// MaxSize bounds ?size=; zero means DefaultMaxSize.
	MaxSize int
}

// Server is the echo HTTP handler. Create it with New.
type Server struct {
	cfg      Config
	log      *slog.Logger
	client   *http.Client
	pattern  *FailPattern
	padding  []byte
	bufs     sync.Pool
	draining atomic.Bool
	// Pre-built header values, shared read-only by all responses.
	nameHdr, versionHdr, jsonHdr []string
}

// New returns a Server for cfg. client is used for /chain upstream calls;
// nil means a client with a 10s timeout.
func New(cfg Config, logger *slog.Logger, client *http.Client) *Server {
	if cfg.MaxDelay <= 0 {
		cfg.MaxDelay = DefaultMaxDelay
	}
	if cfg.MaxSize <= 0 {
		cfg.MaxSize = DefaultMaxSize
	}
	if client == nil {
		client = &http.Client{Timeout: 10 * time.Second}
	}
	pad := bytes.Repeat([]byte{'x'}, padChunk)
	return &Server{
		cfg:        cfg,
		log:        logger,
		client:     client,
		pattern:    NewFailPattern(cfg.FailPattern),
		padding:    pad,
		bufs:       sync.Pool{New: func() any { return new(bytes.Buffer) }},
		nameHdr:    []string{cfg.Name},
		versionHdr: []string{cfg.Version},
		jsonHdr:    []string{"application/json"},
	}
}

// SetDraining makes /readyz fail (503) so that probes take the instance out
// of rotation during shutdown.
func (s *Server) SetDraining(v bool) { s.draining.Store(v) }

// options are the per-request knobs taken from the query string.
type options struct {
	status int
	delay  time.Duration
	size   int
}

func (s *Server) parseOptions(r *http.Request) (options, error) {
	var o options
	if r.URL.RawQuery == "" {
		return o, nil
	}
	q := r.URL.Query()
	if v := q.Get("status"); v != "" {
		c, err := strconv.Atoi(v)
		if err != nil || c < 200 || c > 599 {
			return o, fmt.Errorf("%w: status %q: want an HTTP status code from 200 to 599", errBadQuery, v)
		}
		o.status = c
	}
	if v := q.Get("delay"); v != "" {
		d, err := parseDelay(v)
		if err != nil {
			return o, fmt.Errorf("%w: delay %q: %w", errBadQuery, v, err)
		}
		if d < 0 || d > s.cfg.MaxDelay {
			return o, fmt.Errorf("%w: delay %v: want 0 to %v", errBadQuery, d, s.cfg.MaxDelay)
		}
		o.delay = d
	}
	if v := q.Get("size"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 || n > s.cfg.MaxSize {
			return o, fmt.Errorf("%w: size %q: want 0 to %d", errBadQuery, v, s.cfg.MaxSize)
		}
		o.size = n
	}
	return o, nil
}

// parseDelay accepts a Go duration ("250ms") or a bare number of
// milliseconds ("250").
func parseDelay(v string) (time.Duration, error) {
	if ms, err := strconv.Atoi(v); err == nil {
		return time.Duration(ms) * time.Millisecond, nil
	}
	return time.ParseDuration(v)
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case PathHealthz:
		writeText(w, http.StatusOK, "ok\n")
		return
	case PathReadyz:
		if s.draining.Load() {
			writeText(w, http.StatusServiceUnavailable, "draining\n")
			return
		}
		writeText(w, http.StatusOK, "ok\n")
		return
	}
	start := time.Now()
	resp := Response{
		Name:         s.cfg.Name,
		Version:      s.cfg.Version,
		PodName:      s.cfg.PodName,
		PodNamespace: s.cfg.PodNamespace,
		PodIP:        s.cfg.PodIP,
		Hostname:     s.cfg.Hostname,
		Method:       r.Method,
		Host:         r.Host,
		Path:         r.URL.Path,
		Query:        r.URL.RawQuery,
		RemoteAddr:   r.RemoteAddr,
		Proto:        r.Proto,
		Headers:      r.Header,
		Status:       http.StatusOK,
	}
	opts, err := s.parseOptions(r)
	if err != nil {
		resp.Status = http.StatusBadRequest
		resp.Error = err.Error()
		s.write(w, &resp, 0)
		s.logRequest(r, &resp, start)
		return
	}
	if opts.delay > 0 {
		t := time.NewTimer(opts.delay)
		select {
		case <-t.C:
		case <-r.Context().Done():
			t.Stop()
			return
		}
	}
	if code := s.pattern.Next(); code != 0 {
		resp.Status = code
		resp.Fault = "pattern"
		resp.Error = "injected fault"
	} else {
		if opts.status != 0 {
			resp.Status = opts.status
			resp.Fault = "query"
		}
		if r.URL.Path == PathChain && len(s.cfg.Calls) > 0 {
			resp.Upstreams = s.callUpstreams(r.Context(), r)
			for _, u := range resp.Upstreams {
				if u.Failed() {
					resp.Status = http.StatusBadGateway
					resp.Error = "upstream failed: " + u.URL
					break
				}
			}
		}
	}
	s.write(w, &resp, opts.size)
	s.logRequest(r, &resp, start)
}

func (s *Server) logRequest(r *http.Request, resp *Response, start time.Time) {
	if !s.log.Enabled(r.Context(), slog.LevelDebug) {
		return
	}
	s.log.LogAttrs(r.Context(), slog.LevelDebug, "request",
		slog.String("method", r.Method),
		slog.String("path", r.URL.Path),
		slog.String("remote", r.RemoteAddr),
		slog.Int("status", resp.Status),
		slog.String("fault", resp.Fault),
		slog.Duration("elapsed", time.Since(start)))
}

// write encodes resp into a pooled buffer and sends it with pad bytes of
// padding spliced in as the last JSON field.
func (s *Server) write(w http.ResponseWriter, resp *Response, pad int) {
	buf := s.bufs.Get().(*bytes.Buffer)
	defer func() {
		if buf.Cap() <= maxPooledBuf {
			buf.Reset()
			s.bufs.Put(buf)
		}
	}()
	enc := json.NewEncoder(buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(resp); err != nil {
		s.log.Error("encode response", "err", err)
		http.Error(w, "encode response", http.StatusInternalServerError)
		return
	}
	body := buf.Bytes()
	total := len(body)
	if pad > 0 {
		body = body[:len(body)-2] // strip "}\n"
		total = len(body) + len(padOpen) + pad + len(padClose)
	}
	h := w.Header()
	h["Content-Type"] = s.jsonHdr
	h[HeaderName] = s.nameHdr
	h[HeaderVersion] = s.versionHdr
	h["Content-Length"] = []string{strconv.Itoa(total)}
	w.WriteHeader(resp.Status)
	if _, err := w.Write(body); err != nil || pad == 0 {
		return
	}
	if _, err := writeString(w, padOpen); err != nil {
		return
	}
	for pad > 0 {
		n := min(pad, len(s.padding))
		if _, err := w.Write(s.padding[:n]); err != nil {
			return
		}
		pad -= n
	}
	_, _ = writeString(w, padClose)
}

func writeString(w http.ResponseWriter, s string) (int, error) {
	if sw, ok := w.(interface{ WriteString(string) (int, error) }); ok {
		return sw.WriteString(s)
	}
	return w.Write([]byte(s))
}

func writeText(w http.ResponseWriter, status int, body string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(status)
	_, _ = writeString(w, body)
}
