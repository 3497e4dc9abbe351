package proxy

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"path"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/weftmesh/weft/internal/hbone"
	"github.com/weftmesh/weft/waypoint/metrics"
	"github.com/weftmesh/weft/waypoint/rbac"
	"github.com/weftmesh/weft/waypoint/route"
	"github.com/weftmesh/weft/waypoint/upstream"
)

// Clusters finds the upstream clusters requests are routed to (*upstream.Manager).
type Clusters interface {
	Cluster(name string) (*upstream.Cluster, bool)
}

// HandlerOptions configure a Handler.
type HandlerOptions struct {
	Clusters Clusters
	Metrics  *metrics.Metrics // nil records nothing
	// AccessLog receives one JSON record per request (Envoy's access log fields); nil logs
	// nothing.
	AccessLog *slog.Logger
	Logger    *slog.Logger
	// MaxBufferedBody is the largest request body kept for retries and mirrors (Envoy's
	// per-connection buffer limit, 1 MiB by default); a larger body is streamed once, not
	// retried and not mirrored.
	MaxBufferedBody int64
}

// Handler is the waypoint's HTTP filter chain: for each request from a tunnel it selects the
// chain by the tunnel's destination port and the virtual host by its destination (the service
// VIP:port) or the :authority, matches a route, and runs the filters in Envoy's order — CORS,
// RBAC (audit, deny, allow), fault — and the router: redirects and direct responses, weighted
// cluster choice, rewrites and header mutations, route and per-try timeouts, retries within
// the cluster's retry budget, mirroring, and response header mutations. Every request is
// counted in Istio's metrics and written to the access log.
type Handler struct {
	o   HandlerOptions
	cfg atomic.Pointer[Config]
}

// NewHandler returns a handler that answers 503 until the first SetConfig.
func NewHandler(o HandlerOptions) *Handler {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.MaxBufferedBody == 0 {
		o.MaxBufferedBody = 1 << 20
	}
	return &Handler{o: o}
}

// SetConfig puts cfg in force for new requests.
func (h *Handler) SetConfig(cfg *Config) { h.cfg.Store(cfg) }

// Config returns the configuration in force, nil before the first.
func (h *Handler) Config() *Config { return h.cfg.Load() }

// Accept serves a tunnel when an HTTP chain exists for its destination port or a TCP chain
// for its destination (ServerOptions.Accept).
func (h *Handler) Accept(in *hbone.Inbound) (int, error) {
	cfg := h.cfg.Load()
	if cfg == nil {
		return http.StatusServiceUnavailable, errors.New("the waypoint has no configuration yet")
	}
	if hc, tc := cfg.pick(in.Authority); hc == nil && tc == nil {
		return http.StatusBadRequest, errors.New("the waypoint serves no service or workload at this destination")
	}
	return 0, nil
}

// exchange is one request on its way through the handler: what the metrics and the access
// log report.
type exchange struct {
	start     time.Time
	in        *hbone.Inbound
	client    netip.AddrPort
	requestID string
	routeName string
	cluster   string
	upstream  *upstream.Endpoint
	status    int
	grpc      string
	flags     []string
	attempts  int
	reqBytes  int64
	respBytes int64
	audited   []string
	denied    string
}

func (x *exchange) flag(f string) { x.flags = append(x.flags, f) }

