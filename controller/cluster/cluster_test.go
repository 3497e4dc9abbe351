package cluster

import (
	"context"
	"testing"
	"time"

	metav1alpha1 "istio.io/api/meta/v1alpha1"
	securityv1beta1 "istio.io/api/security/v1beta1"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	securityv1 "istio.io/client-go/pkg/apis/security/v1"
	istiofake "istio.io/client-go/pkg/clientset/versioned/fake"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	fakediscovery "k8s.io/client-go/discovery/fake"
	"k8s.io/client-go/kubernetes/fake"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
	gatewayfake "sigs.k8s.io/gateway-api/pkg/client/clientset/versioned/fake"
)

func TestInputAndChanges(t *testing.T) {
	// istio.io/client-go's fake clientset cannot serve client-go's streaming list (WatchList);
	// a real apiserver can (the e2e tests run the controller against one).
	t.Setenv("KUBE_FEATURE_WatchListClient", "false")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	kube := fake.NewSimpleClientset(
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop"}},
		&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node-a"}},
		&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "shop"}},
	)
	istio := istiofake.NewSimpleClientset(
		&securityv1.PeerAuthentication{ObjectMeta: metav1.ObjectMeta{Name: "default", Namespace: "shop"}},
		&securityv1.AuthorizationPolicy{ObjectMeta: metav1.ObjectMeta{Name: "allow", Namespace: "shop", Generation: 1}},
	)
	c, err := New(kube, istio, nil)
	if err != nil {
		t.Fatal(err)
	}
	c.Start(ctx)
	if err := c.WaitForSync(ctx); err != nil {
		t.Fatal(err)
	}
	in, err := c.Input()
	if err != nil {
		t.Fatal(err)
	}
	if len(in.Namespaces) != 1 || len(in.Pods) != 1 || len(in.PeerAuthentications) != 1 || len(in.AuthorizationPolicies) != 1 {
		t.Fatalf("Input: %d namespaces, %d pods, %d PeerAuthentications, %d AuthorizationPolicies; want 1 each",
			len(in.Namespaces), len(in.Pods), len(in.PeerAuthentications), len(in.AuthorizationPolicies))
	}
	if nodes, err := c.Nodes(); err != nil || len(nodes) != 1 || nodes[0] != "node-a" {
		t.Fatalf("Nodes = %v, %v", nodes, err)
	}
	drain(c)
	if _, err := kube.CoreV1().Pods("shop").Create(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "api", Namespace: "shop"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-c.Changed():
	case <-ctx.Done():
		t.Fatal("no change signalled for a new pod")
	}

	// The controller's own status writes do not trigger a rebuild; a spec change does.
	drain(c)
	ap, err := istio.SecurityV1().AuthorizationPolicies("shop").Get(ctx, "allow", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ap.Status.Conditions = append(ap.Status.Conditions, &metav1alpha1.IstioCondition{Type: "ZtunnelAccepted", Status: "True"})
	if ap, err = istio.SecurityV1().AuthorizationPolicies("shop").UpdateStatus(ctx, ap, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-c.Changed():
		t.Fatal("a status-only update signalled a change")
	case <-time.After(300 * time.Millisecond):
	}
	ap.Spec.Action = securityv1beta1.AuthorizationPolicy_DENY
	ap.Generation++
	if _, err := istio.SecurityV1().AuthorizationPolicies("shop").Update(ctx, ap, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-c.Changed():
	case <-ctx.Done():
		t.Fatal("no change signalled for a policy's new spec")
	}
	if got, err := c.AuthorizationPolicy("shop", "allow"); err != nil || got.Name != "allow" {
		t.Fatalf("AuthorizationPolicy() = %v, %v", got, err)
	}
}

