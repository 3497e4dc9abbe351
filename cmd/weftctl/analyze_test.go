package main

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	istiofake "istio.io/client-go/pkg/clientset/versioned/fake"
	istioscheme "istio.io/client-go/pkg/clientset/versioned/scheme"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	kubefake "k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/kubernetes/scheme"
	k8stesting "k8s.io/client-go/testing"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
	gatewayfake "sigs.k8s.io/gateway-api/pkg/client/clientset/versioned/fake"
	gatewayscheme "sigs.k8s.io/gateway-api/pkg/client/clientset/versioned/scheme"
)

// meshCluster is the fake cluster of the analyze tests, one namespace per kind of finding:
//
//   - shop: waypoint "waypoint" deployed but without a ready pod, Service reviews bound to it
//     (refused), Service ratings bound with fallback direct (bypasses); a VirtualService with
//     a host that is no Service; an ALLOW policy on the waypoint whose only rule needs
//     request authentication (dropped at the waypoint).
//   - lonely: use-waypoint names a waypoint that does not exist; a VirtualService, a
//     DestinationRule and a GAMMA HTTPRoute that no waypoint applies; a DENY policy without
//     rules (not enforced), an ALLOW policy with HTTP methods (partly enforced at L4), a
//     dry-run policy and one whose targetRefs Service has no waypoint.
//   - ok: a ready, programmed waypoint with a VirtualService it translates whole.
//   - broken: a Gateway of class istio-waypoint with a wrong listener; a VirtualService for
//     an ingress gateway only (not the mesh's: nothing to say).
//   - stale: a ready waypoint the controller has not marked Programmed.
//   - idle: a waypoint without Deployment that nothing uses (a warning, not an error).
const meshCluster = `apiVersion: v1
kind: Namespace
metadata: {name: shop, labels: {istio.io/dataplane-mode: ambient, istio.io/use-waypoint: waypoint}}
---
apiVersion: v1
kind: Namespace
metadata: {name: lonely, labels: {istio.io/dataplane-mode: ambient, istio.io/use-waypoint: missing}}
---
apiVersion: v1
kind: Namespace
metadata: {name: ok, labels: {istio.io/dataplane-mode: ambient, istio.io/use-waypoint: waypoint}}
---
apiVersion: v1
kind: Namespace
metadata: {name: broken, labels: {istio.io/dataplane-mode: ambient}}
---
apiVersion: v1
kind: Namespace
metadata: {name: stale, labels: {istio.io/dataplane-mode: ambient}}
---
apiVersion: v1
kind: Namespace
metadata: {name: idle}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: waypoint, namespace: idle}
spec:
  gatewayClassName: istio-waypoint
  listeners: [{name: mesh, port: 15008, protocol: HBONE}]
---
apiVersion: v1
kind: Service
metadata: {name: reviews, namespace: shop}
spec: {clusterIP: 10.96.0.20, ports: [{name: http, port: 9080, targetPort: 9080}]}
---
apiVersion: v1
kind: Service
metadata: {name: ratings, namespace: shop, labels: {weft.dev/waypoint-fallback: direct}}
spec: {clusterIP: 10.96.0.21, ports: [{name: http, port: 9080, targetPort: 9080}]}
---
apiVersion: v1
kind: Service
metadata: {name: waypoint, namespace: shop, labels: {gateway.networking.k8s.io/gateway-name: waypoint}}
spec: {clusterIP: 10.96.0.9, ports: [{name: mesh, port: 15008}]}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: waypoint, namespace: shop}
spec:
  replicas: 1
  selector: {matchLabels: {gateway.networking.k8s.io/gateway-name: waypoint}}
  template:
    metadata: {labels: {gateway.networking.k8s.io/gateway-name: waypoint}}
    spec: {containers: [{name: waypoint, image: weft-waypoint}]}
status: {replicas: 1, readyReplicas: 0}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: shop}
spec:
  hosts: [reviews, nowhere]
  http: [{route: [{destination: {host: reviews}}]}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: jwt-only, namespace: shop}
spec:
  targetRefs: [{group: gateway.networking.k8s.io, kind: Gateway, name: waypoint}]
  action: ALLOW
  rules: [{from: [{source: {requestPrincipals: ["*"]}}]}]
---
apiVersion: v1
kind: Service
metadata: {name: books, namespace: lonely}
spec: {clusterIP: 10.96.1.20, ports: [{name: http, port: 8080, targetPort: 8080}]}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: books, namespace: lonely}
spec:
  hosts: [books]
  http: [{route: [{destination: {host: books}}]}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: books, namespace: lonely}
spec: {host: books}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-nothing, namespace: lonely}
spec: {action: DENY}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: get-only, namespace: lonely}
spec:
  selector: {matchLabels: {app: books}}
  action: ALLOW
  rules: [{to: [{operation: {methods: [GET]}}]}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: trial, namespace: lonely, annotations: {istio.io/dry-run: "true"}}
spec:
  action: DENY
  rules: [{}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: unbound, namespace: lonely}
spec:
  targetRefs: [{kind: Service, name: books}]
  action: ALLOW
  rules: [{}]
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: ok}
spec: {clusterIP: 10.96.2.20, ports: [{name: http, port: 80, targetPort: 8080}]}
---
apiVersion: v1
kind: Service
metadata: {name: waypoint, namespace: ok, labels: {gateway.networking.k8s.io/gateway-name: waypoint}}
spec: {clusterIP: 10.96.2.9, ports: [{name: mesh, port: 15008}]}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: waypoint, namespace: ok}
spec:
  selector: {matchLabels: {gateway.networking.k8s.io/gateway-name: waypoint}}
  template:
    metadata: {labels: {gateway.networking.k8s.io/gateway-name: waypoint}}
    spec: {containers: [{name: waypoint, image: weft-waypoint}]}
status: {replicas: 1, readyReplicas: 1, availableReplicas: 1}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: web, namespace: ok}
spec:
  hosts: [web]
  http: [{route: [{destination: {host: web}}], timeout: 2s}]
---
apiVersion: v1
kind: Service
metadata: {name: waypoint, namespace: stale, labels: {gateway.networking.k8s.io/gateway-name: waypoint}}
spec: {clusterIP: 10.96.3.9, ports: [{name: mesh, port: 15008}]}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: waypoint, namespace: stale}
spec:
  selector: {matchLabels: {gateway.networking.k8s.io/gateway-name: waypoint}}
  template:
    metadata: {labels: {gateway.networking.k8s.io/gateway-name: waypoint}}
    spec: {containers: [{name: waypoint, image: weft-waypoint}]}
status: {replicas: 1, readyReplicas: 1}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: ingress-only, namespace: broken}
spec:
  hosts: [shop.example.com]
  gateways: [istio-system/ingress]
  http: [{route: [{destination: {host: web.ok.svc.cluster.local}}]}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: waypoint, namespace: shop}
spec:
  gatewayClassName: istio-waypoint
  listeners: [{name: mesh, port: 15008, protocol: HBONE}]
status:
  conditions:
  - {type: Programmed, status: "False", reason: Pending, message: "Deployment shop/waypoint has no available replica yet (0 of 1 ready)", lastTransitionTime: "2024-01-01T00:00:00Z"}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: waypoint, namespace: ok}
spec:
  gatewayClassName: istio-waypoint
  listeners: [{name: mesh, port: 15008, protocol: HBONE}]
status:
  conditions:
  - {type: Programmed, status: "True", reason: Programmed, message: ok, lastTransitionTime: "2024-01-01T00:00:00Z"}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: waypoint, namespace: broken}
spec:
  gatewayClassName: istio-waypoint
  listeners: [{name: http, port: 80, protocol: HTTP}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: waypoint, namespace: stale}
spec:
  gatewayClassName: istio-waypoint
  listeners: [{name: mesh, port: 15008, protocol: HBONE}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: books, namespace: lonely}
spec:
  parentRefs: [{group: "", kind: Service, name: books}]
  rules: [{backendRefs: [{name: books, port: 8080}]}]
`

