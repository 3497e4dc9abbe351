package bench

import (
	"crypto/tls"
	"crypto/x509"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var testTunnel = Tunnel{ClientNode: "node-1", ServerNode: "node-2", ClientNodeIP: "127.0.0.1", ServerNodeIP: "127.0.0.1", CertDir: "/etc/weft-peer/tls",
	Routes: []TunnelRoute{{Name: "http", Listen: 25101, Tunnel: 25102, Dest: "127.0.0.1:8080"}}}

func TestPeerConfigs(t *testing.T) {
	tests := []struct {
		name   string
		render func() (string, error)
		want   []string
	}{
		{"haproxy client", func() (string, error) { return HAProxyConfig(testTunnel, ClientSide) }, []string{
			"mode tcp", "ssl-min-ver TLSv1.3", "bind 127.0.0.1:25101\n",
			"server node-2 127.0.0.1:25102 ssl crt /etc/weft-peer/tls/node-1.pem ca-file /etc/weft-peer/tls/ca.pem verify required verifyhost node-2"}},
		{"haproxy server", func() (string, error) { return HAProxyConfig(testTunnel, ServerSide) }, []string{
			"bind 127.0.0.1:25102 ssl crt /etc/weft-peer/tls/node-2.pem ca-file /etc/weft-peer/tls/ca.pem verify required", "server app 127.0.0.1:8080"}},
		{"stunnel client", func() (string, error) { return StunnelConfig(testTunnel, ClientSide) }, []string{
			"foreground = yes", "sslVersionMin = TLSv1.3", "client = yes", "accept = 127.0.0.1:25101", "connect = 127.0.0.1:25102", "checkHost = node-2", "verifyChain = yes"}},
		{"stunnel server", func() (string, error) { return StunnelConfig(testTunnel, ServerSide) }, []string{
			"requireCert = yes", "accept = 127.0.0.1:25102", "connect = 127.0.0.1:8080", "cert = /etc/weft-peer/tls/node-2.pem"}},
		{"nginx", func() (string, error) {
			return NginxConfig(NginxProxy{ListenIP: "127.0.0.1", Listen: 25201, Upstream: "127.0.0.1:8080", RunDir: "/run/x"})
		}, []string{"daemon off;", "keepalive 64;", "proxy_http_version 1.1;", `proxy_set_header Connection "";`, "listen 127.0.0.1:25201;", "pid /run/x/nginx.pid;", "keepalive_requests 1000000;"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.render()
			if err != nil {
				t.Fatal(err)
			}
			for _, w := range tt.want {
				if !strings.Contains(got, w) {
					t.Errorf("config lacks %q:\n%s", w, got)
				}
			}
		})
	}
}

func TestPeerConfigErrors(t *testing.T) {
	bad := testTunnel
	bad.Routes = []TunnelRoute{{Name: "Bad Name", Listen: 1, Tunnel: 2, Dest: "127.0.0.1:1"}}
	noIP := testTunnel
	noIP.ServerNodeIP = "node-2"
	tests := []struct {
		name string
		err  func() error
		want string
	}{
		{"side", func() error { _, err := HAProxyConfig(testTunnel, "middle"); return err }, `side "middle"`},
		{"route name", func() error { _, err := StunnelConfig(bad, ClientSide); return err }, "route name"},
		{"node IP", func() error { _, err := HAProxyConfig(noIP, ClientSide); return err }, "must be IP addresses"},
		{"nginx upstream", func() error {
			_, err := NginxConfig(NginxProxy{ListenIP: "127.0.0.1", Listen: 1, Upstream: "x", RunDir: "/r"})
			return err
		}, "Upstream"},
	}
	for _, tt := range tests {
		if err := tt.err(); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: error %v, want %q", tt.name, err, tt.want)
		}
	}
}

// TestHAProxyConfigCheck lets HAProxy itself check both sides' configurations with the PKI's
// files (haproxy -c), when HAProxy is installed.
func TestHAProxyConfigCheck(t *testing.T) {
	bin := peerBinaries["haproxy"]
	if _, err := os.Stat(bin); err != nil {
		t.Skip("haproxy not installed (make deps)")
	}
	pki, err := NewPeerPKI([]string{"node-1", "node-2"}, time.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for name, b := range pki.Files() {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	tun := testTunnel
	tun.CertDir = dir
	for _, side := range []string{ClientSide, ServerSide} {
		conf, err := HAProxyConfig(tun, side)
		if err != nil {
			t.Fatal(err)
		}
		f := filepath.Join(dir, side+".cfg")
		if err := os.WriteFile(f, []byte(conf), 0o600); err != nil {
			t.Fatal(err)
		}
		if out, err := exec.Command(bin, "-c", "-f", f).CombinedOutput(); err != nil {
			t.Errorf("%s: haproxy -c: %v\n%s\n%s", side, err, out, conf)
		}
	}
}

func TestPeerPKI(t *testing.T) {
	pki, err := NewPeerPKI([]string{"node-1", "node-2"}, time.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(pki.CAPEM) {
		t.Fatal("CA PEM does not parse")
	}
	for _, node := range []string{"node-1", "node-2"} {
		pair, err := tls.X509KeyPair(pki.NodePEM[node], pki.NodePEM[node])
		if err != nil {
			t.Fatalf("%s: %v", node, err)
		}
		leaf, err := x509.ParseCertificate(pair.Certificate[0])
		if err != nil {
			t.Fatal(err)
		}
		for _, usage := range []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth} {
			if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, DNSName: node, KeyUsages: []x509.ExtKeyUsage{usage}}); err != nil {
				t.Errorf("%s: %v", node, err)
			}
		}
		if leaf.PublicKeyAlgorithm != x509.ECDSA {
			t.Errorf("%s: key %s, want ECDSA", node, leaf.PublicKeyAlgorithm)
		}
	}
	if len(pki.Files()) != 3 {
		t.Errorf("files %d, want ca.pem and 2 nodes", len(pki.Files()))
	}
}

