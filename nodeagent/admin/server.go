package admin

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
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/weftmesh/weft/nodeagent/config"
	"github.com/weftmesh/weft/nodeagent/state"
)

// Default addresses, the ports Istio ambient users know.
const (
	DefaultAdminAddr = "127.0.0.1:15000"
	DefaultStatsAddr = ":15020"
	DefaultReadyAddr = ":15021"
)

// shutdownTimeout bounds the graceful shutdown of the servers.
const shutdownTimeout = 5 * time.Second

// Options configures a Server. Store and Gatherer are required.
type Options struct {
	// AdminAddr is where the admin endpoints listen; it must be a loopback address, because
	// they expose configuration and profiling. Empty means DefaultAdminAddr.
	AdminAddr string
	// StatsAddr and ReadyAddr are where the metrics and readiness endpoints listen. Empty
	// means DefaultStatsAddr and DefaultReadyAddr.
	StatsAddr, ReadyAddr string

	// Store holds the snapshot in force.
	Store *state.Store
	// Gatherer is what /metrics exposes: the agent's *prometheus.Registry.
	Gatherer prometheus.Gatherer
	// Config, when set, tells where the configuration source stands.
	Config config.StatusReporter
	// Certificates, when set, lists the workload certificates in use.
	Certificates CertificateSource
	// Ready, when set, returns nil once the datapath is ready and the reason otherwise.
	Ready func() error
	// Logger receives the servers' logs; nil means slog.Default().
	Logger *slog.Logger
	// Now is the clock for certificate states; nil means time.Now.
	Now func() time.Time
}

// Server serves the node agent's HTTP endpoints:
//
//   - admin (127.0.0.1:15000): /config_dump, a JSON document of the snapshot in force
//     (workloads, services, effective PeerAuthentication), the certificates in use (identities,
//     serial numbers, validity; never keys) and the configuration source's status; and
//     /debug/pprof/.
//   - stats (:15020): /metrics and /stats/prometheus, the Prometheus exposition of Gatherer.
//   - readiness (:15021): /healthz/ready, 200 once a configuration is applied and the datapath
//     is ready, 503 with the reason otherwise.
type Server struct {
	opts Options
	log  *slog.Logger
}

// New checks opts and returns a Server.
func New(opts Options) (*Server, error) {
	if opts.Store == nil {
		return nil, errors.New("admin: Options.Store is nil")
	}
	if opts.Gatherer == nil {
		return nil, errors.New("admin: Options.Gatherer is nil; pass the agent's *prometheus.Registry")
	}
	if opts.AdminAddr == "" {
		opts.AdminAddr = DefaultAdminAddr
	}
	if opts.StatsAddr == "" {
		opts.StatsAddr = DefaultStatsAddr
	}
	if opts.ReadyAddr == "" {
		opts.ReadyAddr = DefaultReadyAddr
	}
	if err := checkLoopback(opts.AdminAddr); err != nil {
		return nil, err
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Server{opts: opts, log: opts.Logger.With("component", "admin")}, nil
}

// checkLoopback refuses an admin address that is not on the loopback interface.
func checkLoopback(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("admin: admin address %q: %w", addr, err)
	}
	if host == "localhost" {
		return nil
	}
	ip, err := netip.ParseAddr(host)
	if err != nil || !ip.IsLoopback() {
		return fmt.Errorf("admin: admin address %q is not a loopback address; the admin endpoints expose configuration and profiling, bind them to 127.0.0.1 or [::1]", addr)
	}
	return nil
}

// AdminHandler returns the handler of the admin endpoints.
func (s *Server) AdminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", s.index)
	mux.HandleFunc("GET /config_dump", s.configDump)
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return mux
}

// StatsHandler returns the handler of the metrics endpoints.
func (s *Server) StatsHandler() http.Handler {
	h := promhttp.HandlerFor(s.opts.Gatherer, promhttp.HandlerOpts{
		ErrorLog:      slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
		ErrorHandling: promhttp.ContinueOnError,
	})
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", h)
	mux.Handle("GET /stats/prometheus", h)
	return mux
}