// ServeHTTP implements http.Handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	in := Tunnel(r.Context())
	if in == nil {
		http.Error(w, "not a waypoint tunnel", http.StatusBadRequest)
		return
	}
	x := &exchange{start: time.Now(), in: in, client: clientAddr(in)}
	x.requestID = traceHeaders(r.Header)
	cw := &countingWriter{ResponseWriter: w}
	defer func() { h.report(r, x, cw) }()
	cfg := h.cfg.Load()
	var ch *chain
	if cfg != nil {
		ch, _ = cfg.pick(in.Authority)
	}
	if ch == nil {
		x.flag("NR")
		h.local(cw, x, nil, http.StatusNotFound, "no route for this port")
		return
	}
	rt, ok := h.match(ch, in, r)
	if !ok {
		x.flag("NR")
		h.local(cw, x, nil, http.StatusNotFound, "")
		return
	}
	x.routeName = rt.Name
	cl := rt.Pick()
	var corsHeader http.Header
	if cors := rt.CORS(cl); cors != nil {
		res := cors.Evaluate(r, ch.routes.Rand())
		if res.Preflight {
			copyHeader(cw.Header(), res.Header)
			x.status = http.StatusOK
			cw.WriteHeader(http.StatusOK)
			return
		}
		corsHeader = res.Header
	}
	if !h.authorize(ch, rt, cl, in, x, r) {
		h.local(cw, x, rt, http.StatusForbidden, "RBAC: access denied")
		return
	}
	if f := rt.Fault(cl); f != nil && f.Applies(r) {
		delay, abort, grpcAbort := f.Decide(ch.routes.Rand())
		if delay > 0 {
			x.flag("DI")
			t := time.NewTimer(delay)
			select {
			case <-t.C:
			case <-r.Context().Done():
				t.Stop()
				x.flag("DC")
				x.status = 499
				return
			}
		}
		if grpcAbort >= 0 {
			x.flag("FI")
			x.grpc = strconv.Itoa(grpcAbort)
			cw.Header().Set("Content-Type", "application/grpc")
			cw.Header().Set("Grpc-Status", x.grpc)
			cw.Header().Set("Grpc-Message", "fault filter abort")
			x.status = http.StatusOK
			cw.WriteHeader(http.StatusOK)
			return
		}
		if abort > 0 {
			x.flag("FI")
			h.local(cw, x, rt, abort, "fault filter abort")
			return
		}
	}
	switch rt.Kind {
	case route.KindRedirect:
		rt.ApplyResponseHeaders(cw.Header())
		cw.Header().Set("Location", rt.Redirect.Location(r))
		x.status = rt.Redirect.Status
		cw.WriteHeader(x.status)
		return
	case route.KindDirect:
		rt.ApplyResponseHeaders(cw.Header())
		x.status = rt.Direct.Status
		if len(rt.Direct.Body) > 0 {
			cw.Header().Set("Content-Type", "text/plain")
		}
		cw.WriteHeader(x.status)
		_, _ = cw.Write(rt.Direct.Body)
		return
	}
	h.forward(cw, r, x, ch, rt, cl, corsHeader)
}

// match selects the virtual host by the tunnel's destination — the service VIP:port the
// client connected to, which names the service whatever Host header it sent — else by the
// request's :authority, then the route.
func (h *Handler) match(ch *chain, in *hbone.Inbound, r *http.Request) (*route.Route, bool) {
	if vh := ch.routes.VirtualHostFor(in.Authority.String()); vh != nil && !isStar(vh) {
		return ch.routes.MatchIn(vh, r)
	}
	rt, _, ok := ch.routes.Match(r)
	return rt, ok
}

func isStar(vh *route.VirtualHost) bool {
	for _, d := range vh.Domains {
		if d == "*" {
			return true
		}
	}
	return false
}

// authorize runs the chain's RBAC filters in order; it returns false when one denies.
func (h *Handler) authorize(ch *chain, rt *route.Route, cl *route.Cluster, in *hbone.Inbound, x *exchange, r *http.Request) bool {
	if len(ch.rbac) == 0 {
		return true
	}
	req := rbac.Request{
		SourceIP:        x.client.Addr(),
		DestinationIP:   in.Authority.Addr(),
		DestinationPort: in.Authority.Port(),
		Method:          r.Method,
		Host:            stripPort(r.Host),
		Path:            normalizePath(r.URL.RequestURI()),
		Header:          r.Header,
	}
	if !in.PeerID.IsZero() {
		req.Principal = in.PeerID.String()
	}
	for _, f := range ch.rbac {
		d := f.filter(rt, cl).Evaluate(&req)
		if d.Logged {
			x.audited = append(x.audited, d.Policy)
		}
		if !d.Allowed {
			x.denied = d.Policy
			if x.denied == "" {
				x.denied = "(no ALLOW policy matched)"
			}
			return false
		}
	}
	return true
}

