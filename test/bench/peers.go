package bench

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Peer scenarios: other software configured to do the job of Weft's data path, measured in the
// same run.
const (
	// HAProxyScenario is an HAProxy on each node forming a mutual-TLS L4 tunnel (mode tcp).
	HAProxyScenario = "haproxy-mtls"
	// StunnelScenario is the same tunnel with a stunnel on each node.
	StunnelScenario = "stunnel-mtls"
	// NginxScenario is nginx as a one-hop HTTP reverse proxy with keep-alive upstreams.
	NginxScenario = "nginx-l7"
)

// Paths: what carries a scenario's connections (Scenario.Path).
const (
	// PathNone: nothing but the kernel (no-mesh); a sample gets no Path* metrics.
	PathNone = "none"
	// PathAgents: the node agents.
	PathAgents = "agents"
	// PathWaypoint: the node agents and the waypoint.
	PathWaypoint = "agents+waypoint"
	// PathPeers: the peer processes of the scenario (PeerMeter).
	PathPeers = "peers"
)

// Metrics of a peer's processes during a repetition (PeerMeter), measured as the Agent* metrics
// are, summed over the scenario's peer pods; NodeMetric gives one node's figure.
const (
	PeerCPU         Metric = "peer_cpu_s"
	PeerVCPU        Metric = "peer_vcpu"
	PeerVCPUPerKRPS Metric = "peer_vcpu_per_krps"
	PeerVCPUPerGbps Metric = "peer_vcpu_per_gbps"
	PeerRSS         Metric = "peer_peak_rss_mib"
)

// Metrics of the processes on a scenario's path (Scenario.Path): the node agents for Weft L4,
// agents and waypoint for Weft L7, the peer's processes for a peer. They make the rows of
// different data paths comparable per 1000 rps and per Gbit/s.
const (
	PathVCPU        Metric = "path_vcpu"
	PathVCPUPerKRPS Metric = "path_vcpu_per_krps"
	PathVCPUPerGbps Metric = "path_vcpu_per_gbps"
	PathRSS         Metric = "path_peak_rss_mib"
)

// PeerMeter accounts a peer's pods (one per node for a tunnel) exactly as AgentMeter accounts the
// node agents (CPU from the pods' cgroups, peak RSS from VmHWM of their processes, reset when the
// window starts), under the Peer* metrics.
type PeerMeter struct {
	Peers []Agent
	// Proc is the proc filesystem ("" is /proc); tests point it at a fixture.
	Proc string
	// Now is the clock of the window (nil is time.Now).
	Now func() time.Time
}

// Start implements Meter.
func (m *PeerMeter) Start() (func() (Sample, error), error) {
	am := &AgentMeter{Agents: m.Peers, Proc: m.Proc, Now: m.Now}
	stop, err := am.Start()
	if err != nil {
		return nil, fmt.Errorf("peer meter: %w", err)
	}
	return func() (Sample, error) {
		s, err := stop()
		if err != nil {
			return nil, fmt.Errorf("peer meter: %w", err)
		}
		out := Sample{PeerCPU: s[AgentCPU], PeerVCPU: s[AgentVCPU], PeerRSS: s[AgentRSS]}
		for _, p := range m.Peers {
			for _, pair := range [][2]Metric{{AgentCPU, PeerCPU}, {AgentVCPU, PeerVCPU}, {AgentRSS, PeerRSS}} {
				if v, ok := s[NodeMetric(pair[0], p.Node)]; ok {
					out[NodeMetric(pair[1], p.Node)] = v
				}
			}
		}
		return out, nil
	}, nil
}

// scenarioMeter combines the runner's meter with a scenario's own (either may be nil).
func scenarioMeter(run, sc Meter) Meter {
	switch {
	case sc == nil:
		return run
	case run == nil:
		return sc
	}
	return Meters{run, sc}
}

