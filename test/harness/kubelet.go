package harness

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/ptr"

	"github.com/weftmesh/weft/test/harness/podshim"
)

// kubelet runs the pods bound to one node.
type kubelet struct {
	node   *Node
	log    *slog.Logger
	ctx    context.Context
	cancel context.CancelFunc

	mu   sync.Mutex
	pods map[types.UID]*podWorker
	wg   sync.WaitGroup
}

// startKubelet watches the Pods bound to n and runs them.
func (n *Node) startKubelet(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	k := &kubelet{node: n, log: n.logger(), ctx: ctx, cancel: cancel, pods: map[types.UID]*podWorker{}}
	factory := informers.NewSharedInformerFactoryWithOptions(n.cluster.Client, 0,
		informers.WithTweakListOptions(func(o *metav1.ListOptions) {
			o.FieldSelector = fields.OneTermEqualSelector("spec.nodeName", n.Name).String()
		}))
	inf := factory.Core().V1().Pods().Informer()
	_, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { k.sync(obj.(*corev1.Pod)) },
		UpdateFunc: func(_, obj any) { k.sync(obj.(*corev1.Pod)) },
		DeleteFunc: func(obj any) {
			if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = t.Obj
			}
			if p, ok := obj.(*corev1.Pod); ok {
				k.forget(p.UID)
			}
		},
	})
	if err != nil {
		cancel()
		return fmt.Errorf("kubelet %s: %w", n.Name, err)
	}
	factory.Start(ctx.Done())
	n.kubelet = k
	return nil
}

// sync reacts to the latest version of a pod.
func (k *kubelet) sync(pod *corev1.Pod) {
	k.mu.Lock()
	defer k.mu.Unlock()
	w := k.pods[pod.UID]
	switch {
	case pod.DeletionTimestamp != nil:
		if w == nil {
			go k.finalizeDeletion(pod)
			return
		}
		w.terminate(true)
	case w != nil:
		w.setPod(pod)
	case pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed:
		// Finished before this kubelet started: nothing to run.
	case k.ctx.Err() == nil:
		w = newPodWorker(k, pod)
		k.pods[pod.UID] = w
		k.wg.Add(1)
		go func() {
			defer k.wg.Done()
			w.run()
			k.mu.Lock()
			delete(k.pods, pod.UID)
			k.mu.Unlock()
		}()
	}
}

// forget stops a pod whose object is gone.
func (k *kubelet) forget(uid types.UID) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if w := k.pods[uid]; w != nil {
		w.terminate(false)
	}
}

// finalizeDeletion removes the Pod object once its processes are gone, as the kubelet does.
func (k *kubelet) finalizeDeletion(pod *corev1.Pod) {
	err := k.node.cluster.Client.CoreV1().Pods(pod.Namespace).Delete(context.Background(), pod.Name, metav1.DeleteOptions{
		GracePeriodSeconds: ptr.To[int64](0),
		Preconditions:      &metav1.Preconditions{UID: &pod.UID},
	})
	if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
		k.log.Warn("delete pod", "pod", pod.Namespace+"/"+pod.Name, "err", err)
	}
}

// stop tears down every pod of the node and waits for them.
func (k *kubelet) stop() {
	k.cancel()
	k.mu.Lock()
	for _, w := range k.pods {
		w.terminate(false)
	}
	k.mu.Unlock()
	k.wg.Wait()
}

// podWorker runs one pod from setup to teardown.
type podWorker struct {
	k   *kubelet
	log *slog.Logger
	uid types.UID
	dir string // state: volumes, logs, specs
	cg  string // pod cgroup

	ctx       context.Context
	cancel    context.CancelFunc
	deleteObj bool // remove the API object after teardown
	statusCh  chan struct{}

	mu         sync.Mutex
	pod        *corev1.Pod
	netns      NetNS
	ownNetNS   bool
	ip         net.IP            // the primary (IPv4) address
	ips        []net.IP          // every address, IPv4 first
	mounts     map[string]string // volume name → host directory
	containers []*containerState
	initDone   bool
	setupErr   string
	startTime  metav1.Time
}

type containerState struct {
	spec       corev1.Container
	proc       *process
	restarts   int32
	startedAt  time.Time
	running    bool
	ready      bool // readiness probe result; true while running without a probe
	terminated *corev1.ContainerStateTerminated
	waiting    string // reason while not running
	message    string
}

