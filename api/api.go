// Package api is the contract between Weft's components: the names they agree on (labels,
// annotations, ports, xDS type URLs, token audience) and SPIFFE ID helpers. The protobuf
// definitions of workload discovery and the CA live in the subpackages workload/v1 and ca/v1
// (generated Go committed; `make generate` rebuilds it). Controller, node agent and waypoint
// share only this tree.
package api

import (
	"strings"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// Enrollment, as Istio ambient users know it: the label on a namespace or a pod.
const (
	// LabelDataplaneMode on a namespace or pod selects the data plane. "ambient" on a namespace
	// enrolls its pods; on a pod, "ambient" enrolls it and "none" opts it out.
	LabelDataplaneMode   = "istio.io/dataplane-mode"
	DataplaneModeAmbient = "ambient"
	DataplaneModeNone    = "none"
)

// Waypoints, as Istio ambient users know them: a Gateway API Gateway of class istio-waypoint
// with one listener {name mesh, port 15008, protocol HBONE}, deployed by the controller.
const (
	// WaypointGatewayClass is the GatewayClass of waypoints and WaypointController its
	// controllerName (Istio's constants.ManagedGatewayMeshController).
	WaypointGatewayClass = "istio-waypoint"
	WaypointController   = "istio.io/mesh-controller"
	// WaypointListener, WaypointPort and WaypointProtocol are the one listener a waypoint has.
	WaypointListener = "mesh"
	WaypointPort     = 15008
	WaypointProtocol = "HBONE"
	// LabelUseWaypoint on a namespace, Service or Pod names the waypoint (a Gateway) that
	// traffic to it traverses; a Service's or Pod's label overrides its namespace's, and
	// UseWaypointNone opts out. LabelUseWaypointNamespace, on the same object, names the
	// waypoint's namespace when it is not the object's own.
	LabelUseWaypoint          = "istio.io/use-waypoint"
	LabelUseWaypointNamespace = "istio.io/use-waypoint-namespace"
	UseWaypointNone           = "none"
	// LabelWaypointFor on a waypoint Gateway says which traffic it handles: WaypointForService
	// (the default: traffic addressed to a Service VIP), WaypointForWorkload (to a pod IP),
	// WaypointForAll or WaypointForNone.
	LabelWaypointFor    = "istio.io/waypoint-for"
	WaypointForService  = "service"
	WaypointForWorkload = "workload"
	WaypointForAll      = "all"
	WaypointForNone     = "none"
	// LabelGatewayName is on every object the controller deploys for a Gateway, and selects
	// the waypoint's pods.
	LabelGatewayName = "gateway.networking.k8s.io/gateway-name"
	// LabelWaypointFallback, with the value WaypointFallbackDirect on a Pod, Service or
	// namespace (the most specific object that has the label wins), opts into bypassing a
	// waypoint that is missing or has no healthy pod: traffic then goes directly to the
	// destination without the waypoint's L7 policies. Without it, such traffic is refused.
	LabelWaypointFallback  = "weft.dev/waypoint-fallback"
	WaypointFallbackDirect = "direct"
	// AnnotationAccessLog, "true" on a waypoint Gateway, makes its waypoint write a JSON access
	// log record per request and TCP connection to stdout. Off by default, as in Istio (whose
	// default profile logs no access), because one record per request costs CPU.
	AnnotationAccessLog = "weft.dev/access-log"
)

// Pod annotations that the mesh honours.
const (
	AnnotationExcludeInboundPorts  = "traffic.sidecar.istio.io/excludeInboundPorts"
	AnnotationExcludeOutboundPorts = "traffic.sidecar.istio.io/excludeOutboundPorts"
	// LabelCanonicalName and LabelCanonicalRevision name a workload's canonical service and
	// revision; they default to the app and version labels.
	LabelCanonicalName     = "service.istio.io/canonical-name"
	LabelCanonicalRevision = "service.istio.io/canonical-revision"
)

// Ports and names of the controller.
const (
	// ControllerPort serves xDS and the CA over TLS (as istiod's 15012).
	ControllerPort = 15012
	// TokenAudience is the audience of the service-account tokens that callers of the
	// controller present.
	TokenAudience = "weft-ca"
	// RootCertConfigMap is the ConfigMap, in the controller's namespace, whose key
	// RootCertKey holds the PEM roots that verify the controller's serving certificate.
	RootCertConfigMap = "weft-ca-root-cert"
	RootCertKey       = "root-cert.pem"
)

// AddressType is the xDS type URL of workload discovery's resources (workloadv1.Address).
const AddressType = "type.googleapis.com/weft.workload.v1.Address"

// DefaultTrustDomain is the trust domain when none is configured.
const DefaultTrustDomain = "cluster.local"

// WorkloadID returns the SPIFFE ID of a Kubernetes service account,
// spiffe://<trust domain>/ns/<namespace>/sa/<service account>.
func WorkloadID(td spiffeid.TrustDomain, namespace, serviceAccount string) (spiffeid.ID, error) {
	return spiffeid.FromSegments(td, "ns", namespace, "sa", serviceAccount)
}

// ParseWorkloadID returns the namespace and service account of a SPIFFE ID of the form
// spiffe://<trust domain>/ns/<namespace>/sa/<service account>.
func ParseWorkloadID(id spiffeid.ID) (namespace, serviceAccount string, ok bool) {
	segs := strings.Split(strings.TrimPrefix(id.Path(), "/"), "/")
	if len(segs) != 4 || segs[0] != "ns" || segs[2] != "sa" || segs[1] == "" || segs[3] == "" {
		return "", "", false
	}
	return segs[1], segs[3], true
}
