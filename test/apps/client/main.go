// Command client is the load and probe client of Weft's test harness. It
// sends requests to the echo, gRPC health and TCP echo servers of the test
// apps and reports what came back, including which app versions answered
// (how tests check canary weights).
//
// Usage:
//
//	client http URL  [-n N] [-c C] [-H 'Key: value']... [-timeout D] [-method M] [-data S]
//	                 [-h2c] [-new-conn] [-json] [-allow-fail]
//	client grpc ADDR [-n N] [-c C] [-service NAME] [-timeout D] [-new-conn] [-json] [-allow-fail]
//	client tcp  ADDR [-send TEXT] [-n N] [-c C] [-timeout D] [-json] [-allow-fail]
//
// Flags may come before or after the target. Every flag can also come from
// an environment variable, used only when the flag is not given:
//
//	-n N            CLIENT_N           number of requests (default 1)
//	-c C            CLIENT_C           concurrent workers (default 1)
//	-timeout D      CLIENT_TIMEOUT     per-request timeout (default 5s)
//	-json           CLIENT_JSON        print the JSON report (report.Report) on stdout
//	-allow-fail     CLIENT_ALLOW_FAIL  exit 0 even if requests failed
//	-log-level L    CLIENT_LOG_LEVEL   debug, info, warn, error (default warn)
//	http only:
//	-H 'K: V'       CLIENT_HEADERS     request header, repeatable ("Host: x" sets the Host);
//	                                   the variable holds one header per line
//	-method M       CLIENT_METHOD      HTTP method (default GET)
//	-data S         CLIENT_DATA        request body
//	-h2c            CLIENT_H2C         HTTP/2 over cleartext (prior knowledge)
//	-new-conn       CLIENT_NEW_CONN    new connection per request (no keep-alive)
//	grpc only:
//	-service NAME   CLIENT_SERVICE     health service name (default "", the whole server)
//	-new-conn       CLIENT_NEW_CONN    new connection per request
//	tcp only:
//	-send TEXT      CLIENT_SEND        line to send (default "hello")
//
// The target (URL or host:port) may also come from CLIENT_TARGET.
//
// Output: without -json a one-line summary on stdout; with -json the JSON
// report on stdout and the summary on stderr. For tcp with -n 1 and no
// -json, the reply line is printed on stdout before the summary.
//
// An HTTP request fails on a transport error or a status outside 200-399,
// a gRPC check unless it returns SERVING, a TCP exchange unless the reply
// equals the line sent. Exit status: 0 success, 1 some request failed
// (unless -allow-fail), 2 usage error. SIGTERM/SIGINT stop the run early
// and report what completed.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/weftmesh/weft/test/apps/client/load"
	"github.com/weftmesh/weft/test/apps/client/report"
	"github.com/weftmesh/weft/test/apps/internal/envflag"
)

// Exit statuses.
const (
	exitOK     = 0
	exitFailed = 1
	exitUsage  = 2
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr, os.LookupEnv)
	stop()
	os.Exit(code)
}

const usage = `usage:
  client http URL  [-n N] [-c C] [-H 'Key: value']... [-timeout D] [-method M] [-data S] [-h2c] [-new-conn] [-json] [-allow-fail]
  client grpc ADDR [-n N] [-c C] [-service NAME] [-timeout D] [-new-conn] [-json] [-allow-fail]
  client tcp  ADDR [-send TEXT] [-n N] [-c C] [-timeout D] [-json] [-allow-fail]`

// options is the parsed command line.
type options struct {
	mode      string
	target    string
	n, c      int
	timeout   time.Duration
	json      bool
	allowFail bool
	logLevel  slog.Level
	headers   envflag.Multi
	method    string
	data      string
	h2c       bool
	newConn   bool
	service   string
	send      string
}

