package scale

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	clientretry "k8s.io/client-go/util/retry"
	"k8s.io/utils/ptr"

	"github.com/weftmesh/weft/api"
)

// workers is the number of concurrent apiserver writes while the cluster is filled.
const workers = 48

// Parallel runs f(0) … f(n-1) on up to workers goroutines and returns the first error (the
// others are cancelled through ctx).
func Parallel(ctx context.Context, n, workers int, f func(ctx context.Context, i int) error) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var next atomic.Int64
	var wg sync.WaitGroup
	var once sync.Once
	var first error
	for range min(workers, n) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n || ctx.Err() != nil {
					return
				}
				if err := f(ctx, i); err != nil {
					once.Do(func() { first = err; cancel(err) })
					return
				}
			}
		}()
	}
	wg.Wait()
	if first != nil {
		return first
	}
	return ctx.Err()
}

// retry calls f until it succeeds, fails with an error that is not transient (the apiserver
// overloaded or timing out), or 8 attempts were made.
func retry(ctx context.Context, f func() error) error {
	delay := 50 * time.Millisecond
	for attempt := 1; ; attempt++ {
		err := f()
		if err == nil || attempt == 8 || !(apierrors.IsTooManyRequests(err) || apierrors.IsServerTimeout(err) ||
			apierrors.IsTimeout(err) || apierrors.IsServiceUnavailable(err) || apierrors.IsInternalError(err)) {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(delay):
		}
		delay = min(2*delay, 2*time.Second)
	}
}

// create creates an object, retrying transient errors; AlreadyExists after a retry (the first
// attempt went through) returns the existing object.
func create[T any](ctx context.Context, createFn func(context.Context) (T, error), getFn func(context.Context) (T, error)) (T, error) {
	var out T
	tried := false
	err := retry(ctx, func() error {
		var err error
		out, err = createFn(ctx)
		if apierrors.IsAlreadyExists(err) && tried {
			out, err = getFn(ctx)
		}
		tried = true
		return err
	})
	return out, err
}

// Cluster fills the apiserver and keeps the nodes Ready.
type Cluster struct {
	Kube kubernetes.Interface
	Size Size
	// Model holds what the apiserver returned for the objects the controller translates.
	Model *Model
	// Nodes are the node names; AgentPods the node agents' pods by node.
	Nodes     []string
	AgentPods map[string]*corev1.Pod
	// Writes counts the apiserver writes made to fill the cluster.
	Writes atomic.Int64
	nextIP atomic.Int64
}

// NewCluster returns a Cluster for the REST config of an admin, with a client whose rate
// limit does not hold the benchmark back.
func NewCluster(rc *rest.Config, size Size) (*Cluster, error) {
	rc = rest.CopyConfig(rc)
	rc.QPS, rc.Burst = 5000, 10000
	kube, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, err
	}
	return &Cluster{Kube: kube, Size: size, Model: NewModel(), AgentPods: map[string]*corev1.Pod{}}, nil
}

// NextPodIP allocates a pod address.
func (c *Cluster) NextPodIP() (ip string, n int) {
	i := int(c.nextIP.Add(1) - 1)
	return PodIP(i).String(), i
}

