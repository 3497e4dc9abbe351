package waypoint

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	kubefake "k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
	gatewayfake "sigs.k8s.io/gateway-api/pkg/client/clientset/versioned/fake"

	"github.com/weftmesh/weft/api"
	"github.com/weftmesh/weft/controller/translate"
)

type env struct {
	kube  *kubefake.Clientset
	gw    *gatewayfake.Clientset
	r     *Reconciler
	roots string
}

func newEnv(t *testing.T, image string) *env {
	t.Helper()
	//lint:ignore SA1019 the gateway fake NewClientset needs a type converter it lacks
	e := &env{kube: kubefake.NewClientset(), gw: gatewayfake.NewSimpleClientset(), roots: "ROOTS-1"}
	e.r = New(Options{Kube: e.kube, Gateway: e.gw, Image: image, ControllerNamespace: "weft-system", Roots: func() string { return e.roots }})
	return e
}

func waypointGateway(ns, name string, listeners ...gatewayv1.Listener) *gatewayv1.Gateway {
	if len(listeners) == 0 {
		listeners = []gatewayv1.Listener{{Name: "mesh", Port: 15008, Protocol: "HBONE"}}
	}
	return &gatewayv1.Gateway{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, UID: types.UID("uid-" + name), Generation: 1},
		Spec:       gatewayv1.GatewaySpec{GatewayClassName: api.WaypointGatewayClass, Listeners: listeners},
	}
}