func newPodWorker(k *kubelet, pod *corev1.Pod) *podWorker {
	ctx, cancel := context.WithCancel(k.ctx)
	w := &podWorker{
		k:         k,
		log:       k.log.With("pod", pod.Namespace+"/"+pod.Name),
		uid:       pod.UID,
		dir:       filepath.Join(k.node.cluster.Dir, "pods", pod.Namespace+"_"+pod.Name+"_"+string(pod.UID)),
		cg:        filepath.Join(k.node.CgroupDir, "pod-"+string(pod.UID)),
		ctx:       ctx,
		cancel:    cancel,
		statusCh:  make(chan struct{}, 1),
		pod:       pod,
		startTime: metav1.Now(),
	}
	for _, c := range pod.Spec.Containers {
		w.containers = append(w.containers, &containerState{spec: c, waiting: "ContainerCreating"})
	}
	return w
}

func (w *podWorker) setPod(p *corev1.Pod) {
	w.mu.Lock()
	w.pod = p
	w.mu.Unlock()
}

// terminate stops the pod; with deleteObj the Pod object is removed afterwards.
func (w *podWorker) terminate(deleteObj bool) {
	w.mu.Lock()
	w.deleteObj = w.deleteObj || deleteObj
	w.mu.Unlock()
	w.cancel()
}

// run is the pod's whole life.
func (w *podWorker) run() {
	defer w.teardown()
	go w.statusLoop()
	w.notify()
	for backoff := 500 * time.Millisecond; ; backoff = min(backoff*2, 10*time.Second) {
		err := w.setup()
		if err == nil {
			break
		}
		w.log.Warn("pod setup", "err", err)
		w.mu.Lock()
		w.setupErr = err.Error()
		w.mu.Unlock()
		w.notify()
		select {
		case <-w.ctx.Done():
			return
		case <-time.After(backoff):
		}
	}
	w.mu.Lock()
	w.setupErr = ""
	w.mu.Unlock()
	if !w.runInitContainers() {
		return
	}
	var wg sync.WaitGroup
	for _, c := range w.containers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w.superviseContainer(c)
		}()
	}
	wg.Wait()
	w.notify()
	<-w.ctx.Done()
}

// setup builds the pod's sandbox: cgroup, network namespace through CNI, volumes.
func (w *podWorker) setup() error {
	node := w.k.node
	if err := os.MkdirAll(w.dir, 0o755); err != nil {
		return err
	}
	if err := os.MkdirAll(w.cg, 0o755); err != nil {
		return fmt.Errorf("pod cgroup: %w", err)
	}
	pod := w.currentPod()
	w.mu.Lock()
	ns, ip := w.netns, w.ip
	w.mu.Unlock()
	switch {
	case ip != nil: // network done in an earlier attempt
	case pod.Spec.HostNetwork:
		w.mu.Lock()
		w.netns, w.ip, w.ips = node.NetNS, node.IP, []net.IP{node.IP, node.IP6}
		w.mu.Unlock()
	default:
		if ns.Name == "" {
			var err error
			if ns, err = newNetNSIn(node.netnsDir(), podNetNSName(node.cluster.RunID, pod.UID)); err != nil {
				return err
			}
			w.mu.Lock()
			w.netns, w.ownNetNS = ns, true
			w.mu.Unlock()
			// IPv6 addresses usable at once: no duplicate address detection in the pod.
			if err := ns.Do(func() error { return writeSysctl("net/ipv6/conf/default/accept_dad", "0") }); err != nil {
				return err
			}
		}
		ips, err := node.cni.add(w.ctx, ns.Path(), pod.Namespace, pod.Name, string(pod.UID))
		if err != nil {
			// Undo what the chain may have half done, so the next attempt starts clean.
			_ = node.cni.del(w.ctx, ns.Path(), pod.Namespace, pod.Name, string(pod.UID))
			return err
		}
		w.mu.Lock()
		w.ip, w.ips = ips[0], ips
		w.mu.Unlock()
	}
	mounts, err := w.prepareVolumes(pod)
	if err != nil {
		return err
	}
	w.mu.Lock()
	w.mounts = mounts
	w.mu.Unlock()
	return nil
}

func (w *podWorker) currentPod() *corev1.Pod {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.pod
}