func parseOptions(args []string, lookup envflag.LookupFunc, stderr io.Writer) (options, error) {
	var o options
	if len(args) == 0 {
		return o, errors.New("missing mode (http, grpc or tcp)")
	}
	o.mode = args[0]
	fs := flag.NewFlagSet("client "+o.mode, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.IntVar(&o.n, "n", 1, "number of requests")
	fs.IntVar(&o.c, "c", 1, "concurrent workers")
	fs.DurationVar(&o.timeout, "timeout", 5*time.Second, "per-request timeout")
	fs.BoolVar(&o.json, "json", false, "print the JSON report on stdout")
	fs.BoolVar(&o.allowFail, "allow-fail", false, "exit 0 even if requests failed")
	fs.TextVar(&o.logLevel, "log-level", slog.LevelWarn, "log level")
	env := map[string]string{
		"n": "CLIENT_N", "c": "CLIENT_C", "timeout": "CLIENT_TIMEOUT",
		"json": "CLIENT_JSON", "allow-fail": "CLIENT_ALLOW_FAIL", "log-level": "CLIENT_LOG_LEVEL",
	}
	switch o.mode {
	case "http":
		fs.Var(&o.headers, "H", "request header 'Key: value' (repeatable)")
		fs.StringVar(&o.method, "method", http.MethodGet, "HTTP method")
		fs.StringVar(&o.data, "data", "", "request body")
		fs.BoolVar(&o.h2c, "h2c", false, "use HTTP/2 over cleartext (prior knowledge)")
		fs.BoolVar(&o.newConn, "new-conn", false, "new connection per request")
		env["H"], env["method"], env["data"], env["h2c"], env["new-conn"] =
			"CLIENT_HEADERS", "CLIENT_METHOD", "CLIENT_DATA", "CLIENT_H2C", "CLIENT_NEW_CONN"
	case "grpc":
		fs.StringVar(&o.service, "service", "", "health service name")
		fs.BoolVar(&o.newConn, "new-conn", false, "new connection per request")
		env["service"], env["new-conn"] = "CLIENT_SERVICE", "CLIENT_NEW_CONN"
	case "tcp":
		fs.StringVar(&o.send, "send", "hello", "line to send")
		env["send"] = "CLIENT_SEND"
	default:
		return o, fmt.Errorf("unknown mode %q (want http, grpc or tcp)", o.mode)
	}
	pos, err := envflag.ParseInterspersed(fs, args[1:])
	if err != nil {
		return o, err
	}
	if err := envflag.Apply(fs, env, lookup); err != nil {
		return o, err
	}
	switch len(pos) {
	case 0:
		if v, ok := lookup("CLIENT_TARGET"); ok && v != "" {
			o.target = v
		} else {
			return o, errors.New("missing target")
		}
	case 1:
		o.target = pos[0]
	default:
		return o, fmt.Errorf("unexpected arguments %q", pos[1:])
	}
	if o.n < 0 || o.c < 1 {
		return o, fmt.Errorf("-n %d -c %d: want n >= 0 and c >= 1", o.n, o.c)
	}
	return o, nil
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer, lookup envflag.LookupFunc) int {
	o, err := parseOptions(args, lookup, stderr)
	if err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintf(stderr, "client: %v\n%s\n", err, usage)
		}
		return exitUsage
	}
	logger := slog.New(slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: o.logLevel})).With("app", "client", "mode", o.mode)

	fn, cleanup, err := newFunc(o)
	if err != nil {
		logger.Error("setup failed", "err", err)
		return exitUsage
	}
	defer cleanup()

	rec := report.NewRecorder(o.mode, o.target)
	logger.Debug("starting", "target", o.target, "n", o.n, "c", o.c)
	elapsed := load.Run(ctx, o.n, o.c, fn, rec)
	r := rec.Report(elapsed)
	for _, msg := range r.ErrorSamples {
		logger.Warn("request failed", "err", msg)
	}

	if o.json {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(r); err != nil {
			logger.Error("write report", "err", err)
			return exitFailed
		}
		fmt.Fprintln(stderr, r.Summary())
	} else {
		if o.mode == "tcp" && o.n == 1 && r.Reply != "" {
			fmt.Fprintln(stdout, r.Reply)
		}
		fmt.Fprintln(stdout, r.Summary())
	}
	if (r.Failed > 0 || r.Count < o.n) && !o.allowFail {
		return exitFailed
	}
	return exitOK
}

// newFunc builds the request function for o.mode.
func newFunc(o options) (load.Func, func(), error) {
	switch o.mode {
	case "http":
		hdr := make(http.Header)
		for _, h := range o.headers {
			for line := range strings.Lines(h) {
				if line = strings.TrimSpace(line); line == "" {
					continue
				}
				k, v, err := load.ParseHeader(line)
				if err != nil {
					return nil, nil, err
				}
				hdr.Add(k, v)
			}
		}
		var body []byte
		if o.data != "" {
			body = []byte(o.data)
		}
		fn, client, err := load.HTTP(o.target, load.HTTPOptions{
			Method: o.method, Header: hdr, Body: body, Timeout: o.timeout,
			H2C: o.h2c, NewConn: o.newConn, Concurrency: o.c,
		})
		if err != nil {
			return nil, nil, err
		}
		return fn, client.CloseIdleConnections, nil
	case "grpc":
		return load.GRPC(o.target, load.GRPCOptions{Service: o.service, Timeout: o.timeout, NewConn: o.newConn})
	case "tcp":
		return load.TCP(o.target, load.TCPOptions{Send: o.send, Timeout: o.timeout}), func() {}, nil
	}
	return nil, nil, fmt.Errorf("unknown mode %q", o.mode)
}