// forward is the router.
func (h *Handler) forward(w *countingWriter, r *http.Request, x *exchange, ch *chain, rt *route.Route, cl *route.Cluster, corsHeader http.Header) {
	f := rt.Forward
	x.cluster = cl.Name
	ucl, ok := h.o.Clusters.Cluster(cl.Name)
	if !ok {
		x.flag("NC")
		h.local(w, x, rt, f.NotFoundStatus, "cluster not found")
		return
	}
	ctx := r.Context()
	timeout := f.Timeout
	if d, ok := f.StreamDuration(r); ok && d > 0 && (timeout == 0 || d < timeout) {
		timeout = d
	}
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	out := r.Clone(ctx)
	out.RequestURI = ""
	out.URL.Scheme, out.URL.Host = "http", ""
	removeHopHeaders(out.Header)
	out.Header.Set("X-Forwarded-Proto", "http")
	if prior := out.Header.Get("X-Forwarded-For"); prior != "" {
		out.Header.Set("X-Forwarded-For", prior+", "+x.client.Addr().String())
	} else {
		out.Header.Set("X-Forwarded-For", x.client.Addr().String())
	}
	cl.PrepareRequest(out)
	pick := upstream.Pick{}
	var setCookie *http.Cookie
	pick.HashKey, pick.HasHash, setCookie = rt.HashKey(r, x.client)

	// With retries or mirrors the body is recorded as it streams to the upstream, so that it
	// can be sent again while it is small enough (recorder).
	var rec *recorder
	if (f.Retry != nil || len(f.Mirrors) > 0) && r.Body != nil && r.Body != http.NoBody {
		rec = newRecorder(r.Body, h.o.MaxBufferedBody)
	}
	for _, m := range f.Mirrors {
		if m.Share.Hit(ch.routes.Rand()) {
			h.mirror(out, rec, m, x)
		}
	}
	resp, err := h.attempts(ctx, out, rec, ucl, f, pick, x, ch)
	if rec != nil {
		defer func() { x.reqBytes = rec.size() }()
	}
	if err != nil {
		status := http.StatusServiceUnavailable
		msg := "upstream connect error or disconnect/reset before headers"
		var ov *upstream.OverflowError
		switch {
		case errors.As(err, &ov):
			x.flag("UO")
			w.Header().Set("X-Envoy-Overloaded", "true")
			msg = "upstream connect error or disconnect/reset before headers. reset reason: overflow"
		case errors.Is(err, upstream.ErrNoHealthyUpstream):
			x.flag("UH")
			msg = "no healthy upstream"
		case ctx.Err() != nil && r.Context().Err() == nil:
			x.flag("UT")
			status, msg = http.StatusGatewayTimeout, "upstream request timeout"
		case r.Context().Err() != nil:
			x.flag("DC")
			x.status = 499
			return
		default:
			var ce *upstream.ConnectError
			if errors.As(err, &ce) {
				x.flag("UF")
			} else {
				x.flag("UR")
			}
		}
		h.o.Logger.Debug("upstream failed", "cluster", cl.Name, "err", err, "request_id", x.requestID)
		h.local(w, x, rt, status, msg)
		return
	}
	defer resp.Body.Close()
	hdr := w.Header()
	for k, v := range resp.Header {
		hdr[k] = v
	}
	removeHopHeaders(hdr)
	announceTrailers(hdr, resp.Trailer)
	cl.ApplyResponseHeaders(hdr)
	copyHeader(hdr, corsHeader)
	if setCookie != nil {
		hdr.Add("Set-Cookie", setCookie.String())
	}
	hdr.Set("X-Envoy-Upstream-Service-Time", strconv.FormatInt(time.Since(x.start).Milliseconds(), 10))
	x.status = resp.StatusCode
	x.grpc = resp.Header.Get("Grpc-Status")
	w.WriteHeader(resp.StatusCode)
	if err := copyBody(w, resp.Body, route.IsGRPC(r) || resp.ContentLength < 0); err != nil {
		if ctx.Err() != nil && r.Context().Err() == nil {
			x.flag("UT")
		} else if r.Context().Err() != nil {
			x.flag("DC")
		} else {
			x.flag("UPE")
		}
		panic(http.ErrAbortHandler) // the response is cut: reset the client's stream
	}
	for k, v := range resp.Trailer {
		hdr[http.TrailerPrefix+k] = v
		if k == "Grpc-Status" && len(v) > 0 {
			x.grpc = v[0]
		}
	}
}