// InstallCRDs creates the CustomResourceDefinitions of manifest (deploy/crds/istio.yaml) and
// waits until they are established: the controller's informers list them.
func InstallCRDs(ctx context.Context, rc *rest.Config, manifest []byte) error {
	dyn, err := dynamic.NewForConfig(rc)
	if err != nil {
		return err
	}
	gvr := schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(manifest), 4096)
	var names []string
	for {
		var obj unstructured.Unstructured
		if err := dec.Decode(&obj.Object); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			return fmt.Errorf("CRDs: %w", err)
		}
		if len(obj.Object) == 0 {
			continue
		}
		if obj.GetKind() != "CustomResourceDefinition" {
			return fmt.Errorf("CRDs: unexpected %s %s", obj.GetKind(), obj.GetName())
		}
		if _, err := dyn.Resource(gvr).Create(ctx, &obj, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("CRD %s: %w", obj.GetName(), err)
		}
		names = append(names, obj.GetName())
	}
	for _, name := range names {
		for {
			u, err := dyn.Resource(gvr).Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return fmt.Errorf("CRD %s: %w", name, err)
			}
			conds, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
			established := false
			for _, c := range conds {
				if m, ok := c.(map[string]any); ok && m["type"] == "Established" && m["status"] == "True" {
					established = true
				}
			}
			if established {
				break
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("CRD %s not established: %w", name, ctx.Err())
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
	return nil
}

// CreateNodes creates the Node objects with a Ready status and their Leases, the node
// agents' namespace and service account, and one agent pod per node (host network, bound to
// its node; it never runs).
func (c *Cluster) CreateNodes(ctx context.Context) error {
	core := c.Kube.CoreV1()
	if _, err := core.Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: AgentNamespace}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("namespace %s: %w", AgentNamespace, err)
	}
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: AgentNamespace, Name: AgentServiceAccount}}
	if _, err := core.ServiceAccounts(AgentNamespace).Create(ctx, sa, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("service account %s/%s: %w", AgentNamespace, AgentServiceAccount, err)
	}
	c.Nodes = make([]string, c.Size.Nodes)
	for i := range c.Nodes {
		c.Nodes[i] = NodeName(i)
	}
	var mu sync.Mutex
	return Parallel(ctx, len(c.Nodes), workers, func(ctx context.Context, i int) error {
		name := c.Nodes[i]
		node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{
			"kubernetes.io/hostname": name, "kubernetes.io/os": "linux", "weft.dev/scale": "node",
		}}}
		created, err := create(ctx,
			func(ctx context.Context) (*corev1.Node, error) {
				return core.Nodes().Create(ctx, node, metav1.CreateOptions{})
			},
			func(ctx context.Context) (*corev1.Node, error) {
				return core.Nodes().Get(ctx, name, metav1.GetOptions{})
			})
		if err != nil {
			return fmt.Errorf("node %s: %w", name, err)
		}
		// kube-controller-manager may change the new Node (taints) before its status is posted.
		if err := retry(ctx, func() error {
			return clientretry.RetryOnConflict(clientretry.DefaultBackoff, func() error {
				now := metav1.Now()
				created.Status = corev1.NodeStatus{
					Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "KubeletReady",
						Message: "simulated by weft-scale", LastHeartbeatTime: now, LastTransitionTime: now}},
					Addresses: []corev1.NodeAddress{{Type: corev1.NodeHostName, Address: name}},
				}
				_, err := core.Nodes().UpdateStatus(ctx, created, metav1.UpdateOptions{})
				if apierrors.IsConflict(err) {
					if latest, gerr := core.Nodes().Get(ctx, name, metav1.GetOptions{}); gerr == nil {
						created = latest
					}
				}
				return err
			})
		}); err != nil {
			return fmt.Errorf("node %s: status: %w", name, err)
		}
		if err := c.renewLease(ctx, name); err != nil {
			return err
		}
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Namespace: AgentNamespace, Name: AgentPodName(name), Labels: map[string]string{"app": "weft-nodeagent"}},
			Spec: corev1.PodSpec{
				NodeName: name, HostNetwork: true, ServiceAccountName: AgentServiceAccount, AutomountServiceAccountToken: ptr.To(false),
				Containers: []corev1.Container{{Name: "nodeagent", Image: "registry.invalid/weft-nodeagent:scale"}},
			},
		}
		p, err := create(ctx,
			func(ctx context.Context) (*corev1.Pod, error) {
				return core.Pods(AgentNamespace).Create(ctx, pod, metav1.CreateOptions{})
			},
			func(ctx context.Context) (*corev1.Pod, error) {
				return core.Pods(AgentNamespace).Get(ctx, pod.Name, metav1.GetOptions{})
			})
		if err != nil {
			return fmt.Errorf("agent pod of %s: %w", name, err)
		}
		c.Writes.Add(4)
		mu.Lock()
		c.AgentPods[name] = p
		mu.Unlock()
		return nil
	})
}

// renewLease creates or renews a node's Lease: the node lifecycle controller of
// kube-controller-manager marks a node whose Lease expires NotReady, and then its pods.
func (c *Cluster) renewLease(ctx context.Context, node string) error {
	leases := c.Kube.CoordinationV1().Leases(corev1.NamespaceNodeLease)
	now := metav1.NewMicroTime(time.Now())
	return retry(ctx, func() error {
		l, err := leases.Get(ctx, node, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
			_, err = leases.Create(ctx, &coordinationv1.Lease{
				ObjectMeta: metav1.ObjectMeta{Name: node},
				Spec:       coordinationv1.LeaseSpec{HolderIdentity: ptr.To(node), LeaseDurationSeconds: ptr.To[int32](40), RenewTime: &now},
			}, metav1.CreateOptions{})
		case err == nil:
			l.Spec.RenewTime = &now
			_, err = leases.Update(ctx, l, metav1.UpdateOptions{})
		}
		if apierrors.IsConflict(err) || apierrors.IsAlreadyExists(err) {
			return apierrors.NewTooManyRequests("lease raced", 0) // retried
		}
		return err
	})
}