// derivePeerMetrics adds the peers' CPU per unit of load to a sample that has PeerCPU, as
// deriveAgentMetrics does for the agents.
func derivePeerMetrics(w Workload, s Sample) {
	cpu, ok := s[PeerCPU]
	if !ok {
		return
	}
	if v, ok := perLoad(w, s, cpu); ok {
		if w.Kind == Bulk {
			s[PeerVCPUPerGbps] = v
		} else {
			s[PeerVCPUPerKRPS] = v
		}
	}
}

// derivePathMetrics adds the Path* metrics of a sample: the resources of the processes on the
// scenario's path (see Scenario.Path). A sample without the metrics of its path gets none.
func derivePathMetrics(path string, w Workload, s Sample) {
	var cpu, vcpu, rss float64
	switch path {
	case PathNone:
		return
	case PathPeers:
		if _, ok := s[PeerCPU]; !ok {
			return
		}
		cpu, vcpu, rss = s[PeerCPU], s[PeerVCPU], s[PeerRSS]
	case PathWaypoint:
		_, a := s[AgentCPU]
		_, wp := s[WaypointCPU]
		if !a || !wp {
			return
		}
		cpu, vcpu, rss = s[AgentCPU]+s[WaypointCPU], s[AgentVCPU]+s[WaypointVCPU], s[AgentRSS]+s[WaypointRSS]
	default: // PathAgents, ""
		if _, ok := s[AgentCPU]; !ok {
			return
		}
		cpu, vcpu, rss = s[AgentCPU], s[AgentVCPU], s[AgentRSS]
	}
	s[PathVCPU], s[PathRSS] = vcpu, rss
	if v, ok := perLoad(w, s, cpu); ok {
		if w.Kind == Bulk {
			s[PathVCPUPerGbps] = v
		} else {
			s[PathVCPUPerKRPS] = v
		}
	}
}

// perLoad is CPU-seconds per 1000 requests (HTTP, gRPC) or per gigabit (bulk).
func perLoad(w Workload, s Sample, cpu float64) (float64, bool) {
	switch w.Kind {
	case HTTP, GRPC:
		if req := s[Requests]; req > 0 {
			return cpu * 1000 / req, true
		}
	case Bulk:
		if b := s[Bytes]; b > 0 {
			return cpu / (b * 8 / 1e9), true
		}
	}
	return 0, false
}

// Tunnel is the layout of an mTLS L4 tunnel between two nodes: the client connects in plain TCP
// to the client node's end, which carries each connection in its own TLS 1.3 connection (client
// certificate required) to the server node's end, which connects to the destination pod.
type Tunnel struct {
	ClientNode, ServerNode     string // node names: the certificates' names
	ClientNodeIP, ServerNodeIP string
	Routes                     []TunnelRoute
	// CertDir is where the pods mount the PEM files of PeerPKI.Files.
	CertDir string
}

// TunnelRoute is one forwarded destination: Listen on the client node (plain), Tunnel on the
// server node (TLS), then Dest.
type TunnelRoute struct {
	Name   string // a config section name: letters, digits, '-'
	Listen int
	Tunnel int
	Dest   string // host:port of the destination pod
}

// Validate checks what the configuration templates rely on.
func (t Tunnel) Validate() error {
	if net.ParseIP(t.ClientNodeIP) == nil || net.ParseIP(t.ServerNodeIP) == nil {
		return fmt.Errorf("tunnel: node IPs %q and %q must be IP addresses", t.ClientNodeIP, t.ServerNodeIP)
	}
	if t.ClientNode == "" || t.ServerNode == "" || t.CertDir == "" {
		return fmt.Errorf("tunnel: ClientNode, ServerNode and CertDir are required")
	}
	if len(t.Routes) == 0 {
		return fmt.Errorf("tunnel: no routes")
	}
	for _, r := range t.Routes {
		if r.Name == "" || strings.Trim(r.Name, "abcdefghijklmnopqrstuvwxyz0123456789-") != "" {
			return fmt.Errorf("tunnel: route name %q: use lower-case letters, digits and '-'", r.Name)
		}
		if _, _, err := net.SplitHostPort(r.Dest); err != nil {
			return fmt.Errorf("tunnel: route %s: Dest %q: want host:port", r.Name, r.Dest)
		}
		if r.Listen <= 0 || r.Listen > 65535 || r.Tunnel <= 0 || r.Tunnel > 65535 {
			return fmt.Errorf("tunnel: route %s: ports %d and %d must be 1–65535", r.Name, r.Listen, r.Tunnel)
		}
	}
	return nil
}

