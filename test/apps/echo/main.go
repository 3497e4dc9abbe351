// Command echo is the echo application of Weft's test harness. It answers
// every HTTP path with a JSON description of the request and of itself, and
// stands in for the tutorial apps (gw, books v1/v2, ratings v1/v2, ...).
//
// Usage:
//
//	echo [flags]
//
// Every flag can also come from an environment variable, which is used only
// when the flag is not given on the command line:
//
//	-name NAME                 NAME              app name in responses (default "echo")
//	-version V                 VERSION           app version in responses (default "v1")
//	-pod-name S                POD_NAME          pod name in responses
//	-pod-namespace S           POD_NAMESPACE     pod namespace in responses
//	-pod-ip S                  POD_IP            pod IP in responses
//	-listen-host H             LISTEN_HOST       address to listen on (default "", all addresses)
//	-port N                    PORT              HTTP/1.1 + h2c (prior knowledge) port (default 8080)
//	-grpc-port N               GRPC_PORT         gRPC health + reflection port (default 0, off)
//	-tcp-port N                TCP_PORT          TCP echo port (default 0, off)
//	-fail-pattern LIST         FAIL_PATTERN      status cycle, e.g. "503,503,200"; 200 = serve normally
//	-fail-every N              FAIL_EVERY        every Nth request gets 503 (exclusive with -fail-pattern)
//	-call URL                  CALL              upstream URL for /chain; repeatable, comma separated
//	-call-timeout D            CALL_TIMEOUT      timeout of each upstream call (default 5s)
//	-max-delay D               MAX_DELAY         largest accepted ?delay= (default 30s)
//	-max-size N                MAX_SIZE          largest accepted ?size= in bytes (default 64 MiB)
//	-drain-delay D             DRAIN_DELAY       after SIGTERM, fail /readyz for D before shutting down (default 0)
//	-shutdown-timeout D        SHUTDOWN_TIMEOUT  bound on graceful shutdown (default 10s)
//	-log-level L               LOG_LEVEL         debug, info, warn or error (default info; debug logs every request)
//
// HTTP endpoints:
//
//	/healthz   200 "ok" (liveness probe)
//	/readyz    200 "ok", 503 while draining (readiness probe)
//	/chain     like any path, and also GETs every -call URL concurrently,
//	           forwarding x-request-id, end-user, traceparent, tracestate and
//	           B3 headers, embedding the upstream responses under
//	           "upstreams"; the status is 502 if any upstream failed
//	/*         the echo JSON (see echoserver.Response)
//
// Query parameters, on any echo path: ?status=CODE answers with CODE,
// ?delay=DURATION (or milliseconds) waits before answering, ?size=N appends
// N bytes of padding in the last JSON field "padding". The fail pattern is
// applied per process before ?status= and short-circuits /chain.
//
// Logs are JSON (log/slog) on stderr. SIGTERM or SIGINT starts a graceful
// shutdown: /readyz fails, -drain-delay passes, then the servers stop,
// bounded by -shutdown-timeout; the exit status is then 0. The exit status
// is 1 when a server fails and 2 on a usage error.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/weftmesh/weft/test/apps/echo/echoserver"
	"github.com/weftmesh/weft/test/apps/internal/envflag"
)

func main() {
	o, err := parseOptions(os.Args[1:], os.LookupEnv, os.Stderr)
	if err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "echo:", err)
		}
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	err = run(ctx, o, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "echo:", err)
		os.Exit(1)
	}
}

// options is the parsed command line.
type options struct {
	server          echoserver.Config
	listenHost      string
	port            int
	grpcPort        int
	tcpPort         int
	callTimeout     time.Duration
	drainDelay      time.Duration
	shutdownTimeout time.Duration
	logLevel        slog.Level
}

func parseOptions(args []string, lookup envflag.LookupFunc, out io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("echo", flag.ContinueOnError)
	fs.SetOutput(out)
	fs.StringVar(&o.server.Name, "name", "echo", "app name reported in responses")
	fs.StringVar(&o.server.Version, "version", "v1", "app version reported in responses")
	fs.StringVar(&o.server.PodName, "pod-name", "", "pod name reported in responses")
	fs.StringVar(&o.server.PodNamespace, "pod-namespace", "", "pod namespace reported in responses")
	fs.StringVar(&o.server.PodIP, "pod-ip", "", "pod IP reported in responses")
	fs.StringVar(&o.listenHost, "listen-host", "", "address to listen on (default all)")
	fs.IntVar(&o.port, "port", 8080, "HTTP/1.1 and h2c port")
	fs.IntVar(&o.grpcPort, "grpc-port", 0, "gRPC health/reflection port (0 = off)")
	fs.IntVar(&o.tcpPort, "tcp-port", 0, "TCP echo port (0 = off)")
	failPattern := fs.String("fail-pattern", "", `status-code cycle such as "503,503,200" (200 = serve normally)`)
	failEvery := fs.Int("fail-every", 0, "every Nth request gets 503")
	var calls envflag.List
	fs.Var(&calls, "call", "upstream URL called by /chain (repeatable, comma separated)")
	fs.DurationVar(&o.callTimeout, "call-timeout", 5*time.Second, "timeout of each upstream call")
	fs.DurationVar(&o.server.MaxDelay, "max-delay", echoserver.DefaultMaxDelay, "largest accepted ?delay=")
	fs.IntVar(&o.server.MaxSize, "max-size", echoserver.DefaultMaxSize, "largest accepted ?size= in bytes")
	fs.DurationVar(&o.drainDelay, "drain-delay", 0, "after SIGTERM, fail /readyz this long before shutting down")
	fs.DurationVar(&o.shutdownTimeout, "shutdown-timeout", 10*time.Second, "bound on graceful shutdown")
	fs.TextVar(&o.logLevel, "log-level", slog.LevelInfo, "log level: debug, info, warn, error")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	err := envflag.Apply(fs, map[string]string{
		"name": "NAME", "version": "VERSION",
		"pod-name": "POD_NAME", "pod-namespace": "POD_NAMESPACE", "pod-ip": "POD_IP",
		"listen-host": "LISTEN_HOST", "port": "PORT", "grpc-port": "GRPC_PORT", "tcp-port": "TCP_PORT",
		"fail-pattern": "FAIL_PATTERN", "fail-every": "FAIL_EVERY",
		"call": "CALL", "call-timeout": "CALL_TIMEOUT",
		"max-delay": "MAX_DELAY", "max-size": "MAX_SIZE",
		"drain-delay": "DRAIN_DELAY", "shutdown-timeout": "SHUTDOWN_TIMEOUT",
		"log-level": "LOG_LEVEL",
	}, lookup)
	if err != nil {
		return o, err
	}
	switch {
	case *failPattern != "" && *failEvery > 0:
		return o, errors.New("-fail-pattern and -fail-every are mutually exclusive")
	case *failPattern != "":
		if o.server.FailPattern, err = echoserver.ParseFailPattern(*failPattern); err != nil {
			return o, err
		}
	case *failEvery < 0:
		return o, fmt.Errorf("-fail-every %d: must not be negative", *failEvery)
	default:
		o.server.FailPattern = echoserver.FailEvery(*failEvery)
	}
	o.server.Calls = calls
	if o.server.Hostname, err = os.Hostname(); err != nil {
		return o, fmt.Errorf("hostname: %w", err)
	}
	return o, nil
}

