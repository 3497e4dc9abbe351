// Command bulk is the bulk-transfer application of Weft's test harness. It
// measures TCP throughput through the mesh and verifies that the bytes
// arrive intact (count and SHA-256).
//
// Usage:
//
//	bulk recv [-listen :5001] [-shutdown-timeout D] [-log-level L]
//	bulk send -to ADDR [-bytes 100M] [-streams N] [-seed S] [-marker STRING]
//	          [-chunk 256KiB] [-timeout D] [-json] [-log-level L]
//
// Every flag can also come from an environment variable, used only when the
// flag is not given:
//
//	recv:
//	-listen ADDR          BULK_LISTEN            listen address (default ":5001")
//	-shutdown-timeout D   BULK_SHUTDOWN_TIMEOUT  bound on graceful shutdown (default 10s)
//	send:
//	-to ADDR              BULK_TO                receiver host:port (required)
//	-bytes SIZE           BULK_BYTES             bytes per stream (default 100M); K/M/G/T are
//	                                             powers of 1000, Ki/Mi/Gi/Ti powers of 1024
//	-streams N            BULK_STREAMS           parallel connections (default 1)
//	-seed S               BULK_SEED              content seed; stream i uses S+i (default 1)
//	-marker STRING        BULK_MARKER            plaintext marker stamped every 1 KiB (max 256 bytes)
//	-chunk SIZE           BULK_CHUNK             write size (default 256KiB)
//	-timeout D            BULK_TIMEOUT           bound on the whole send (default 10m)
//	-json                 BULK_JSON              print the JSON report (transfer.SendReport) on stdout
//	both:
//	-log-level L          BULK_LOG_LEVEL         debug, info, warn, error (default info)
//
// Protocol: the sender writes the stream and half-closes; the receiver reads
// to EOF and answers with an 8-byte big-endian count and the 32-byte SHA-256
// of what it read, which the sender compares with what it sent.
//
// send prints a one-line summary on stdout (on stderr with -json, where
// stdout holds the JSON report) with bytes, seconds and Gbit/s per stream
// and in total, and whether the digests matched. recv logs one JSON line per
// transfer on stderr and stops gracefully on SIGTERM/SIGINT.
//
// Exit status: 0 success, 1 transfer error or digest mismatch, 2 usage error.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/weftmesh/weft/test/apps/bulk/transfer"
	"github.com/weftmesh/weft/test/apps/internal/envflag"
)

// Exit statuses.
const (
	exitOK     = 0
	exitFailed = 1
	exitUsage  = 2
)

const usage = `usage:
  bulk recv [-listen :5001] [-shutdown-timeout D] [-log-level L]
  bulk send -to ADDR [-bytes 100M] [-streams N] [-seed S] [-marker STRING] [-chunk 256KiB] [-timeout D] [-json]`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr, os.LookupEnv)
	stop()
	os.Exit(code)
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer, lookup envflag.LookupFunc) int {
	if len(args) == 0 {
		fmt.Fprintf(stderr, "bulk: missing mode\n%s\n", usage)
		return exitUsage
	}
	switch args[0] {
	case "recv":
		return runRecv(ctx, args[1:], stderr, lookup)
	case "send":
		return runSend(ctx, args[1:], stdout, stderr, lookup)
	}
	fmt.Fprintf(stderr, "bulk: unknown mode %q\n%s\n", args[0], usage)
	return exitUsage
}

func parse(fs *flag.FlagSet, args []string, env map[string]string, lookup envflag.LookupFunc) error {
	pos, err := envflag.ParseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return fmt.Errorf("unexpected arguments %q", pos)
	}
	return envflag.Apply(fs, env, lookup)
}

func usageErr(stderr io.Writer, err error) int {
	if !errors.Is(err, flag.ErrHelp) {
		fmt.Fprintf(stderr, "bulk: %v\n%s\n", err, usage)
	}
	return exitUsage
}

func newLogger(w io.Writer, level slog.Level, mode string) *slog.Logger {
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: level})).With("app", "bulk", "mode", mode)
}

