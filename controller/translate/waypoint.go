package translate

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"

	corev1 "k8s.io/api/core/v1"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/weftmesh/weft/api"
	workloadv1 "github.com/weftmesh/weft/api/workload/v1"
)

// ErrWaypointListeners is Istio's message for a waypoint Gateway whose listeners are not the one
// listener a waypoint has.
const ErrWaypointListeners = `Expected a single listener on port 15008 with protocol "HBONE"`

// IsWaypointClass reports whether gw is of the waypoint class istio-waypoint.
func IsWaypointClass(gw *gatewayv1.Gateway) bool {
	return string(gw.Spec.GatewayClassName) == api.WaypointGatewayClass
}

// ValidWaypointListeners reports whether gw has exactly one listener, on port 15008 with
// protocol HBONE (Istio requires nothing of its name; `weftctl waypoint apply` names it mesh).
func ValidWaypointListeners(gw *gatewayv1.Gateway) bool {
	ls := gw.Spec.Listeners
	return len(ls) == 1 && ls[0].Port == api.WaypointPort && string(ls[0].Protocol) == api.WaypointProtocol
}

// IsWaypoint reports whether gw is a waypoint the controller deploys: class istio-waypoint with
// valid listeners.
func IsWaypoint(gw *gatewayv1.Gateway) bool { return IsWaypointClass(gw) && ValidWaypointListeners(gw) }

// WaypointFor is the gateway's istio.io/waypoint-for label: service (also when absent),
// workload, all or none. An unknown value is returned as an error, and counts as "service".
func WaypointFor(gw *gatewayv1.Gateway) (string, error) {
	v, ok := gw.Labels[api.LabelWaypointFor]
	switch {
	case !ok:
		return api.WaypointForService, nil
	case v == api.WaypointForService, v == api.WaypointForWorkload, v == api.WaypointForAll, v == api.WaypointForNone:
		return v, nil
	}
	return api.WaypointForService, fmt.Errorf("waypoint Gateway %s/%s: label %s=%q is not one of service, workload, all or none; it is treated as service (the default)", gw.Namespace, gw.Name, api.LabelWaypointFor, v)
}

// Waypoint is one waypoint Gateway and what is bound to it.
type Waypoint struct {
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	// For is the gateway's istio.io/waypoint-for: service, workload, all or none.
	For string `json:"for"`
	// Services are the "<namespace>/<name>" of the Services whose traffic traverses it, sorted.
	Services []string `json:"services,omitempty"`
	// Workloads are the uids of the workloads whose pod-addressed traffic traverses it, sorted.
	Workloads []string `json:"workloads,omitempty"`
}

// WaypointKey is the key of Mesh.Waypoints: "<namespace>/<name>".
func WaypointKey(namespace, name string) string { return namespace + "/" + name }

// waypoints resolves istio.io/use-waypoint: which Gateway each Service and Pod names, whether
// that Gateway accepts the kind of traffic, and its GatewayAddress.
type waypoints struct {
	o         Options
	gateways  map[string]*gatewayv1.Gateway // by WaypointKey
	services  map[string]*corev1.Service    // by "<namespace>/<name>"
	nsLabels  map[string]map[string]string
	byKey     map[string]*Waypoint // valid waypoints
	warnings  []error
	forWarned map[string]bool
	quiet     bool // resolve adds no warnings
}

func newWaypoints(in Input, nsLabels map[string]map[string]string, o Options) *waypoints {
	w := &waypoints{o: o, gateways: map[string]*gatewayv1.Gateway{}, services: map[string]*corev1.Service{},
		nsLabels: nsLabels, byKey: map[string]*Waypoint{}, forWarned: map[string]bool{}}
	for _, gw := range in.Gateways {
		key := WaypointKey(gw.Namespace, gw.Name)
		w.gateways[key] = gw
		if IsWaypoint(gw) {
			f, err := WaypointFor(gw)
			if err != nil {
				w.warnings = append(w.warnings, err)
			}
			w.byKey[key] = &Waypoint{Namespace: gw.Namespace, Name: gw.Name, For: f}
		}
	}
	for _, svc := range in.Services {
		w.services[svc.Namespace+"/"+svc.Name] = svc
	}
	return w
}

// podGateway returns the waypoint whose pod pod is: it carries the gateway-name label of a
// waypoint Gateway of its namespace and runs as that Gateway's service account (the
// deployer makes it so).
func (w *waypoints) podGateway(pod *corev1.Pod) *Waypoint {
	name := pod.Labels[api.LabelGatewayName]
	if name == "" || pod.Spec.ServiceAccountName != name {
		return nil
	}
	return w.byKey[WaypointKey(pod.Namespace, name)]
}

// ownService reports whether svc is a waypoint's own Service (waypoints have no waypoint).
func (w *waypoints) ownService(svc *corev1.Service) bool {
	name := svc.Labels[api.LabelGatewayName]
	return name == svc.Name && w.byKey[WaypointKey(svc.Namespace, name)] != nil
}