// ReadyHandler returns the handler of the readiness endpoint.
func (s *Server) ReadyHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz/ready", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		if err := s.ready(); err != nil {
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintf(w, "not ready: %v\n", err)
			return
		}
		fmt.Fprintln(w, "ready")
	})
	return mux
}

// ready returns nil when the agent is ready, or why it is not.
func (s *Server) ready() error {
	if !s.opts.Store.Applied() {
		if s.opts.Config != nil {
			if err := s.opts.Config.Status().LastError; err != nil {
				return fmt.Errorf("no configuration applied yet: %w", err)
			}
		}
		return errors.New("no configuration applied yet")
	}
	if s.opts.Ready != nil {
		if err := s.opts.Ready(); err != nil {
			return fmt.Errorf("datapath: %w", err)
		}
	}
	return nil
}

func (s *Server) index(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	fmt.Fprint(w, `Weft node agent admin
/config_dump    configuration in force, certificates, config source status (JSON)
/debug/pprof/   Go profiles
`)
}

func (s *Server) configDump(w http.ResponseWriter, _ *http.Request) {
	d := buildDump(s.opts.Store.Load(), s.opts.Config, s.opts.Certificates, s.opts.Now())
	b, err := json.MarshalIndent(d, "", "  ")
	if err != nil {
		s.log.Error("config dump", "err", err)
		http.Error(w, "config dump: "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write(append(b, '\n'))
}

// Run listens on the three addresses and serves until ctx is done, then shuts the servers
// down gracefully and returns nil. It returns an error when it cannot listen or a server
// fails.
func (s *Server) Run(ctx context.Context) error {
	var lc net.ListenConfig
	var ls []net.Listener
	for _, addr := range []string{s.opts.AdminAddr, s.opts.StatsAddr, s.opts.ReadyAddr} {
		l, err := lc.Listen(ctx, "tcp", addr)
		if err != nil {
			for _, l := range ls {
				l.Close()
			}
			return fmt.Errorf("admin: %w", err)
		}
		ls = append(ls, l)
	}
	return s.Serve(ctx, ls[0], ls[1], ls[2])
}

// Serve serves the admin, stats and readiness endpoints on the given listeners (a nil
// listener leaves its endpoints out) until ctx is done, then shuts down gracefully and
// returns nil. The admin listener must be on a loopback address. Serve closes the listeners.
func (s *Server) Serve(ctx context.Context, admin, stats, ready net.Listener) error {
	if admin != nil {
		if err := checkLoopback(admin.Addr().String()); err != nil {
			for _, l := range []net.Listener{admin, stats, ready} {
				if l != nil {
					l.Close()
				}
			}
			return err
		}
	}
	errLog := slog.NewLogLogger(s.log.Handler(), slog.LevelWarn)
	type entry struct {
		name string
		l    net.Listener
		h    http.Handler
	}
	var servers []*http.Server
	errc := make(chan error, 3)
	var wg sync.WaitGroup
	for _, e := range []entry{
		{"admin", admin, s.AdminHandler()},
		{"stats", stats, s.StatsHandler()},
		{"readiness", ready, s.ReadyHandler()},
	} {
		if e.l == nil {
			continue
		}
		srv := &http.Server{
			Handler:           e.h,
			ReadHeaderTimeout: 10 * time.Second,
			ErrorLog:          errLog,
			BaseContext:       func(net.Listener) context.Context { return ctx },
		}
		servers = append(servers, srv)
		s.log.Info("serving", "endpoints", e.name, "addr", e.l.Addr().String())
		wg.Go(func() {
			if err := srv.Serve(e.l); !errors.Is(err, http.ErrServerClosed) {
				errc <- fmt.Errorf("admin: %s server: %w", e.name, err)
			}
		})
	}

	var err error
	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownTimeout)
	defer cancel()
	for _, srv := range servers {
		if serr := srv.Shutdown(sctx); serr != nil {
			srv.Close()
		}
	}
	wg.Wait()
	return err
}
