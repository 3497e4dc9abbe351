// Command weft-bench measures Weft's data path against the no-mesh limit and peers, in a fresh
// two-node harness cluster, and writes the results (make bench).
//
// Usage:
//
//	weft-bench [-quick] [-out DIR] [-timeout D] [-tune-client=false] [-scale FILE|none]
//	           [-scenarios a,b] [-duration D] [-profile DIR] [-pin-load CPUS]
//	weft-bench -plot bench-results/bench-<time>.json [-out DIR]
//
// It starts the cluster, deploys the benchmark pods (the client on node-1; an echo server and a
// bulk receiver on node-2, and another pair on node-1 for the same-node scenarios), installs
// Weft, and runs the plan's workloads (package bench) for these scenarios, interleaved per
// repetition: no-mesh, weft-l4, no-mesh-same-node, weft-same-node, weft-l7 (through the
// namespace's waypoint), haproxy-mtls, stunnel-mtls and nginx-l7; then weft-iptables (the agents
// restarted with --capture=iptables) in a second pass. It writes DIR/bench-<UTC time>.json (the
// bench.Run), the plots DIR/bench-<UTC time>-*.svg and DIR/bench-<UTC time>.md (the Markdown
// tables, also printed on stdout), with the control-plane figures of the newest
// DIR/scale-*.json (weft-scale). Every repetition records the CPU time and peak memory of the
// processes on the path: agents, waypoint, peers.
//
// -quick runs each load point once, briefly: the whole run, cluster included, takes under 3
// minutes. The default full mode runs each load point 3 times, each after a warm-up on the path
// just entered (see bench.NewPlan).
//
// -scenarios runs only the named scenarios (and their baselines), e.g. for a before/after
// comparison of one change; -duration sets the length of an HTTP repetition; -profile writes
// pprof CPU and allocation profiles of the agents and the waypoint, taken during the first
// repetition of every workload; -pin-load runs the load generators on the given CPUs only.
//
// -plot renders the plots of an existing result file instead, next to it (or into -out when
// given), and prints their Markdown image links; it needs neither root nor a cluster.
//
// Needs root (network namespaces, cgroups). The exit status is 1 when the cluster cannot start
// or any workload failed (the files are written anyway), 2 on a usage error.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/weftmesh/weft/nodeagent/admin"
	"github.com/weftmesh/weft/test/bench"
	"github.com/weftmesh/weft/test/harness"
	"github.com/weftmesh/weft/test/mesh"
)

const (
	// meshSettle is the wait after a label change before the path is checked: the controller
	// translates and pushes the change to the agents.
	meshSettle = 500 * time.Millisecond
	// meshSwitchTimeout bounds the check that a switch took effect.
	meshSwitchTimeout = 15 * time.Second
)

type config struct {
	mode       bench.Mode
	outDir     string
	timeout    time.Duration
	tuneClient bool
	// plot is a result file to render the plots of (weft-bench -plot), "" for a benchmark run.
	plot string
	// scale is the weft-scale result whose control-plane figures join the report: a file, ""
	// for the newest scale-*.json in outDir, "none" for none.
	scale string
	// duration overrides the plan's duration of an HTTP repetition (0: the mode's).
	duration time.Duration
	// scenarios are the scenarios to run (nil: all); their baselines always run.
	scenarios map[string]bool
	// loadCPUs pins the load generators (Plan.LoadCPUs), "" for none.
	loadCPUs string
	// profile is the directory for pprof profiles of the mesh's processes, "" for none.
	profile string
}

func main() {
	cfg, err := parseFlags(os.Args[1:], os.Stderr)
	if err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "weft-bench:", err)
		}
		os.Exit(2)
	}
	if cfg.plot != "" {
		if err := plotRun(cfg.plot, cfg.outDir, os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, "weft-bench:", err)
			os.Exit(1)
		}
		return
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	err = run(ctx, cfg, os.Stdout, logger)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "weft-bench:", err)
		os.Exit(1)
	}
}

