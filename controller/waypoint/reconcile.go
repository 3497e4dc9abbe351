package waypoint

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
	gatewayclient "sigs.k8s.io/gateway-api/pkg/client/clientset/versioned"

	"github.com/weftmesh/weft/api"
	"github.com/weftmesh/weft/controller/translate"
)

// DefaultImage is the waypoint image when Options.Image is empty.
const DefaultImage = "ghcr.io/weftmesh/weft-waypoint:latest"

// Reader reads the current Deployments and Services (in the controller, its informer caches).
// A missing object is an error for which apierrors.IsNotFound holds.
type Reader interface {
	Deployment(namespace, name string) (*appsv1.Deployment, error)
	Service(namespace, name string) (*corev1.Service, error)
}

// ClientReader is a Reader that asks the API server.
type ClientReader struct{ Kube kubernetes.Interface }

// Deployment gets a Deployment.
func (c ClientReader) Deployment(namespace, name string) (*appsv1.Deployment, error) {
	return c.Kube.AppsV1().Deployments(namespace).Get(context.Background(), name, metav1.GetOptions{})
}

// Service gets a Service.
func (c ClientReader) Service(namespace, name string) (*corev1.Service, error) {
	return c.Kube.CoreV1().Services(namespace).Get(context.Background(), name, metav1.GetOptions{})
}

// Options configure a Reconciler.
type Options struct {
	Kube    kubernetes.Interface
	Gateway gatewayclient.Interface
	// Reader reads Deployments and Services; nil means ClientReader{Kube}.
	Reader Reader
	// Image is the waypoint image; empty means DefaultImage.
	Image string
	// ControllerNamespace is the controller's namespace, where the CA publishes its roots;
	// empty means "weft-system".
	ControllerNamespace string
	// ControllerAddress is what waypoints dial, as the node agents do; empty means
	// "weft-controller.<ControllerNamespace>.svc:15012".
	ControllerAddress string
	// Roots returns the CA's PEM roots, copied into every namespace with a waypoint; nil or
	// "" leaves the ConfigMaps alone.
	Roots func() string
	// Resync is how often everything is checked again, repairing objects changed behind the
	// reconciler's back and following root rotations; zero means 1 minute.
	Resync time.Duration
	Logger *slog.Logger
}

// Reconciler deploys waypoints and writes their status; see the package documentation.
type Reconciler struct {
	o    Options
	log  *slog.Logger
	wake chan struct{}

	mu      sync.Mutex
	pending []*gatewayv1.Gateway
	have    bool

	// Run's goroutine only (or the caller of Reconcile):
	done      map[string]string // gateway key → fingerprint of the objects last ensured
	classDone bool
}

// New returns a Reconciler.
func New(o Options) *Reconciler {
	o.Image = cmp.Or(o.Image, DefaultImage)
	o.ControllerNamespace = cmp.Or(o.ControllerNamespace, "weft-system")
	o.ControllerAddress = cmp.Or(o.ControllerAddress, fmt.Sprintf("weft-controller.%s.svc:%d", o.ControllerNamespace, api.ControllerPort))
	if o.Reader == nil {
		o.Reader = ClientReader{Kube: o.Kube}
	}
	if o.Resync <= 0 {
		o.Resync = time.Minute
	}
	log := cmp.Or(o.Logger, slog.Default())
	return &Reconciler{o: o, log: log.With("component", "waypoint"), wake: make(chan struct{}, 1), done: map[string]string{}}
}

// Update hands over the current Gateways; Run reconciles them. It never blocks, and only the
// newest Gateways count.
func (r *Reconciler) Update(gateways []*gatewayv1.Gateway) {
	r.mu.Lock()
	r.pending, r.have = gateways, true
	r.mu.Unlock()
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// Run reconciles after each Update and every Resync, until ctx is done. Failures are logged
// and retried at the next Update or Resync.
func (r *Reconciler) Run(ctx context.Context) {
	t := time.NewTicker(r.o.Resync)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-r.wake:
		case <-t.C:
			r.done, r.classDone = map[string]string{}, false // check every object again
		}
		r.mu.Lock()
		gws, have := r.pending, r.have
		r.mu.Unlock()
		if !have {
			continue
		}
		if err := r.Reconcile(ctx, gws); err != nil && ctx.Err() == nil {
			r.log.Warn("reconcile waypoints", "err", err)
		}
	}
}