// Sides of a tunnel.
const (
	ClientSide = "client"
	ServerSide = "server"
)

func (t Tunnel) pem(node string) string { return t.CertDir + "/" + node + ".pem" }
func (t Tunnel) ca() string             { return t.CertDir + "/ca.pem" }

func hostPort(ip string, port int) string { return net.JoinHostPort(ip, strconv.Itoa(port)) }

// HAProxyConfig renders the haproxy.cfg of one side of the tunnel: mode tcp; the client side
// listens in plain TCP and connects with TLS 1.3, presenting its node certificate and verifying
// the server's against the CA and its name; the server side accepts TLS 1.3 only with a client
// certificate of the CA (verify required) and connects to the destination in plain TCP. maxconn
// 8000 stays within the harness's limit of 20000 open files (HAProxy exits when it cannot
// raise the limit to 2 × maxconn and more). HAProxy
// keeps its defaults for threads (one per CPU), TCP_NODELAY and TLS session reuse; nothing is
// logged.
func HAProxyConfig(t Tunnel, side string) (string, error) {
	if err := t.Validate(); err != nil {
		return "", err
	}
	var b strings.Builder
	b.WriteString(`global
    maxconn 8000
    ssl-default-bind-options ssl-min-ver TLSv1.3
    ssl-default-server-options ssl-min-ver TLSv1.3

defaults
    mode tcp
    timeout connect 5s
    timeout client 2m
    timeout server 2m
`)
	for _, r := range t.Routes {
		switch side {
		case ClientSide:
			fmt.Fprintf(&b, "\nlisten %s\n    bind %s\n", r.Name, hostPort(t.ClientNodeIP, r.Listen))
			fmt.Fprintf(&b, "    server %s %s ssl crt %s ca-file %s verify required verifyhost %s sni str(%s)\n",
				t.ServerNode, hostPort(t.ServerNodeIP, r.Tunnel), t.pem(t.ClientNode), t.ca(), t.ServerNode, t.ServerNode)
		case ServerSide:
			fmt.Fprintf(&b, "\nlisten %s\n    bind %s ssl crt %s ca-file %s verify required\n",
				r.Name, hostPort(t.ServerNodeIP, r.Tunnel), t.pem(t.ServerNode), t.ca())
			fmt.Fprintf(&b, "    server app %s\n", r.Dest)
		default:
			return "", fmt.Errorf("haproxy config: side %q: want %q or %q", side, ClientSide, ServerSide)
		}
	}
	return b.String(), nil
}

// StunnelConfig renders the stunnel.conf of one side of the tunnel, the same tunnel as
// HAProxyConfig: TLS 1.3 only, both certificates verified against the CA (verifyChain), the
// client checks the server's name (checkHost), the server requires a client certificate;
// TCP_NODELAY on both sockets; foreground, no pid file, warnings only.
func StunnelConfig(t Tunnel, side string) (string, error) {
	if err := t.Validate(); err != nil {
		return "", err
	}
	if side != ClientSide && side != ServerSide {
		return "", fmt.Errorf("stunnel config: side %q: want %q or %q", side, ClientSide, ServerSide)
	}
	var b strings.Builder
	b.WriteString("foreground = yes\npid =\ndebug = warning\nsocket = l:TCP_NODELAY=1\nsocket = r:TCP_NODELAY=1\n")
	for _, r := range t.Routes {
		fmt.Fprintf(&b, "\n[%s]\nsslVersionMin = TLSv1.3\nCAfile = %s\nverifyChain = yes\n", r.Name, t.ca())
		if side == ClientSide {
			fmt.Fprintf(&b, "client = yes\naccept = %s\nconnect = %s\ncert = %s\ncheckHost = %s\nsni = %s\n",
				hostPort(t.ClientNodeIP, r.Listen), hostPort(t.ServerNodeIP, r.Tunnel), t.pem(t.ClientNode), t.ServerNode, t.ServerNode)
		} else {
			fmt.Fprintf(&b, "requireCert = yes\naccept = %s\nconnect = %s\ncert = %s\n",
				hostPort(t.ServerNodeIP, r.Tunnel), r.Dest, t.pem(t.ServerNode))
		}
	}
	return b.String(), nil
}