func parseFlags(args []string, stderr io.Writer) (config, error) {
	fs := flag.NewFlagSet("weft-bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	quick := fs.Bool("quick", false, "short run (under 3 minutes with the cluster): 1 × 1 s per load point")
	out := fs.String("out", "bench-results", "directory for bench-<time>.json, .md and the -*.svg plots (with -plot: default the result file's directory)")
	timeout := fs.Duration("timeout", 0, "bound on the whole run (default 6m with -quick, 30m otherwise)")
	tune := fs.Bool("tune-client", true, "widen the ephemeral port range and reuse TIME_WAIT sockets in the client pod")
	scaleFile := fs.String("scale", "", "weft-scale result whose control-plane figures join the report (default: the newest scale-*.json in -out; none: leave them out)")
	profile := fs.String("profile", "", "write CPU and allocation profiles of the agents and the waypoint, taken during the first repetition of every workload, to `DIR` (costs CPU: not for the figures)")
	duration := fs.Duration("duration", 0, "length of one HTTP repetition instead of the mode's (e.g. -quick -duration 10s -profile DIR for profiles of 10 s)")
	only := fs.String("scenarios", "", "comma-separated scenarios to run instead of all, e.g. weft-l4,weft-l7 (their baselines always run)")
	pinLoad := fs.String("pin-load", "", "pin the load generators (fortio, bulk) to these CPUs (`LIST` in taskset -c syntax, e.g. 0)")
	plotFile := fs.String("plot", "", "render the plots of an existing `bench-<time>.json` and exit (no run, no root needed)")
	if err := fs.Parse(args); err != nil {
		return config{}, err
	}
	if fs.NArg() > 0 {
		return config{}, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	cfg := config{mode: bench.Full, outDir: *out, timeout: *timeout, tuneClient: *tune, plot: *plotFile, scale: *scaleFile, profile: *profile, duration: *duration, loadCPUs: *pinLoad}
	if cfg.plot != "" {
		outSet := false
		fs.Visit(func(f *flag.Flag) { outSet = outSet || f.Name == "out" })
		if !outSet {
			cfg.outDir = filepath.Dir(cfg.plot)
		}
		return cfg, nil
	}
	if *quick {
		cfg.mode = bench.Quick
	}
	if *only != "" {
		cfg.scenarios = map[string]bool{bench.BaselineScenario: true}
		for name := range strings.SplitSeq(*only, ",") {
			name = strings.TrimSpace(name)
			if !slices.Contains(allScenarios, name) {
				return config{}, fmt.Errorf("-scenarios: unknown scenario %q; known: %s", name, strings.Join(allScenarios, ", "))
			}
			cfg.scenarios[name] = true
			if name == bench.WeftSameNodeScenario {
				cfg.scenarios[bench.NoMeshSameNodeScenario] = true
			}
		}
	}
	if cfg.timeout == 0 {
		cfg.timeout = 30 * time.Minute
		if *quick {
			cfg.timeout = 6 * time.Minute
		}
	}
	return cfg, nil
}

// allScenarios are the scenarios of a run, in run order.
var allScenarios = []string{bench.BaselineScenario, bench.WeftL4Scenario, bench.NoMeshSameNodeScenario, bench.WeftSameNodeScenario,
	bench.WeftL7Scenario, bench.HAProxyScenario, bench.StunnelScenario, bench.NginxScenario, bench.WeftIPTablesScenario}

// runs reports whether the run includes the scenario name.
func (c config) runs(name string) bool { return c.scenarios == nil || c.scenarios[name] }

func run(ctx context.Context, cfg config, stdout io.Writer, logger *slog.Logger) (err error) {
	plan, err := bench.NewPlan(cfg.mode)
	if err != nil {
		return err
	}
	if cfg.duration > 0 {
		plan.Duration = bench.Duration(cfg.duration)
	}
	plan.LoadCPUs = cfg.loadCPUs
	ctx, cancel := context.WithTimeout(ctx, cfg.timeout)
	defer cancel()
	root, err := repoRoot()
	if err != nil {
		return err
	}
	started := time.Now().UTC()
	progress := harness.NewProgress(stdout)
	tunnels := plan.IDs(func(w bench.Workload) bool { return w.Kind != bench.GRPC })
	sameNode := bench.SameNodeWorkloads(plan)
	if cfg.scenarios == nil {
		progress.Step("weft-bench %s mode: %d workloads, %d scenarios interleaved (%s and %s only at the fixed rates, the same-node pair at %d workloads, no gRPC through the peers), load ≈ %s",
			cfg.mode, len(plan.Workloads), len(allScenarios), bench.WeftL7Scenario, bench.NginxScenario, len(sameNode),
			plan.LoadTimeOf(nil, nil, sameNode, sameNode, plan.FixedRate(), tunnels, tunnels, plan.FixedRateHTTP(), nil))
	} else {
		progress.Step("weft-bench %s mode: %d workloads, only the scenarios %v", cfg.mode, len(plan.Workloads), slices.Sorted(maps.Keys(cfg.scenarios)))
	}
	r := &bench.Run{
		Schema:   bench.SchemaVersion,
		ID:       started.Format("20060102-150405"),
		Mode:     cfg.mode,
		Started:  started,
		Env:      bench.CollectEnv(ctx, root),
		Plan:     plan,
		Baseline: bench.BaselineScenario,
	}

	// The benchmark addresses pods and Services by IP, but the node agents and the waypoint find
	// the controller by its Service name (weft-controller.weft-system.svc): cluster DNS is needed.
	c, err := harness.Start(ctx, harness.Options{Nodes: 2, RepoRoot: root, Progress: progress, Logger: logger, Images: bench.PeerImages()})
	if err != nil {
		return fmt.Errorf("start cluster: %w", err)
	}
	defer func() {
		progress.Step("tearing down cluster %s", c.RunID)
		if cerr := c.Close(); cerr != nil {
			err = errors.Join(err, fmt.Errorf("cleanup: %w", cerr))
		}
		progress.Step("done in %s", time.Since(started).Round(time.Second))
	}()

	// Private copies: a rebuild of the shared tools cache during the run must not change or
	// remove the load generators under it.
	tools, err := os.MkdirTemp("", "weft-bench-")
	if err != nil {
		return fmt.Errorf("tools: %w", err)
	}
	defer os.RemoveAll(tools)
	fortio, err := copyBinary(c.Binary("fortio"), tools)
	if err != nil {
		return err
	}
	bulk, err := copyBinary(c.Binary("bulk"), tools)
	if err != nil {
		return err
	}
	progress.Step("deploying the benchmark pods: client on node-1, echo server and bulk receiver on node-2 and on node-1")
	targets, err := bench.NewTopology("bench").Deploy(ctx, c, fortio)
	if err != nil {
		return err
	}
	target := targets.CrossNode
	progress.Step("client %s → server %s, bulk %s; same node: server %s, bulk %s", target.ClientPod, target.HTTPURL, target.BulkAddr,
		targets.SameNode.HTTPURL, targets.SameNode.BulkAddr)
	if cfg.tuneClient {
		if err := bench.TuneClient(ctx, c, target); err != nil {
			return err
		}
	}
	progress.Step("installing Weft (controller and node agents); namespace %s not enrolled yet", target.Namespace)
	if err := mesh.Install(ctx, c); err != nil {
		return fmt.Errorf("install Weft: %w", err)
	}
	agents, err := bench.NodeAgents(ctx, c)
	if err != nil {
		return err
	}
	r.Agents = agents
	sw := &bench.MeshSwitch{Cluster: c, Target: target, Fortio: fortio, Settle: meshSettle, Timeout: meshSwitchTimeout}
	scenarios := []bench.Scenario{{
		Name: bench.BaselineScenario,
		Description: "plain pod→pod across the two nodes: pod veth, node bridge, node eth0, underlay bridge and back; " +
			"Weft's node agents run, namespace not enrolled (no capture)",
		Target: target,
		Enter:  sw.Unenroll,
		Path:   bench.PathNone,
	}, {
		Name: bench.WeftL4Scenario,
		Description: "Weft L4: namespace labelled istio.io/dataplane-mode=ambient; eBPF redirects the client's connect() to node-1's agent, " +
			"which carries the connection as an HBONE stream (HTTP/2 CONNECT in mutual TLS 1.3) to node-2's agent on :15008 in the server pod, " +
			"which connects to the app with the client's address; PeerAuthentication PERMISSIVE",
		Target: target,
		Enter:  sw.Enroll,
		Path:   bench.PathAgents,
	}}
	scenarios = append(scenarios, bench.SameNodeScenarios(targets.SameNode, plan, sw)...)
	scenarios = slices.DeleteFunc(scenarios, func(sc bench.Scenario) bool { return !cfg.runs(sc.Name) })
	var meter bench.Meter = &bench.AgentMeter{Agents: agents}
	var l7Err, peerErr, iptErr error
	nginxNode := target.ClientNode
	if cfg.runs(bench.WeftL7Scenario) {
		var l7 l7
		if l7, l7Err = l7Scenario(ctx, c, target, plan, sw, progress); l7Err != nil {
			progress.Step("!!! no %s rows: %v", bench.WeftL7Scenario, l7Err)
		} else {
			wp := l7.waypoint
			r.Waypoint = &wp
			scenarios = append(scenarios, l7.scenario)
			meter = bench.Meters{meter, &bench.WaypointMeter{Waypoint: wp}}
			nginxNode = l7.waypoint.Node // the same hop as the waypoint's
		}
	}
	if cfg.runs(bench.HAProxyScenario) || cfg.runs(bench.StunnelScenario) || cfg.runs(bench.NginxScenario) {
		progress.Step("deploying the peers in namespace %s: HAProxy and stunnel mTLS tunnels %s → %s, nginx on %s", bench.PeersNamespace, target.ClientNode, target.ServerNode, nginxNode)
		var peers []bench.Peer
		if peers, peerErr = bench.DeployPeers(ctx, c, target, plan, nginxNode, sw.Unenroll, fortio); peerErr != nil {
			progress.Step("!!! missing peer rows: %v", peerErr)
		}
		for _, p := range peers {
			if cfg.runs(p.Scenario.Name) {
				scenarios = append(scenarios, p.Scenario)
				r.Peers = append(r.Peers, bench.PeerPods{Scenario: p.Scenario.Name, Pods: p.Pods})
			}
		}
	}
	names := make([]string, len(scenarios))
	for i, sc := range scenarios {
		names[i] = sc.Name
	}
	progress.Step("scenarios %s, interleaved per repetition; agents' (and the waypoint's) CPU and memory from their cgroups", strings.Join(names, ", "))
	runner := &bench.Runner{Exec: c, Fortio: fortio, Bulk: bulk, Plan: plan, Meter: meter,
		Progress: progress.Step, Log: logger}
	if cfg.profile != "" {
		runner.Profiler, err = profiler(ctx, c, cfg.profile, agents, r.Waypoint)
		if err != nil {
			return err
		}
		progress.Step("profiling the agents and the waypoint into %s", cfg.profile)
	}
	r.Scenarios = runner.Run(ctx, scenarios...)
	if cfg.runs(bench.WeftIPTablesScenario) {
		// weft-iptables needs the node agents restarted with another capture mode: a second pass.
		progress.Step("%s: restarting the node agents with --capture=iptables, then every workload in a second pass (not interleaved)", bench.WeftIPTablesScenario)
		ipt, iptAgents, err := bench.IPTablesPass(ctx, c, *runner, sw)
		if iptErr = err; err != nil {
			progress.Step("!!! no %s rows: %v", bench.WeftIPTablesScenario, err)
		} else {
			progress.Step("%s measured with agents %v", bench.WeftIPTablesScenario, iptAgents)
			r.Scenarios = append(r.Scenarios, ipt)
		}
	}
	r.Finished = time.Now().UTC()
	r.Env.FortioVersion = runner.FortioVersion()
	if r.Env.FortioVersion == "" {
		r.Env.FortioVersion = toolVersion(ctx, fortio)
	}
	if err := r.ComputeRatios(); err != nil {
		return err
	}
	if cfg.scale != "none" {
		cp, err := bench.ReadControlPlane(cfg.scale, cfg.outDir)
		if err != nil {
			progress.Step("!!! no control-plane figures: %v", err)
		}
		r.ControlPlane = cp
	}
	if err := write(cfg.outDir, r, stdout); err != nil {
		return err
	}
	var failed []string
	for _, sc := range r.Scenarios {
		for _, res := range sc.Results {
			if res.Error != "" {
				failed = append(failed, sc.Name+"/"+res.Workload)
			}
		}
	}
	if len(failed) > 0 {
		return errors.Join(l7Err, peerErr, iptErr, fmt.Errorf("%d workloads failed: %s", len(failed), strings.Join(failed, ", ")))
	}
	if l7Err != nil {
		return errors.Join(fmt.Errorf("%s: %w", bench.WeftL7Scenario, l7Err), peerErr)
	}
	if peerErr != nil {
		return fmt.Errorf("peers: %w", peerErr)
	}
	return errors.Join(iptErr, ctx.Err())
}

// adminURL is the loopback admin endpoint of the node agents (admin.DefaultAdminAddr) and of the
// waypoint (its -admin default, the same address), where pprof is served.
const adminURL = "http://" + admin.DefaultAdminAddr

// profiler returns the Profiler of the node agents and, when there is one, the waypoint: their
// admin endpoints on loopback in their network namespaces.
func profiler(ctx context.Context, c *harness.Cluster, dir string, agents []bench.Agent, waypoint *bench.Agent) (*bench.Profiler, error) {
	p := &bench.Profiler{Dir: dir}
	for _, a := range agents {
		n := c.Node(a.Node)
		if n == nil {
			return nil, fmt.Errorf("profile: no node %s", a.Node)
		}
		p.Targets = append(p.Targets, bench.ProfileTarget{Name: "agent@" + a.Node, Paths: []string{bench.PathAgents, bench.PathWaypoint},
			BaseURL: adminURL, Dial: n.NetNS.DialContext})
	}
	if waypoint != nil {
		ns, name, _ := strings.Cut(waypoint.Pod, "/")
		pod, err := c.Client.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return nil, fmt.Errorf("profile: waypoint: %w", err)
		}
		netns, err := c.PodNetNS(pod)
		if err != nil {
			return nil, fmt.Errorf("profile: waypoint: %w", err)
		}
		p.Targets = append(p.Targets, bench.ProfileTarget{Name: "waypoint", Paths: []string{bench.PathWaypoint},
			BaseURL: adminURL, Dial: netns.DialContext})
	}
	return p, nil
}

// l7 is the weft-l7 scenario and the waypoint it goes through.
type l7 struct {
	scenario bench.Scenario
	waypoint bench.Agent
}

// l7Scenario deploys the waypoint of the benchmark's namespace (a Gateway of class
// istio-waypoint, which Weft's controller deploys) and returns the weft-l7 scenario: the fixed-rate
// HTTP workloads to the server's Service VIP with the namespace labelled ambient and
// istio.io/use-waypoint, so every request crosses the waypoint.
func l7Scenario(ctx context.Context, c *harness.Cluster, target bench.Target, plan bench.Plan, sw *bench.MeshSwitch, progress *harness.Progress) (l7, error) {
	progress.Step("deploying the waypoint of namespace %s (Gateway %s, class istio-waypoint)", target.Namespace, bench.WaypointName)
	wp, err := bench.DeployWaypoint(ctx, c, target.Namespace)
	if err != nil {
		return l7{}, err
	}
	url, err := bench.ServiceURL(ctx, c, target.Namespace, "bench-server")
	if err != nil {
		return l7{}, err
	}
	t := target
	t.HTTPURL = url
	t.GRPCAddr = "" // no gRPC through the waypoint unless the Service VIP is known
	if host, _, err := net.SplitHostPort(strings.TrimSuffix(strings.TrimPrefix(url, "http://"), "/")); err == nil {
		t.GRPCAddr = net.JoinHostPort(host, fmt.Sprint(bench.GRPCPort))
	}
	progress.Step("waypoint %s on %s; %s loads Service bench-server at %s", wp.Pod, wp.Node, bench.WeftL7Scenario, url)
	return l7{waypoint: wp, scenario: bench.Scenario{
		Name: bench.WeftL7Scenario,
		Description: fmt.Sprintf("Weft L7: namespace labelled istio.io/dataplane-mode=ambient and istio.io/use-waypoint=%s; the client loads "+
			"Service bench-server's VIP (%s); node-1's agent carries each connection over HBONE (mutual TLS 1.3) to the waypoint %s on %s, "+
			"which terminates it, parses HTTP/1.1, routes the request and sends it over HBONE to node-2's agent in the server pod; "+
			"only the fixed-rate workloads (HTTP and gRPC)", bench.WaypointName, url, wp.Pod, wp.Node),
		Target:    t,
		Enter:     sw.EnrollWaypoint(t),
		Workloads: plan.FixedRate(),
		Path:      bench.PathWaypoint,
	}}, nil
}

// write stores the run as JSON, SVG plots and Markdown in dir and prints the Markdown. A plot
// that cannot be rendered does not keep the JSON and the Markdown from being written.
func write(dir string, r *bench.Run, stdout io.Writer) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("output: %w", err)
	}
	base := filepath.Join(dir, "bench-"+r.ID)
	j, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return fmt.Errorf("output: %w", err)
	}
	if err := os.WriteFile(base+".json", append(j, '\n'), 0o644); err != nil {
		return fmt.Errorf("output: %w", err)
	}
	plots, perr := bench.WritePlots(dir, "bench-"+r.ID, r)
	var md strings.Builder
	if err := bench.WriteMarkdown(&md, r); err != nil {
		return err
	}
	if err := bench.WritePlotLinks(&md, dir, plots); err != nil {
		return err
	}
	if err := os.WriteFile(base+".md", []byte(md.String()), 0o644); err != nil {
		return fmt.Errorf("output: %w", err)
	}
	written := []string{base + ".json", base + ".md"}
	for _, p := range plots {
		written = append(written, p.Path)
	}
	fmt.Fprintf(stdout, "\n%s\nwritten: %s\n", md.String(), strings.Join(written, ", "))
	return perr
}