// create stores gw through the v1 client (the fake's tracker would file typed objects
// passed to NewClientset under v1beta1) and returns the stored copy.
func (e *env) create(t *testing.T, gw *gatewayv1.Gateway) *gatewayv1.Gateway {
	t.Helper()
	out, err := e.gw.GatewayV1().Gateways(gw.Namespace).Create(context.Background(), gw, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func (e *env) get(t *testing.T, ns, name string) *gatewayv1.Gateway {
	t.Helper()
	gw, err := e.gw.GatewayV1().Gateways(ns).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return gw
}

func (e *env) reconcile(t *testing.T, ns, name string) {
	t.Helper()
	if err := e.r.Reconcile(context.Background(), []*gatewayv1.Gateway{e.get(t, ns, name)}); err != nil {
		t.Fatal(err)
	}
}

// writes are the create, update, patch and delete actions recorded since the last call.
func writes(f interface {
	Actions() []k8stesting.Action
	ClearActions()
}) []string {
	var out []string
	for _, a := range f.Actions() {
		switch a.GetVerb() {
		case "create", "update", "patch", "delete":
			out = append(out, a.GetVerb()+" "+a.GetResource().Resource+"/"+a.GetSubresource())
		}
	}
	f.ClearActions()
	return out
}

func TestReconcileDeploysWaypoint(t *testing.T) {
	e := newEnv(t, "example/waypoint:1")
	e.create(t, waypointGateway("shop", "waypoint"))
	e.reconcile(t, "shop", "waypoint")
	ctx := context.Background()

	isOwned := func(what string, refs []metav1.OwnerReference) {
		t.Helper()
		if len(refs) != 1 || refs[0].Kind != "Gateway" || refs[0].Name != "waypoint" || refs[0].UID != "uid-waypoint" || refs[0].Controller == nil || !*refs[0].Controller {
			t.Errorf("%s owner references = %+v, want the Gateway as controller", what, refs)
		}
	}
	sa, err := e.kube.CoreV1().ServiceAccounts("shop").Get(ctx, "waypoint", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	isOwned("ServiceAccount", sa.OwnerReferences)

	svc, err := e.kube.CoreV1().Services("shop").Get(ctx, "waypoint", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	isOwned("Service", svc.OwnerReferences)
	if svc.Spec.Type != corev1.ServiceTypeClusterIP || len(svc.Spec.Ports) != 1 || svc.Spec.Ports[0].Port != 15008 || svc.Spec.Ports[0].Name != "mesh" ||
		svc.Spec.Selector[api.LabelGatewayName] != "waypoint" || len(svc.Spec.Selector) != 1 {
		t.Errorf("Service spec = %+v", svc.Spec)
	}

	dep, err := e.kube.AppsV1().Deployments("shop").Get(ctx, "waypoint", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	isOwned("Deployment", dep.OwnerReferences)
	if dep.Spec.Replicas == nil || *dep.Spec.Replicas != 1 {
		t.Errorf("replicas = %v, want 1", dep.Spec.Replicas)
	}
	tpl := dep.Spec.Template
	for k, v := range map[string]string{api.LabelGatewayName: "waypoint", api.LabelDataplaneMode: "none", LabelManagedBy: "weft"} {
		if tpl.Labels[k] != v {
			t.Errorf("pod label %s = %q, want %q", k, tpl.Labels[k], v)
		}
	}
	if dep.Spec.Selector.MatchLabels[api.LabelGatewayName] != "waypoint" {
		t.Errorf("selector = %v", dep.Spec.Selector)
	}
	if tpl.Spec.ServiceAccountName != "waypoint" {
		t.Errorf("serviceAccountName = %q", tpl.Spec.ServiceAccountName)
	}
	c := tpl.Spec.Containers[0]
	if c.Image != "example/waypoint:1" {
		t.Errorf("image = %q", c.Image)
	}
	if want := []string{"--controller=weft-controller.weft-system.svc:15012", "--gateway=shop/waypoint"}; !slices.Equal(c.Args, want) {
		t.Errorf("args = %q, want %q", c.Args, want)
	}
	envs := map[string]string{}
	for _, ev := range c.Env {
		envs[ev.Name] = ev.ValueFrom.FieldRef.FieldPath
	}
	for k, v := range map[string]string{"POD_NAME": "metadata.name", "POD_NAMESPACE": "metadata.namespace", "POD_IP": "status.podIP", "NODE_NAME": "spec.nodeName"} {
		if envs[k] != v {
			t.Errorf("env %s from %q, want %q", k, envs[k], v)
		}
	}
	if p := c.ReadinessProbe; p == nil || p.HTTPGet == nil || p.HTTPGet.Path != "/healthz/ready" || p.HTTPGet.Port.IntValue() != 15021 {
		t.Errorf("readiness probe = %+v", p)
	}
	mounts := map[string]string{}
	for _, m := range c.VolumeMounts {
		mounts[m.Name] = m.MountPath
	}
	if mounts["ca-root"] != "/etc/weft/ca-root" || mounts["token"] != "/var/run/secrets/tokens" {
		t.Errorf("mounts = %v", mounts)
	}
	var token *corev1.ServiceAccountTokenProjection
	var rootsCM string
	for _, v := range tpl.Spec.Volumes {
		if v.Projected != nil {
			token = v.Projected.Sources[0].ServiceAccountToken
		}
		if v.ConfigMap != nil {
			rootsCM = v.ConfigMap.Name
		}
	}
	if token == nil || token.Audience != api.TokenAudience || token.Path != "weft-token" {
		t.Errorf("token projection = %+v", token)
	}
	if rootsCM != api.RootCertConfigMap {
		t.Errorf("roots volume from ConfigMap %q", rootsCM)
	}

	cm, err := e.kube.CoreV1().ConfigMaps("shop").Get(ctx, api.RootCertConfigMap, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if cm.Data[api.RootCertKey] != "ROOTS-1" || len(cm.OwnerReferences) != 1 || *cm.OwnerReferences[0].Controller {
		t.Errorf("roots ConfigMap = %+v", cm)
	}

	gc, err := e.gw.GatewayV1().GatewayClasses().Get(ctx, api.WaypointGatewayClass, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if gc.Spec.ControllerName != api.WaypointController || !meta.IsStatusConditionTrue(gc.Status.Conditions, "Accepted") {
		t.Errorf("GatewayClass = %+v", gc)
	}

	gw := e.get(t, "shop", "waypoint")
	if !meta.IsStatusConditionTrue(gw.Status.Conditions, "Accepted") {
		t.Errorf("Accepted = %+v", gw.Status.Conditions)
	}
	if p := meta.FindStatusCondition(gw.Status.Conditions, "Programmed"); p == nil || p.Status != metav1.ConditionFalse || p.ObservedGeneration != 1 {
		t.Errorf("Programmed = %+v, want False before the Deployment is available", p)
	}
}

func TestReconcileIdempotentAndProgrammed(t *testing.T) {
	e := newEnv(t, "")
	e.create(t, waypointGateway("shop", "waypoint"))
	e.reconcile(t, "shop", "waypoint")
	writes(e.kube)
	writes(e.gw)

	// Nothing changed: nothing is written, not even with the memory of what was done lost.
	e.reconcile(t, "shop", "waypoint")
	e.r.done = map[string]string{}
	e.r.classDone = false
	e.reconcile(t, "shop", "waypoint")
	if w := append(writes(e.kube), writes(e.gw)...); len(w) != 0 {
		t.Errorf("second reconcile wrote %v, want nothing", w)
	}

	// The Deployment becomes available and the Service gets its IP: Programmed.
	ctx := context.Background()
	dep, _ := e.kube.AppsV1().Deployments("shop").Get(ctx, "waypoint", metav1.GetOptions{})
	dep.Status = appsv1.DeploymentStatus{Replicas: 1, ReadyReplicas: 1, AvailableReplicas: 1}
	if _, err := e.kube.AppsV1().Deployments("shop").UpdateStatus(ctx, dep, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	svc, _ := e.kube.CoreV1().Services("shop").Get(ctx, "waypoint", metav1.GetOptions{})
	svc.Spec.ClusterIP = "10.96.0.9"
	if _, err := e.kube.CoreV1().Services("shop").Update(ctx, svc, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	writes(e.kube)
	e.reconcile(t, "shop", "waypoint")
	gw := e.get(t, "shop", "waypoint")
	p := meta.FindStatusCondition(gw.Status.Conditions, "Programmed")
	if p == nil || p.Status != metav1.ConditionTrue || p.Reason != "Programmed" {
		t.Errorf("Programmed = %+v, want True/Programmed", p)
	}
	if len(gw.Status.Addresses) != 1 || gw.Status.Addresses[0].Value != "10.96.0.9" || *gw.Status.Addresses[0].Type != gatewayv1.IPAddressType {
		t.Errorf("addresses = %+v", gw.Status.Addresses)
	}
	if len(gw.Status.Listeners) != 1 || !meta.IsStatusConditionTrue(gw.Status.Listeners[0].Conditions, "Accepted") {
		t.Errorf("listeners = %+v", gw.Status.Listeners)
	}
	if w := writes(e.kube); len(w) != 0 {
		t.Errorf("the ClusterIP was overwritten: %v", w)
	}
	writes(e.gw)
	e.reconcile(t, "shop", "waypoint")
	if w := writes(e.gw); len(w) != 0 {
		t.Errorf("unchanged status written again: %v", w)
	}

	// A scaled Deployment keeps its replicas when the image changes.
	dep, _ = e.kube.AppsV1().Deployments("shop").Get(ctx, "waypoint", metav1.GetOptions{})
	three := int32(3)
	dep.Spec.Replicas = &three
	if _, err := e.kube.AppsV1().Deployments("shop").Update(ctx, dep, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	e.r.o.Image = "example/waypoint:2"
	e.reconcile(t, "shop", "waypoint")
	dep, _ = e.kube.AppsV1().Deployments("shop").Get(ctx, "waypoint", metav1.GetOptions{})
	if *dep.Spec.Replicas != 3 || dep.Spec.Template.Spec.Containers[0].Image != "example/waypoint:2" {
		t.Errorf("after the image change: replicas %d image %q, want 3 and example/waypoint:2", *dep.Spec.Replicas, dep.Spec.Template.Spec.Containers[0].Image)
	}

	// The roots rotate: the copy follows.
	e.roots = "ROOTS-2"
	e.reconcile(t, "shop", "waypoint")
	cm, _ := e.kube.CoreV1().ConfigMaps("shop").Get(ctx, api.RootCertConfigMap, metav1.GetOptions{})
	if cm.Data[api.RootCertKey] != "ROOTS-2" {
		t.Errorf("roots = %q, want ROOTS-2", cm.Data[api.RootCertKey])
	}

	// Deleted behind the reconciler's back: recreated.
	if err := e.kube.AppsV1().Deployments("shop").Delete(ctx, "waypoint", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	e.reconcile(t, "shop", "waypoint")
	if _, err := e.kube.AppsV1().Deployments("shop").Get(ctx, "waypoint", metav1.GetOptions{}); err != nil {
		t.Errorf("deleted Deployment not recreated: %v", err)
	}
}

func TestReconcileStatus(t *testing.T) {
	tests := []struct {
		name          string
		listeners     []gatewayv1.Listener
		wantAccepted  metav1.ConditionStatus
		wantReason    string
		wantMessage   string
		wantListeners int
		wantDeployed  bool
	}{
		{"valid", nil, metav1.ConditionTrue, "Accepted", "Resource accepted", 1, true},
		{"wrong port", []gatewayv1.Listener{{Name: "mesh", Port: 80, Protocol: "HBONE"}}, metav1.ConditionFalse, "ListenersNotValid", translate.ErrWaypointListeners, 1, false},
		{"wrong protocol", []gatewayv1.Listener{{Name: "http", Port: 15008, Protocol: "HTTP"}}, metav1.ConditionFalse, "ListenersNotValid", translate.ErrWaypointListeners, 1, false},
		{"two listeners", []gatewayv1.Listener{{Name: "mesh", Port: 15008, Protocol: "HBONE"}, {Name: "x", Port: 80, Protocol: "HTTP"}}, metav1.ConditionFalse, "ListenersNotValid", translate.ErrWaypointListeners, 2, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, "")
			e.create(t, waypointGateway("shop", "wp", tc.listeners...))
			e.reconcile(t, "shop", "wp")
			gw := e.get(t, "shop", "wp")
			a := meta.FindStatusCondition(gw.Status.Conditions, "Accepted")
			if a == nil || a.Status != tc.wantAccepted || a.Reason != tc.wantReason || a.Message != tc.wantMessage {
				t.Errorf("Accepted = %+v, want %s/%s %q", a, tc.wantAccepted, tc.wantReason, tc.wantMessage)
			}
			if len(gw.Status.Listeners) != tc.wantListeners {
				t.Fatalf("listener statuses = %d, want %d", len(gw.Status.Listeners), tc.wantListeners)
			}
			if !tc.wantDeployed {
				l := meta.FindStatusCondition(gw.Status.Listeners[0].Conditions, "Accepted")
				if l == nil || l.Status != metav1.ConditionFalse || l.Reason != "UnsupportedProtocol" || l.Message != translate.ErrWaypointListeners {
					t.Errorf("listener Accepted = %+v", l)
				}
			}
			_, err := e.kube.AppsV1().Deployments("shop").Get(context.Background(), "wp", metav1.GetOptions{})
			if deployed := err == nil; deployed != tc.wantDeployed {
				t.Errorf("deployed = %v, want %v", deployed, tc.wantDeployed)
			}
		})
	}
}

func TestReconcileBecomesInvalid(t *testing.T) {
	e := newEnv(t, "")
	e.create(t, waypointGateway("shop", "wp"))
	e.reconcile(t, "shop", "wp")
	gw := e.get(t, "shop", "wp")
	gw.Spec.Listeners[0].Port = 8080
	if _, err := e.gw.GatewayV1().Gateways("shop").Update(context.Background(), gw, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	e.reconcile(t, "shop", "wp")
	if _, err := e.kube.AppsV1().Deployments("shop").Get(context.Background(), "wp", metav1.GetOptions{}); err == nil {
		t.Error("the Deployment of a Gateway that is no longer a waypoint was kept")
	}
}

func TestReconcileSkips(t *testing.T) {
	e := newEnv(t, "")
	other := waypointGateway("shop", "ingress")
	other.Spec.GatewayClassName = "istio"
	e.create(t, other)
	// The controller's own namespace has the CA's ConfigMap already: not touched.
	e.create(t, waypointGateway("weft-system", "wp"))
	if err := e.r.Reconcile(context.Background(), []*gatewayv1.Gateway{e.get(t, "shop", "ingress"), e.get(t, "weft-system", "wp")}); err != nil {
		t.Fatal(err)
	}
	for _, a := range e.kube.Actions() {
		if a.GetNamespace() == "shop" && a.GetVerb() == "create" {
			t.Errorf("created %s for a Gateway of another class", a.GetResource().Resource)
		}
		if a.GetResource().Resource == "configmaps" && a.GetVerb() != "get" {
			t.Errorf("%s configmap in %s", a.GetVerb(), a.GetNamespace())
		}
	}
	if len(e.get(t, "shop", "ingress").Status.Conditions) != 0 {
		t.Error("status written on a Gateway of another class")
	}
}

func TestReconcileRefusesForeignObject(t *testing.T) {
	e := newEnv(t, "")
	yes := true
	_, err := e.kube.CoreV1().ServiceAccounts("shop").Create(context.Background(), &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{
		Namespace: "shop", Name: "wp",
		OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "StatefulSet", Name: "db", UID: "other", Controller: &yes}},
	}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	e.create(t, waypointGateway("shop", "wp"))
	err = e.r.Reconcile(context.Background(), []*gatewayv1.Gateway{e.get(t, "shop", "wp")})
	if err == nil || !strings.Contains(err.Error(), "controlled by StatefulSet db") {
		t.Errorf("err = %v, want a refusal naming the owner", err)
	}
	p := meta.FindStatusCondition(e.get(t, "shop", "wp").Status.Conditions, "Programmed")
	if p == nil || p.Status != metav1.ConditionFalse || !strings.Contains(p.Message, "StatefulSet db") {
		t.Errorf("Programmed = %+v, want False naming the conflict", p)
	}
}

func TestRunReconcilesUpdates(t *testing.T) {
	e := newEnv(t, "")
	gw := e.create(t, waypointGateway("shop", "wp"))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { e.r.Run(ctx); close(done) }()
	e.r.Update([]*gatewayv1.Gateway{gw})
	defer func() { cancel(); <-done }()
	for i := 0; ; i++ {
		if _, err := e.kube.AppsV1().Deployments("shop").Get(context.Background(), "wp", metav1.GetOptions{}); err == nil {
			return
		}
		if i > 500 {
			t.Fatal("Run did not deploy the waypoint")
		}
		select {
		case <-ctx.Done():
		case <-time.After(10 * time.Millisecond):
		}
	}
}

func TestDeploymentAccessLog(t *testing.T) {
	for _, tc := range []struct {
		annotation string
		want       bool
	}{{"", false}, {"true", true}, {"false", false}, {"yes", false}} {
		gw := &gatewayv1.Gateway{ObjectMeta: metav1.ObjectMeta{Name: "waypoint", Namespace: "shop"}}
		if tc.annotation != "" {
			gw.Annotations = map[string]string{api.AnnotationAccessLog: tc.annotation}
		}
		args := Deployment(gw, "example/waypoint:1", "ctl:15012").Spec.Template.Spec.Containers[0].Args
		if got := slices.Contains(args, "--access-log"); got != tc.want {
			t.Errorf("annotation %q: --access-log in args %q = %v, want %v", tc.annotation, args, got, tc.want)
		}
	}
}
