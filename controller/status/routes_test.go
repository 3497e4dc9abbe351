package status

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	metav1alpha1 "istio.io/api/meta/v1alpha1"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	istiofake "istio.io/client-go/pkg/clientset/versioned/fake"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	k8stesting "k8s.io/client-go/testing"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
	gatewayfake "sigs.k8s.io/gateway-api/pkg/client/clientset/versioned/fake"

	"github.com/weftmesh/weft/controller/envoy"
)

func ptr[T any](v T) *T { return &v }

func TestRouteVerdicts(t *testing.T) {
	in := envoy.Input{
		Namespace:        "shop",
		VirtualServices:  []*networkingv1.VirtualService{{ObjectMeta: metav1.ObjectMeta{Name: "reviews", Namespace: "shop", Generation: 3}}},
		DestinationRules: []*networkingv1.DestinationRule{{ObjectMeta: metav1.ObjectMeta{Name: "reviews", Namespace: "shop", Generation: 1}}},
		HTTPRoutes: []*gatewayv1.HTTPRoute{
			{ObjectMeta: metav1.ObjectMeta{Name: "mesh", Namespace: "shop", Generation: 2}, Spec: gatewayv1.HTTPRouteSpec{CommonRouteSpec: gatewayv1.CommonRouteSpec{ParentRefs: []gatewayv1.ParentReference{
				{Group: ptr(gatewayv1.Group("")), Kind: ptr(gatewayv1.Kind("Service")), Name: "reviews"},
				{Group: ptr(gatewayv1.Group("")), Kind: ptr(gatewayv1.Kind("Service")), Name: "nope"},
			}}}},
			{ObjectMeta: metav1.ObjectMeta{Name: "ingress", Namespace: "shop"}, Spec: gatewayv1.HTTPRouteSpec{CommonRouteSpec: gatewayv1.CommonRouteSpec{ParentRefs: []gatewayv1.ParentReference{{Name: "gw"}}}}},
		},
	}
	problems := []envoy.Problem{
		{Kind: "VirtualService", Namespace: "shop", Name: "reviews", Field: "spec.http[0].fault.abort.grpcStatus", Message: "not a gRPC status; the route is dropped", Fix: "use UNAVAILABLE"},
		{Kind: "HTTPRoute", Namespace: "shop", Name: "mesh", Field: "spec.parentRefs[1].name", Message: `Service "nope" is not a service of namespace shop; ignored`},
		{Kind: "Listener", Name: "main_internal", Field: "-", Message: "x"},
	}
	v := RouteVerdicts(in, problems)
	if len(v) != 3 {
		t.Fatalf("verdicts %v, want the VirtualService, the DestinationRule and the mesh HTTPRoute", v)
	}
	vs := v[RouteKey{"VirtualService", "shop", "reviews"}]
	if vs.Generation != 3 || len(vs.Problems) != 1 || !strings.Contains(vs.Problems[0], "spec.http[0].fault.abort.grpcStatus: not a gRPC status") {
		t.Errorf("VirtualService verdict %+v", vs)
	}
	if dr := v[RouteKey{"DestinationRule", "shop", "reviews"}]; len(dr.Problems) != 0 {
		t.Errorf("DestinationRule verdict %+v", dr)
	}
	if hr := v[RouteKey{"HTTPRoute", "shop", "mesh"}]; len(hr.Parents) != 2 || len(hr.BadParents) != 1 || hr.BadParents[0] != 1 {
		t.Errorf("HTTPRoute verdict %+v", hr)
	}
}

