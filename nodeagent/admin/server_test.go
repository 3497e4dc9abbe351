package admin

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/weftmesh/weft/nodeagent/config"
	"github.com/weftmesh/weft/nodeagent/state"
)

// statusFunc adapts a function to config.StatusReporter.
type statusFunc func() config.Status

func (f statusFunc) Status() config.Status { return f() }

var (
	t0 = time.Date(2026, 9, 1, 12, 0, 0, 0, time.UTC)
	t1 = t0.Add(time.Minute)
)

// testChain returns a workload certificate chain with fixed serial numbers and validity; the
// keys and signatures are random but are not part of the dump.
func testChain(t *testing.T) []*x509.Certificate {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(0xca),
		Subject:               pkix.Name{Organization: []string{"cluster.local"}, CommonName: "Weft root CA"},
		NotBefore:             time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC),
		NotAfter:              time.Date(2035, 1, 1, 0, 0, 0, 0, time.UTC),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, caKey.Public(), caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	spiffe, _ := url.Parse("spiffe://cluster.local/ns/shop/sa/web")
	leafTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(0x1f2e3d4c5b6a),
		NotBefore:    t0.Add(-time.Hour),
		NotAfter:     t0.Add(23 * time.Hour),
		URIs:         []*url.URL{spiffe},
		KeyUsage:     x509.KeyUsageDigitalSignature,
	}
	leafDER, err := x509.CreateCertificate(rand.Reader, leafTmpl, ca, key.Public(), caKey)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(leafDER)
	return []*x509.Certificate{leaf, ca}
}

func newTestServer(t *testing.T, opts Options) *Server {
	t.Helper()
	if opts.Gatherer == nil {
		opts.Gatherer = prometheus.NewRegistry()
	}
	if opts.Store == nil {
		opts.Store = new(state.Store)
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	s, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func get(t *testing.T, h http.Handler, path string) (int, string, http.Header) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
	return rec.Code, rec.Body.String(), rec.Header()
}

func TestConfigDumpGolden(t *testing.T) {
	var store state.Store
	if err := store.Replace(testMesh(t)); err != nil {
		t.Fatal(err)
	}
	chain := testChain(t)
	expired := []*x509.Certificate{{SerialNumber: big.NewInt(7), NotBefore: t0.Add(-48 * time.Hour), NotAfter: t0.Add(-24 * time.Hour)}}
	s := newTestServer(t, Options{
		Store: &store,
		Config: statusFunc(func() config.Status {
			return config.Status{
				Source: "file:/etc/weft/mesh.yaml", Version: "3f2a9c0e1b2d4a5f", Applied: t0,
				LastError: errors.New(`config: /etc/weft/mesh.yaml: workloads[3].addresses[0]: "10.0.0.x" is not an IP address; write an IPv4 or IPv6 address`),
				Rejected:  "0011223344556677", Failed: t1,
			}
		}),
		Certificates: CertificateFunc(func() [][]*x509.Certificate { return [][]*x509.Certificate{chain, expired, nil} }),
		Now:          func() time.Time { return t1 },
	})
	code, body, hdr := get(t, s.AdminHandler(), "/config_dump")
	if code != http.StatusOK || hdr.Get("Content-Type") != "application/json" {
		t.Fatalf("GET /config_dump: %d %s %s", code, hdr.Get("Content-Type"), body)
	}
	golden(t, "config_dump.golden.json", []byte(body))
	if strings.Contains(strings.ToLower(body), "private") || strings.Contains(body, "BEGIN") {
		t.Error("the dump contains key material")
	}
}

func TestConfigDumpEmpty(t *testing.T) {
	s := newTestServer(t, Options{})
	code, body, _ := get(t, s.AdminHandler(), "/config_dump")
	if code != http.StatusOK {
		t.Fatalf("GET /config_dump: %d", code)
	}
	var d map[string]any
	if err := json.Unmarshal([]byte(body), &d); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"workloads", "services", "policies", "certificates"} {
		if l, ok := d[k].([]any); !ok || len(l) != 0 {
			t.Errorf("%s = %v, want []", k, d[k])
		}
	}
}

func TestAdminEndpoints(t *testing.T) {
	s := newTestServer(t, Options{})
	h := s.AdminHandler()
	tests := []struct {
		path     string
		wantCode int
		wantBody string
	}{
		{"/", http.StatusOK, "/config_dump"},
		{"/debug/pprof/", http.StatusOK, "goroutine"},
		{"/debug/pprof/cmdline", http.StatusOK, ""},
		{"/nope", http.StatusNotFound, ""},
		{"/metrics", http.StatusNotFound, ""}, // metrics are on the stats port
	}
	for _, tt := range tests {
		code, body, _ := get(t, h, tt.path)
		if code != tt.wantCode || !strings.Contains(body, tt.wantBody) {
			t.Errorf("GET %s = %d %q, want %d containing %q", tt.path, code, body, tt.wantCode, tt.wantBody)
		}
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/config_dump", nil))
	if rec.Code != http.StatusMethodNotAllowed {
		t.Errorf("POST /config_dump = %d", rec.Code)
	}
}

func TestReadiness(t *testing.T) {
	applied := new(state.Store)
	if err := applied.Replace(testMesh(t)); err != nil {
		t.Fatal(err)
	}
	rejected := statusFunc(func() config.Status {
		return config.Status{LastError: errors.New(`config: /m.yaml: workloads[0].nmae: unknown field; did you mean "name"?`)}
	})
	tests := []struct {
		name     string
		store    *state.Store
		cfg      config.StatusReporter
		ready    func() error
		wantCode int
		wantBody string
	}{
		{"no config", new(state.Store), nil, nil, 503, "not ready: no configuration applied yet\n"},
		{"config rejected", new(state.Store), rejected, nil, 503,
			"not ready: no configuration applied yet: config: /m.yaml: workloads[0].nmae: unknown field; did you mean \"name\"?\n"},
		{"datapath not ready", applied, nil, func() error { return errors.New("eBPF programs not attached") }, 503,
			"not ready: datapath: eBPF programs not attached\n"},
		{"ready", applied, rejected, func() error { return nil }, 200, "ready\n"},
		{"ready without datapath check", applied, nil, nil, 200, "ready\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newTestServer(t, Options{Store: tt.store, Config: tt.cfg, Ready: tt.ready})
			code, body, _ := get(t, s.ReadyHandler(), "/healthz/ready")
			if code != tt.wantCode || body != tt.wantBody {
				t.Errorf("GET /healthz/ready = %d %q, want %d %q", code, body, tt.wantCode, tt.wantBody)
			}
		})
	}
}