// attempts sends the request, retrying as the route's retry policy says within the
// cluster's retry budget (max_retries), each attempt bounded by the per-try timeout.
func (h *Handler) attempts(ctx context.Context, out *http.Request, rec *recorder, ucl *upstream.Cluster, f *route.Forward, pick upstream.Pick, x *exchange, ch *chain) (*http.Response, error) {
	rp := f.Retry
	for n := 0; ; n++ {
		x.attempts = n + 1
		req := out
		tctx, cancel := ctx, context.CancelFunc(func() {})
		if rp != nil && rp.PerTryTimeout > 0 {
			tctx, cancel = context.WithTimeout(ctx, rp.PerTryTimeout)
		}
		req = out.WithContext(tctx)
		var body *attemptBody
		if rec != nil {
			body = rec.body()
			req.Body = body
		}
		if n > 0 {
			req.Header = out.Header.Clone()
			req.Header.Set("X-Envoy-Attempt-Count", strconv.Itoa(n+1))
		}
		resp, ep, err := ucl.RoundTrip(req, pick)
		if ep != nil {
			x.upstream = ep
		}
		retry := false
		if rp != nil && (rec == nil || rec.replayable()) && n < rp.NumRetries && ctx.Err() == nil {
			switch {
			case err == nil:
				retry = rp.RetriableResponse(resp.StatusCode, resp.Header)
			case errors.Is(err, upstream.ErrNoHealthyUpstream):
			default:
				var ov *upstream.OverflowError
				if !errors.As(err, &ov) {
					retry = rp.RetriableFailure(failureOf(err, tctx), true)
				}
			}
		}
		if !retry {
			if resp != nil {
				resp.Body = &cancelOnClose{ReadCloser: resp.Body, cancel: cancel}
			} else {
				cancel()
			}
			return resp, err
		}
		done, berr := ucl.TryRetry()
		if berr != nil { // retry budget exhausted: this attempt's result stands
			x.flag("URX")
			if resp != nil {
				resp.Body = &cancelOnClose{ReadCloser: resp.Body, cancel: cancel}
			} else {
				cancel()
			}
			return resp, err
		}
		if resp != nil {
			_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
			resp.Body.Close()
		}
		if body != nil {
			_ = body.Close() // the abandoned attempt reads no more of the request
		}
		cancel()
		if rp.PreviousHosts && x.upstream != nil {
			pick.Exclude = append(pick.Exclude, x.upstream)
		}
		t := time.NewTimer(rp.BackOff(n+1, ch.routes.Rand()))
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
		}
		done()
	}
}

// failureOf classifies a failed attempt for the retry policy.
func failureOf(err error, tctx context.Context) route.Failure {
	var ce *upstream.ConnectError
	switch {
	case errors.As(err, &ce):
		return route.FailureConnect
	case errors.Is(tctx.Err(), context.DeadlineExceeded):
		return route.FailurePerTryTimeout
	case strings.Contains(err.Error(), "REFUSED_STREAM"):
		return route.FailureRefusedStream
	default:
		return route.FailureReset
	}
}

