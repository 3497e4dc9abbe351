package envoy

import (
	"flag"
	"strings"
	"testing"

	networking "istio.io/api/networking/v1alpha3"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/runtime"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/weftmesh/weft/api"
	"github.com/weftmesh/weft/controller/translate"
	"github.com/weftmesh/weft/internal/golden"
)

var update = flag.Bool("update", false, "rewrite the golden files")

// TestGolden translates each testdata/*.yaml (Kubernetes and Istio objects of namespace
// "default", the waypoint's) and compares the Envoy resources and the problems with
// testdata/*.golden.
func TestGolden(t *testing.T) {
	golden.Run(t, "testdata/*.yaml", *update, func(t *testing.T, objs []runtime.Object) []byte {
		cfg := Build(inputOf(t, objs), Options{})
		validate(t, cfg)
		return render(t, cfg)
	})
}

func readInput(t *testing.T, file string) Input { return inputOf(t, golden.Objects(t, file)) }

func inputOf(t *testing.T, objs []runtime.Object) Input {
	t.Helper()
	in := Input{Namespace: "default"}
	for _, obj := range objs {
		switch o := obj.(type) {
		case *corev1.Namespace:
			in.NamespaceLabels = o.Labels
		case *corev1.Pod:
			in.Pods = append(in.Pods, o)
			if v := o.Labels[api.LabelUseWaypoint]; v != "" && v != api.UseWaypointNone {
				// The test's stand-in for translate.Waypoint.Workloads.
				in.Workloads = append(in.Workloads, translate.WorkloadUID("", o.Namespace, o.Name))
			}
		case *corev1.Service:
			in.Services = append(in.Services, o)
		case *discoveryv1.EndpointSlice:
			in.EndpointSlices = append(in.EndpointSlices, o)
		case *networkingv1.VirtualService:
			in.VirtualServices = append(in.VirtualServices, o)
		case *networkingv1.DestinationRule:
			in.DestinationRules = append(in.DestinationRules, o)
		case *networkingv1.ServiceEntry:
			in.ServiceEntries = append(in.ServiceEntries, o)
		case *gatewayv1.HTTPRoute:
			in.HTTPRoutes = append(in.HTTPRoutes, o)
		default:
			t.Fatalf("unexpected %T", obj)
		}
	}
	return in
}

// validate checks the package's promise: every resource passes its ValidateAll().
func validate(t *testing.T, cfg *Config) {
	t.Helper()
	if cfg.Listener != nil {
		golden.Validate(t, cfg.Listener)
	}
	golden.Validate(t, cfg.Routes...)
	golden.Validate(t, cfg.Clusters...)
	golden.Validate(t, cfg.Endpoints...)
}

func render(t *testing.T, cfg *Config) []byte {
	t.Helper()
	problems := []string{}
	for _, p := range cfg.Problems {
		problems = append(problems, p.Error())
	}
	return golden.JSON(t, map[string]any{"listener": golden.Proto(t, cfg.Listener), "routes": golden.Protos(t, cfg.Routes),
		"clusters": golden.Protos(t, cfg.Clusters), "endpoints": golden.Protos(t, cfg.Endpoints), "problems": problems})
}

// TestMalformed feeds rules with nil parts that YAML cannot express but a client can: the
// translation must neither panic nor produce invalid resources.
func TestMalformed(t *testing.T) {
	in := readInput(t, "testdata/seed-all-v1.yaml")
	vs := &networkingv1.VirtualService{}
	vs.Name, vs.Namespace = "odd", "default"
	vs.Spec.Hosts = []string{"ratings"}
	vs.Spec.Http = []*networking.HTTPRoute{
		nil,
		{Match: []*networking.HTTPMatchRequest{nil, {Uri: &networking.StringMatch{}, Headers: map[string]*networking.StringMatch{"x": nil}}}, Route: []*networking.HTTPRouteDestination{nil, {Destination: &networking.Destination{Host: "ratings"}}}},
		{Route: []*networking.HTTPRouteDestination{{}}},
		{Match: []*networking.HTTPMatchRequest{{Headers: map[string]*networking.StringMatch{"": {MatchType: &networking.StringMatch_Exact{Exact: "x"}}}}}, Route: []*networking.HTTPRouteDestination{{Destination: &networking.Destination{Host: "ratings"}}}},
		{Route: []*networking.HTTPRouteDestination{{Destination: &networking.Destination{Host: "ratings"}}}, Fault: &networking.HTTPFaultInjection{Delay: &networking.HTTPFaultInjection_Delay{}, Abort: &networking.HTTPFaultInjection_Abort{}}, Mirrors: []*networking.HTTPMirrorPolicy{nil, {}}, CorsPolicy: &networking.CorsPolicy{AllowOrigins: []*networking.StringMatch{nil}}},
	}
	dr := &networkingv1.DestinationRule{}
	dr.Name, dr.Namespace = "odd", "default"
	dr.Spec.Host = "ratings"
	dr.Spec.Subsets = []*networking.Subset{nil, {Name: "a"}}
	dr.Spec.TrafficPolicy = &networking.TrafficPolicy{
		LoadBalancer:      &networking.LoadBalancerSettings{LbPolicy: &networking.LoadBalancerSettings_ConsistentHash{ConsistentHash: &networking.LoadBalancerSettings_ConsistentHashLB{}}},
		ConnectionPool:    &networking.ConnectionPoolSettings{},
		OutlierDetection:  &networking.OutlierDetection{},
		PortLevelSettings: []*networking.TrafficPolicy_PortTrafficPolicy{nil, {}},
	}
	in.VirtualServices = append(in.VirtualServices, vs)
	in.DestinationRules = append(in.DestinationRules, dr)
	cfg := Build(in, Options{})
	validate(t, cfg)
	if cfg.Listener == nil || len(cfg.Problems) == 0 {
		t.Fatalf("listener %v, problems %v", cfg.Listener, cfg.Problems)
	}
	dropped := false // by the generated validation: the empty header name
	for _, p := range cfg.Problems {
		t.Log(p)
		dropped = dropped || p.Field == "spec.http[3]" && strings.Contains(p.Message, "cannot be translated")
	}
	if !dropped {
		t.Error("the route that fails Validate() was not reported")
	}
}