// runInitContainers runs each init container to completion, in order, retrying failures.
func (w *podWorker) runInitContainers() bool {
	pod := w.currentPod()
	for _, c := range pod.Spec.InitContainers {
		for attempt := 0; ; attempt++ {
			st := &containerState{spec: c}
			if err := w.startContainer(st); err != nil {
				w.log.Warn("init container", "container", c.Name, "err", err)
			} else {
				select {
				case <-st.proc.done:
				case <-w.ctx.Done():
					st.proc.signal(syscall.SIGKILL)
					return false
				}
				if st.proc.exitCode() == 0 {
					break
				}
			}
			select {
			case <-w.ctx.Done():
				return false
			case <-time.After(min(time.Duration(attempt+1)*time.Second, 10*time.Second)):
			}
		}
	}
	w.mu.Lock()
	w.initDone = true
	w.mu.Unlock()
	return true
}

// superviseContainer starts a container and restarts it as the pod's restartPolicy says, until
// the pod stops. Probes run while it runs.
func (w *podWorker) superviseContainer(c *containerState) {
	policy := w.currentPod().Spec.RestartPolicy
	for backoff := time.Second; w.ctx.Err() == nil; backoff = min(backoff*2, 10*time.Second) {
		if err := w.startContainer(c); err != nil {
			w.setContainer(c, func() { c.waiting, c.message = "CreateContainerError", err.Error() })
		} else {
			probeCtx, stopProbes := context.WithCancel(w.ctx)
			restart := make(chan string, 1)
			w.startProbes(probeCtx, c, restart)
			w.notify()
			select {
			case <-c.proc.done:
			case reason := <-restart:
				w.log.Info("restarting container", "container", c.spec.Name, "reason", reason)
				w.stopContainer(c, w.gracePeriod())
			case <-w.ctx.Done():
			}
			stopProbes()
			if w.ctx.Err() != nil {
				return
			}
			code := c.proc.exitCode()
			w.setContainer(c, func() {
				c.running, c.ready = false, false
				c.terminated = &corev1.ContainerStateTerminated{
					ExitCode: int32(code), Reason: exitReason(code),
					StartedAt: metav1.NewTime(c.startedAt), FinishedAt: metav1.Now(),
				}
			})
			w.log.Info("container exited", "container", c.spec.Name, "code", code)
			if policy == corev1.RestartPolicyNever || (policy == corev1.RestartPolicyOnFailure && code == 0) {
				return
			}
			w.setContainer(c, func() { c.restarts++; c.waiting = "CrashLoopBackOff" })
		}
		select {
		case <-w.ctx.Done():
			return
		case <-time.After(backoff):
		}
	}
}

func exitReason(code int) string {
	if code == 0 {
		return "Completed"
	}
	return "Error"
}

func (w *podWorker) setContainer(c *containerState, f func()) {
	w.mu.Lock()
	f()
	w.mu.Unlock()
	w.notify()
}

// startContainer starts c's process through the shim.
func (w *podWorker) startContainer(c *containerState) error {
	node := w.k.node
	pod := w.currentPod()
	bin, err := node.cluster.images.Resolve(c.spec.Image)
	if err != nil {
		return err
	}
	env, err := w.containerEnv(pod, c.spec)
	if err != nil {
		return err
	}
	argv := []string{bin}
	if len(c.spec.Command) > 1 {
		argv = append(argv, expandAll(c.spec.Command[1:], env)...)
	}
	argv = append(argv, expandAll(c.spec.Args, env)...)
	w.mu.Lock()
	spec := podshim.Spec{
		NetNSPath:       w.netns.Path(),
		Hostname:        podHostname(pod, node),
		Argv:            argv,
		Env:             env,
		Dir:             c.spec.WorkingDir,
		CreatedDirsFile: filepath.Join(node.cluster.Dir, createdDirsFile),
	}
	mounts := w.mounts
	w.mu.Unlock()
	spec.Mounts, err = containerMounts(pod, c.spec, mounts, w.dir)
	if err != nil {
		return err
	}
	p, err := startProcess(node.cluster.shim, spec, filepath.Join(w.dir, c.spec.Name+".json"), w.cg, filepath.Join(w.dir, c.spec.Name+".log"))
	if err != nil {
		return err
	}
	w.setContainer(c, func() {
		c.proc, c.startedAt, c.running, c.terminated, c.waiting, c.message = p, time.Now(), true, nil, "", ""
		c.ready = c.spec.ReadinessProbe == nil
	})
	return nil
}