// NginxProxy is nginx as a one-hop HTTP reverse proxy.
type NginxProxy struct {
	ListenIP string
	Listen   int
	Upstream string // host:port of the HTTP server
	// RunDir is a writable directory for the pid file and the temporary files.
	RunDir string
}

// NginxConfig renders nginx.conf: one worker per CPU, no access log, HTTP/1.1 to an upstream pool
// of up to 64 idle keep-alive connections, and keep-alive without a request limit on both sides
// (nginx closes a connection after 1000 requests by default, which a benchmark would see as
// reconnects).
func NginxConfig(p NginxProxy) (string, error) {
	if net.ParseIP(p.ListenIP) == nil || p.Listen <= 0 || p.Listen > 65535 {
		return "", fmt.Errorf("nginx config: listen %q port %d: want an IP address and a port 1–65535", p.ListenIP, p.Listen)
	}
	if _, _, err := net.SplitHostPort(p.Upstream); err != nil {
		return "", fmt.Errorf("nginx config: Upstream %q: want host:port", p.Upstream)
	}
	if !strings.HasPrefix(p.RunDir, "/") {
		return "", fmt.Errorf("nginx config: RunDir %q: want an absolute path", p.RunDir)
	}
	d := strings.TrimSuffix(p.RunDir, "/")
	return fmt.Sprintf(`daemon off;
worker_processes auto;
pid %[1]s/nginx.pid;
error_log stderr warn;

events {
    worker_connections 16384;
}

http {
    access_log off;
    client_body_temp_path %[1]s/client_body;
    proxy_temp_path %[1]s/proxy;
    fastcgi_temp_path %[1]s/fastcgi;
    uwsgi_temp_path %[1]s/uwsgi;
    scgi_temp_path %[1]s/scgi;
    keepalive_requests 1000000;
    keepalive_timeout 120s;

    upstream bench_server {
        server %[2]s;
        keepalive 64;
        keepalive_requests 1000000;
        keepalive_timeout 120s;
    }

    server {
        listen %[3]s;
        location / {
            proxy_pass http://bench_server;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
}
`, d, p.Upstream, hostPort(p.ListenIP, p.Listen)), nil
}

// urlParse returns the host:port of an http:// URL.
func urlParse(raw string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", fmt.Errorf("url %q: %w", raw, err)
	}
	if u.Host == "" {
		return "", fmt.Errorf("url %q: no host", raw)
	}
	if u.Port() == "" {
		return net.JoinHostPort(u.Hostname(), "80"), nil
	}
	return u.Host, nil
}

var versionRE = regexp.MustCompile(`\d+\.\d+(\.\d+)?`)

// ParseToolVersion returns "name X.Y.Z" from the first version number in a tool's version output
// (haproxy -v, stunnel4 -version, nginx -v), or name alone.
func ParseToolVersion(name, out string) string {
	for line := range strings.Lines(out) {
		if !strings.Contains(strings.ToLower(line), strings.TrimSuffix(name, "4")) {
			continue
		}
		if v := versionRE.FindString(line); v != "" {
			return strings.TrimSuffix(name, "4") + " " + v
		}
	}
	return strings.TrimSuffix(name, "4")
}

// toolVersionLine runs a peer binary's version flag and returns ParseToolVersion of its output.
func toolVersionLine(ctx context.Context, bin, name string) string {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	flag := map[string]string{"haproxy": "-v", "stunnel4": "-version", "nginx": "-v"}[name]
	out, _ := exec.CommandContext(ctx, bin, flag).CombinedOutput() // stunnel -version exits 1
	return ParseToolVersion(name, string(out))
}
