package scale

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/weftmesh/weft/controller/translate"
	"github.com/weftmesh/weft/test/bench"
	"github.com/weftmesh/weft/test/controlplane"
)

// Options configures a run.
type Options struct {
	Plan Plan
	// RepoRoot is the repository (deploy/crds/istio.yaml is read from it).
	RepoRoot string
	// Controller is the weft-controller binary.
	Controller string
	// Binaries are the control plane's (controlplane.Ensure).
	Binaries controlplane.Binaries
	// Progress receives one line per step; nil discards them.
	Progress func(format string, args ...any)
	// Logger receives the simulated agents' and the control plane's logs.
	Logger *slog.Logger
}

// controllerServerName is the name agents check in the controller's certificate: the
// controller's default serving names are weft-controller.<namespace>.svc and its FQDN.
const controllerServerName = "weft-controller." + AgentNamespace + ".svc"

// Run runs the benchmark: it returns the result, with the figures it could measure, and an
// error when the run could not be completed. Everything it started is stopped and every
// temporary file removed before it returns.
func Run(ctx context.Context, o Options) (res *Result, err error) {
	if err := o.Plan.Validate(); err != nil {
		return nil, err
	}
	if o.Progress == nil {
		o.Progress = func(string, ...any) {}
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	started := time.Now().UTC()
	res = &Result{Schema: SchemaVersion, ID: started.Format("20060102-150405"), Mode: o.Plan.Mode, Started: started,
		Env: bench.CollectEnv(ctx, o.RepoRoot), Plan: o.Plan}
	defer func() {
		res.Finished = time.Now().UTC()
		res.Summarize()
	}()
	r := &runner{o: o, res: res, p: o.Progress}
	defer func() {
		if cerr := r.cleanup(); cerr != nil {
			err = errors.Join(err, cerr)
		}
	}()
	return res, r.run(ctx)
}

type runner struct {
	o   Options
	res *Result
	p   func(string, ...any)

	dir     string
	cp      *controlplane.ControlPlane
	cluster *Cluster
	ctl     *Controller
	sampler *Sampler
	agents  []*Agent
	mesh    *translate.Mesh // translation of cluster.Model
	listen  string          // the controller's xDS address
	bgCtx   context.Context // ends when the run ends: agents, lease renewals

	stopBackground context.CancelFunc
	background     sync.WaitGroup
}

func (r *runner) cleanup() error {
	var errs []error
	if r.stopBackground != nil {
		r.stopBackground()
	}
	r.background.Wait() // agents and lease renewals
	for _, a := range r.agents {
		_ = a.Close()
	}
	if r.sampler != nil {
		r.sampler.Stop()
	}
	if r.ctl != nil {
		if err := r.ctl.Stop(); err != nil {
			errs = append(errs, err)
		}
	}
	if r.cp != nil {
		if err := r.cp.Stop(); err != nil {
			errs = append(errs, err)
		}
	}
	if r.dir != "" {
		if err := os.RemoveAll(r.dir); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (r *runner) errorf(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	r.res.Errors = append(r.res.Errors, msg)
	r.p("ERROR: %s", msg)
}

func (r *runner) run(ctx context.Context) error {
	plan, size := r.o.Plan, r.o.Plan.Size
	var err error
	if r.dir, err = os.MkdirTemp("", "weft-scale-"); err != nil {
		return err
	}
	bg, stop := context.WithCancel(context.WithoutCancel(ctx))
	r.stopBackground = stop

	// The control plane.
	t := time.Now()
	r.p("starting the control plane (etcd, kube-apiserver, kube-controller-manager, kube-scheduler)")
	r.cp, err = controlplane.Start(ctx, controlplane.Config{Binaries: r.o.Binaries, Dir: filepath.Join(r.dir, "controlplane"), Logger: r.o.Logger})
	if err != nil {
		return err
	}
	r.res.Setup.ControlPlaneSeconds = time.Since(t).Seconds()
	crds, err := os.ReadFile(filepath.Join(r.o.RepoRoot, "deploy", "crds", "istio.yaml"))
	if err != nil {
		return err
	}
	if err := InstallCRDs(ctx, r.cp.RESTConfig, crds); err != nil {
		return err
	}

	// The simulated cluster.
	t = time.Now()
	if r.cluster, err = NewCluster(r.cp.RESTConfig, size); err != nil {
		return err
	}
	r.p("creating %d nodes with leases and node-agent pods", size.Nodes)
	if err := r.cluster.CreateNodes(ctx); err != nil {
		return err
	}
	r.background.Add(1)
	go func() { defer r.background.Done(); r.cluster.KeepNodesReady(bg) }()
	r.p("creating %d namespaces, %d services, %d pods and their EndpointSlices", size.Namespaces, size.Services(), size.Pods())
	if err := r.cluster.CreateApps(ctx, r.p); err != nil {
		return err
	}
	r.res.Setup.PopulateSeconds = time.Since(t).Seconds()
	r.res.Setup.Writes = r.cluster.Writes.Load()
	r.res.Setup.WritesPerSecond = float64(r.res.Setup.Writes) / r.res.Setup.PopulateSeconds
	if err := r.cluster.LoadModel(ctx); err != nil {
		return err
	}
	m := r.cluster.Model
	r.res.Setup.Objects = map[string]int{"Node": len(r.cluster.Nodes), "Namespace": len(m.Namespaces), "Pod": len(m.Pods),
		"Service": len(m.Services), "EndpointSlice": len(m.Slices)}
	r.mesh = m.Translate()
	r.res.Setup.Resources = len(r.mesh.Resources)
	r.p("cluster filled in %.1fs: %d writes (%.0f/s); the translation makes %d resources",
		r.res.Setup.PopulateSeconds, r.res.Setup.Writes, r.res.Setup.WritesPerSecond, len(r.mesh.Resources))

	// The controller.
	if err := r.startController(ctx); err != nil {
		return err
	}

	// The agents.
	if err := r.startAgents(ctx, bg); err != nil {
		return err
	}
	if err := r.sync(ctx); err != nil {
		return err
	}

	// Idle.
	r.p("controller idle for %s", time.Duration(plan.Idle))
	c0, _ := ProcCPU(r.ctl.PID())
	t = time.Now()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(time.Duration(plan.Idle)):
	}
	c1, _ := ProcCPU(r.ctl.PID())
	r.res.Idle = Idle{Seconds: time.Since(t).Seconds(), VCPU: (c1 - c0).Seconds() / time.Since(t).Seconds()}

	// Changes.
	if err := r.changes(ctx); err != nil {
		return err
	}

	if mt, err := r.ctl.Metrics(ctx); err == nil {
		r.res.Metrics = map[string]float64{}
		for k, v := range mt {
			if strings.HasPrefix(k, "weft_") && !strings.Contains(k, "_bucket") || slices.Contains([]string{
				"go_goroutines", "go_memstats_heap_inuse_bytes", "go_memstats_heap_alloc_bytes", "go_memstats_sys_bytes",
				"process_resident_memory_bytes", "process_cpu_seconds_total"}, k) {
				r.res.Metrics[k] = v
			}
		}
	} else {
		r.errorf("controller metrics: %v", err)
	}
	peak, _ := r.sampler.Stop()
	if _, hwm, err := ProcMem(r.ctl.PID()); err == nil {
		peak = max(peak, hwm)
	}
	r.res.Controller.PeakRSSMiB = mib(peak)
	if cpu, err := ProcCPU(r.ctl.PID()); err == nil {
		r.res.Controller.CPUSeconds = cpu.Seconds()
	}
	r.p("done: controller peak RSS %.0f MiB, %.1f CPU-s in all", r.res.Controller.PeakRSSMiB, r.res.Controller.CPUSeconds)
	return nil
}

func mib(b uint64) float64 { return float64(b) / (1 << 20) }

// freePort returns a free TCP port on 127.0.0.1.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

func (r *runner) startController(ctx context.Context) error {
	xdsPort, err := freePort()
	if err != nil {
		return err
	}
	adminPort, err := freePort()
	if err != nil {
		return err
	}
	listen := "127.0.0.1:" + strconv.Itoa(xdsPort)
	r.listen = listen
	admin := "127.0.0.1:" + strconv.Itoa(adminPort)
	args := []string{"-kubeconfig", r.cp.Kubeconfig, "-namespace", AgentNamespace, "-listen", listen, "-admin", admin,
		"-serving-ips", "127.0.0.1", "-log-level", "warn"}
	r.res.ControllerArgs = append([]string{r.o.Controller}, args...)
	r.p("starting %s (xDS and CA on %s, admin on %s)", filepath.Base(r.o.Controller), listen, admin)
	t := time.Now()
	if r.ctl, err = StartController(r.o.Controller, r.dir, admin, args...); err != nil {
		return err
	}
	r.sampler = StartSampler(r.ctl.PID(), 250*time.Millisecond)
	readyCtx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	if err := r.ctl.WaitReady(readyCtx); err != nil {
		return err
	}
	r.res.Startup.ReadySeconds = time.Since(t).Seconds()
	if cpu, err := ProcCPU(r.ctl.PID()); err == nil {
		r.res.Startup.CPUSeconds = cpu.Seconds()
	}
	if rss, _, err := ProcMem(r.ctl.PID()); err == nil {
		r.res.Startup.RSSMiB = mib(rss)
	}
	r.p("controller ready in %.2fs (%.2f CPU-s, RSS %.0f MiB)", r.res.Startup.ReadySeconds, r.res.Startup.CPUSeconds, r.res.Startup.RSSMiB)
	return nil
}

func (r *runner) startAgents(ctx context.Context, bg context.Context) error {
	root, err := r.cluster.RootCert(ctx)
	if err != nil {
		return err
	}
	rootFile := filepath.Join(r.dir, "root-cert.pem")
	if err := os.WriteFile(rootFile, root, 0o644); err != nil {
		return err
	}
	tokens, err := r.cluster.WriteTokens(ctx, r.dir)
	if err != nil {
		return err
	}
	for _, node := range r.cluster.Nodes {
		a, err := NewAgent(node, tokens[node], AgentOptions{Target: r.listen, ServerName: controllerServerName, RootFile: rootFile, Logger: r.o.Logger})
		if err != nil {
			return err
		}
		r.agents = append(r.agents, a)
	}
	r.bgCtx = bg
	return nil
}

// sync starts every agent at once and waits until each holds exactly what its node receives.
func (r *runner) sync(ctx context.Context) error {
	n := len(r.agents)
	names := make([]NameSet, n)
	for i, a := range r.agents {
		names[i] = NodeNames(r.mesh, a.Node)
		a.Watch(names[i].Holds)
	}
	rssBefore, _, _ := ProcMem(r.ctl.PID())
	cpuBefore, _ := ProcCPU(r.ctl.PID())
	selfBefore, _ := ProcCPU(os.Getpid())
	var ms runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms)
	heapBefore := ms.HeapInuse

	r.p("connecting %d simulated agents (nodeagent/xds.Source, TLS, TokenRequest tokens) at once", n)
	start := time.Now()
	for _, a := range r.agents {
		r.background.Add(1)
		go func() {
			defer r.background.Done()
			if err := a.Run(r.bgCtx); err != nil {
				r.o.Logger.Error("agent", "node", a.Node, "err", err)
			}
		}()
	}
	timeout := time.NewTimer(time.Duration(r.o.Plan.SyncTimeout))
	defer timeout.Stop()
	progress := time.NewTicker(10 * time.Second)
	defer progress.Stop()
	var times []float64
	pending := slices.Clone(r.agents)
wait:
	for len(pending) > 0 {
		select {
		case <-pending[0].Done():
			pending = pending[1:]
		case <-progress.C:
			done := 0
			for _, a := range r.agents {
				select {
				case <-a.Done():
					done++
				default:
				}
			}
			r.p("… %d of %d agents synced after %.0fs", done, n, time.Since(start).Seconds())
		case <-timeout.C:
			break wait
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	var last time.Time
	for _, a := range r.agents {
		w := a.Unwatch()
		if w.At.IsZero() {
			continue
		}
		times = append(times, w.At.Sub(start).Seconds())
		if w.At.After(last) {
			last = w.At
		}
	}
	s := &r.res.Sync
	s.Synced = len(times)
	if len(times) > 0 {
		s.AllSeconds = last.Sub(start).Seconds()
		s.P50Seconds, s.P99Seconds = bench.Percentile(times, 50), bench.Percentile(times, 99)
	}
	if st, err := r.ctl.PushStatus(ctx); err == nil {
		var acc []float64
		for _, a := range r.agents {
			if t := st[a.Node].ConnectedSince; t.After(start) {
				acc = append(acc, t.Sub(start).Seconds())
			}
		}
		if len(acc) > 0 {
			s.AcceptedP50Seconds, s.AcceptedMaxSeconds = bench.Percentile(acc, 50), slices.Max(acc)
		}
	}
	cpuAfter, _ := ProcCPU(r.ctl.PID())
	selfAfter, _ := ProcCPU(os.Getpid())
	rssAfter, _, _ := ProcMem(r.ctl.PID())
	s.ControllerCPUSeconds = (cpuAfter - cpuBefore).Seconds()
	s.ControllerCPUPerAgent = s.ControllerCPUSeconds / float64(n)
	s.ControllerRSSMiB = mib(rssAfter)
	s.ControllerRSSPerAgent = (float64(rssAfter) - float64(rssBefore)) / 1024 / float64(n)
	s.AgentsCPUSeconds = (selfAfter - selfBefore).Seconds()
	runtime.GC()
	runtime.ReadMemStats(&ms)
	s.AgentsHeapMiB = (float64(ms.HeapInuse) - float64(heapBefore)) / (1 << 20)
	s.AgentsHeapPerAgent = s.AgentsHeapMiB / float64(n)
	if s.Synced < n {
		var missing []string
		for _, a := range r.agents {
			if snap, applies := a.Snapshot(); !names[slices.Index(r.agents, a)].Holds(snap) {
				have := 0
				if snap != nil {
					have = len(snap.Workloads()) + len(snap.Services())
				}
				missing = append(missing, fmt.Sprintf("%s (%d applies, holds %d of %d; %s)", a.Node, applies, have, len(names[slices.Index(r.agents, a)]), a.Status()))
			}
		}
		return fmt.Errorf("initial sync: %d of %d agents synced within %s; not: %s\ncontroller log:\n%s", s.Synced, n,
			time.Duration(r.o.Plan.SyncTimeout), strings.Join(missing[:min(len(missing), 5)], "; "), r.ctl.LogTail(20))
	}
	r.p("initial sync: all %d agents in %.2fs (p50 %.2fs, p99 %.2fs; streams accepted p50 %.2fs, last %.2fs); controller %.2f CPU-s, RSS %.0f MiB (%+.0f KiB per agent); agents %.1f CPU-s",
		n, s.AllSeconds, s.P50Seconds, s.P99Seconds, s.AcceptedP50Seconds, s.AcceptedMaxSeconds, s.ControllerCPUSeconds, s.ControllerRSSMiB, s.ControllerRSSPerAgent, s.AgentsCPUSeconds)

	var ws, ss, rs []float64
	for _, a := range r.agents {
		snap, _ := a.Snapshot()
		ws = append(ws, float64(len(snap.Workloads())))
		ss = append(ss, float64(len(snap.Services())))
		rs = append(rs, float64(len(snap.Workloads())+len(snap.Services())))
	}
	r.res.PerAgent = PerAgent{Workloads: bench.Summarize(ws), Services: bench.Summarize(ss), Resources: bench.Summarize(rs)}

	// The oracle check: one agent's whole content against the translation.
	snap, _ := r.agents[0].Snapshot()
	diffs, nd, err := Compare(r.mesh, r.agents[0].Node, snap, 3)
	switch {
	case err != nil:
		return err
	case nd > 0:
		s.ContentCheck = fmt.Sprintf("%s: %d resources differ from the translation, e.g. %s", r.agents[0].Node, nd, strings.Join(diffs, "; "))
		r.errorf("content check: %s", s.ContentCheck)
	default:
		s.ContentCheck = fmt.Sprintf("%s: all %d resources equal to the translation's", r.agents[0].Node, len(snap.Workloads())+len(snap.Services()))
	}
	r.p("each agent holds %.0f resources (median; %.0f workloads, %.0f services); content check %s",
		r.res.PerAgent.Resources.Median, r.res.PerAgent.Workloads.Median, r.res.PerAgent.Services.Median, s.ContentCheck)
	return nil
}

// changes makes the plan's changes, kinds taking turns, one at a time.
func (r *runner) changes(ctx context.Context) error {
	plan := r.o.Plan
	ch := &Changer{C: r.cluster, Rand: rand.New(rand.NewPCG(uint64(plan.Seed), 0x5ca1e))}
	total := plan.ChangesPerKind * len(Kinds)
	r.p("measuring %d changes: %d of each of %d kinds, taking turns", total, plan.ChangesPerKind, len(Kinds))
	c0, _ := ProcCPU(r.ctl.PID())
	api0 := r.apiserverCPU()
	t0 := time.Now()
	i := 0
	for range plan.ChangesPerKind {
		for _, k := range Kinds {
			if err := ctx.Err(); err != nil {
				return err
			}
			if ok, werr := r.ctl.Exited(); ok {
				return fmt.Errorf("weft-controller exited (%v):\n%s", werr, r.ctl.LogTail(20))
			}
			i++
			s, err := r.measure(ctx, ch, k.Kind)
			if err != nil {
				return err
			}
			r.res.Samples = append(r.res.Samples, s)
			if s.Error != "" {
				r.p("change %d/%d %s: %s: FAILED: %s", i, total, s.Kind, s.Detail, s.Error)
			} else if i%10 == 0 || i == total || plan.ChangesPerKind <= 10 {
				r.p("change %d/%d %s: %s: %d agents, last %.0f ms (controller pushed at %.0f ms)", i, total, s.Kind, s.Detail, s.Affected, s.LastMs, s.PushMs)
			}
		}
	}
	c1, _ := ProcCPU(r.ctl.PID())
	tot := &r.res.Controller
	tot.ChangesSeconds = time.Since(t0).Seconds()
	tot.ChangesCPUSeconds = (c1 - c0).Seconds()
	tot.ChangesVCPU = tot.ChangesCPUSeconds / tot.ChangesSeconds
	tot.APIServerCPUSeconds = (r.apiserverCPU() - api0).Seconds()
	return nil
}

// apiserverCPU is the CPU time of kube-apiserver and etcd.
func (r *runner) apiserverCPU() time.Duration {
	var sum time.Duration
	for _, pids := range ChildPIDs("kube-apiserver", "etcd") {
		for _, pid := range pids {
			if c, err := ProcCPU(pid); err == nil {
				sum += c
			}
		}
	}
	return sum
}

// measure makes one change and waits until every affected agent applied it.
func (r *runner) measure(ctx context.Context, ch *Changer, kind string) (ChangeSample, error) {
	c, err := ch.Next(kind)
	if err != nil {
		return ChangeSample{}, err
	}
	s := ChangeSample{Kind: c.Kind, Detail: c.Detail}
	after := c.After.Translate()
	exp, err := Affected(r.mesh, after, r.cluster.Nodes)
	if err != nil {
		return s, err
	}
	var affected []*Agent
	for _, a := range r.agents {
		if e, ok := exp[a.Node]; ok {
			affected = append(affected, a)
			a.Watch(e.Met)
			s.Names = max(s.Names, len(e))
		} else {
			a.Watch(nil)
		}
	}
	s.Affected = len(affected)
	cpuC0, _ := ProcCPU(r.ctl.PID())
	cpuA0, _ := ProcCPU(os.Getpid())

	ws := time.Now()
	update, werr := c.Write(ctx)
	t0 := time.Now()
	s.WriteMs = ms(t0.Sub(ws))

	timedOut := false
	if werr == nil {
		deadline := time.NewTimer(time.Duration(r.o.Plan.ChangeTimeout))
	wait:
		for _, a := range affected {
			select {
			case <-a.Done():
			case <-deadline.C:
				timedOut = true
				break wait
			case <-ctx.Done():
				deadline.Stop()
				return s, ctx.Err()
			}
		}
		deadline.Stop()
	}
	select {
	case <-ctx.Done():
		return s, ctx.Err()
	case <-time.After(time.Duration(r.o.Plan.Settle)):
	}
	cpuC1, _ := ProcCPU(r.ctl.PID())
	cpuA1, _ := ProcCPU(os.Getpid())
	s.ControllerCPUms, s.AgentsCPUms = ms(cpuC1-cpuC0), ms(cpuA1-cpuA0)

	var lat []float64
	early := 0
	for _, a := range r.agents {
		w := a.Unwatch()
		if _, ok := exp[a.Node]; !ok {
			s.Spurious += w.Applies
			continue
		}
		s.Applies += w.Applies
		if w.Early {
			early++
		}
		if !w.At.IsZero() {
			lat = append(lat, ms(w.At.Sub(t0)))
		}
	}
	s.Reached = len(lat)
	if len(lat) > 0 {
		s.FirstMs, s.P50Ms, s.LastMs = slices.Min(lat), bench.Percentile(lat, 50), slices.Max(lat)
	}
	if st, err := r.ctl.PushStatus(ctx); err == nil {
		var push, sent, ack time.Time
		for _, a := range affected {
			ns := st[a.Node]
			push, sent, ack = later(push, ns.PushedAt), later(sent, ns.SentAt), later(ack, ns.AckedAt)
		}
		if push.After(ws) {
			s.PushMs = ms(push.Sub(t0))
		}
		if sent.After(ws) {
			s.SentMs = ms(sent.Sub(t0))
		}
		if ack.After(ws) {
			s.AckMs = ms(ack.Sub(t0))
		}
	}

	switch {
	case werr != nil:
		s.Error = "apiserver write: " + werr.Error()
	case len(affected) == 0:
		s.Error = "no agent is affected: the change alters no node's resources"
	case early > 0:
		s.Error = fmt.Sprintf("%d affected agents held the change before it was made: the expectation is wrong", early)
	case timedOut:
		var missing []string
		for _, a := range affected {
			select {
			case <-a.Done():
			default:
				if len(missing) < 3 {
					missing = append(missing, a.Node+" ("+a.Status()+")")
				}
			}
		}
		s.Error = fmt.Sprintf("%d of %d affected agents did not apply the change within %s, e.g. %s", s.Affected-s.Reached, s.Affected,
			time.Duration(r.o.Plan.ChangeTimeout), strings.Join(missing, "; "))
	}
	if werr != nil {
		// The cluster is not what the model says: reload it.
		if err := r.cluster.LoadModel(ctx); err != nil {
			return s, err
		}
	} else {
		update(r.cluster.Model)
	}
	r.mesh = r.cluster.Model.Translate()
	return s, nil
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