// KeepNodesReady renews every node's Lease every 10 s, as kubelets do, until ctx is done.
// Node status is not posted again: kubelets post it only when it changes (or every 5 min),
// and every Node update makes the controller translate the whole cluster.
func (c *Cluster) KeepNodesReady(ctx context.Context) {
	t := time.NewTicker(10 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		_ = Parallel(ctx, len(c.Nodes), 8, func(ctx context.Context, i int) error {
			_ = c.renewLease(ctx, c.Nodes[i])
			return nil
		})
	}
}

// CreateApps creates the namespaces (with a default service account each), the services, the
// pods with their status, and one EndpointSlice per service, and records them in the model.
func (c *Cluster) CreateApps(ctx context.Context, progress func(string, ...any)) error {
	s := c.Size
	core := c.Kube.CoreV1()
	var mu sync.Mutex
	put := func(f func()) { mu.Lock(); f(); mu.Unlock() }

	if err := Parallel(ctx, s.Namespaces, workers, func(ctx context.Context, i int) error {
		ns := NewNamespace(NamespaceName(i), s.Ambient(i))
		created, err := create(ctx,
			func(ctx context.Context) (*corev1.Namespace, error) {
				return core.Namespaces().Create(ctx, ns, metav1.CreateOptions{})
			},
			func(ctx context.Context) (*corev1.Namespace, error) {
				return core.Namespaces().Get(ctx, ns.Name, metav1.GetOptions{})
			})
		if err != nil {
			return fmt.Errorf("namespace %s: %w", ns.Name, err)
		}
		// The serviceaccount controller creates it too; the pods cannot wait for it.
		sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns.Name, Name: "default"}}
		if _, err := core.ServiceAccounts(ns.Name).Create(ctx, sa, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("service account %s/default: %w", ns.Name, err)
		}
		c.Writes.Add(2)
		put(func() { c.Model.PutNamespace(created) })
		return nil
	}); err != nil {
		return err
	}
	progress("%d namespaces (%d labelled %s=%s)", s.Namespaces, s.AmbientNamespaces(), api.LabelDataplaneMode, api.DataplaneModeAmbient)

	nsvc := s.Services()
	if err := Parallel(ctx, nsvc, workers, func(ctx context.Context, i int) error {
		svc := NewService(NamespaceName(i/s.ServicesPerNamespace), ServiceName(i%s.ServicesPerNamespace))
		created, err := create(ctx,
			func(ctx context.Context) (*corev1.Service, error) {
				return core.Services(svc.Namespace).Create(ctx, svc, metav1.CreateOptions{})
			},
			func(ctx context.Context) (*corev1.Service, error) {
				return core.Services(svc.Namespace).Get(ctx, svc.Name, metav1.GetOptions{})
			})
		if err != nil {
			return fmt.Errorf("service %s/%s: %w", svc.Namespace, svc.Name, err)
		}
		c.Writes.Add(1)
		put(func() { c.Model.PutService(created) })
		return nil
	}); err != nil {
		return err
	}
	progress("%d services", nsvc)

	npods := s.Pods()
	var done atomic.Int64
	start := time.Now()
	if err := Parallel(ctx, npods, workers, func(ctx context.Context, g int) error {
		svcIdx := g / s.PodsPerService
		ns := NamespaceName(svcIdx / s.ServicesPerNamespace)
		svc := ServiceName(svcIdx % s.ServicesPerNamespace)
		p, err := c.CreatePod(ctx, ns, svc, PodName(svc, g%s.PodsPerService), c.Nodes[g%len(c.Nodes)], true)
		if err != nil {
			return err
		}
		put(func() { c.Model.PutPod(p) })
		if n := done.Add(1); n%2000 == 0 && n < int64(npods) {
			progress("%d of %d pods (%.0f/s)", n, npods, float64(n)/time.Since(start).Seconds())
		}
		return nil
	}); err != nil {
		return err
	}
	progress("%d pods with status (Running, IP, Ready), %.0f pods/s", npods, float64(npods)/time.Since(start).Seconds())

	if err := Parallel(ctx, nsvc, workers, func(ctx context.Context, i int) error {
		ns := NamespaceName(i / s.ServicesPerNamespace)
		svc := ServiceName(i % s.ServicesPerNamespace)
		var pods []*corev1.Pod
		mu.Lock()
		for k := range s.PodsPerService {
			pods = append(pods, c.Model.Pods[Key(ns, PodName(svc, k))])
		}
		mu.Unlock()
		es := NewSlice(ns, svc, pods)
		created, err := create(ctx,
			func(ctx context.Context) (*discoveryv1.EndpointSlice, error) {
				return c.Kube.DiscoveryV1().EndpointSlices(ns).Create(ctx, es, metav1.CreateOptions{})
			},
			func(ctx context.Context) (*discoveryv1.EndpointSlice, error) {
				return c.Kube.DiscoveryV1().EndpointSlices(ns).Get(ctx, es.Name, metav1.GetOptions{})
			})
		if err != nil {
			return fmt.Errorf("endpointslice %s/%s: %w", ns, es.Name, err)
		}
		c.Writes.Add(1)
		put(func() { c.Model.PutSlice(created) })
		return nil
	}); err != nil {
		return err
	}
	progress("%d EndpointSlices", nsvc)
	return nil
}

