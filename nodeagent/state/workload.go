package state

import (
	"encoding/json"
	"net/netip"
	"slices"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// Defaults that Istio applies to elided workload fields.
const (
	DefaultTrustDomain    = "cluster.local" // trust domain of a workload that names none
	DefaultServiceAccount = "default"       // service account of a workload that names none
	DefaultHBONEPort      = 15008           // HBONE port of a gateway that names none
)

// Pod annotations that exclude ports from capture. Istio ambient honours them; the controller
// parses them with [ParsePorts] into [Workload.ExcludeInboundPorts] and
// [Workload.ExcludeOutboundPorts].
const (
	AnnotationExcludeInboundPorts  = "traffic.sidecar.istio.io/excludeInboundPorts"
	AnnotationExcludeOutboundPorts = "traffic.sidecar.istio.io/excludeOutboundPorts"
)

// Workload is one addressable workload, usually a pod (istio.workload.Workload).
//
// A Workload obtained from a [Snapshot] belongs to it and must not be modified.
type Workload struct {
	// UID identifies the workload across the mesh, e.g. "Kubernetes//Pod/shop/web-7d4f9".
	UID       string `json:"uid"`
	Name      string `json:"name"`
	Namespace string `json:"namespace"`
	// ServiceAccount and TrustDomain make the workload's identity; empty means "default" and
	// "cluster.local", as in Istio.
	ServiceAccount string `json:"serviceAccount,omitempty"`
	TrustDomain    string `json:"trustDomain,omitempty"`
	// Node is the name of the node the workload runs on.
	Node string `json:"node,omitempty"`
	// ClusterID names the workload's cluster in metrics and baggage.
	ClusterID string `json:"clusterId,omitempty"`
	// Addresses are the workload's IPv4 and IPv6 addresses.
	Addresses []netip.Addr `json:"addresses"`
	// TunnelProtocol is HBONE for a workload enrolled in the mesh, NONE otherwise.
	TunnelProtocol TunnelProtocol `json:"tunnelProtocol"`
	// NativeTunnel marks a workload that terminates HBONE itself (a waypoint): it is reached
	// over HBONE on its own port 15008 but never captured or enrolled by an agent.
	NativeTunnel bool `json:"nativeTunnel,omitempty"`
	// Waypoint, when set, is the waypoint that traffic addressed to this workload goes through.
	Waypoint *GatewayAddress `json:"waypoint,omitempty"`
	// Status is the workload's health; only healthy workloads receive service traffic.
	Status WorkloadStatus `json:"status"`
	// WorkloadName and WorkloadType name the workload's owner, e.g. the Deployment "web".
	WorkloadName string       `json:"workloadName,omitempty"`
	WorkloadType WorkloadType `json:"workloadType"`
	// CanonicalName and CanonicalRevision are the canonical service and revision
	// (service.istio.io/canonical-name and -revision, defaulting to the app and version
	// labels), used for the app and version labels of metrics and in baggage.
	CanonicalName     string `json:"canonicalName,omitempty"`
	CanonicalRevision string `json:"canonicalRevision,omitempty"`
	// Labels are the pod's labels.
	Labels map[string]string `json:"labels,omitempty"`
	// ExcludeInboundPorts and ExcludeOutboundPorts are ports the agent does not capture, from
	// the pod annotations traffic.sidecar.istio.io/excludeInboundPorts and
	// excludeOutboundPorts.
	ExcludeInboundPorts  []uint16 `json:"excludeInboundPorts,omitempty"`
	ExcludeOutboundPorts []uint16 `json:"excludeOutboundPorts,omitempty"`
	// PeerAuthentication is the effective PeerAuthentication of the workload, already
	// resolved from mesh, namespace and workload policies.
	PeerAuthentication PeerAuthentication `json:"peerAuthentication"`
	// AuthorizationPolicies names the WORKLOAD_SELECTOR authorizations that select the
	// workload, by [Authorization.Key] ("<namespace>/<name>"); GLOBAL and NAMESPACE ones apply
	// by their scope. [Snapshot.PoliciesFor] returns them all.
	AuthorizationPolicies []string `json:"authorizationPolicies,omitempty"`

	id spiffeid.ID // set by NewSnapshot
}

// Identity returns the workload's SPIFFE ID, spiffe://<trust domain>/ns/<namespace>/sa/<service
// account>, with Istio's defaults for an empty trust domain or service account. It returns the
// zero ID when the fields do not make a valid SPIFFE ID; [Snapshot.Validate] reports that.
// For a workload of a snapshot it does not allocate.
func (w *Workload) Identity() spiffeid.ID {
	if !w.id.IsZero() {
		return w.id
	}
	id, _ := w.identity()
	return id
}

// identity computes the SPIFFE ID and says which field is wrong when it cannot.
func (w *Workload) identity() (spiffeid.ID, error) {
	td, err := spiffeid.TrustDomainFromString(w.trustDomain())
	if err != nil {
		return spiffeid.ID{}, err
	}
	return spiffeid.FromSegments(td, "ns", w.Namespace, "sa", w.serviceAccount())
}

func (w *Workload) trustDomain() string {
	if w.TrustDomain == "" {
		return DefaultTrustDomain
	}
	return w.TrustDomain
}

func (w *Workload) serviceAccount() string {
	if w.ServiceAccount == "" {
		return DefaultServiceAccount
	}
	return w.ServiceAccount
}

// Enrolled reports whether the workload is in the mesh (its tunnel protocol is HBONE).
func (w *Workload) Enrolled() bool { return w.TunnelProtocol == TunnelHBONE }

// Captured reports whether the node agent serves the workload: it is enrolled and does not
// terminate HBONE itself (a waypoint is reached over HBONE but never captured).
func (w *Workload) Captured() bool { return w.Enrolled() && !w.NativeTunnel }

// Healthy reports whether the workload may receive traffic.
func (w *Workload) Healthy() bool { return w.Status == Healthy }

// InboundExcluded reports whether inbound connections to port bypass the agent.
func (w *Workload) InboundExcluded(port uint16) bool {
	return slices.Contains(w.ExcludeInboundPorts, port)
}

// OutboundExcluded reports whether outbound connections to port bypass the agent.
func (w *Workload) OutboundExcluded(port uint16) bool {
	return slices.Contains(w.ExcludeOutboundPorts, port)
}

// GatewayAddress names the waypoint that traffic to a service or workload must traverse.
type GatewayAddress struct {
	// Address is the waypoint Service's VIP; invalid while the waypoint is not deployed.
	Address netip.Addr `json:"address"`
	// HBONEMTLSPort is the gateway's HBONE port; zero means 15008.
	HBONEMTLSPort uint16 `json:"hboneMtlsPort,omitempty"`
	// Namespace and Hostname name the waypoint's Service, whose endpoints are its pods. They
	// are set even while the waypoint is missing, so that its traffic is refused rather than
	// sent around it.
	Namespace string `json:"namespace,omitempty"`
	Hostname  string `json:"hostname,omitempty"`
	// FallbackDirect: the user opted into bypassing the waypoint while it has no healthy pod.
	FallbackDirect bool `json:"fallbackDirect,omitempty"`
}

// Name returns "<namespace>/<hostname>" of the waypoint's Service, or its address when it is
// named by address only.
func (g *GatewayAddress) Name() string {
	if g.Hostname != "" {
		return g.Namespace + "/" + g.Hostname
	}
	return g.Address.String()
}

// AddrPort returns where to send HBONE to the gateway.
func (g *GatewayAddress) AddrPort() netip.AddrPort {
	port := g.HBONEMTLSPort
	if port == 0 {
		port = DefaultHBONEPort
	}
	return netip.AddrPortFrom(g.Address, port)
}

// PeerAuthentication is the effective PeerAuthentication of one workload: its mutual TLS mode
// and the port-level overrides, keyed by the workload's (container) port.
//
// Its JSON form has the shape of the spec of Istio's PeerAuthentication:
// {"mtls": {"mode": "STRICT"}, "portLevelMtls": {"9090": {"mode": "PERMISSIVE"}}}.
type PeerAuthentication struct {
	Mode      Mode
	PortLevel map[uint16]Mode
}

type mtlsJSON struct {
	Mode Mode `json:"mode"`
}

type peerAuthenticationJSON struct {
	MTLS          mtlsJSON            `json:"mtls"`
	PortLevelMTLS map[uint16]mtlsJSON `json:"portLevelMtls,omitempty"`
}

// MarshalJSON implements json.Marshaler.
func (pa PeerAuthentication) MarshalJSON() ([]byte, error) {
	out := peerAuthenticationJSON{MTLS: mtlsJSON{pa.Mode}}
	if len(pa.PortLevel) > 0 {
		out.PortLevelMTLS = make(map[uint16]mtlsJSON, len(pa.PortLevel))
		for port, m := range pa.PortLevel {
			out.PortLevelMTLS[port] = mtlsJSON{m}
		}
	}
	return json.Marshal(out)
}

// UnmarshalJSON implements json.Unmarshaler.
func (pa *PeerAuthentication) UnmarshalJSON(b []byte) error {
	var in peerAuthenticationJSON
	if err := json.Unmarshal(b, &in); err != nil {
		return err
	}
	*pa = PeerAuthentication{Mode: in.MTLS.Mode}
	if len(in.PortLevelMTLS) > 0 {
		pa.PortLevel = make(map[uint16]Mode, len(in.PortLevelMTLS))
		for port, m := range in.PortLevelMTLS {
			pa.PortLevel[port] = m.Mode
		}
	}
	return nil
}
