package envoy

import (
	"cmp"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"google.golang.org/protobuf/types/known/structpb"
	corev1 "k8s.io/api/core/v1"

	"github.com/weftmesh/weft/api"
	"github.com/weftmesh/weft/controller/translate"
)

// Endpoint metadata: every LbEndpoint backed by a pod of the namespace carries
// filter_metadata[MetadataKey], a Struct with these fields. The waypoint re-tunnels to an
// endpoint with tunnel "HBONE" over HBONE and verifies that the peer presents identity; the
// other fields label Istio's metrics.
const (
	MetadataKey       = "weft"
	MetadataTunnel    = "tunnel"    // "HBONE" for a workload in the mesh, absent otherwise
	MetadataIdentity  = "identity"  // spiffe://<td>/ns/<ns>/sa/<sa>, only with tunnel
	MetadataWorkload  = "workload"  // pod name
	MetadataNamespace = "namespace" // pod namespace
	MetadataApp       = "app"       // canonical service
	MetadataVersion   = "version"   // canonical revision
	TunnelHBONE       = "HBONE"
)

// endpointMetadata is the metadata of an endpoint backed by pod; nil without a pod.
func (b *builder) endpointMetadata(pod *corev1.Pod) *corev3.Metadata {
	if pod == nil {
		return nil
	}
	fields := map[string]*structpb.Value{
		MetadataWorkload:  structpb.NewStringValue(pod.Name),
		MetadataNamespace: structpb.NewStringValue(pod.Namespace),
		MetadataApp:       structpb.NewStringValue(canonicalName(pod)),
		MetadataVersion:   structpb.NewStringValue(canonicalRevision(pod)),
	}
	if isWaypointPod(pod) || translate.Enrolled(pod, b.in.NamespaceLabels) {
		sa := cmp.Or(pod.Spec.ServiceAccountName, "default")
		fields[MetadataTunnel] = structpb.NewStringValue(TunnelHBONE)
		fields[MetadataIdentity] = structpb.NewStringValue("spiffe://" + b.td + "/ns/" + pod.Namespace + "/sa/" + sa)
	}
	return &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{MetadataKey: {Fields: fields}}}
}

// canonicalName is the workload's canonical service, as Istio labels metrics: the
// canonical-name label, else app.kubernetes.io/name, else app, else the pod's name.
func canonicalName(pod *corev1.Pod) string {
	for _, k := range []string{api.LabelCanonicalName, "app.kubernetes.io/name", "app"} {
		if v := pod.Labels[k]; v != "" {
			return v
		}
	}
	return pod.Name
}

// canonicalRevision is the workload's canonical revision: the canonical-revision label, else
// app.kubernetes.io/version, else version, else "latest" (Istio's default).
func canonicalRevision(pod *corev1.Pod) string {
	for _, k := range []string{api.LabelCanonicalRevision, "app.kubernetes.io/version", "version"} {
		if v := pod.Labels[k]; v != "" {
			return v
		}
	}
	return "latest"
}

// isWaypointPod reports whether pod is a waypoint's (it speaks HBONE itself, enrolled or not):
// it carries the gateway-name label and runs as that Gateway's service account, as the
// controller deploys waypoints.
func isWaypointPod(pod *corev1.Pod) bool {
	name := pod.Labels[api.LabelGatewayName]
	return name != "" && pod.Spec.ServiceAccountName == name
}
