// Command weft-scale measures Weft's controller against a large simulated cluster and writes
// the results (make bench runs it before weft-bench, whose report includes its figures).
//
// Usage:
//
//	weft-scale [-quick] [-out DIR] [-timeout D] [-controller BIN] [-nodes N] [-namespaces N]
//	           [-services-per-namespace N] [-pods-per-service N] [-changes N] [-seed N]
//
// It starts a real control plane (etcd, kube-apiserver, kube-controller-manager,
// kube-scheduler; no kubelets), fills it with nodes, namespaces, services, EndpointSlices and
// pods, runs the controller binary as a separate process and connects one simulated node
// agent per node over real xDS (the node agent's own client, with real service-account
// tokens); then it measures the initial sync and a series of changes — pod readiness, pod
// added, service port added, namespace label — from the apiserver write to the last affected
// agent's apply (its ACK follows at once), with the controller's CPU and memory from /proc. See
// package test/bench/scale for the method.
//
// Full mode: 100 nodes and agents, 1,000 services, 10,000 pods, 30 changes of each kind
// (about 18 minutes on 2 vCPUs). -quick: 20 agents, 100 services, 1,000 pods, 10 of each kind
// (under a minute). It writes DIR/scale-<UTC time>.json (the scale.Result) and DIR/scale-<UTC time>.md
// (also printed on stdout). No root needed.
//
// The exit status is 1 when the run could not be completed or a change failed (the files are
// written with what was measured), 2 on a usage error.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/weftmesh/weft/test/bench/scale"
	"github.com/weftmesh/weft/test/controlplane"
)

type config struct {
	plan       scale.Plan
	out        string
	timeout    time.Duration
	controller string
}

func main() {
	cfg, err := parseFlags(os.Args[1:], os.Stderr)
	if err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "weft-scale:", err)
		}
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	err = run(ctx, cfg, os.Stdout)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "weft-scale:", err)
		os.Exit(1)
	}
}

func parseFlags(args []string, stderr io.Writer) (config, error) {
	fs := flag.NewFlagSet("weft-scale", flag.ContinueOnError)
	fs.SetOutput(stderr)
	quick := fs.Bool("quick", false, "small cluster: 20 agents, 100 services, 1,000 pods, 10 changes of each kind")
	out := fs.String("out", "bench-results", "directory for scale-<time>.json and scale-<time>.md")
	timeout := fs.Duration("timeout", 0, "bound on the whole run (default 5m with -quick, 45m otherwise)")
	controller := fs.String("controller", "", "weft-controller binary (default bin/weft-controller of the repository)")
	nodes := fs.Int("nodes", 0, "nodes, one simulated agent each (default by mode)")
	namespaces := fs.Int("namespaces", 0, "application namespaces; every 5th is not ambient (default by mode)")
	spn := fs.Int("services-per-namespace", 0, "services per namespace (default by mode)")
	pps := fs.Int("pods-per-service", 0, "pods per service (default by mode)")
	changes := fs.Int("changes", 0, "changes of each kind (default by mode)")
	seed := fs.Int64("seed", 1, "seed of the choice of objects to change")
	if err := fs.Parse(args); err != nil {
		return config{}, err
	}
	if fs.NArg() > 0 {
		return config{}, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	mode := scale.Full
	if *quick {
		mode = scale.Quick
	}
	plan, err := scale.NewPlan(mode)
	if err != nil {
		return config{}, err
	}
	for _, o := range []struct {
		v   int
		dst *int
	}{{*nodes, &plan.Size.Nodes}, {*namespaces, &plan.Size.Namespaces}, {*spn, &plan.Size.ServicesPerNamespace},
		{*pps, &plan.Size.PodsPerService}, {*changes, &plan.ChangesPerKind}} {
		if o.v < 0 {
			return config{}, errors.New("sizes must not be negative")
		}
		if o.v > 0 {
			*o.dst = o.v
		}
	}
	plan.Seed = *seed
	if err := plan.Validate(); err != nil {
		return config{}, err
	}
	cfg := config{plan: plan, out: *out, timeout: *timeout, controller: *controller}
	if cfg.timeout == 0 {
		cfg.timeout = 45 * time.Minute
		if *quick {
			cfg.timeout = 5 * time.Minute
		}
	}
	return cfg, nil
}

// progress prints steps with the time since the start.
type progress struct {
	mu    sync.Mutex
	w     io.Writer
	start time.Time
}

func (p *progress) step(format string, args ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	fmt.Fprintf(p.w, "[%6.1fs] %s\n", time.Since(p.start).Seconds(), fmt.Sprintf(format, args...))
}

func (p *progress) Write(b []byte) (int, error) {
	for _, line := range bytes.Split(bytes.TrimRight(b, "\n"), []byte("\n")) {
		// Lines of controlplane.Ensure carry their own "[  0.0s] " prefix.
		if bytes.HasPrefix(line, []byte("[")) {
			if _, rest, ok := bytes.Cut(line, []byte("s] ")); ok {
				line = rest
			}
		}
		p.step("%s", line)
	}
	return len(b), nil
}

func run(ctx context.Context, cfg config, stdout io.Writer) error {
	ctx, cancel := context.WithTimeout(ctx, cfg.timeout)
	defer cancel()
	root, err := controlplane.RepoRoot()
	if err != nil {
		return err
	}
	if cfg.controller == "" {
		cfg.controller = filepath.Join(root, "bin", "weft-controller")
	}
	if _, err := os.Stat(cfg.controller); err != nil {
		return fmt.Errorf("controller binary: %w (run make build)", err)
	}
	p := &progress{w: stdout, start: time.Now()}
	s := cfg.plan.Size
	p.step("weft-scale %s mode: %d agents, %d namespaces, %d services, %d pods, %d changes of each of %d kinds",
		cfg.plan.Mode, s.Nodes, s.Namespaces, s.Services(), s.Pods(), cfg.plan.ChangesPerKind, len(scale.Kinds))
	cache, err := controlplane.DefaultCacheDir()
	if err != nil {
		return err
	}
	bins, err := controlplane.Ensure(ctx, cache, p)
	if err != nil {
		return err
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
	res, runErr := scale.Run(ctx, scale.Options{Plan: cfg.plan, RepoRoot: root, Controller: cfg.controller, Binaries: bins,
		Progress: p.step, Logger: logger})
	if res == nil {
		return runErr
	}
	if runErr != nil {
		res.Errors = append(res.Errors, "run: "+runErr.Error())
	}
	if err := write(cfg.out, res, stdout); err != nil {
		return errors.Join(runErr, err)
	}
	if runErr != nil {
		return runErr
	}
	for _, k := range res.Changes {
		if k.Failed > 0 {
			return fmt.Errorf("%d %s changes failed (see the notes)", k.Failed, k.Kind)
		}
	}
	return nil
}

func write(dir string, res *scale.Result, stdout io.Writer) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	base := filepath.Join(dir, "scale-"+res.ID)
	js, err := json.MarshalIndent(res, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(base+".json", append(js, '\n'), 0o644); err != nil {
		return err
	}
	var md bytes.Buffer
	if err := scale.WriteMarkdown(&md, res); err != nil {
		return err
	}
	if err := os.WriteFile(base+".md", md.Bytes(), 0o644); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "\n%s\nwrote %s.json and %s.md\n", md.String(), base, base)
	return nil
}
