package ca_test

import (
	"context"
	"crypto/x509"
	"errors"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/weftmesh/weft/api"
	"github.com/weftmesh/weft/controller/ca"
	"github.com/weftmesh/weft/test/controlplane"
)

// controllerRBAC is what the controller's service account needs for the CA: the cluster-wide
// rules and those in its namespace.
func controllerRBAC(ns string) (*rbacv1.ClusterRole, *rbacv1.Role) {
	return &rbacv1.ClusterRole{
			ObjectMeta: metav1.ObjectMeta{Name: "weft-controller-ca"},
			Rules: []rbacv1.PolicyRule{
				{APIGroups: []string{"authentication.k8s.io"}, Resources: []string{"tokenreviews"}, Verbs: []string{"create"}},
				{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"get", "list", "watch"}},
			},
		}, &rbacv1.Role{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "weft-controller-ca"},
			Rules: []rbacv1.PolicyRule{
				{APIGroups: []string{""}, Resources: []string{"secrets"}, Verbs: []string{"get", "list", "watch"},
					ResourceNames: []string{ca.PluginSecret, ca.SelfSignedSecret, ca.RetiredRootsSecret}},
				{APIGroups: []string{""}, Resources: []string{"secrets"}, Verbs: []string{"update"},
					ResourceNames: []string{ca.RetiredRootsSecret}},
				{APIGroups: []string{""}, Resources: []string{"secrets"}, Verbs: []string{"create"}},
				{APIGroups: []string{""}, Resources: []string{"configmaps"}, Verbs: []string{"get", "update"},
					ResourceNames: []string{api.RootCertConfigMap}},
				{APIGroups: []string{""}, Resources: []string{"configmaps"}, Verbs: []string{"create"}},
			},
		}
}