// mirror sends a copy of the request to m's cluster and discards the answer (fire and forget,
// bounded by 30 s). A request with a body is mirrored once the body has been read (rec), and
// not at all when it is too large to keep.
func (h *Handler) mirror(out *http.Request, rec *recorder, m *route.Mirror, x *exchange) {
	ucl, ok := h.o.Clusters.Cluster(m.Cluster)
	if !ok {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(out.Context()), 30*time.Second)
	shadow := out.Clone(ctx)
	shadow.Host = m.Host(out.Host)
	shadow.Body = http.NoBody
	sx := &exchange{start: time.Now(), in: x.in, client: x.client, cluster: m.Cluster}
	go func() {
		defer cancel()
		if rec != nil {
			select {
			case <-rec.done:
			case <-ctx.Done():
				return
			}
			body, ok := rec.complete()
			if !ok {
				return // too large to keep, or failed: not mirrored
			}
			shadow.Body, shadow.ContentLength, sx.reqBytes = io.NopCloser(bytes.NewReader(body)), int64(len(body)), int64(len(body))
		}
		resp, ep, err := ucl.RoundTrip(shadow, upstream.Pick{})
		sx.upstream = ep
		if err != nil {
			h.o.Logger.Debug("mirror failed", "cluster", m.Cluster, "err", err)
			sx.status = http.StatusServiceUnavailable
			sx.flag("UF")
		} else {
			sx.status = resp.StatusCode
			sx.respBytes, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		h.o.Metrics.Observe(h.labels(shadow, sx), time.Since(sx.start), sx.reqBytes, sx.respBytes)
	}()
}

// local answers the request from the waypoint itself, as Envoy's local replies do.
func (h *Handler) local(w *countingWriter, x *exchange, rt *route.Route, status int, msg string) {
	if rt != nil {
		rt.ApplyResponseHeaders(w.Header())
	}
	x.status = status
	if msg != "" {
		w.Header().Set("Content-Type", "text/plain")
	}
	w.WriteHeader(status)
	_, _ = io.WriteString(w, msg)
}

// report counts the request and writes its access log record.
func (h *Handler) report(r *http.Request, x *exchange, w *countingWriter) {
	d := time.Since(x.start)
	x.respBytes = w.n
	if x.reqBytes == 0 && r.ContentLength > 0 {
		x.reqBytes = r.ContentLength
	}
	l := h.labels(r, x)
	flags := l.ResponseFlags
	h.o.Metrics.Observe(l, d, x.reqBytes, x.respBytes)
	if h.o.AccessLog == nil {
		return
	}
	upstreamHost := "-"
	if x.upstream != nil {
		upstreamHost = x.upstream.String()
	}
	attrs := []slog.Attr{
		slog.String("start_time", x.start.UTC().Format(time.RFC3339Nano)),
		slog.String("method", r.Method),
		slog.String("path", r.URL.RequestURI()),
		slog.String("protocol", r.Proto),
		slog.Int("response_code", x.status),
		slog.String("response_flags", flags),
		slog.Int64("bytes_received", x.reqBytes),
		slog.Int64("bytes_sent", x.respBytes),
		slog.Float64("duration_ms", float64(d.Microseconds())/1000),
		slog.String("upstream_host", upstreamHost),
		slog.String("upstream_cluster", x.cluster),
		slog.String("route_name", x.routeName),
		slog.Int("attempts", x.attempts),
		slog.String("x_request_id", x.requestID),
		slog.String("authority", r.Host),
		slog.String("user_agent", r.UserAgent()),
		slog.String("downstream_remote_address", x.client.String()),
		slog.String("downstream_peer_principal", l.SourcePrincipal),
		slog.String("traceparent", r.Header.Get("Traceparent")),
	}
	if x.denied != "" {
		attrs = append(attrs, slog.String("rbac_denied_by", x.denied))
	}
	if len(x.audited) > 0 {
		attrs = append(attrs, slog.Any("rbac_audited_by", x.audited))
	}
	h.o.AccessLog.LogAttrs(context.Background(), slog.LevelInfo, "access", attrs...)
}

// labels are the metric labels of an exchange.
func (h *Handler) labels(r *http.Request, x *exchange) *metrics.Labels {
	flags := strings.Join(x.flags, ",")
	if flags == "" {
		flags = "-"
	}
	l := peerLabels(x.in, x.upstream, x.cluster)
	l.RequestProtocol, l.ResponseCode, l.GRPCResponseStatus, l.ResponseFlags = "http", x.status, x.grpc, flags
	if route.IsGRPC(r) {
		l.RequestProtocol = "grpc"
	}
	return l
}

// peerLabels are the metric labels of both ends: the source from the tunnel (its peer identity
// and baggage), the destination from the endpoint's metadata and the cluster's service.
func peerLabels(in *hbone.Inbound, ep *upstream.Endpoint, cluster string) *metrics.Labels {
	l := &metrics.Labels{
		SourceWorkload:          in.Baggage.WorkloadName,
		SourceWorkloadNamespace: in.Baggage.Namespace,
		SourceCanonicalService:  in.Baggage.ServiceName,
		SourceCanonicalRevision: in.Baggage.ServiceVersion,
	}
	if !in.PeerID.IsZero() {
		l.SourcePrincipal = in.PeerID.String()
	}
	if ep != nil {
		l.DestinationWorkload, l.DestinationWorkloadNamespace, l.DestinationPrincipal = ep.Workload, ep.Namespace, ep.Identity
		l.DestinationCanonicalService, l.DestinationCanonicalRevision = ep.App, ep.Version
	}
	if host := clusterHost(cluster); host != "" {
		l.DestinationService = host
		if parts := strings.SplitN(host, ".", 3); len(parts) == 3 && strings.HasPrefix(parts[2], "svc.") {
			l.DestinationServiceName, l.DestinationServiceNamespace = parts[0], parts[1]
		}
	}
	return l
}

// clusterHost returns the service host of an Istio cluster name "outbound|port|subset|host".
func clusterHost(name string) string {
	if i := strings.LastIndexByte(name, '|'); i >= 0 && strings.HasPrefix(name, "outbound|") {
		return name[i+1:]
	}
	return ""
}

// clientAddr is the original client of a tunnel. Node agents open a pod's tunnel from inside
// the pod, so the tunnel's peer is the client's own address and the forwarded header only adds
// its port; a forwarded address naming another IP is not believed (a peer that holds an SVID
// could otherwise pose as any source address to policies on the source IP).
func clientAddr(in *hbone.Inbound) netip.AddrPort {
	if f := in.ForwardedFor; f.IsValid() && f.Addr().Unmap() == in.RemoteAddr.Addr().Unmap() {
		return f
	}
	return in.RemoteAddr
}

func stripPort(host string) string {
	if h, _, err := net.SplitHostPort(host); err == nil {
		return h
	}
	return host
}

// normalizePath is the path policies see, as Envoy normalizes it for Istio (normalize_path,
// merge_slashes): "." and ".." segments resolved and repeated slashes merged, the query kept.
func normalizePath(uri string) string {
	p, q, hasQuery := strings.Cut(uri, "?")
	if p == "" || p[0] != '/' {
		return uri
	}
	clean := path.Clean(p)
	if strings.HasSuffix(p, "/") && clean != "/" {
		clean += "/"
	}
	if hasQuery {
		return clean + "?" + q
	}
	return clean
}

// hopHeaders are the hop-by-hop headers a proxy does not forward (RFC 9110 §7.6.1).
var hopHeaders = []string{"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade"}

func removeHopHeaders(h http.Header) {
	for _, f := range h.Values("Connection") {
		for _, name := range strings.Split(f, ",") {
			if name = strings.TrimSpace(name); name != "" {
				h.Del(name)
			}
		}
	}
	for _, k := range hopHeaders {
		if k == "Te" && h.Get("Te") == "trailers" {
			continue // gRPC needs it end to end
		}
		h.Del(k)
	}
}

// announceTrailers declares the upstream's trailers so net/http sends them after the body.
func announceTrailers(h http.Header, trailer http.Header) {
	for k := range trailer {
		h.Add("Trailer", k)
	}
}

func copyHeader(dst, src http.Header) {
	for k, v := range src {
		dst[k] = append(dst[k][:0:0], v...)
	}
}

// copyBuffers hold the 32 KiB buffers of copyBody: one per response in flight rather than one
// allocated per response (they were two thirds of the bytes the waypoint allocated).
var copyBuffers = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// copyBody streams the upstream's body to the client, flushing after every read when flush
// is set (gRPC and streamed responses).
func copyBody(w *countingWriter, body io.Reader, flush bool) error {
	bp := copyBuffers.Get().(*[]byte)
	defer copyBuffers.Put(bp)
	buf := *bp
	rc := http.NewResponseController(w)
	for {
		n, err := body.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return werr
			}
			if flush {
				_ = rc.Flush()
			}
		}
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// countingWriter counts the response body bytes.
type countingWriter struct {
	http.ResponseWriter
	n int64
}

func (w *countingWriter) Write(p []byte) (int, error) {
	n, err := w.ResponseWriter.Write(p)
	w.n += int64(n)
	return n, err
}

// Unwrap lets http.ResponseController reach the server's writer.
func (w *countingWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// cancelOnClose ends an attempt's context when its response body is closed.
type cancelOnClose struct {
	io.ReadCloser
	cancel context.CancelFunc
}

func (c *cancelOnClose) Close() error {
	err := c.ReadCloser.Close()
	c.cancel()
	return err
}