// kinds of traffic a waypoint handles.
const (
	forService  = api.WaypointForService
	forWorkload = api.WaypointForWorkload
)

// resolve returns the waypoint of an object (a Service when kind is "service", a Pod when
// "workload") with labels in namespace ns: its own istio.io/use-waypoint, else its
// namespace's ("none" opts out); istio.io/use-waypoint-namespace from the same object names
// the waypoint's namespace. The GatewayAddress always names the waypoint's Service, so a node
// agent refuses the traffic while the waypoint is missing; it carries the Service's VIP when
// the waypoint is deployed. A waypoint whose istio.io/waypoint-for excludes kind is not used
// (as in Istio). what names the object in warnings.
func (w *waypoints) resolve(kind, what, ns string, labels map[string]string) (*workloadv1.GatewayAddress, *Waypoint) {
	nsl := w.nsLabels[ns]
	src, explicit := labels, true
	if _, ok := labels[api.LabelUseWaypoint]; !ok {
		src, explicit = nsl, false
	}
	name := src[api.LabelUseWaypoint]
	if name == "" || name == api.UseWaypointNone {
		return nil, nil
	}
	wpNS := cmp.Or(src[api.LabelUseWaypointNamespace], ns)
	key := WaypointKey(wpNS, name)
	via := ""
	if !explicit {
		via = " (from namespace " + ns + ")"
	}
	wp := w.byKey[key]
	if wp != nil {
		if wp.For != api.WaypointForAll && wp.For != kind {
			if explicit && !w.quiet && !w.forWarned[what+key] {
				w.forWarned[what+key] = true
				w.warnings = append(w.warnings, fmt.Errorf("%s: label %s=%s names waypoint %s, whose %s is %q, so it does not handle %s traffic and the label has no effect; set %s=%s or all on the Gateway, or remove the label", what, api.LabelUseWaypoint, name, key, api.LabelWaypointFor, wp.For, kind, api.LabelWaypointFor, kind))
			}
			return nil, nil
		}
	} else {
		// Missing, or not a waypoint: the traffic is refused rather than sent around it. Its
		// kinds are unknown: the default (service), or whatever the object itself asks for.
		if kind == forWorkload && !explicit {
			return nil, nil
		}
		if w.quiet {
			return &workloadv1.GatewayAddress{}, nil
		}
		problem := "does not exist"
		if gw := w.gateways[key]; gw != nil {
			switch {
			case !IsWaypointClass(gw):
				problem = fmt.Sprintf("is of class %q, not %s", gw.Spec.GatewayClassName, api.WaypointGatewayClass)
			default:
				problem = "has invalid listeners (" + ErrWaypointListeners + ")"
			}
		}
		w.warnings = append(w.warnings, fmt.Errorf("%s: label %s=%s%s names waypoint Gateway %s, which %s: traffic to it is refused until the waypoint is deployed (`weftctl waypoint apply -n %s --name %s`); label %s=%s opts into bypassing it", what, api.LabelUseWaypoint, name, via, key, problem, wpNS, name, api.LabelWaypointFallback, api.WaypointFallbackDirect))
	}
	ga := &workloadv1.GatewayAddress{
		HboneMtlsPort: api.WaypointPort,
		Namespace:     wpNS,
		Hostname:      name + "." + wpNS + ".svc." + w.o.ClusterDomain,
	}
	if svc := w.services[key]; wp != nil && svc != nil {
		if a, err := netip.ParseAddr(svc.Spec.ClusterIP); err == nil {
			ga.Address = a.String()
		}
	}
	fb := labels[api.LabelWaypointFallback]
	if _, ok := labels[api.LabelWaypointFallback]; !ok {
		fb = nsl[api.LabelWaypointFallback]
	}
	switch fb {
	case "":
	case api.WaypointFallbackDirect:
		ga.FallbackDirect = true
	default:
		if w.quiet {
			break
		}
		w.warnings = append(w.warnings, fmt.Errorf("%s: label %s=%q: the only value is %q; without it a missing waypoint refuses traffic", what, api.LabelWaypointFallback, fb, api.WaypointFallbackDirect))
	}
	return ga, wp
}

// list returns the valid waypoints by key with their bindings sorted.
func (w *waypoints) list() map[string]*Waypoint {
	for _, wp := range w.byKey {
		slices.Sort(wp.Services)
		slices.Sort(wp.Workloads)
	}
	return w.byKey
}

// serviceWaypoints returns, for every Service, the key of the valid waypoint it is bound to
// (for AuthorizationPolicy targetRefs); "" when none.
func (w *waypoints) serviceWaypoints(in Input) map[string]string {
	out := make(map[string]string, len(in.Services))
	w.quiet = true // the warnings come when the Services are translated
	for _, svc := range in.Services {
		key := svc.Namespace + "/" + svc.Name
		out[key] = ""
		if w.ownService(svc) {
			continue
		}
		if _, wp := w.resolve(forService, "Service "+key, svc.Namespace, svc.Labels); wp != nil {
			out[key] = WaypointKey(wp.Namespace, wp.Name)
		}
	}
	w.quiet = false
	return out
}