// Reconcile deploys the waypoints among gateways and writes their status, once.
func (r *Reconciler) Reconcile(ctx context.Context, gateways []*gatewayv1.Gateway) error {
	var errs []error
	var mine []*gatewayv1.Gateway
	byNS := map[string][]*gatewayv1.Gateway{}
	for _, gw := range gateways {
		if !translate.IsWaypointClass(gw) || gw.DeletionTimestamp != nil {
			continue
		}
		mine = append(mine, gw)
		if translate.ValidWaypointListeners(gw) {
			byNS[gw.Namespace] = append(byNS[gw.Namespace], gw)
		}
	}
	if len(mine) > 0 && !r.classDone {
		if err := r.ensureClass(ctx); err != nil {
			errs = append(errs, err)
		} else {
			r.classDone = true
		}
	}
	roots := ""
	if r.o.Roots != nil {
		roots = r.o.Roots()
	}
	if roots != "" {
		for _, ns := range slices.Sorted(maps.Keys(byNS)) {
			if ns == r.o.ControllerNamespace {
				continue
			}
			owners := byNS[ns]
			slices.SortFunc(owners, func(a, b *gatewayv1.Gateway) int { return cmp.Compare(a.Name, b.Name) })
			key := "configmap/" + ns
			want := RootsConfigMap(ns, roots, owners)
			fp := want.Annotations[AnnotationDigest]
			if r.done[key] == fp {
				continue
			}
			if err := r.ensureConfigMap(ctx, want); err != nil {
				errs = append(errs, err)
				continue
			}
			r.done[key] = fp
		}
	}
	seen := map[string]bool{}
	for _, gw := range mine {
		key := gw.Namespace + "/" + gw.Name
		seen[key] = true
		if err := r.reconcileGateway(ctx, gw, key); err != nil {
			errs = append(errs, fmt.Errorf("gateway %s: %w", key, err))
		}
	}
	for key := range r.done {
		if !seen[key] && !isConfigMapKey(key) {
			delete(r.done, key)
		}
	}
	return errors.Join(errs...)
}

func isConfigMapKey(k string) bool { return len(k) > 10 && k[:10] == "configmap/" }

func (r *Reconciler) reconcileGateway(ctx context.Context, gw *gatewayv1.Gateway, key string) error {
	if !translate.ValidWaypointListeners(gw) {
		delete(r.done, key)
		err := r.removeDeployment(ctx, gw)
		return errors.Join(err, r.writeStatus(ctx, gw, invalidStatus(gw)))
	}
	sa, svc, dep := ServiceAccount(gw), Service(gw), Deployment(gw, r.o.Image, r.o.ControllerAddress)
	fp := sa.Annotations[AnnotationDigest] + svc.Annotations[AnnotationDigest] + dep.Annotations[AnnotationDigest] + string(gw.UID)
	curDep, depErr := r.o.Reader.Deployment(gw.Namespace, gw.Name)
	curSvc, svcErr := r.o.Reader.Service(gw.Namespace, gw.Name)
	var errs []error
	if r.done[key] != fp || depErr != nil || svcErr != nil {
		errs = append(errs, r.ensureServiceAccount(ctx, sa), r.ensureService(ctx, svc), r.ensureDeployment(ctx, dep))
		if errors.Join(errs...) == nil {
			r.done[key] = fp
			curDep, depErr = r.o.Reader.Deployment(gw.Namespace, gw.Name)
			curSvc, svcErr = r.o.Reader.Service(gw.Namespace, gw.Name)
		}
	}
	if depErr != nil && !apierrors.IsNotFound(depErr) {
		errs = append(errs, depErr)
	}
	if svcErr != nil && !apierrors.IsNotFound(svcErr) {
		errs = append(errs, svcErr)
	}
	if depErr != nil {
		curDep = nil
	}
	if svcErr != nil {
		curSvc = nil
	}
	errs = append(errs, r.writeStatus(ctx, gw, deployedStatus(gw, curDep, curSvc, errors.Join(errs...))))
	return errors.Join(errs...)
}

// owned reports whether refs name gw as controller.
func owned(refs []metav1.OwnerReference, gw *gatewayv1.Gateway) bool {
	for _, ref := range refs {
		if ref.UID == gw.UID && ref.Controller != nil && *ref.Controller {
			return true
		}
	}
	return false
}

// mergeMeta makes cur carry want's labels, annotations and owner references, keeping what
// others put there. It fails when another object controls cur.
func mergeMeta(kind string, cur *metav1.ObjectMeta, want metav1.ObjectMeta) error {
	for _, ref := range cur.OwnerReferences {
		if ref.Controller != nil && *ref.Controller && !slices.ContainsFunc(want.OwnerReferences, func(w metav1.OwnerReference) bool { return w.UID == ref.UID }) {
			return fmt.Errorf("%s %s/%s exists and is controlled by %s %s: the waypoint cannot use it; delete it or give the Gateway another name", kind, cur.Namespace, cur.Name, ref.Kind, ref.Name)
		}
	}
	if cur.Labels == nil {
		cur.Labels = map[string]string{}
	}
	maps.Copy(cur.Labels, want.Labels)
	if cur.Annotations == nil {
		cur.Annotations = map[string]string{}
	}
	maps.Copy(cur.Annotations, want.Annotations)
	refs := slices.DeleteFunc(slices.Clone(cur.OwnerReferences), func(ref metav1.OwnerReference) bool {
		return ref.Kind == "Gateway" && ref.APIVersion == gatewayv1.GroupVersion.String()
	})
	cur.OwnerReferences = append(refs, want.OwnerReferences...)
	return nil
}

