// Command weft-waypoint is Weft's waypoint: the L7 proxy of a namespace, deployed by the
// controller from a Gateway of class istio-waypoint; see package waypoint/app. It obtains its
// certificate from the controller's CA and its Envoy configuration over delta xDS, both
// authenticated with its projected service-account token.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/weftmesh/weft/api"
	"github.com/weftmesh/weft/internal/identity"
	"github.com/weftmesh/weft/waypoint/app"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "weft-waypoint:", err)
		os.Exit(1)
	}
}

func run() error {
	var (
		controller  = flag.String("controller", "weft-controller.weft-system.svc:15012", "the controller's xDS and CA address")
		gateway     = flag.String("gateway", "", "the waypoint's Gateway, <namespace>/<name> (required)")
		pod         = flag.String("pod", os.Getenv("POD_NAME"), "this pod's name")
		rootFile    = flag.String("controller-root", "/etc/weft/ca-root/"+api.RootCertKey, "PEM roots that verify the controller (ConfigMap "+api.RootCertConfigMap+")")
		tokenFile   = flag.String("token", "/var/run/secrets/tokens/weft-token", "service-account token (audience "+api.TokenAudience+") presented to the controller")
		trustDomain = flag.String("trust-domain", "cluster.local", "SPIFFE trust domain")
		hboneAddr   = flag.String("hbone", ":15008", "HBONE listen address")
		readyAddr   = flag.String("ready", ":15021", "readiness endpoint (/healthz/ready)")
		statsAddr   = flag.String("stats", ":15020", "Prometheus metrics (/metrics)")
		adminAddr   = flag.String("admin", "127.0.0.1:15000", "admin endpoint (/config_dump; loopback only)")
		accessLog   = flag.Bool("access-log", false, "write a JSON access log record per request to stdout (the controller sets it for a Gateway annotated weft.dev/access-log=true)")
		logLevel    = flag.String("log-level", "info", "debug, info, warn or error")
	)
	flag.Parse()
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		return fmt.Errorf("-log-level: %w", err)
	}
	log := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	ns, name, ok := strings.Cut(*gateway, "/")
	if !ok || ns == "" || name == "" {
		return fmt.Errorf("-gateway %q: write <namespace>/<name> of the waypoint's Gateway", *gateway)
	}
	if *pod == "" {
		return fmt.Errorf("-pod (or POD_NAME) is required")
	}
	td, err := spiffeid.TrustDomainFromString(*trustDomain)
	if err != nil {
		return fmt.Errorf("-trust-domain: %w", err)
	}
	conn, err := identity.Dial(identity.DialOptions{Target: *controller, RootFile: *rootFile, PerRPC: identity.TokenCredentials{File: *tokenFile}})
	if err != nil {
		return err
	}
	defer conn.Close()
	cfg := app.Config{
		Namespace: ns, Gateway: name, Pod: *pod, TrustDomain: td,
		Conn: conn, Target: *controller,
		HBONEAddr: *hboneAddr, ReadyAddr: *readyAddr, StatsAddr: *statsAddr, AdminAddr: *adminAddr,
		Logger: log,
	}
	if *accessLog {
		cfg.AccessLog = slog.New(slog.NewJSONHandler(os.Stdout, nil))
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	return app.Run(ctx, cfg)
}