func podHostname(pod *corev1.Pod, node *Node) string {
	if pod.Spec.HostNetwork {
		return node.Name
	}
	if pod.Spec.Hostname != "" {
		return pod.Spec.Hostname
	}
	return pod.Name
}

// stopContainer sends SIGTERM, waits up to grace, then SIGKILL.
func (w *podWorker) stopContainer(c *containerState, grace time.Duration) {
	if c.proc == nil {
		return
	}
	c.proc.signal(syscall.SIGTERM)
	select {
	case <-c.proc.done:
	case <-time.After(grace):
		c.proc.signal(syscall.SIGKILL)
		<-c.proc.done
	}
}

// gracePeriod is the pod's termination grace period, capped at 10 s so tests stay quick.
func (w *podWorker) gracePeriod() time.Duration {
	g := 30 * time.Second
	if s := w.currentPod().Spec.TerminationGracePeriodSeconds; s != nil {
		g = time.Duration(*s) * time.Second
	}
	return min(g, 10*time.Second)
}

// teardown stops every process, releases the network and removes the pod's state.
func (w *podWorker) teardown() {
	w.mu.Lock()
	containers := w.containers
	w.mu.Unlock()
	var wg sync.WaitGroup
	for _, c := range containers {
		if c.proc != nil {
			wg.Add(1)
			go func() {
				defer wg.Done()
				w.stopContainer(c, w.gracePeriod())
			}()
		}
	}
	wg.Wait()
	if err := killCgroup(w.cg); err != nil {
		w.log.Warn("teardown", "err", err)
	}
	_ = removeCgroupTree(w.cg)
	pod := w.currentPod()
	w.mu.Lock()
	ns, own := w.netns, w.ownNetNS
	deleteObj := w.deleteObj
	w.mu.Unlock()
	if own {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		if err := w.k.node.cni.del(ctx, ns.Path(), pod.Namespace, pod.Name, string(pod.UID)); err != nil {
			w.log.Warn("teardown", "err", err)
		}
		cancel()
		if err := deleteNetNSAt(ns.Path()); err != nil {
			w.log.Warn("teardown", "err", err)
		}
	}
	_ = os.RemoveAll(w.dir)
	if deleteObj {
		w.k.finalizeDeletion(pod)
	}
}

// notify asks the status loop to write the pod status.
func (w *podWorker) notify() {
	select {
	case w.statusCh <- struct{}{}:
	default:
	}
}