// CreatePod creates a pod of a service on node and posts its status (Running, a new IP,
// Ready as given), as a kubelet would; it returns the pod as the status update returned it.
func (c *Cluster) CreatePod(ctx context.Context, ns, svc, name, node string, ready bool) (*corev1.Pod, error) {
	pods := c.Kube.CoreV1().Pods(ns)
	pod := NewPod(ns, svc, name, node)
	created, err := create(ctx,
		func(ctx context.Context) (*corev1.Pod, error) { return pods.Create(ctx, pod, metav1.CreateOptions{}) },
		func(ctx context.Context) (*corev1.Pod, error) { return pods.Get(ctx, name, metav1.GetOptions{}) })
	if err != nil {
		return nil, fmt.Errorf("pod %s/%s: %w", ns, name, err)
	}
	_, i := c.NextPodIP()
	var updated *corev1.Pod
	if err := retry(ctx, func() error {
		var err error
		updated, err = pods.UpdateStatus(ctx, WithStatus(created, PodIP(i), ready), metav1.UpdateOptions{})
		return err
	}); err != nil {
		return nil, fmt.Errorf("pod %s/%s: status: %w", ns, name, err)
	}
	c.Writes.Add(2)
	return updated, nil
}

// LoadModel replaces the model with the objects the apiserver lists: what the controller's
// informers hold (the kubernetes Service and the node agents' pods included).
func (c *Cluster) LoadModel(ctx context.Context) error {
	core := c.Kube.CoreV1()
	m := NewModel()
	nss, err := core.Namespaces().List(ctx, metav1.ListOptions{})
	if err != nil {
		return err
	}
	for i := range nss.Items {
		m.PutNamespace(&nss.Items[i])
	}
	pods, err := core.Pods("").List(ctx, metav1.ListOptions{})
	if err != nil {
		return err
	}
	for i := range pods.Items {
		m.PutPod(&pods.Items[i])
	}
	svcs, err := core.Services("").List(ctx, metav1.ListOptions{})
	if err != nil {
		return err
	}
	for i := range svcs.Items {
		m.PutService(&svcs.Items[i])
	}
	slices, err := c.Kube.DiscoveryV1().EndpointSlices("").List(ctx, metav1.ListOptions{})
	if err != nil {
		return err
	}
	for i := range slices.Items {
		m.PutSlice(&slices.Items[i])
	}
	c.Model = m
	return nil
}

// WriteTokens requests, for every node, a token of the node agents' service account for the
// controller's audience, bound to the node's agent pod, and writes it to dir/<node>.token.
func (c *Cluster) WriteTokens(ctx context.Context, dir string) (map[string]string, error) {
	files := map[string]string{}
	var mu sync.Mutex
	err := Parallel(ctx, len(c.Nodes), 16, func(ctx context.Context, i int) error {
		node := c.Nodes[i]
		pod := c.AgentPods[node]
		tr := &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{
			Audiences:         []string{api.TokenAudience},
			ExpirationSeconds: ptr.To[int64](3600),
			BoundObjectRef:    &authenticationv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: pod.Name, UID: pod.UID},
		}}
		var out *authenticationv1.TokenRequest
		if err := retry(ctx, func() error {
			var err error
			out, err = c.Kube.CoreV1().ServiceAccounts(AgentNamespace).CreateToken(ctx, AgentServiceAccount, tr, metav1.CreateOptions{})
			return err
		}); err != nil {
			return fmt.Errorf("token for %s: %w", node, err)
		}
		f := filepath.Join(dir, node+".token")
		if err := os.WriteFile(f, []byte(out.Status.Token), 0o600); err != nil {
			return err
		}
		mu.Lock()
		files[node] = f
		mu.Unlock()
		return nil
	})
	return files, err
}

// RootCert waits for the controller's root bundle (ConfigMap weft-ca-root-cert in the agents'
// namespace) and returns it.
func (c *Cluster) RootCert(ctx context.Context) ([]byte, error) {
	for {
		cm, err := c.Kube.CoreV1().ConfigMaps(AgentNamespace).Get(ctx, api.RootCertConfigMap, metav1.GetOptions{})
		if err == nil && cm.Data[api.RootCertKey] != "" {
			return []byte(cm.Data[api.RootCertKey]), nil
		}
		if err != nil && !apierrors.IsNotFound(err) {
			return nil, err
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("ConfigMap %s/%s: %w", AgentNamespace, api.RootCertConfigMap, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}
