package load

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/weftmesh/weft/test/apps/client/report"
	"github.com/weftmesh/weft/test/apps/echo/echoserver"
)

// maxParse bounds the response bodies decoded to identify the responder;
// larger bodies are drained and identified by response headers only.
const maxParse = 8 << 20

// HTTPOptions configures HTTP requests.
type HTTPOptions struct {
	Method  string      // default GET
	Header  http.Header // extra request headers; "Host" sets the Host
	Body    []byte      // request body, if any
	Timeout time.Duration
	// H2C uses HTTP/2 over cleartext with prior knowledge.
	H2C bool
	// NewConn disables keep-alive so every request opens a connection
	// (needed to observe per-connection load balancing).
	NewConn bool
	// Concurrency sizes the idle connection pool.
	Concurrency int
}

// ParseHeader parses "Key: value".
func ParseHeader(s string) (key, value string, err error) {
	k, v, ok := strings.Cut(s, ":")
	k = strings.TrimSpace(k)
	if !ok || k == "" {
		return "", "", fmt.Errorf("header %q: want 'Key: value'", s)
	}
	return k, strings.TrimSpace(v), nil
}

// HTTP returns a Func sending requests to url, and the client it uses (the
// caller should CloseIdleConnections when done). An HTTP response with a
// status from 200 to 399 is OK; redirects are not followed.
func HTTP(url string, o HTTPOptions) (Func, *http.Client, error) {
	method := o.Method
	if method == "" {
		method = http.MethodGet
	}
	if _, err := http.NewRequest(method, url, nil); err != nil {
		return nil, nil, fmt.Errorf("http: %w", err)
	}
	tr := &http.Transport{
		Proxy:               nil,
		MaxIdleConns:        max(o.Concurrency, 1) * 2,
		MaxIdleConnsPerHost: max(o.Concurrency, 1) * 2,
		IdleConnTimeout:     90 * time.Second,
		DisableKeepAlives:   o.NewConn,
		DisableCompression:  true,
	}
	if o.H2C {
		var p http.Protocols
		p.SetUnencryptedHTTP2(true)
		tr.Protocols = &p
	}
	client := &http.Client{
		Transport: tr,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
	host := o.Header.Get("Host")
	header := o.Header.Clone()
	header.Del("Host")
	bufs := sync.Pool{New: func() any { return new(bytes.Buffer) }}

	fn := func(ctx context.Context) report.Sample {
		if o.Timeout > 0 {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, o.Timeout)
			defer cancel()
		}
		var body io.Reader
		if o.Body != nil {
			body = bytes.NewReader(o.Body)
		}
		req, err := http.NewRequestWithContext(ctx, method, url, body)
		if err != nil {
			return report.Sample{Err: fmt.Errorf("http: %w", err)}
		}
		for k, v := range header {
			req.Header[k] = v
		}
		if host != "" {
			req.Host = host
		}
		resp, err := client.Do(req)
		if err != nil {
			return report.Sample{Err: fmt.Errorf("http: %w", err)}
		}
		defer resp.Body.Close()
		s := report.Sample{
			Status: strconv.Itoa(resp.StatusCode),
			OK:     resp.StatusCode >= 200 && resp.StatusCode < 400,
		}
		buf := bufs.Get().(*bytes.Buffer)
		defer func() {
			if buf.Cap() <= 1<<20 {
				buf.Reset()
				bufs.Put(buf)
			}
		}()
		n, err := io.Copy(buf, io.LimitReader(resp.Body, maxParse+1))
		if err == nil && n > maxParse {
			_, err = io.Copy(io.Discard, resp.Body)
		}
		if err != nil {
			s.OK = false
			s.Err = fmt.Errorf("http: read body: %w", err)
		}
		if n <= maxParse && err == nil {
			s.Services = IdentifyEcho(buf.Bytes())
		}
		if len(s.Services) == 0 {
			if name, version := resp.Header.Get(echoserver.HeaderName), resp.Header.Get(echoserver.HeaderVersion); name != "" || version != "" {
				s.Services = []report.Service{{Name: name, Version: version}}
			}
		}
		return s
	}
	return fn, client, nil
}

// echoTree is the part of an echo response that identifies responders.
type echoTree struct {
	Name       string `json:"name"`
	Version    string `json:"version"`
	PodName    string `json:"pod_name"`
	RemoteAddr string `json:"remote_addr"`
	Upstreams  []struct {
		Response *echoTree `json:"response"`
	} `json:"upstreams"`
}

// IdentifyEcho decodes an echo JSON body and returns the responding app
// followed by its upstreams, depth first. It returns nil when body is not
// an echo response.
func IdentifyEcho(body []byte) []report.Service {
	var t echoTree
	if err := json.Unmarshal(body, &t); err != nil || (t.Name == "" && t.Version == "") {
		return nil
	}
	var out []report.Service
	var walk func(*echoTree)
	walk = func(t *echoTree) {
		peer, _, err := net.SplitHostPort(t.RemoteAddr)
		if err != nil {
			peer = t.RemoteAddr
		}
		out = append(out, report.Service{Name: t.Name, Version: t.Version, Pod: t.PodName, Peer: peer})
		for _, u := range t.Upstreams {
			if u.Response != nil {
				walk(u.Response)
			}
		}
	}
	walk(&t)
	return out
}