// plotRun renders the plots of the result file path into dir and prints their Markdown links
// (relative to dir).
func plotRun(path, dir string, stdout io.Writer) error {
	r, err := bench.ReadRun(path)
	if err != nil {
		return err
	}
	prefix := strings.TrimSuffix(filepath.Base(path), ".json")
	plots, err := bench.WritePlots(dir, prefix, r)
	if err != nil {
		return err
	}
	for _, p := range plots {
		fmt.Fprintf(stdout, "written: %s\n", p.Path)
	}
	return bench.WritePlotLinks(stdout, dir, plots)
}

// repoRoot finds the directory of the weft module's go.mod above the working directory. It is
// passed to the harness explicitly: the harness derives it from the tools cache otherwise, which
// is wrong when WEFT_TOOLS_CACHE points outside the repository.
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("repo root: %w", err)
	}
	for d := dir; ; d = filepath.Dir(d) {
		if b, err := os.ReadFile(filepath.Join(d, "go.mod")); err == nil && isWeftModule(b) {
			return d, nil
		}
		if filepath.Dir(d) == d {
			return "", fmt.Errorf("repo root: no go.mod of github.com/weftmesh/weft above %s", dir)
		}
	}
}

func isWeftModule(gomod []byte) bool {
	for line := range strings.Lines(string(gomod)) {
		if f := strings.Fields(line); len(f) == 2 && f[0] == "module" {
			return strings.Trim(f[1], `"`) == "github.com/weftmesh/weft"
		}
	}
	return false
}

// copyBinary copies the executable src into dir and returns the copy's path.
func copyBinary(src, dir string) (string, error) {
	if src == "" {
		return "", errors.New("tools: binary not in the harness image table")
	}
	in, err := os.Open(src)
	if err != nil {
		return "", fmt.Errorf("tools: %w", err)
	}
	defer in.Close()
	dst := filepath.Join(dir, filepath.Base(src))
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o755)
	if err != nil {
		return "", fmt.Errorf("tools: %w", err)
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return "", fmt.Errorf("tools: copy %s: %w", src, err)
	}
	if err := out.Close(); err != nil {
		return "", fmt.Errorf("tools: %w", err)
	}
	return dst, nil
}

// toolVersion returns the first line of `bin version`, or "".
func toolVersion(ctx context.Context, bin string) string {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, "version").Output()
	if err != nil {
		return ""
	}
	line, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
	return line
}