// run serves until ctx is done, then shuts down gracefully. It returns nil
// after a shutdown caused by ctx and the first server error otherwise.
func run(ctx context.Context, o options, stderr io.Writer) error {
	logger := slog.New(slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: o.logLevel})).
		With("app", "echo", "name", o.server.Name, "version", o.server.Version)

	client := &http.Client{
		Timeout:   o.callTimeout,
		Transport: &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 64, IdleConnTimeout: 90 * time.Second},
	}
	handler := echoserver.New(o.server, logger, client)

	var protocols http.Protocols
	protocols.SetHTTP1(true)
	protocols.SetUnencryptedHTTP2(true)
	httpSrv := &http.Server{
		Handler:           handler,
		Protocols:         &protocols,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}

	var lc net.ListenConfig
	addr := func(port int) string { return net.JoinHostPort(o.listenHost, strconv.Itoa(port)) }
	httpLn, err := lc.Listen(ctx, "tcp", addr(o.port))
	if err != nil {
		return fmt.Errorf("listen http: %w", err)
	}
	var grpcLn, tcpLn net.Listener
	if o.grpcPort > 0 {
		if grpcLn, err = lc.Listen(ctx, "tcp", addr(o.grpcPort)); err != nil {
			_ = httpLn.Close()
			return fmt.Errorf("listen grpc: %w", err)
		}
	}
	if o.tcpPort > 0 {
		if tcpLn, err = lc.Listen(ctx, "tcp", addr(o.tcpPort)); err != nil {
			_ = httpLn.Close()
			if grpcLn != nil {
				_ = grpcLn.Close()
			}
			return fmt.Errorf("listen tcp: %w", err)
		}
	}

	// serveCtx ends either on a signal or when any server fails.
	serveCtx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var wg sync.WaitGroup

	logger.Info("serving http", "addr", httpLn.Addr().String(), "calls", o.server.Calls, "fail_pattern", o.server.FailPattern)
	wg.Go(func() {
		if err := httpSrv.Serve(httpLn); !errors.Is(err, http.ErrServerClosed) {
			cancel(fmt.Errorf("serve http: %w", err))
		}
	})

	if grpcLn != nil {
		grpcSrv, health := echoserver.NewGRPCServer(o.server, logger)
		logger.Info("serving grpc", "addr", grpcLn.Addr().String())
		wg.Go(func() {
			if err := grpcSrv.Serve(grpcLn); err != nil {
				cancel(fmt.Errorf("serve grpc: %w", err))
			}
		})
		wg.Go(func() {
			<-serveCtx.Done()
			time.Sleep(o.drainDelay) // keep serving while probes notice /readyz
			health.Shutdown()
			stopped := make(chan struct{})
			go func() { grpcSrv.GracefulStop(); close(stopped) }()
			t := time.NewTimer(o.shutdownTimeout)
			defer t.Stop()
			select {
			case <-stopped:
			case <-t.C:
				logger.Warn("grpc graceful stop timed out")
				grpcSrv.Stop()
				<-stopped
			}
		})
	}

	if tcpLn != nil {
		logger.Info("serving tcp echo", "addr", tcpLn.Addr().String())
		wg.Go(func() {
			if err := echoserver.ServeTCPEcho(serveCtx, tcpLn, o.shutdownTimeout, logger); err != nil {
				cancel(err)
			}
		})
	}

	<-serveCtx.Done()
	cause := context.Cause(serveCtx)
	if ctx.Err() != nil {
		cause = nil // signal: normal shutdown
	}
	logger.Info("shutting down", "cause", context.Cause(serveCtx).Error())
	handler.SetDraining(true)
	time.Sleep(o.drainDelay) // keep serving while probes notice /readyz
	shutCtx, shutCancel := context.WithTimeout(context.WithoutCancel(ctx), o.shutdownTimeout)
	defer shutCancel()
	if err := httpSrv.Shutdown(shutCtx); err != nil {
		logger.Warn("http graceful shutdown incomplete", "err", err)
		_ = httpSrv.Close()
	}
	wg.Wait()
	logger.Info("stopped")
	return cause
}