func upToDate(cur, want metav1.ObjectMeta) bool {
	return cur.Annotations[AnnotationDigest] == want.Annotations[AnnotationDigest]
}

// objects is the part of a client-go typed client that ensure uses.
type objects[T any] interface {
	Get(context.Context, string, metav1.GetOptions) (T, error)
	Create(context.Context, T, metav1.CreateOptions) (T, error)
	Update(context.Context, T, metav1.UpdateOptions) (T, error)
}

// ensure creates want, or updates the object in place when its digest differs: metadata merged
// (mergeMeta), then own copies the fields the controller owns from want into a deep copy of the
// object (the API server's defaults, cluster IPs and user-set replicas stay).
func ensure[T any](ctx context.Context, r *Reconciler, kind string, c objects[T], want T,
	meta func(T) *metav1.ObjectMeta, deepCopy func(T) T, own func(cur, want T)) error {
	w := meta(want)
	cur, err := c.Get(ctx, w.Name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		_, err = c.Create(ctx, want, metav1.CreateOptions{})
		r.logWrite("created", kind, *w, err)
		return err
	case err != nil:
		return err
	case upToDate(*meta(cur), *w):
		return nil
	}
	cur = deepCopy(cur)
	if err := mergeMeta(kind, meta(cur), *w); err != nil {
		return err
	}
	own(cur, want)
	_, err = c.Update(ctx, cur, metav1.UpdateOptions{})
	r.logWrite("updated", kind, *w, err)
	return err
}

func (r *Reconciler) ensureServiceAccount(ctx context.Context, want *corev1.ServiceAccount) error {
	return ensure(ctx, r, "ServiceAccount", r.o.Kube.CoreV1().ServiceAccounts(want.Namespace), want,
		func(o *corev1.ServiceAccount) *metav1.ObjectMeta { return &o.ObjectMeta }, (*corev1.ServiceAccount).DeepCopy,
		func(cur, want *corev1.ServiceAccount) {})
}

func (r *Reconciler) ensureService(ctx context.Context, want *corev1.Service) error {
	return ensure(ctx, r, "Service", r.o.Kube.CoreV1().Services(want.Namespace), want,
		func(o *corev1.Service) *metav1.ObjectMeta { return &o.ObjectMeta }, (*corev1.Service).DeepCopy,
		func(cur, want *corev1.Service) {
			// The cluster IPs and the other defaulted fields stay.
			cur.Spec.Type, cur.Spec.Selector, cur.Spec.Ports = want.Spec.Type, want.Spec.Selector, want.Spec.Ports
		})
}

func (r *Reconciler) ensureDeployment(ctx context.Context, want *appsv1.Deployment) error {
	return ensure(ctx, r, "Deployment", r.o.Kube.AppsV1().Deployments(want.Namespace), want,
		func(o *appsv1.Deployment) *metav1.ObjectMeta { return &o.ObjectMeta }, (*appsv1.Deployment).DeepCopy,
		func(cur, want *appsv1.Deployment) {
			// The replicas stay (the user's to scale); the selector is immutable and always the same.
			cur.Spec.Template = want.Spec.Template
		})
}

func (r *Reconciler) ensureConfigMap(ctx context.Context, want *corev1.ConfigMap) error {
	return ensure(ctx, r, "ConfigMap", r.o.Kube.CoreV1().ConfigMaps(want.Namespace), want,
		func(o *corev1.ConfigMap) *metav1.ObjectMeta { return &o.ObjectMeta }, (*corev1.ConfigMap).DeepCopy,
		func(cur, want *corev1.ConfigMap) {
			if cur.Data == nil {
				cur.Data = map[string]string{}
			}
			cur.Data[api.RootCertKey] = want.Data[api.RootCertKey]
		})
}

// removeDeployment deletes the Deployment deployed for gw, if any (its listeners became
// invalid: it is no waypoint any more).
func (r *Reconciler) removeDeployment(ctx context.Context, gw *gatewayv1.Gateway) error {
	c := r.o.Kube.AppsV1().Deployments(gw.Namespace)
	cur, err := c.Get(ctx, gw.Name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	if !owned(cur.OwnerReferences, gw) {
		return nil
	}
	uid := cur.UID
	err = c.Delete(ctx, gw.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid}})
	if apierrors.IsNotFound(err) {
		return nil
	}
	r.logWrite("deleted", "Deployment", cur.ObjectMeta, err)
	return err
}

func (r *Reconciler) logWrite(what, kind string, m metav1.ObjectMeta, err error) {
	if err == nil {
		r.log.Info("waypoint "+kind+" "+what, "namespace", m.Namespace, "name", m.Name)
	}
}
