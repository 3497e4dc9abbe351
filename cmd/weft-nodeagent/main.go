// Command weft-nodeagent is Weft's node agent (one per node, as a privileged hostNetwork
// DaemonSet); see package nodeagent/agent. With -controller it receives its configuration from
// the controller over delta xDS and its certificates from the controller's CA; without, it
// reads a local file (package nodeagent/config) and signs with a file CA, for running with no
// controller.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/weftmesh/weft/api"
	"github.com/weftmesh/weft/internal/identity"
	"github.com/weftmesh/weft/nodeagent/admin"
	"github.com/weftmesh/weft/nodeagent/agent"
	"github.com/weftmesh/weft/nodeagent/config"
	"github.com/weftmesh/weft/nodeagent/datapath"
	"github.com/weftmesh/weft/nodeagent/enroll"
	"github.com/weftmesh/weft/nodeagent/xds"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "weft-nodeagent:", err)
		os.Exit(1)
	}
}

func run() error {
	exe, _ := os.Executable()
	var (
		node        = flag.String("node", os.Getenv("NODE_NAME"), "this node's name (required)")
		controller  = flag.String("controller", "", "the controller's xDS and CA address, e.g. weft-controller.weft-system.svc:15012 (empty: local file and file CA)")
		rootFile    = flag.String("controller-root", "/etc/weft/ca-root/"+api.RootCertKey, "PEM roots that verify the controller (ConfigMap "+api.RootCertConfigMap+")")
		tokenFile   = flag.String("token", "/var/run/secrets/tokens/weft-token", "service-account token (audience "+api.TokenAudience+") presented to the controller")
		configFile  = flag.String("config", "/var/run/weft/config.yaml", "local configuration file (without -controller)")
		caCert      = flag.String("ca-cert", "/etc/weft/ca/ca.crt", "file CA certificate, PEM (without -controller)")
		caKey       = flag.String("ca-key", "/etc/weft/ca/ca.key", "file CA private key, PEM (without -controller)")
		trustDomain = flag.String("trust-domain", "cluster.local", "SPIFFE trust domain")
		cgroup      = flag.String("cgroup", "/sys/fs/cgroup", "the node's cgroup v2 root, where capture attaches")
		pins        = flag.String("bpffs-dir", "/sys/fs/bpf/weft", "bpffs directory for pinned maps and links")
		captureMode = flag.String("capture", agent.CaptureEBPF, "how pods' connections reach the agent: ebpf, or iptables (REDIRECT rules in each pod, as Istio's in-pod mode; for comparison)")
		cniSocket   = flag.String("cni-socket", enroll.DefaultSocket, "enrollment socket for the CNI plugin")
		cniPlugin   = flag.String("cni-plugin", filepath.Join(filepath.Dir(exe), "weft-cni"), "weft-cni binary to install (empty: do not install)")
		cniBinDir   = flag.String("cni-bin-dir", "/opt/cni/bin", "the node's CNI plugin directory")
		cniConfDir  = flag.String("cni-conf-dir", "/etc/cni/net.d", "the node's CNI configuration directory")
		netnsDir    = flag.String("netns-dir", "/var/run/netns", "named network namespaces scanned at start")
		adminAddr   = flag.String("admin", admin.DefaultAdminAddr, "admin endpoints (loopback only)")
		statsAddr   = flag.String("stats", admin.DefaultStatsAddr, "metrics endpoint")
		readyAddr   = flag.String("ready", admin.DefaultReadyAddr, "readiness endpoint")
		logLevel    = flag.String("log-level", "info", "debug, info, warn or error")
	)
	flag.Parse()
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		return fmt.Errorf("-log-level: %w", err)
	}
	log := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	if *node == "" {
		return errors.New("-node (or NODE_NAME) is required")
	}
	td, err := spiffeid.TrustDomainFromString(*trustDomain)
	if err != nil {
		return fmt.Errorf("-trust-domain: %w", err)
	}
	var (
		ca     identity.CAClient
		source interface {
			config.Source
			config.StatusReporter
		}
	)
	if *controller != "" {
		conn, err := identity.Dial(identity.DialOptions{Target: *controller, RootFile: *rootFile, PerRPC: identity.TokenCredentials{File: *tokenFile}})
		if err != nil {
			return err
		}
		defer conn.Close()
		ca = identity.NewGRPCCA(conn)
		source = xds.NewSource(conn, *controller, xds.Options{Node: *node, Logger: log})
	} else {
		if ca, err = identity.NewFileCA(identity.FileCAConfig{TrustDomain: td, CertFile: *caCert, KeyFile: *caKey}); err != nil {
			return err
		}
		source = config.NewFileSource(*configFile, config.FileOptions{Logger: log})
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	metrics, err := admin.NewMetrics(reg)
	if err != nil {
		return err
	}
	dpc := datapath.Config{CgroupPath: *cgroup, PinDir: *pins} // marks and ports: defaults
	a, err := agent.New(agent.Config{
		Node: *node, Source: source, CA: ca, TrustDomain: *trustDomain, Datapath: dpc, Capture: *captureMode,
		CNISocket: *cniSocket, CNIPlugin: *cniPlugin, CNIBinDir: *cniBinDir, CNIConfDir: *cniConfDir,
		NetNSDirs: []string{*netnsDir}, DescribesAllPods: *controller != "", Metrics: metrics, Logger: log,
	})
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	adm, err := admin.New(admin.Options{
		AdminAddr: *adminAddr, StatsAddr: *statsAddr, ReadyAddr: *readyAddr,
		Store: a.Store(), Gatherer: reg, Config: source, Ready: a.Ready, Logger: log,
	})
	if err != nil {
		return err
	}
	errc := make(chan error, 2)
	go func() { errc <- adm.Run(ctx) }()
	go func() { errc <- a.Run(ctx) }()
	log.Info("node agent started", "node", *node, "capture", *captureMode)
	err = <-errc
	stop()
	return err
}