func TestGatewayAPIWhenServed(t *testing.T) {
	t.Setenv("KUBE_FEATURE_WatchListClient", "false") // see TestInputAndChanges
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	gw := &gatewayv1.Gateway{ObjectMeta: metav1.ObjectMeta{Name: "waypoint", Namespace: "shop"}, Spec: gatewayv1.GatewaySpec{GatewayClassName: "istio-waypoint"}}
	for _, tc := range []struct {
		name   string
		served bool
		want   int
	}{
		{"CRD installed", true, 1},
		{"CRD absent", false, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			kube := fake.NewSimpleClientset()
			if tc.served {
				kube.Discovery().(*fakediscovery.FakeDiscovery).Resources = []*metav1.APIResourceList{{
					GroupVersion: gatewayv1.GroupVersion.String(),
					APIResources: []metav1.APIResource{
						{Name: "gateways", Kind: "Gateway", Namespaced: true},
						{Name: "httproutes", Kind: "HTTPRoute", Namespaced: true},
					},
				}}
			}
			// Created through the v1 client: the fake's tracker would file a constructor argument
			// under v1beta1, whose Gateway is the same Go type.
			//lint:ignore SA1019 NewClientset's field-managed tracker cannot serve these types ("no matches for gateway.networking.k8s.io/v1")
			gwc := gatewayfake.NewSimpleClientset()
			if _, err := gwc.GatewayV1().Gateways("shop").Create(ctx, gw, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
			route := &gatewayv1.HTTPRoute{ObjectMeta: metav1.ObjectMeta{Name: "reviews", Namespace: "shop"}}
			if _, err := gwc.GatewayV1().HTTPRoutes("shop").Create(ctx, route, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
			c, err := New(kube, istiofake.NewSimpleClientset(), gwc)
			if err != nil {
				t.Fatal(err)
			}
			c.Start(ctx)
			if err := c.WaitForSync(ctx); err != nil {
				t.Fatal(err)
			}
			if got, err := c.Gateways(); err != nil || len(got) != tc.want {
				t.Fatalf("Gateways() = %d, %v; want %d", len(got), err, tc.want)
			}
			if in, err := c.EnvoyInput("shop"); err != nil || len(in.HTTPRoutes) != tc.want {
				t.Fatalf("EnvoyInput HTTPRoutes = %d, %v; want %d", len(in.HTTPRoutes), err, tc.want)
			}
		})
	}
}

func TestTrafficRules(t *testing.T) {
	t.Setenv("KUBE_FEATURE_WatchListClient", "false") // see TestInputAndChanges
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, served := range []bool{true, false} {
		t.Run(map[bool]string{true: "CRDs installed", false: "CRDs absent"}[served], func(t *testing.T) {
			kube := fake.NewSimpleClientset(
				&corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "reviews", Namespace: "shop"}},
				&corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "other", Namespace: "elsewhere"}},
				&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "reviews-v1", Namespace: "shop"}},
			)
			if served {
				kube.Discovery().(*fakediscovery.FakeDiscovery).Resources = []*metav1.APIResourceList{{
					GroupVersion: networkingv1.SchemeGroupVersion.String(),
					APIResources: []metav1.APIResource{
						{Name: "virtualservices", Kind: "VirtualService", Namespaced: true},
						{Name: "destinationrules", Kind: "DestinationRule", Namespaced: true},
						{Name: "serviceentries", Kind: "ServiceEntry", Namespaced: true},
					},
				}}
			}
			istio := istiofake.NewSimpleClientset(
				&networkingv1.VirtualService{ObjectMeta: metav1.ObjectMeta{Name: "reviews", Namespace: "shop"}},
				&networkingv1.VirtualService{ObjectMeta: metav1.ObjectMeta{Name: "other", Namespace: "elsewhere"}},
				&networkingv1.DestinationRule{ObjectMeta: metav1.ObjectMeta{Name: "reviews", Namespace: "shop"}},
				&networkingv1.ServiceEntry{ObjectMeta: metav1.ObjectMeta{Name: "api", Namespace: "shop"}},
			)
			c, err := New(kube, istio, nil)
			if err != nil {
				t.Fatal(err)
			}
			c.Start(ctx)
			if err := c.WaitForSync(ctx); err != nil {
				t.Fatal(err)
			}
			want := 0
			if served {
				want = 1
			}
			in, err := c.EnvoyInput("shop")
			if err != nil {
				t.Fatal(err)
			}
			if in.Namespace != "shop" || len(in.Services) != 1 || len(in.Pods) != 1 || len(in.VirtualServices) != want || len(in.DestinationRules) != want || len(in.ServiceEntries) != want {
				t.Fatalf("EnvoyInput: %d services, %d pods, %d VirtualServices, %d DestinationRules, %d ServiceEntries; want 1, 1, %d, %d, %d",
					len(in.Services), len(in.Pods), len(in.VirtualServices), len(in.DestinationRules), len(in.ServiceEntries), want, want, want)
			}
			if !served {
				return
			}
			drain(c)
			if _, err := istio.NetworkingV1().DestinationRules("shop").Create(ctx, &networkingv1.DestinationRule{ObjectMeta: metav1.ObjectMeta{Name: "ratings", Namespace: "shop"}}, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
			select {
			case <-c.Changed():
			case <-ctx.Done():
				t.Fatal("no change signalled for a new DestinationRule")
			}
		})
	}
}

// drain consumes the changes signalled by the initial listing.
func drain(c *Cluster) {
	for {
		select {
		case <-c.Changed():
		case <-time.After(100 * time.Millisecond):
			return
		}
	}
}