func TestDerivePathMetrics(t *testing.T) {
	http := Workload{ID: "h", Kind: HTTP}
	bulk := Workload{ID: "b", Kind: Bulk}
	tests := []struct {
		name string
		path string
		w    Workload
		s    Sample
		want map[Metric]float64 // nil: no path metrics
	}{
		{"none", PathNone, http, Sample{AgentCPU: 1, Requests: 1000}, nil},
		{"agents", PathAgents, http, Sample{AgentCPU: 2, AgentVCPU: 0.2, AgentRSS: 40, Requests: 10000},
			map[Metric]float64{PathVCPU: 0.2, PathVCPUPerKRPS: 0.2, PathRSS: 40}},
		{"waypoint adds up", PathWaypoint, http, Sample{AgentCPU: 2, AgentVCPU: 0.2, AgentRSS: 40, WaypointCPU: 1, WaypointVCPU: 0.1, WaypointRSS: 30, Requests: 10000},
			map[Metric]float64{PathVCPU: 0.3, PathVCPUPerKRPS: 0.3, PathRSS: 70}},
		{"peers per Gbit", PathPeers, bulk, Sample{AgentCPU: 9, PeerCPU: 4, PeerVCPU: 0.5, PeerRSS: 20, Bytes: 1e9},
			map[Metric]float64{PathVCPU: 0.5, PathVCPUPerGbps: 0.5, PathRSS: 20, PeerVCPUPerGbps: 0.5}},
		{"peers missing", PathPeers, http, Sample{AgentCPU: 1, Requests: 1}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			derivePeerMetrics(tt.w, tt.s)
			derivePathMetrics(tt.path, tt.w, tt.s)
			if tt.want == nil {
				if _, ok := tt.s[PathVCPU]; ok {
					t.Errorf("path metrics in %v", tt.s)
				}
				return
			}
			for m, v := range tt.want {
				if !approx(tt.s[m], v) {
					t.Errorf("%s = %v, want %v", m, tt.s[m], v)
				}
			}
		})
	}
}

func TestParseToolVersion(t *testing.T) {
	tests := map[string][2]string{
		"haproxy":  {"HAProxy version 2.6.12-1+deb12u4 2026/10/17 - https://haproxy.org/\n", "haproxy 2.6.12"},
		"stunnel4": {"Initializing inetd mode configuration\nstunnel 5.68 on x86_64-pc-linux-gnu platform\n", "stunnel 5.68"},
		"nginx":    {"nginx version: nginx/1.22.1\n", "nginx 1.22.1"},
	}
	for name, tt := range tests {
		if got := ParseToolVersion(name, tt[0]); got != tt[1] {
			t.Errorf("%s: %q, want %q", name, got, tt[1])
		}
	}
}

func TestParseControlPlane(t *testing.T) {
	b := []byte(`{"id":"20261122-014832","mode":"full","setup":{"objects":{"Service":1001,"Pod":10100}},"plan":{"size":{"nodes":100}},
"sync":{"p50Seconds":10.5,"p99Seconds":14.8},"controller":{"peakRssMiB":1034.3,"cpuSeconds":177.6},
"changes":[{"kind":"pod-ready","n":30,"failed":0,"affected":{"median":100},"lastMs":{"p50":3137.4,"p99":5067.8},"firstMs":{"p50":393.2}}]}`)
	cp, err := ParseControlPlane(b, "scale-x.json")
	if err != nil {
		t.Fatal(err)
	}
	if cp.Services != 1001 || cp.Pods != 10100 || cp.Agents != 100 || cp.SyncP99Ms != 14800 || len(cp.Changes) != 1 || cp.Changes[0].LastP99Ms != 5067.8 {
		t.Errorf("parsed %+v", cp)
	}
	var md strings.Builder
	writeControlPlane(&md, cp)
	if !strings.Contains(md.String(), "| pod-ready | 30 | 0 | 100 | 3137 | 5068 | 393 |") {
		t.Errorf("markdown:\n%s", md.String())
	}
	if _, err := ParseControlPlane([]byte(`{"id":""}`), "x"); err == nil {
		t.Error("empty result accepted")
	}
}

func TestGRPCFortioErrors(t *testing.T) {
	r, err := ParseFortio(readTestdata(t, "fortio-1.68-grpc.json"))
	if err != nil {
		t.Fatal(err)
	}
	if r.Errors() != 0 || r.DurationHistogram.Count != 200 {
		t.Errorf("errors %d of %d calls, want 0 of 200 (SERVING is success)", r.Errors(), r.DurationHistogram.Count)
	}
	r.RetCodes["NOT_SERVING"] = 3
	if r.Errors() != 3 {
		t.Errorf("errors %d, want 3", r.Errors())
	}
	args, err := FortioArgs("/f", Target{GRPCAddr: "10.0.0.1:9090"}, Workload{ID: "g", Kind: GRPC, QPS: 1000, Connections: 16}, time.Second, 0.00001, "x")
	if err != nil || !strings.Contains(strings.Join(args, " "), "-uniform -grpc 10.0.0.1:9090") {
		t.Errorf("args %v, %v", args, err)
	}
}