// statusLoop writes the pod's status whenever it changes, until the pod stops. Failed writes
// are retried with back-off (up to 5 s), and logged once per failure streak.
func (w *podWorker) statusLoop() {
	backoff := 100 * time.Millisecond
	failing := false
	for {
		select {
		case <-w.ctx.Done():
			return
		case <-w.statusCh:
		}
		err := retry.RetryOnConflict(retry.DefaultBackoff, func() error {
			pods := w.k.node.cluster.Client.CoreV1().Pods(w.currentPod().Namespace)
			cur, err := pods.Get(w.ctx, w.currentPod().Name, metav1.GetOptions{})
			if err != nil {
				return err
			}
			if cur.UID != w.uid {
				return nil
			}
			cur.Status = w.status(cur)
			_, err = pods.UpdateStatus(w.ctx, cur, metav1.UpdateOptions{})
			return err
		})
		if err == nil || w.ctx.Err() != nil || apierrors.IsNotFound(err) {
			backoff, failing = 100*time.Millisecond, false
			continue
		}
		if !failing {
			w.log.Warn("pod status", "err", err)
			failing = true
		}
		w.notify()
		select {
		case <-w.ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

// status computes the PodStatus a kubelet would report now.
func (w *podWorker) status(pod *corev1.Pod) corev1.PodStatus {
	w.mu.Lock()
	defer w.mu.Unlock()
	node := w.k.node
	st := corev1.PodStatus{
		Phase:     corev1.PodPending,
		HostIP:    node.IP.String(),
		HostIPs:   []corev1.HostIP{{IP: node.IP.String()}},
		StartTime: &w.startTime,
		QOSClass:  pod.Status.QOSClass,
	}
	if w.ip != nil {
		st.PodIP = w.ip.String()
		for _, ip := range w.ips {
			st.PodIPs = append(st.PodIPs, corev1.PodIP{IP: ip.String()})
		}
	}
	allReady, anyRunning, allDone, allSucceeded := true, false, true, true
	for _, c := range w.containers {
		cs := corev1.ContainerStatus{
			Name: c.spec.Name, Image: c.spec.Image, ImageID: "weft-harness://" + imageName(c.spec.Image),
			RestartCount: c.restarts, Ready: c.running && c.ready, Started: ptr.To(c.running),
		}
		switch {
		case c.running:
			cs.ContainerID = fmt.Sprintf("weft-harness://%d", c.proc.cmd.Process.Pid)
			cs.State.Running = &corev1.ContainerStateRunning{StartedAt: metav1.NewTime(c.startedAt)}
			anyRunning = true
		case c.terminated != nil && c.waiting == "":
			cs.State.Terminated = c.terminated
		default:
			reason := c.waiting
			if reason == "" {
				reason = "ContainerCreating"
			}
			msg := c.message
			if w.setupErr != "" {
				msg = w.setupErr
			}
			cs.State.Waiting = &corev1.ContainerStateWaiting{Reason: reason, Message: msg}
			if c.terminated != nil {
				cs.LastTerminationState.Terminated = c.terminated
			}
		}
		if !cs.Ready {
			allReady = false
		}
		if cs.State.Terminated == nil {
			allDone = false
		} else if cs.State.Terminated.ExitCode != 0 {
			allSucceeded = false
		}
		st.ContainerStatuses = append(st.ContainerStatuses, cs)
	}
	switch {
	case allDone && allSucceeded:
		st.Phase = corev1.PodSucceeded
	case allDone:
		st.Phase = corev1.PodFailed
	case anyRunning || w.initDone && w.setupErr == "" && w.ip != nil && anyStarted(w.containers):
		st.Phase = corev1.PodRunning
	}
	cond := func(t corev1.PodConditionType, ok bool, reason string) corev1.PodCondition {
		c := corev1.PodCondition{Type: t, Status: corev1.ConditionFalse, Reason: reason}
		if ok {
			c.Status, c.Reason = corev1.ConditionTrue, ""
		}
		// keep the transition time when the status did not change
		c.LastTransitionTime = metav1.Now()
		for _, old := range pod.Status.Conditions {
			if old.Type == t && old.Status == c.Status {
				c.LastTransitionTime = old.LastTransitionTime
			}
		}
		return c
	}
	ready := allReady && anyRunning
	st.Conditions = []corev1.PodCondition{
		cond(corev1.PodReadyToStartContainers, w.ip != nil, "SandboxNotReady"),
		cond(corev1.PodInitialized, w.initDone, "ContainersNotInitialized"),
		cond(corev1.ContainersReady, ready, "ContainersNotReady"),
		cond(corev1.PodReady, ready, "ContainersNotReady"),
		cond(corev1.PodScheduled, true, ""),
	}
	return st
}

func anyStarted(cs []*containerState) bool {
	for _, c := range cs {
		if c.proc != nil {
			return true
		}
	}
	return false
}

// expandAll applies Kubernetes' $(VAR) expansion to each argument.
func expandAll(args, env []string) []string {
	vars := map[string]string{}
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		vars[k] = v
	}
	out := make([]string, len(args))
	for i, a := range args {
		out[i] = expandVars(a, vars)
	}
	return out
}

// expandVars replaces $(NAME) with its value when NAME is defined, keeps it otherwise, and turns
// $$ into $, as the kubelet does.
func expandVars(s string, vars map[string]string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '$' || i+1 >= len(s) {
			b.WriteByte(s[i])
			continue
		}
		switch s[i+1] {
		case '$':
			b.WriteByte('$')
			i++
		case '(':
			end := strings.IndexByte(s[i:], ')')
			if end < 0 {
				b.WriteString(s[i:])
				return b.String()
			}
			name := s[i+2 : i+end]
			if v, ok := vars[name]; ok {
				b.WriteString(v)
			} else {
				b.WriteString(s[i : i+end+1])
			}
			i += end
		default:
			b.WriteByte('$')
		}
	}
	return b.String()
}
