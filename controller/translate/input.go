package translate

import (
	securityv1 "istio.io/client-go/pkg/apis/security/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
)

// Input is the state of the cluster that the mesh is built from. The objects are read, never
// modified.
type Input struct {
	Namespaces          []*corev1.Namespace
	Pods                []*corev1.Pod
	Services            []*corev1.Service
	EndpointSlices      []*discoveryv1.EndpointSlice
	PeerAuthentications []*securityv1.PeerAuthentication
	// AuthorizationPolicies are translated into authorization resources (see authorization).
	AuthorizationPolicies []*securityv1.AuthorizationPolicy
	// Gateways are the Gateway API Gateways; those of class istio-waypoint are waypoints.
	Gateways []*gatewayv1.Gateway
}

// Options are the mesh-wide settings of a translation.
type Options struct {
	// TrustDomain of every workload identity; empty means "cluster.local".
	TrustDomain string
	// ClusterID names the cluster in workload uids and metrics; empty means "Kubernetes".
	ClusterID string
	// ClusterDomain is the DNS suffix of services; empty means "cluster.local".
	ClusterDomain string
	// RootNamespace holds mesh-wide policies; empty means "istio-system".
	RootNamespace string
}

func (o Options) withDefaults() Options {
	if o.TrustDomain == "" {
		o.TrustDomain = "cluster.local"
	}
	if o.ClusterID == "" {
		o.ClusterID = "Kubernetes"
	}
	if o.ClusterDomain == "" {
		o.ClusterDomain = "cluster.local"
	}
	if o.RootNamespace == "" {
		o.RootNamespace = "istio-system"
	}
	return o
}
