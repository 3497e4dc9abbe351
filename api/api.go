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