// TestCAWithRealAPIServer runs the CA against a real kube-apiserver, as the controller's
// service account with only the RBAC rules of controllerRBAC, and has a node agent on node-a
// ask for identities with real, pod-bound tokens.
func TestCAWithRealAPIServer(t *testing.T) {
	ctx, cp := controlplane.StartForTest(t, controlplane.Config{})
	admin, err := kubernetes.NewForConfig(cp.RESTConfig)
	if err != nil {
		t.Fatal(err)
	}

	// The cluster: two nodes (no kubelet: the objects keep pod GC from removing the pods),
	// the agent's pod on node-a, one workload on each node.
	must := func(_ any, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, ns := range []string{testNS, "shop"} {
		must(admin.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}))
	}
	for _, n := range []string{"node-a", "node-b"} {
		must(admin.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: n}}, metav1.CreateOptions{}))
	}
	for _, sa := range []struct{ ns, name string }{
		{testNS, "weft-nodeagent"}, {testNS, "weft-controller"}, {"shop", "books"}, {"shop", "reviews"},
	} {
		must(admin.CoreV1().ServiceAccounts(sa.ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: sa.name}}, metav1.CreateOptions{}))
	}
	cr, role := controllerRBAC(testNS)
	must(admin.RbacV1().ClusterRoles().Create(ctx, cr, metav1.CreateOptions{}))
	must(admin.RbacV1().Roles(testNS).Create(ctx, role, metav1.CreateOptions{}))
	subject := []rbacv1.Subject{{Kind: "ServiceAccount", Namespace: testNS, Name: "weft-controller"}}
	must(admin.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: cr.Name}, Subjects: subject,
		RoleRef: rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: cr.Name},
	}, metav1.CreateOptions{}))
	must(admin.RbacV1().RoleBindings(testNS).Create(ctx, &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Namespace: testNS, Name: role.Name}, Subjects: subject,
		RoleRef: rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: role.Name},
	}, metav1.CreateOptions{}))
	var agentPod *corev1.Pod
	for _, p := range []*corev1.Pod{
		pod(testNS, "agent-a", "weft-nodeagent", "node-a", "", nil),
		pod("shop", "books-a", "books", "node-a", "", nil),
		pod("shop", "reviews-b", "reviews", "node-b", "", nil),
	} {
		p.UID, p.Status = "", corev1.PodStatus{}
		var created *corev1.Pod
		// The ServiceAccount admission plugin may not see a new service account at once.
		poll(ctx, t, "creating pod "+p.Name, 30*time.Second, func(ctx context.Context) (err error) {
			created, err = admin.CoreV1().Pods(p.Namespace).Create(ctx, p, metav1.CreateOptions{})
			return err
		})
		if p.Name == "agent-a" {
			agentPod = created
		}
	}

	// The controller's client: its service account's token, nothing more.
	ctlToken, err := admin.CoreV1().ServiceAccounts(testNS).CreateToken(ctx, "weft-controller", &authnv1.TokenRequest{
		Spec: authnv1.TokenRequestSpec{ExpirationSeconds: new(int64(3600))},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	controller, err := kubernetes.NewForConfig(&rest.Config{
		Host:            cp.RESTConfig.Host,
		BearerToken:     ctlToken.Status.Token,
		TLSClientConfig: rest.TLSClientConfig{CAData: cp.CACertPEM},
	})
	if err != nil {
		t.Fatal(err)
	}
	factory := informers.NewSharedInformerFactory(controller, 0)
	pods, err := ca.NewInformerPods(factory.Core().V1().Pods().Informer())
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	t.Cleanup(func() {
		stop()
		factory.Shutdown()
	})
	factory.Start(runCtx.Done())
	if !cacheSynced(runCtx, pods) {
		t.Fatal("pod informer did not sync")
	}
	authority, err := ca.New(ctx, ca.Options{
		Client:          controller,
		Namespace:       testNS,
		Pods:            pods,
		ServingDNSNames: []string{"weft-controller.weft-system.svc"},
		Logger:          slog.New(slog.NewTextHandler(t.Output(), nil)),
	})
	if err != nil {
		t.Fatalf("ca.New as the controller's service account: %v", err)
	}
	runDone := make(chan error, 1)
	go func() { runDone <- authority.Run(runCtx) }()
	t.Cleanup(func() {
		stop()
		if err := <-runDone; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	addr := serve(t, authority)

	// The node agent's view: the roots from the ConfigMap, a real token bound to its pod.
	cm, err := admin.CoreV1().ConfigMaps(testNS).Get(ctx, api.RootCertConfigMap, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("root ConfigMap: %v", err)
	}
	agentToken := func(audience string) string {
		t.Helper()
		tr, err := admin.CoreV1().ServiceAccounts(testNS).CreateToken(ctx, "weft-nodeagent", &authnv1.TokenRequest{
			Spec: authnv1.TokenRequestSpec{
				Audiences:         []string{audience},
				ExpirationSeconds: new(int64(600)),
				BoundObjectRef:    &authnv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: agentPod.Name, UID: agentPod.UID},
			},
		}, metav1.CreateOptions{})
		if err != nil {
			t.Fatalf("TokenRequest for audience %s: %v", audience, err)
		}
		return tr.Status.Token
	}
	tokenFile := filepath.Join(t.TempDir(), "token")
	writeToken(t, tokenFile, agentToken(api.TokenAudience))
	client := dial(t, addr, mustParsePEM(t, cm.Data[api.RootCertKey]), tokenFile)

	caller, err := authority.Authenticator().AuthenticateToken(ctx, agentToken(api.TokenAudience))
	if err != nil {
		t.Fatalf("authenticate the agent's token: %v", err)
	}
	if want := "weft-system/weft-nodeagent (pod weft-system/agent-a on node node-a)"; caller.String() != want || caller.PodUID != string(agentPod.UID) {
		t.Errorf("caller %s (pod uid %s), want %s (pod uid %s)", caller, caller.PodUID, want, agentPod.UID)
	}

	t.Run("own node", func(t *testing.T) {
		books := spiffeid.RequireFromString("spiffe://cluster.local/ns/shop/sa/books")
		cctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		defer cancel()
		svid, err := createSVID(cctx, t, client, books.String(), 24*time.Hour)
		if err != nil {
			t.Fatalf("CreateCertificate(%s): %v", books, err)
		}
		if id, _, err := x509svid.Verify(svid.Certificates, trustBundle(cctx, t, client)); err != nil || id != books {
			t.Errorf("SVID %s: %v", id, err)
		}
	})
	t.Run("other node", func(t *testing.T) {
		_, err := createSVID(ctx, t, client, "spiffe://cluster.local/ns/shop/sa/reviews", time.Hour)
		if status.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), "no pod of service account shop/reviews is scheduled on node node-a") {
			t.Errorf("identity of the pod on node-b: %v, want PermissionDenied naming node-a", err)
		}
	})
	t.Run("other audience", func(t *testing.T) {
		other := filepath.Join(t.TempDir(), "token")
		writeToken(t, other, agentToken("https://example.com/other"))
		c := dial(t, addr, mustParsePEM(t, cm.Data[api.RootCertKey]), other)
		_, err := createSVID(ctx, t, c, "spiffe://cluster.local/ns/shop/sa/books", time.Hour)
		if status.Code(err) != codes.Unauthenticated {
			t.Errorf("token for another audience: %v, want Unauthenticated", err)
		}
	})
	t.Run("self-signed root kept in its Secret", func(t *testing.T) {
		sec, err := admin.CoreV1().Secrets(testNS).Get(ctx, ca.SelfSignedSecret, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if root := mustParsePEM(t, string(sec.Data[ca.KeyCACert]))[0]; !root.Equal(authority.Bundle()[0]) {
			t.Error("the CA's root is not the one in its Secret")
		}
	})
	// Last: the Secret watch works with the controller's RBAC and a plug-in CA takes over.
	t.Run("plug-in CA takes over", func(t *testing.T) {
		selfRoot := authority.Bundle()[0]
		root := newTestCA(t, "plug-in root", nil, 365*24*time.Hour)
		inter := newTestCA(t, "plug-in intermediate", root, 30*24*time.Hour)
		if _, err := admin.CoreV1().Secrets(testNS).Create(ctx, pluginSecret(t, inter, []*x509.Certificate{inter.cert, root.cert}, root.cert), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		want := []*x509.Certificate{root.cert, selfRoot}
		poll(ctx, t, "the plug-in root in the published bundle", 30*time.Second, func(ctx context.Context) error {
			cm, err := admin.CoreV1().ConfigMaps(testNS).Get(ctx, api.RootCertConfigMap, metav1.GetOptions{})
			if err != nil {
				return err
			}
			if !sameRoots(mustParsePEM(t, cm.Data[api.RootCertKey]), want) {
				return errors.New("ConfigMap does not hold the plug-in root and the retired self-signed one")
			}
			return nil
		})
		books := spiffeid.RequireFromString("spiffe://cluster.local/ns/shop/sa/books")
		svid, err := createSVID(ctx, t, client, books.String(), time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		if chain := svid.Certificates; len(chain) != 3 || !chain[1].Equal(inter.cert) {
			t.Errorf("chain of %d certificates, want leaf, plug-in intermediate, root", len(chain))
		}
	})
}

func cacheSynced(ctx context.Context, p *ca.InformerPods) bool {
	return wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, 30*time.Second, true, func(context.Context) (bool, error) {
		return p.HasSynced(), nil
	}) == nil
}

// poll calls cond until it returns nil or timeout elapses, then fails the test with the last
// error.
func poll(ctx context.Context, t *testing.T, what string, timeout time.Duration, cond func(context.Context) error) {
	t.Helper()
	var last error
	err := wait.PollUntilContextTimeout(ctx, 250*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		last = cond(ctx)
		return last == nil, nil
	})
	if err != nil {
		t.Fatalf("waiting for %s: %v (last: %v)", what, err, last)
	}
}