func TestNewOptions(t *testing.T) {
	reg := prometheus.NewRegistry()
	tests := []struct {
		name string
		opts Options
		want string
	}{
		{"no store", Options{Gatherer: reg}, "admin: Options.Store is nil"},
		{"no gatherer", Options{Store: new(state.Store)}, "admin: Options.Gatherer is nil; pass the agent's *prometheus.Registry"},
		{"public admin", Options{Store: new(state.Store), Gatherer: reg, AdminAddr: "0.0.0.0:15000"},
			`admin: admin address "0.0.0.0:15000" is not a loopback address; the admin endpoints expose configuration and profiling, bind them to 127.0.0.1 or [::1]`},
		{"all interfaces", Options{Store: new(state.Store), Gatherer: reg, AdminAddr: ":15000"},
			`admin: admin address ":15000" is not a loopback address; the admin endpoints expose configuration and profiling, bind them to 127.0.0.1 or [::1]`},
		{"bad address", Options{Store: new(state.Store), Gatherer: reg, AdminAddr: "15000"},
			`admin: admin address "15000": address 15000: missing port in address`},
		{"localhost", Options{Store: new(state.Store), Gatherer: reg, AdminAddr: "localhost:15000"}, ""},
		{"IPv6 loopback", Options{Store: new(state.Store), Gatherer: reg, AdminAddr: "[::1]:15000"}, ""},
		{"defaults", Options{Store: new(state.Store), Gatherer: reg}, ""},
	}
	for _, tt := range tests {
		_, err := New(tt.opts)
		got := ""
		if err != nil {
			got = err.Error()
		}
		if got != tt.want {
			t.Errorf("%s: New() error = %q, want %q", tt.name, got, tt.want)
		}
	}
}

// TestServe serves the three endpoints on loopback listeners and shuts them down.
func TestServe(t *testing.T) {
	var store state.Store
	if err := store.Replace(testMesh(t)); err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	m, err := NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	m.Denied(Inbound, DenyStrictPlaintext)
	s := newTestServer(t, Options{Store: &store, Gatherer: reg})
	listen := func() net.Listener {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	admin, stats, ready := listen(), listen(), listen()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, admin, stats, ready) }()

	client := &http.Client{Timeout: 5 * time.Second}
	for _, tt := range []struct {
		l    net.Listener
		path string
		want string
	}{
		{admin, "/config_dump", `"version": "3f2a9c0e1b2d4a5f"`},
		{stats, "/metrics", `weft_nodeagent_denied_connections_total{direction="inbound",reason="strict_mtls_plaintext"} 1`},
		{stats, "/stats/prometheus", "weft_nodeagent_passthrough_connections_total"},
		{ready, "/healthz/ready", "ready"},
	} {
		resp, err := client.Get(fmt.Sprintf("http://%s%s", tt.l.Addr(), tt.path))
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), tt.want) {
			t.Errorf("GET %s = %d, want 200 containing %q:\n%s", tt.path, resp.StatusCode, tt.want, body)
		}
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Serve() = %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return after cancel")
	}
	if _, err := client.Get(fmt.Sprintf("http://%s/healthz/ready", ready.Addr())); err == nil {
		t.Error("the readiness server still answers after shutdown")
	}
}

func TestServeRefusesPublicAdminListener(t *testing.T) {
	// A listener on all interfaces reports 0.0.0.0 or [::] as its address.
	l, err := net.Listen("tcp", ":0")
	if err != nil {
		t.Fatal(err)
	}
	s := newTestServer(t, Options{})
	err = s.Serve(context.Background(), l, nil, nil)
	if err == nil || !strings.Contains(err.Error(), "is not a loopback address") {
		t.Errorf("Serve() = %v", err)
	}
}

func TestRunListenError(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	s := newTestServer(t, Options{AdminAddr: "127.0.0.1:0", StatsAddr: l.Addr().String(), ReadyAddr: "127.0.0.1:0"})
	err = s.Run(context.Background())
	if err == nil || !strings.HasPrefix(err.Error(), "admin: listen tcp "+l.Addr().String()) {
		t.Errorf("Run() = %v", err)
	}
}