func TestRouteWriter(t *testing.T) {
	vs := &networkingv1.VirtualService{ObjectMeta: metav1.ObjectMeta{Name: "reviews", Namespace: "shop", Generation: 3}}
	dr := &networkingv1.DestinationRule{ObjectMeta: metav1.ObjectMeta{Name: "reviews", Namespace: "shop", Generation: 1}}
	hr := &gatewayv1.HTTPRoute{ObjectMeta: metav1.ObjectMeta{Name: "mesh", Namespace: "shop", Generation: 2}}
	hr.Status.Parents = []gatewayv1.RouteParentStatus{{ParentRef: gatewayv1.ParentReference{Name: "gw"}, ControllerName: "example.com/other"}}
	istio := istiofake.NewSimpleClientset(vs, dr)
	gw := gatewayfake.NewSimpleClientset(hr) //lint:ignore SA1019 NewClientset needs apply configurations, which the gateway clientset does not generate
	var writes atomic.Int32
	count := func(a k8stesting.Action) (bool, runtime.Object, error) {
		if a.GetSubresource() == "status" {
			writes.Add(1)
		}
		return false, nil, nil
	}
	istio.PrependReactor("update", "*", count)
	gw.PrependReactor("update", "*", count)
	w := NewRouteWriter(RouteOptions{Istio: istio, Gateway: gw, Interval: 10 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go w.Run(ctx)

	parent := gatewayv1.ParentReference{Group: ptr(gatewayv1.Group("")), Kind: ptr(gatewayv1.Kind("Service")), Name: "reviews"}
	verdicts := map[RouteKey]RouteVerdict{
		{"VirtualService", "shop", "reviews"}:  {Generation: 3, Problems: []string{"spec.http[0].fault: dropped"}},
		{"DestinationRule", "shop", "reviews"}: {Generation: 1},
		{"HTTPRoute", "shop", "mesh"}:          {Generation: 2, Parents: []gatewayv1.ParentReference{parent}},
	}
	w.Update(verdicts)
	waitFor(t, "VirtualService status", func() bool {
		got, _ := istio.NetworkingV1().VirtualServices("shop").Get(ctx, "reviews", metav1.GetOptions{})
		c := got.Status.Conditions
		return len(c) == 1 && c[0].Type == ConditionWaypointAccepted && c[0].Reason == "PartiallyInvalid" && strings.Contains(c[0].Message, "spec.http[0].fault: dropped") && c[0].ObservedGeneration == 3
	})
	waitFor(t, "DestinationRule status", func() bool {
		got, _ := istio.NetworkingV1().DestinationRules("shop").Get(ctx, "reviews", metav1.GetOptions{})
		c := got.Status.Conditions
		return len(c) == 1 && c[0].Reason == "Accepted" && c[0].Status == "True"
	})
	waitFor(t, "HTTPRoute status", func() bool {
		got, _ := gw.GatewayV1().HTTPRoutes("shop").Get(ctx, "mesh", metav1.GetOptions{})
		ps := got.Status.Parents
		if len(ps) != 2 || ps[0].ControllerName != "example.com/other" || ps[1].ParentRef.Name != "reviews" {
			return false
		}
		c := ps[1].Conditions
		return len(c) == 2 && c[0].Type == "Accepted" && c[0].Status == metav1.ConditionTrue && c[1].Type == "ResolvedRefs" && c[0].ObservedGeneration == 2
	})
	// The same verdicts again: nothing written.
	before := writes.Load()
	w.Update(verdicts)
	time.Sleep(100 * time.Millisecond)
	if before != 3 {
		t.Fatalf("%d status writes, want 3", before)
	}
	if got := writes.Load(); got != before {
		t.Fatalf("%d status writes for unchanged verdicts", got-before)
	}
}

func TestSetIstioConditionKeepsTransition(t *testing.T) {
	t0 := time.Unix(1000, 0)
	conds := istioCondsOf(istioCondition(RouteVerdict{Generation: 1}))
	if setIstioCondition(&conds, istioCondition(RouteVerdict{Generation: 1}), t0) {
		t.Fatal("an identical condition counted as a change")
	}
	if !setIstioCondition(&conds, istioCondition(RouteVerdict{Generation: 2, Problems: []string{"x"}}), t0.Add(time.Hour)) {
		t.Fatal("a new generation was not written")
	}
	if len(conds) != 1 || conds[0].Reason != "PartiallyInvalid" {
		t.Fatalf("conditions %v", conds)
	}
}

func istioCondsOf(c *metav1alpha1.IstioCondition) []*metav1alpha1.IstioCondition {
	return []*metav1alpha1.IstioCondition{c}
}
