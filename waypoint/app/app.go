// Package app is the waypoint's composition root: it obtains the waypoint's SVID from the
// controller's CA, subscribes to its Envoy configuration over delta ADS, compiles every
// response (routes, RBAC filters, clusters) and puts it in force only when all of it compiles
// (otherwise the response is NACKed and the last good configuration keeps serving), terminates
// HBONE on port 15008 and serves the admin ports: readiness on 15021 (/healthz/ready, ready
// once a configuration is in force), Prometheus metrics on 15020 (/metrics, /stats/prometheus)
// and, on 15000 (loopback only), the configuration in force (/config_dump) and Go's pprof
// profiles (/debug/pprof/).
package app

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"net/netip"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc"

	"github.com/weftmesh/weft/internal/hbone"
	"github.com/weftmesh/weft/internal/identity"
	"github.com/weftmesh/weft/waypoint/metrics"
	"github.com/weftmesh/weft/waypoint/proxy"
	"github.com/weftmesh/weft/waypoint/upstream"
	"github.com/weftmesh/weft/waypoint/xds"
)

// Config is the waypoint's configuration.
type Config struct {
	// Namespace, Gateway and Pod name the waypoint: its Gateway and its own pod.
	Namespace, Gateway, Pod string
	// ServiceAccount is the waypoint's identity's service account; empty means Gateway.
	ServiceAccount string
	TrustDomain    spiffeid.TrustDomain
	// Conn reaches the controller (xDS and CA); internal/identity.Dial makes it.
	Conn   grpc.ClientConnInterface
	Target string
	// HBONEAddr, ReadyAddr, StatsAddr and AdminAddr are the listen addresses.
	HBONEAddr, ReadyAddr, StatsAddr, AdminAddr string
	Logger                                     *slog.Logger
	// AccessLog receives the access log records; nil logs none.
	AccessLog *slog.Logger
}

// Run runs the waypoint until ctx ends.
func Run(ctx context.Context, cfg Config) error {
	log := cfg.Logger
	sa := cfg.ServiceAccount
	if sa == "" {
		sa = cfg.Gateway
	}
	id, err := spiffeid.FromSegments(cfg.TrustDomain, "ns", cfg.Namespace, "sa", sa)
	if err != nil {
		return fmt.Errorf("waypoint identity: %w", err)
	}
	certs, err := identity.NewManager(identity.NewGRPCCA(cfg.Conn), identity.Options{TrustDomain: cfg.TrustDomain, Logger: log})
	if err != nil {
		return err
	}
	defer certs.Close()

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m, err := metrics.New(reg)
	if err != nil {
		return err
	}
	pool, err := hbone.NewPool(hbone.PoolConfig{Certs: certs, Logger: log})
	if err != nil {
		return err
	}
	defer pool.Close()
	clusters := upstream.NewManager(&dialer{pool: pool, id: id}, upstream.Options{Logger: log})
	defer clusters.Close()
	handler := proxy.NewHandler(proxy.HandlerOptions{Clusters: clusters, Metrics: m, AccessLog: cfg.AccessLog, Logger: log})
	server := proxy.NewServer(proxy.ServerOptions{Identity: id, Certs: certs, Accept: handler.Accept, Relay: handler.Relay, Handler: handler, Logger: log})

	st := &state{}
	var endpoints map[netip.Addr]bool // addresses of the endpoints in force
	node := fmt.Sprintf("waypoint~%s~%s~%s", cfg.Namespace, cfg.Gateway, cfg.Pod)
	client := xds.NewClient(cfg.Conn, cfg.Target, xds.Options{Node: node, Logger: log})
	apply := func(rs *xds.Resources) error {
		pc, err := proxy.Compile(rs.Listeners, rs.Routes)
		if err != nil {
			return err
		}
		if err := clusters.Update(rs.Clusters, rs.Endpoints); err != nil {
			return err
		}
		handler.SetConfig(pc)
		st.set(rs)
		// Tunnels to endpoints that are gone (a pod deleted) are closed now rather than when
		// their keep-alive times out: requests on them fail fast instead of hanging.
		now := endpointAddrs(rs)
		for a := range endpoints {
			if !now[a] {
				pool.Evict(a)
			}
		}
		endpoints = now
		log.Info("configuration in force", "listeners", len(rs.Listeners), "routes", len(rs.Routes), "clusters", len(rs.Clusters), "versions", rs.Versions)
		return nil
	}

	// Fetch the SVID before serving: a tunnel needs it.
	fctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	_, err = certs.Get(fctx, id)
	cancel()
	if err != nil {
		return fmt.Errorf("obtaining the waypoint's certificate for %s: %w", id, err)
	}
	log.Info("waypoint certificate obtained", "id", id.String())

	ln, err := net.Listen("tcp", cfg.HBONEAddr)
	if err != nil {
		return err
	}
	var wg sync.WaitGroup
	errc := make(chan error, 5)
	run := func(f func() error) {
		wg.Add(1)
		go func() { defer wg.Done(); errc <- f() }()
	}
	run(func() error { return client.Run(ctx, apply) })
	run(func() error { return server.Serve(ln) })
	admin := []*http.Server{
		{Addr: cfg.ReadyAddr, Handler: readyMux(st), ReadHeaderTimeout: 5 * time.Second},
		{Addr: cfg.StatsAddr, Handler: statsMux(reg), ReadHeaderTimeout: 5 * time.Second},
		{Addr: cfg.AdminAddr, Handler: adminMux(st, client), ReadHeaderTimeout: 5 * time.Second},
	}
	for _, s := range admin {
		run(func() error {
			if err := s.ListenAndServe(); !errors.Is(err, http.ErrServerClosed) {
				return err
			}
			return nil
		})
	}
	log.Info("waypoint started", "gateway", cfg.Namespace+"/"+cfg.Gateway, "id", id.String(), "hbone", cfg.HBONEAddr)
	select {
	case <-ctx.Done():
		err = nil
	case err = <-errc:
	}
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = server.Shutdown(sctx)
	for _, s := range admin {
		_ = s.Shutdown(sctx)
	}
	return err
}