func runRecv(ctx context.Context, args []string, stderr io.Writer, lookup envflag.LookupFunc) int {
	fs := flag.NewFlagSet("bulk recv", flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", ":5001", "listen address")
	grace := fs.Duration("shutdown-timeout", 10*time.Second, "bound on graceful shutdown")
	var level slog.Level
	fs.TextVar(&level, "log-level", slog.LevelInfo, "log level")
	if err := parse(fs, args, map[string]string{
		"listen": "BULK_LISTEN", "shutdown-timeout": "BULK_SHUTDOWN_TIMEOUT", "log-level": "BULK_LOG_LEVEL",
	}, lookup); err != nil {
		return usageErr(stderr, err)
	}
	logger := newLogger(stderr, level, "recv")

	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", *listen)
	if err != nil {
		logger.Error("listen failed", "addr", *listen, "err", err)
		return exitFailed
	}
	logger.Info("listening", "addr", ln.Addr().String())
	if err := transfer.Serve(ctx, ln, *grace, logger); err != nil {
		logger.Error("serve failed", "err", err)
		return exitFailed
	}
	logger.Info("stopped")
	return exitOK
}

func runSend(ctx context.Context, args []string, stdout, stderr io.Writer, lookup envflag.LookupFunc) int {
	fs := flag.NewFlagSet("bulk send", flag.ContinueOnError)
	fs.SetOutput(stderr)
	to := fs.String("to", "", "receiver host:port")
	size := fs.String("bytes", "100M", "bytes per stream")
	streams := fs.Int("streams", 1, "parallel connections")
	seed := fs.Uint64("seed", 1, "content seed (stream i uses seed+i)")
	marker := fs.String("marker", "", "plaintext marker stamped every 1 KiB")
	chunk := fs.String("chunk", "256KiB", "write size")
	timeout := fs.Duration("timeout", 10*time.Minute, "bound on the whole send")
	asJSON := fs.Bool("json", false, "print the JSON report on stdout")
	var level slog.Level
	fs.TextVar(&level, "log-level", slog.LevelInfo, "log level")
	if err := parse(fs, args, map[string]string{
		"to": "BULK_TO", "bytes": "BULK_BYTES", "streams": "BULK_STREAMS", "seed": "BULK_SEED",
		"marker": "BULK_MARKER", "chunk": "BULK_CHUNK", "timeout": "BULK_TIMEOUT", "json": "BULK_JSON",
		"log-level": "BULK_LOG_LEVEL",
	}, lookup); err != nil {
		return usageErr(stderr, err)
	}
	n, err := transfer.ParseSize(*size)
	if err != nil {
		return usageErr(stderr, fmt.Errorf("-bytes: %w", err))
	}
	c, err := transfer.ParseSize(*chunk)
	if err != nil || c < 1 || c > 64<<20 {
		return usageErr(stderr, fmt.Errorf("-chunk %q: want 1 byte to 64 MiB", *chunk))
	}
	switch {
	case *to == "":
		return usageErr(stderr, errors.New("-to is required"))
	case *streams < 1:
		return usageErr(stderr, fmt.Errorf("-streams %d: want at least 1", *streams))
	case len(*marker) > transfer.MaxMarker:
		return usageErr(stderr, fmt.Errorf("-marker: longer than %d bytes", transfer.MaxMarker))
	}
	logger := newLogger(stderr, level, "send")

	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	logger.Debug("sending", "to", *to, "bytes", n, "streams", *streams, "seed", *seed, "marker", *marker != "")
	rep, sendErr := transfer.Send(ctx, *to, transfer.SendOptions{
		Bytes: n, Streams: *streams, Seed: *seed, Marker: *marker, Chunk: int(c),
	})
	if sendErr != nil {
		logger.Error("send failed", "err", sendErr, "mismatch", errors.Is(sendErr, transfer.ErrMismatch))
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			logger.Error("write report", "err", err)
			return exitFailed
		}
		fmt.Fprintln(stderr, rep.Summary())
	} else {
		fmt.Fprintln(stdout, rep.Summary())
	}
	if sendErr != nil || !rep.Match {
		return exitFailed
	}
	return exitOK
}
