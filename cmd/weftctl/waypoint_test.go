package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	k8stesting "k8s.io/client-go/testing"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
	gatewayfake "sigs.k8s.io/gateway-api/pkg/client/clientset/versioned/fake"

	"github.com/weftmesh/weft/api"
)

// withGateway adds a fake Gateway API to c.
func withGateway(t *testing.T, c *clients) *gatewayfake.Clientset {
	t.Helper()
	t.Setenv("KUBE_FEATURE_WatchListClient", "false")
	//lint:ignore SA1019 the gateway fake NewClientset needs a type converter it lacks
	fake := gatewayfake.NewSimpleClientset()
	c.gateway = fake
	return fake
}

func TestWaypointApply(t *testing.T) {
	c := fakeClients(t, "")
	withGateway(t, c)
	out, err := weftctl(c, "waypoint", "apply", "-n", "mesh", "--enroll-namespace", "--for", "all")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "waypoint mesh/waypoint created") || !strings.Contains(out, "namespace mesh labelled istio.io/use-waypoint=waypoint") {
		t.Errorf("output:\n%s", out)
	}
	ctx := context.Background()
	gw, err := c.gateway.GatewayV1().Gateways("mesh").Get(ctx, "waypoint", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	l := gw.Spec.Listeners
	if gw.Spec.GatewayClassName != "istio-waypoint" || len(l) != 1 || l[0].Name != "mesh" || l[0].Port != 15008 || l[0].Protocol != "HBONE" {
		t.Errorf("Gateway spec = %+v", gw.Spec)
	}
	if gw.Labels[api.LabelWaypointFor] != "all" {
		t.Errorf("labels = %v", gw.Labels)
	}
	ns, err := c.kube.CoreV1().Namespaces().Get(ctx, "mesh", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if ns.Labels[api.LabelUseWaypoint] != "waypoint" || ns.Labels["istio.io/dataplane-mode"] != "ambient" {
		t.Errorf("namespace labels = %v", ns.Labels)
	}

	// Again, with another --for: updated in place.
	out, err = weftctl(c, "waypoint", "apply", "-n", "mesh", "--for", "workload")
	if err != nil || !strings.Contains(out, "waypoint mesh/waypoint updated") {
		t.Fatalf("second apply: %v\n%s", err, out)
	}
	gw, _ = c.gateway.GatewayV1().Gateways("mesh").Get(ctx, "waypoint", metav1.GetOptions{})
	if gw.Labels[api.LabelWaypointFor] != "workload" {
		t.Errorf("labels after update = %v", gw.Labels)
	}

	if _, err := weftctl(c, "waypoint", "apply", "-n", "mesh", "--for", "pods"); err == nil || !strings.Contains(err.Error(), "service, workload, all or none") {
		t.Errorf("bad --for: %v", err)
	}
}

func TestWaypointApplyWait(t *testing.T) {
	c := fakeClients(t, "")
	fake := withGateway(t, c)
	// The controller programs the waypoint shortly after it is created.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		for ctx.Err() == nil {
			gw, err := fake.GatewayV1().Gateways("mesh").Get(ctx, "wp", metav1.GetOptions{})
			if err == nil {
				meta.SetStatusCondition(&gw.Status.Conditions, metav1.Condition{Type: "Programmed", Status: metav1.ConditionTrue, Reason: "Programmed", ObservedGeneration: gw.Generation})
				ip := gatewayv1.IPAddressType
				gw.Status.Addresses = []gatewayv1.GatewayStatusAddress{{Type: &ip, Value: "10.96.0.9"}}
				if _, err := fake.GatewayV1().Gateways("mesh").UpdateStatus(ctx, gw, metav1.UpdateOptions{}); err == nil {
					return
				}
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()
	out, err := weftctl(c, "waypoint", "apply", "-n", "mesh", "--name", "wp", "--wait", "--wait-timeout", "10s")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "waypoint mesh/wp programmed (10.96.0.9)") {
		t.Errorf("output:\n%s", out)
	}

	// Never programmed: the error says why.
	_, err = weftctl(c, "waypoint", "apply", "-n", "mesh", "--name", "other", "--wait", "--wait-timeout", "300ms")
	if err == nil || !strings.Contains(err.Error(), "not programmed after 300ms") || !strings.Contains(err.Error(), "is weft-controller running?") {
		t.Errorf("err = %v", err)
	}
}

func TestWaypointListAndDelete(t *testing.T) {
	c := fakeClients(t, "")
	withGateway(t, c)
	ctx := context.Background()
	for _, gw := range []*gatewayv1.Gateway{
		waypointGateway("mesh", "waypoint", "service"),
		waypointGateway("infra", "shared", "all"),
		{ObjectMeta: metav1.ObjectMeta{Namespace: "mesh", Name: "ingress"}, Spec: gatewayv1.GatewaySpec{GatewayClassName: "istio"}},
	} {
		created, err := c.gateway.GatewayV1().Gateways(gw.Namespace).Create(ctx, gw, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if gw.Name == "waypoint" {
			meta.SetStatusCondition(&created.Status.Conditions, metav1.Condition{Type: "Accepted", Status: metav1.ConditionTrue, Reason: "Accepted"})
			meta.SetStatusCondition(&created.Status.Conditions, metav1.Condition{Type: "Programmed", Status: metav1.ConditionTrue, Reason: "Programmed"})
			ip := gatewayv1.IPAddressType
			created.Status.Addresses = []gatewayv1.GatewayStatusAddress{{Type: &ip, Value: "10.96.0.9"}}
			if _, err := c.gateway.GatewayV1().Gateways("mesh").UpdateStatus(ctx, created, metav1.UpdateOptions{}); err != nil {
				t.Fatal(err)
			}
		}
	}
	out, err := weftctl(c, "waypoint", "list", "-A")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"NAME      NAMESPACE  FOR      PROGRAMMED  ADDRESS",
		"shared    infra      all      Unknown     -",
		"waypoint  mesh       service  True        10.96.0.9",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "ingress") {
		t.Errorf("a Gateway of another class is listed:\n%s", out)
	}
	out, err = weftctl(c, "waypoint", "list", "-n", "mesh", "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	var rows []waypointRow
	if err := json.Unmarshal([]byte(out), &rows); err != nil || len(rows) != 1 || rows[0].Name != "waypoint" || rows[0].Programmed != "True" {
		t.Errorf("json rows = %+v (%v)\n%s", rows, err, out)
	}

	// The namespace uses the waypoint: deleting it says that its traffic is now refused.
	if _, err := weftctl(c, "waypoint", "apply", "-n", "mesh", "--enroll-namespace"); err != nil {
		t.Fatal(err)
	}
	out, err = weftctl(c, "waypoint", "delete", "-n", "mesh")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "waypoint mesh/waypoint deleted") || !strings.Contains(out, "traffic to its services is refused") {
		t.Errorf("output:\n%s", out)
	}
	if _, err := c.gateway.GatewayV1().Gateways("mesh").Get(ctx, "waypoint", metav1.GetOptions{}); err == nil {
		t.Error("Gateway not deleted")
	}
	if _, err := weftctl(c, "waypoint", "delete", "-n", "mesh"); err == nil || !strings.Contains(err.Error(), "not found") {
		t.Errorf("deleting again: %v", err)
	}
}

// TestWaypointNoGatewayAPI: without the CRDs the error says how to install them.
func TestWaypointNoGatewayAPI(t *testing.T) {
	c := fakeClients(t, "")
	fake := withGateway(t, c)
	fake.PrependReactor("*", "gateways", func(k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, apierrors.NewNotFound(schema.GroupResource{Group: "gateway.networking.k8s.io", Resource: "gateways"}, "")
	})
	_, err := weftctl(c, "waypoint", "list", "-A")
	if err == nil || !strings.Contains(err.Error(), "deploy/crds/gateway-api.yaml") {
		t.Errorf("err = %v", err)
	}
	_, err = weftctl(c, "waypoint", "apply", "-n", "mesh")
	if err == nil || !strings.Contains(err.Error(), "deploy/crds/gateway-api.yaml") {
		t.Errorf("err = %v", err)
	}
}
