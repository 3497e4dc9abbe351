// Package app is the controller's composition root: informers (cluster) → translation
// (translate) → delta ADS (xds) and AuthorizationPolicy status (status), the CA (ca) on the
// same TLS port, and the admin server (admin).
package app

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"
	grpcstatus "google.golang.org/grpc/status"
	istioclient "istio.io/client-go/pkg/clientset/versioned"
	"k8s.io/client-go/kubernetes"
	gatewayclient "sigs.k8s.io/gateway-api/pkg/client/clientset/versioned"

	"github.com/weftmesh/weft/controller/admin"
	"github.com/weftmesh/weft/controller/ca"
	"github.com/weftmesh/weft/controller/cluster"
	"github.com/weftmesh/weft/controller/status"
	"github.com/weftmesh/weft/controller/translate"
	"github.com/weftmesh/weft/controller/waypoint"
	"github.com/weftmesh/weft/controller/xds"
	"github.com/weftmesh/weft/internal/pki"
)

// Config configures the controller.
type Config struct {
	Kube  kubernetes.Interface
	Istio istioclient.Interface
	// Gateway reads Gateway API objects; nil, or CRDs not installed, means none are watched.
	Gateway gatewayclient.Interface
	// Namespace is the controller's own namespace (Secrets of the CA, root ConfigMap).
	Namespace string
	// Translate holds the mesh-wide settings (trust domain, cluster domain, root namespace).
	Translate translate.Options
	// ListenAddr serves xDS and the CA over TLS, e.g. ":15012".
	ListenAddr string
	// AdminAddr serves health, metrics and debug pages, e.g. ":15014".
	AdminAddr string
	// ServingDNSNames are the names agents use to reach the controller
	// (weft-controller.<namespace>.svc).
	ServingDNSNames []string
	// ServingIPs are IP SANs of the serving certificate, for agents that dial an IP.
	ServingIPs []net.IP
	// NodeAgentNamespace and NodeAgentServiceAccount name the agents' service account.
	NodeAgentNamespace, NodeAgentServiceAccount string
	// Debounce is how long the controller waits for changes to settle before it pushes;
	// MaxDelay bounds the wait under a stream of changes. Zero means 100 ms and 1 s.
	Debounce, MaxDelay time.Duration
	Registry           *prometheus.Registry
	Logger             *slog.Logger
	// WaypointImage is the image of the waypoints the controller deploys for Gateways of class
	// istio-waypoint; empty means waypoint.DefaultImage.
	WaypointImage string
}