// dialer opens upstream connections: an HBONE stream to a mesh endpoint (its node agent's
// port 15008 in the pod, the endpoint's identity verified, :authority its ip:port) or plain
// TCP to an endpoint outside the mesh.
type dialer struct {
	pool *hbone.Pool
	id   spiffeid.ID
	tcp  net.Dialer
}

func (d *dialer) Dial(ctx context.Context, ep *upstream.Endpoint) (net.Conn, error) {
	if !ep.Tunnel {
		return d.tcp.DialContext(ctx, "tcp", ep.Addr.String())
	}
	dst, err := spiffeid.FromString(ep.Identity)
	if err != nil {
		return nil, fmt.Errorf("endpoint %s: identity %q: %w", ep, ep.Identity, err)
	}
	return d.pool.Dial(ctx, hbone.Request{
		Source:      d.id,
		Destination: []spiffeid.ID{dst},
		Addr:        netip.AddrPortFrom(ep.Addr.Addr(), hbone.Port),
		Authority:   ep.Addr,
	})
}

// endpointAddrs returns the addresses of every endpoint of rs.
func endpointAddrs(rs *xds.Resources) map[netip.Addr]bool {
	out := map[netip.Addr]bool{}
	for _, cla := range rs.Endpoints {
		for _, lle := range cla.GetEndpoints() {
			for _, lb := range lle.GetLbEndpoints() {
				if a, err := netip.ParseAddr(lb.GetEndpoint().GetAddress().GetSocketAddress().GetAddress()); err == nil {
					out[a.Unmap()] = true
				}
			}
		}
	}
	return out
}

// state is the configuration in force, for the admin pages.
type state struct {
	mu  sync.Mutex
	res *xds.Resources
	at  time.Time
}

func (s *state) set(rs *xds.Resources) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.res, s.at = rs, time.Now()
}

func (s *state) get() (*xds.Resources, time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.res, s.at
}

func readyMux(st *state) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz/ready", func(w http.ResponseWriter, _ *http.Request) {
		if rs, _ := st.get(); rs == nil {
			http.Error(w, "no configuration yet", http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ok\n"))
	})
	return mux
}

func statsMux(g prometheus.Gatherer) http.Handler {
	mux := http.NewServeMux()
	h := promhttp.HandlerFor(g, promhttp.HandlerOpts{})
	mux.Handle("/metrics", h)
	mux.Handle("/stats/prometheus", h)
	return mux
}

func adminMux(st *state, client *xds.Client) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/config_dump", func(w http.ResponseWriter, _ *http.Request) {
		rs, at := st.get()
		dump := struct {
			Source   xds.Status          `json:"source"`
			InForce  time.Time           `json:"inForceSince"`
			Versions map[string]string   `json:"versions,omitempty"`
			Names    map[string][]string `json:"resources,omitempty"`
		}{Source: client.Status(), InForce: at}
		if rs != nil {
			dump.Versions = rs.Versions
			dump.Names = map[string][]string{}
			for _, l := range rs.Listeners {
				dump.Names["listeners"] = append(dump.Names["listeners"], l.GetName())
			}
			for _, r := range rs.Routes {
				dump.Names["routes"] = append(dump.Names["routes"], r.GetName())
			}
			for _, c := range rs.Clusters {
				dump.Names["clusters"] = append(dump.Names["clusters"], c.GetName())
			}
		}
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(dump)
	})
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return mux
}