// clientsFrom returns clients of fake apiservers holding the objects of docs (YAML documents
// separated by ---). Gateway API objects are created through the v1 client (the fake's
// tracker would file typed objects passed to NewSimpleClientset under v1beta1), their status
// with UpdateStatus.
func clientsFrom(t *testing.T, docs string) *clients {
	t.Helper()
	t.Setenv("KUBE_FEATURE_WatchListClient", "false")
	s := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{scheme.AddToScheme, istioscheme.AddToScheme, gatewayscheme.AddToScheme} {
		if err := add(s); err != nil {
			t.Fatal(err)
		}
	}
	dec := serializer.NewCodecFactory(s).UniversalDeserializer()
	var kube, istio []runtime.Object
	var gateways []*gatewayv1.Gateway
	var routes []*gatewayv1.HTTPRoute
	for _, doc := range strings.Split(docs, "\n---\n") {
		obj, gvk, err := dec.Decode([]byte(doc), nil, nil)
		if err != nil {
			t.Fatalf("%v:\n%s", err, doc)
		}
		switch o := obj.(type) {
		case *gatewayv1.Gateway:
			gateways = append(gateways, o)
		case *gatewayv1.HTTPRoute:
			routes = append(routes, o)
		default:
			if strings.HasSuffix(gvk.Group, "istio.io") {
				istio = append(istio, obj)
			} else {
				kube = append(kube, obj)
			}
		}
	}
	//lint:ignore SA1019 the gateway fake NewClientset needs a type converter it lacks
	gw := gatewayfake.NewSimpleClientset()
	ctx := context.Background()
	for _, g := range gateways {
		created, err := gw.GatewayV1().Gateways(g.Namespace).Create(ctx, g, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		created.Status = g.Status
		if _, err := gw.GatewayV1().Gateways(g.Namespace).UpdateStatus(ctx, created, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	for _, r := range routes {
		if _, err := gw.GatewayV1().HTTPRoutes(r.Namespace).Create(ctx, r, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	return &clients{kube: kubefake.NewClientset(kube...), istio: istiofake.NewSimpleClientset(istio...), gateway: gw,
		server: "https://fake:6443"}
}

func TestAnalyze(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		// want are lines (or parts of lines) of the output, in this order.
		want []string
		// not must not appear in the output.
		not []string
		// fails: the command exits with status 1 (errors found).
		fails bool
	}{{
		name: "waypoint without a ready pod",
		args: []string{"-n", "shop"},
		want: []string{
			"SEVERITY  OBJECT                              FIELD                          MESSAGE",
			"Error     Gateway shop/waypoint               status.conditions[Programmed]  the waypoint has no ready pod: Deployment shop/waypoint has no ready replica (0 of 1 ready) (the controller says: Pending: Deployment shop/waypoint has no available replica yet (0 of 1 ready)); traffic to these is refused now: Service shop/reviews; these bypass it without L7 policy (weft.dev/waypoint-fallback=direct): Service shop/ratings (fix: kubectl -n shop describe deployment waypoint (and its pods); if it does not exist, check that weft-controller is running)",
			"Warning   AuthorizationPolicy shop/jwt-only  status.conditions[WaypointAccepted]  at waypoint shop/waypoint: WaypointAccepted=True (",
			"Warning   VirtualService shop/reviews        spec.hosts[1]",
			`host "nowhere" is not a service of namespace shop; ignored (fix: name a Service of the waypoint's namespace)`,
			"1 error, 2 warnings in namespace shop.",
		},
		fails: true,
	}, {
		name: "missing waypoint, unserved rules, policies",
		args: []string{"-n", "lonely"},
		want: []string{
			"Error     AuthorizationPolicy lonely/deny-nothing  status.conditions[ZtunnelAccepted]   ZtunnelAccepted=False (Invalid): a DENY policy without rules never matches",
			"Error     AuthorizationPolicy lonely/unbound       status.conditions[WaypointAccepted]  WaypointAccepted=False (AncestorNotBound): Service lonely/books is not bound to a waypoint.",
			"Error     Service lonely/books                     metadata.labels[istio.io/use-waypoint]  label istio.io/use-waypoint=missing (from namespace lonely) names waypoint Gateway lonely/missing, which does not exist: traffic to it is refused until the waypoint is deployed (`weftctl waypoint apply -n lonely --name missing`)",
			"Warning   AuthorizationPolicy lonely/get-only      status.conditions[ZtunnelAccepted]   ZtunnelAccepted=True (UnsupportedValue): ztunnel does not support HTTP attributes",
			"Warning   AuthorizationPolicy lonely/trial         status.conditions[ZtunnelAccepted]   ZtunnelAccepted=False (UnsupportedValue): the policy uses the istio.io/dry-run annotation",
			"Warning   DestinationRule lonely/books             -                                       not applied: no waypoint serves lonely (fix: deploy one (weftctl waypoint apply -n lonely --enroll-namespace))",
			"Warning   HTTPRoute lonely/books                   -                                       not applied: no waypoint serves lonely",
			"Warning   VirtualService lonely/books              -                                       not applied: no waypoint serves lonely",
			"3 errors, 5 warnings in namespace lonely.",
		},
		fails: true,
	}, {
		name: "clean namespace",
		args: []string{"-n", "ok"},
		want: []string{"No problems found in namespace ok."},
	}, {
		name: "invalid waypoint listeners; an ingress VirtualService is not the mesh's",
		args: []string{"-n", "broken"},
		want: []string{
			`Error     Gateway broken/waypoint  spec.listeners  the waypoint is not deployed: Expected a single listener on port 15008 with protocol "HBONE"; traffic of the Services and pods that name it (istio.io/use-waypoint) is refused (fix: give it exactly one listener {name: mesh, port: 15008, protocol: HBONE}, e.g. weftctl waypoint apply -n broken --name waypoint)`,
			"1 error, 0 warnings in namespace broken.",
		},
		not:   []string{"ingress-only"},
		fails: true,
	}, {
		name: "ready waypoint the controller has not programmed: warnings only",
		args: []string{"-n", "stale"},
		want: []string{
			"Warning   Gateway stale/waypoint  status.conditions[Programmed]  the waypoint has a ready pod but the controller has not marked the Gateway Programmed (fix: check that weft-controller is running: kubectl -n weft-system get pods, and its log)",
			"0 errors, 1 warning in namespace stale.",
		},
	}, {
		name: "unused waypoint without Deployment: a warning",
		args: []string{"-n", "idle"},
		want: []string{
			"Warning Gateway idle/waypoint status.conditions[Programmed] the waypoint has no ready pod: Deployment idle/waypoint does not exist; nothing is bound to it yet",
			"0 errors, 1 warning in namespace idle.",
		},
	}, {
		name: "all namespaces: errors first, then by namespace",
		args: []string{"-A"},
		want: []string{
			"Error     Gateway broken/waypoint",
			"Error     AuthorizationPolicy lonely/deny-nothing",
			"Error     Service lonely/books",
			"Error     Gateway shop/waypoint",
			"Warning   Gateway idle/waypoint",
			"Warning   AuthorizationPolicy lonely/get-only",
			"Warning   VirtualService lonely/books",
			"Warning   AuthorizationPolicy shop/jwt-only",
			"Warning   Gateway stale/waypoint",
			"5 errors, 9 warnings in the cluster.",
		},
		not:   []string{" ok/"},
		fails: true,
	}} {
		t.Run(tc.name, func(t *testing.T) {
			c := clientsFrom(t, meshCluster)
			out, err := weftctl(c, append([]string{"analyze"}, tc.args...)...)
			var ef errFindings
			switch {
			case tc.fails && !errors.As(err, &ef):
				t.Errorf("err = %v, want the errors found", err)
			case !tc.fails && err != nil:
				t.Errorf("err = %v, want none", err)
			}
			// Columns are compared with their padding collapsed.
			rest := strings.Join(strings.Fields(out), " ")
			for _, want := range tc.want {
				want = strings.Join(strings.Fields(want), " ")
				i := strings.Index(rest, want)
				if i < 0 {
					t.Errorf("output lacks %q (or not in this order):\n%s", want, out)
					continue
				}
				rest = rest[i+len(want):]
			}
			for _, not := range tc.not {
				if strings.Contains(out, not) {
					t.Errorf("output has %q:\n%s", not, out)
				}
			}
			// Stable: the same answer again.
			again, _ := weftctl(c, append([]string{"analyze"}, tc.args...)...)
			if again != out {
				t.Errorf("second run differs:\n%s\n---\n%s", out, again)
			}
		})
	}
}

func TestAnalyzeJSON(t *testing.T) {
	c := clientsFrom(t, meshCluster)
	out, err := weftctl(c, "analyze", "-n", "shop", "-o", "json")
	if !errors.As(err, new(errFindings)) || err.Error() != "analyze found 1 error and 2 warnings" {
		t.Errorf("err = %v", err)
	}
	var a analysis
	if err := json.Unmarshal([]byte(out), &a); err != nil {
		t.Fatalf("%v:\n%s", err, out)
	}
	if a.Namespace != "shop" || a.Errors != 1 || a.Warnings != 2 || len(a.Findings) != 3 {
		t.Fatalf("analysis = %+v", a)
	}
	vs := a.Findings[2]
	want := finding{Severity: "Warning", Kind: "VirtualService", Namespace: "shop", Name: "reviews", Field: "spec.hosts[1]",
		Message: `host "nowhere" is not a service of namespace shop; ignored`, Fix: "name a Service of the waypoint's namespace"}
	if vs != want {
		t.Errorf("finding = %+v, want %+v", vs, want)
	}

	out, err = weftctl(c, "analyze", "-n", "ok", "-o", "json")
	if err != nil || strings.TrimSpace(out) != "{\n  \"namespace\": \"ok\",\n  \"findings\": [],\n  \"errors\": 0,\n  \"warnings\": 0\n}" {
		t.Errorf("clean namespace: %v\n%s", err, out)
	}
}

// TestAnalyzeCRDsAbsent: without the Istio networking CRDs or the Gateway API the analysis
// still runs, with notes; a waypoint whose Gateway is gone is an error.
func TestAnalyzeCRDsAbsent(t *testing.T) {
	c := clientsFrom(t, meshCluster)
	for _, resource := range []string{"virtualservices", "destinationrules", "serviceentries"} {
		c.istio.(*istiofake.Clientset).PrependReactor("list", resource, func(k8stesting.Action) (bool, runtime.Object, error) {
			return true, nil, apierrors.NewNotFound(schema.GroupResource{Group: "networking.istio.io", Resource: resource}, "")
		})
	}
	c.gateway.(*gatewayfake.Clientset).PrependReactor("list", "*", func(a k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, apierrors.NewNotFound(schema.GroupResource{Group: "gateway.networking.k8s.io", Resource: a.GetResource().Resource}, "")
	})
	out, err := weftctl(c, "analyze", "-n", "shop")
	if !errors.As(err, new(errFindings)) {
		t.Errorf("err = %v", err)
	}
	flat := strings.Join(strings.Fields(out), " ")
	for _, want := range []string{
		"Error Service shop/reviews metadata.labels[istio.io/use-waypoint] label istio.io/use-waypoint=waypoint (from namespace shop) names waypoint Gateway shop/waypoint, which does not exist",
		"note: VirtualService (networking.istio.io/v1) is not installed in the cluster: treated as none",
		"note: ServiceEntry (networking.istio.io/v1) is not installed in the cluster: treated as none",
	} {
		if !strings.Contains(flat, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if !strings.Contains(flat, "Warning Service shop/ratings metadata.labels[istio.io/use-waypoint] label istio.io/use-waypoint=waypoint (from namespace shop) names waypoint Gateway shop/waypoint, which does not exist: its traffic bypasses the waypoint, without L7 policy (weft.dev/waypoint-fallback=direct) (fix: deploy the waypoint (weftctl waypoint apply -n shop), or remove the label that names it)") {
		t.Errorf("a Service with fallback direct is not a warning:\n%s", out)
	}
}

func TestAnalyzeBadOutput(t *testing.T) {
	if _, err := weftctl(clientsFrom(t, meshCluster), "analyze", "-o", "yaml"); err == nil || !strings.Contains(err.Error(), "table or json") {
		t.Errorf("err = %v", err)
	}
}