// Run runs the controller until ctx is done.
func Run(ctx context.Context, cfg Config) error {
	log := cfg.Logger
	if cfg.Debounce <= 0 {
		cfg.Debounce = 100 * time.Millisecond
	}
	if cfg.MaxDelay <= 0 {
		cfg.MaxDelay = time.Second
	}
	td, err := spiffeid.TrustDomainFromString(cmp.Or(cfg.Translate.TrustDomain, "cluster.local"))
	if err != nil {
		return fmt.Errorf("trust domain: %w", err)
	}
	cl, err := cluster.New(cfg.Kube, cfg.Istio, cfg.Gateway)
	if err != nil {
		return err
	}
	pods, err := ca.NewInformerPods(cl.PodInformer())
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	cl.Start(ctx)

	authority, err := ca.New(ctx, ca.Options{
		Client: cfg.Kube, Namespace: cfg.Namespace, TrustDomain: td, Pods: pods,
		ServingDNSNames: cfg.ServingDNSNames, ServingIPs: cfg.ServingIPs,
		NodeAgentNamespace: cfg.NodeAgentNamespace, NodeAgentServiceAccount: cfg.NodeAgentServiceAccount,
		Logger: log,
	})
	if err != nil {
		return err
	}
	agentNS := cmp.Or(cfg.NodeAgentNamespace, ca.DefaultNodeAgentNamespace)
	agentSA := cmp.Or(cfg.NodeAgentServiceAccount, ca.DefaultNodeAgentServiceAccount)
	authn := authority.Authenticator()
	kick := make(chan struct{}, 1)
	server, err := xds.New(ctx, xds.Options{
		Authenticate: func(ctx context.Context) (xds.Peer, error) {
			caller, err := authn.Authenticate(ctx)
			if err != nil {
				return xds.Peer{}, err
			}
			if caller.Namespace == agentNS && caller.ServiceAccount == agentSA {
				if caller.NodeName == "" {
					return xds.Peer{}, grpcstatus.Errorf(codes.PermissionDenied, "%s may not receive workload discovery: a node agent needs a token bound to its pod", caller)
				}
				return xds.Peer{Node: caller.NodeName}, nil
			}
			// Anyone else may subscribe only as a pod of a waypoint whose service account it
			// runs as (checked by the server on the stream's first request).
			return xds.Peer{Namespace: caller.Namespace, ServiceAccount: caller.ServiceAccount, Pod: caller.PodName}, nil
		},
		NewNode:    func(string) { notify(kick) },
		Registerer: cfg.Registry,
		Logger:     log,
	})
	if err != nil {
		return err
	}

	var ready atomic.Pointer[error]
	notReady := errors.New("informers not synced")
	ready.Store(&notReady)
	errc := make(chan error, 4)
	go func() {
		errc <- admin.Run(ctx, admin.Options{Addr: cfg.AdminAddr, XDS: server, Gatherer: cfg.Registry,
			Ready: func() error { return *ready.Load() }, Logger: log})
	}()
	go func() { errc <- authority.Run(ctx) }()

	if err := cl.WaitForSync(ctx); err != nil {
		return err
	}
	// AuthorizationPolicy status: written in the background after each push, never holding it up.
	policyStatus := status.New(status.Options{Client: cfg.Istio, Get: cl.AuthorizationPolicy, Logger: log})
	go policyStatus.Run(ctx)
	// VirtualService, DestinationRule and HTTPRoute status from the waypoint translation.
	routeStatus := status.NewRouteWriter(status.RouteOptions{Istio: cfg.Istio, Gateway: cfg.Gateway, Logger: log})
	go routeStatus.Run(ctx)
	// Waypoints: Deployment, Service and ServiceAccount per waypoint Gateway, its status, and
	// the CA roots in its namespace; reconciled in the background after each push.
	var waypoints *waypoint.Reconciler
	if cfg.Gateway != nil {
		waypoints = waypoint.New(waypoint.Options{
			Kube: cfg.Kube, Gateway: cfg.Gateway, Reader: cl, Image: cfg.WaypointImage,
			ControllerNamespace: cfg.Namespace,
			Roots:               func() string { return string(pki.EncodeCertificates(authority.Bundle())) },
			Logger:              log,
		})
		go waypoints.Run(ctx)
	}
	g := grpc.NewServer(
		grpc.Creds(credentials.NewTLS(authority.ServerTLSConfig())),
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: 30 * time.Second, Timeout: 10 * time.Second}),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 5 * time.Second, PermitWithoutStream: true}),
	)
	server.Register(g)
	authority.Register(g)
	ln, err := net.Listen("tcp", cfg.ListenAddr)
	if err != nil {
		return err
	}
	go func() { errc <- g.Serve(ln) }()
	go func() {
		<-ctx.Done()
		g.Stop()
	}()

	var warned map[string]bool // problems logged already: each is logged once, not per push
	push := func() {
		in, err := cl.Input()
		if err != nil {
			log.Error("read cluster", "err", err)
			return
		}
		nodes, err := cl.Nodes()
		if err != nil {
			log.Error("read nodes", "err", err)
			return
		}
		m := translate.Build(in, cfg.Translate)
		wps, err := buildWaypoints(m, in, cl.EnvoyInput, cfg.Translate)
		if err != nil { // the agents still get theirs; the waypoints keep what they have
			log.Error("read the waypoints' namespaces", "err", err)
			server.Push(ctx, m, nodes)
			return
		}
		warned = logNew(log, warned, append(slices.Clip(m.Warnings), wps.problems...))
		server.Push(ctx, m, nodes)
		server.PushWaypoints(ctx, wps.configs)
		policyStatus.Update(wps.policies)
		routeStatus.Update(wps.routes)
		if waypoints != nil {
			waypoints.Update(in.Gateways)
		}
	}
	push()
	ready.Store(new(error))
	log.Info("controller ready", "listen", cfg.ListenAddr, "nodes", len(server.Statuses()))
	go func() { errc <- debounce(ctx, cl.Changed(), kick, cfg.Debounce, cfg.MaxDelay, push) }()
	select {
	case <-ctx.Done():
		return nil
	case err := <-errc:
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
}

// debounce calls push after changes settle: quiet for d, or at most max after the first
// change of a batch. A kick pushes at once.
func debounce(ctx context.Context, changed, kick <-chan struct{}, d, max time.Duration, push func()) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-kick:
			push()
			continue
		case <-changed:
		}
		first := time.Now()
		quiet := time.NewTimer(d)
	wait:
		for {
			select {
			case <-ctx.Done():
				quiet.Stop()
				return nil
			case <-changed:
				quiet.Reset(min(d, max-time.Since(first)))
			case <-kick:
				break wait
			case <-quiet.C:
				break wait
			}
		}
		quiet.Stop()
		push()
	}
}

// logNew logs the problems not in seen and returns the set of problems now present.
func logNew(log *slog.Logger, seen map[string]bool, problems []error) map[string]bool {
	now := make(map[string]bool, len(problems))
	for _, p := range problems {
		msg := p.Error()
		now[msg] = true
		if !seen[msg] {
			log.Warn("configuration problem", "problem", msg)
		}
	}
	return now
}

func notify(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}
