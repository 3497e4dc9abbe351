package state

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
)

// Service is a Kubernetes Service or service entry as the node agent sees it
// (istio.workload.Service).
//
// A Service obtained from a [Snapshot] belongs to it and must not be modified.
type Service struct {
	Name      string `json:"name"`
	Namespace string `json:"namespace"`
	// Hostname is the service's DNS name, e.g. "web.shop.svc.cluster.local".
	Hostname string `json:"hostname"`
	// VIPs are the service's virtual IPs (ClusterIPs), IPv4 and IPv6.
	VIPs []netip.Addr `json:"vips"`
	// Ports are the service's ports.
	Ports []ServicePort `json:"ports"`
	// Endpoints are the workloads behind the service.
	Endpoints []Endpoint `json:"endpoints,omitempty"`
	// Waypoint, when set, is the waypoint that traffic addressed to the service goes through.
	Waypoint *GatewayAddress `json:"waypoint,omitempty"`

	targets [][]target // per Ports index: healthy endpoints, target port resolved (NewSnapshot)
}

// ServicePort maps a service port to the port of its endpoints.
type ServicePort struct {
	Name string `json:"name,omitempty"`
	// Port is the port clients connect to on a VIP.
	Port uint16 `json:"port"`
	// TargetPort is the endpoints' port; zero means the same as Port. An endpoint can
	// override it (Endpoint.Ports).
	TargetPort  uint16      `json:"targetPort,omitempty"`
	AppProtocol AppProtocol `json:"appProtocol"`
}

// Endpoint is one workload behind a service.
type Endpoint struct {
	// WorkloadUID is the UID of the workload.
	WorkloadUID string `json:"workloadUid"`
	// Ports overrides the target port of some service ports for this workload: service port →
	// target port (Istio sends these per workload, for named target ports).
	Ports map[uint16]uint16 `json:"ports,omitempty"`
}

// target is a resolved endpoint of a service port.
type target struct {
	w    *Workload
	port uint16
}

// NamespacedHostname returns "<namespace>/<hostname>", the name of the service resource in
// workload discovery.
func (s *Service) NamespacedHostname() string { return s.Namespace + "/" + s.Hostname }

// Port returns the service port numbered port.
func (s *Service) Port(port uint16) (ServicePort, bool) {
	for _, p := range s.Ports {
		if p.Port == port {
			return p, true
		}
	}
	return ServicePort{}, false
}

// ParsePorts parses the value of a port-list annotation such as
// traffic.sidecar.istio.io/excludeInboundPorts: port numbers separated by commas, with
// optional spaces ("15020, 9090"). It returns the ports sorted, without duplicates.
func ParsePorts(s string) ([]uint16, error) {
	var ports []uint16
	for f := range strings.SplitSeq(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		n, err := strconv.ParseUint(f, 10, 16)
		if err != nil || n == 0 {
			return nil, fmt.Errorf("state: %q is not a port; write port numbers from 1 to 65535 separated by commas", f)
		}
		ports = append(ports, uint16(n))
	}
	slices.Sort(ports)
	return slices.Compact(ports), nil
}
