// Command weft-controller is Weft's controller: it watches Kubernetes, serves workload
// discovery to the node agents over delta ADS and signs SPIFFE certificates; see package
// controller/app.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	istioclient "istio.io/client-go/pkg/clientset/versioned"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	gatewayclient "sigs.k8s.io/gateway-api/pkg/client/clientset/versioned"

	"github.com/weftmesh/weft/api"
	"github.com/weftmesh/weft/controller/admin"
	"github.com/weftmesh/weft/controller/app"
	"github.com/weftmesh/weft/controller/translate"
	"github.com/weftmesh/weft/controller/waypoint"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "weft-controller:", err)
		os.Exit(1)
	}
}

func run() error {
	var (
		kubeconfig    = flag.String("kubeconfig", "", "kubeconfig file (empty: in-cluster)")
		namespace     = flag.String("namespace", envOr("POD_NAMESPACE", "weft-system"), "the controller's namespace")
		trustDomain   = flag.String("trust-domain", api.DefaultTrustDomain, "SPIFFE trust domain")
		clusterDomain = flag.String("cluster-domain", "cluster.local", "DNS suffix of services")
		rootNS        = flag.String("root-namespace", "istio-system", "namespace of mesh-wide policies")
		listen        = flag.String("listen", fmt.Sprintf(":%d", api.ControllerPort), "xDS and CA (TLS)")
		adminAddr     = flag.String("admin", admin.DefaultAddr, "health, metrics and debug pages")
		dnsNames      = flag.String("serving-dns-names", "", "comma-separated DNS names of the serving certificate (default weft-controller.<namespace>.svc and its FQDN)")
		ips           = flag.String("serving-ips", "", "comma-separated IP SANs of the serving certificate")
		logLevel      = flag.String("log-level", "info", "debug, info, warn or error")
		waypointImage = flag.String("waypoint-image", waypoint.DefaultImage, "image of the waypoints deployed for Gateways of class istio-waypoint")
	)
	flag.Parse()
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		return fmt.Errorf("-log-level: %w", err)
	}
	log := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	var rc *rest.Config
	var err error
	if *kubeconfig != "" {
		rc, err = clientcmd.BuildConfigFromFlags("", *kubeconfig)
	} else {
		rc, err = rest.InClusterConfig()
	}
	if err != nil {
		return fmt.Errorf("kubernetes client: %w", err)
	}
	// client-go's default (5 requests/s, burst 10) would pace the TokenReviews of agents that
	// connect at once, e.g. after a controller restart in a large cluster.
	rc.QPS, rc.Burst = 100, 200
	kube, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return err
	}
	istio, err := istioclient.NewForConfig(rc)
	if err != nil {
		return err
	}
	gateway, err := gatewayclient.NewForConfig(rc)
	if err != nil {
		return err
	}
	names := split(*dnsNames)
	if len(names) == 0 {
		names = []string{"weft-controller." + *namespace + ".svc", "weft-controller." + *namespace + ".svc." + *clusterDomain}
	}
	var sans []net.IP
	for _, s := range split(*ips) {
		ip := net.ParseIP(s)
		if ip == nil {
			return fmt.Errorf("-serving-ips: %q is not an IP address", s)
		}
		sans = append(sans, ip)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	return app.Run(ctx, app.Config{
		Kube: kube, Istio: istio, Gateway: gateway, Namespace: *namespace,
		Translate:  translate.Options{TrustDomain: *trustDomain, ClusterDomain: *clusterDomain, RootNamespace: *rootNS},
		ListenAddr: *listen, AdminAddr: *adminAddr, ServingDNSNames: names, ServingIPs: sans,
		Registry: reg, Logger: log, WaypointImage: *waypointImage,
	})
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

func split(s string) []string {
	var out []string
	for f := range strings.SplitSeq(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}
