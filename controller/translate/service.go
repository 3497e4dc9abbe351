package translate

import (
	"cmp"
	"net/netip"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"

	workloadv1 "github.com/weftmesh/weft/api/workload/v1"
)

// ServiceName is the resource name of a service in workload discovery,
// "<namespace>/<hostname>".
func ServiceName(namespace, hostname string) string { return namespace + "/" + hostname }

// service translates a Service with a cluster IP and its EndpointSlices. Endpoints name
// workloads by uid; known reports whether a uid is a workload of the mesh (endpoints of pods
// without an IP are left out). It returns nil for headless and ExternalName services: clients
// reach their pods' addresses directly.
func service(svc *corev1.Service, endpointSlices []*discoveryv1.EndpointSlice, known func(uid string) bool, o Options) *workloadv1.Service {
	if svc.Spec.Type == corev1.ServiceTypeExternalName || svc.Spec.ClusterIP == "" || svc.Spec.ClusterIP == corev1.ClusterIPNone {
		return nil
	}
	s := &workloadv1.Service{
		Name:      svc.Name,
		Namespace: svc.Namespace,
		Hostname:  svc.Name + "." + svc.Namespace + ".svc." + o.ClusterDomain,
	}
	ips := svc.Spec.ClusterIPs
	if len(ips) == 0 {
		ips = []string{svc.Spec.ClusterIP}
	}
	for _, ip := range ips {
		if a, err := netip.ParseAddr(ip); err == nil {
			s.Vips = append(s.Vips, a.String())
		}
	}
	if len(s.Vips) == 0 {
		return nil
	}
	// Numeric target ports hold for every endpoint; named ones resolve per endpoint through
	// the EndpointSlices, which carry each endpoint's port number by service port name.
	for _, p := range svc.Spec.Ports {
		if p.Protocol != "" && p.Protocol != corev1.ProtocolTCP {
			continue
		}
		port := &workloadv1.Port{Name: p.Name, Port: uint32(p.Port), AppProtocol: appProtocol(p)}
		if p.TargetPort.IntValue() > 0 {
			port.TargetPort = uint32(p.TargetPort.IntValue())
		} else if p.TargetPort.StrVal == "" {
			port.TargetPort = uint32(p.Port)
		}
		s.Ports = append(s.Ports, port)
	}
	if len(s.Ports) == 0 {
		return nil
	}
	byUID := map[string]*workloadv1.Endpoint{}
	for _, es := range endpointSlices {
		for _, ep := range es.Endpoints {
			if ep.TargetRef == nil || ep.TargetRef.Kind != "Pod" {
				continue
			}
			uid := WorkloadUID(o.ClusterID, cmp.Or(ep.TargetRef.Namespace, es.Namespace), ep.TargetRef.Name)
			if !known(uid) {
				continue
			}
			e := byUID[uid]
			if e == nil {
				e = &workloadv1.Endpoint{WorkloadUid: uid}
				byUID[uid] = e
			}
			for _, sp := range s.Ports {
				if sp.TargetPort != 0 {
					continue // numeric: the same for every endpoint
				}
				for _, ep := range es.Ports {
					if ep.Port != nil && ep.Name != nil && *ep.Name == sp.Name {
						if e.Ports == nil {
							e.Ports = map[uint32]uint32{}
						}
						e.Ports[sp.Port] = uint32(*ep.Port)
					}
				}
			}
		}
	}
	// A named target port that no EndpointSlice resolves for an endpoint falls back to the
	// service port number.
	for _, sp := range s.Ports {
		if sp.TargetPort == 0 {
			sp.TargetPort = sp.Port
		}
	}
	for _, e := range byUID {
		s.Endpoints = append(s.Endpoints, e)
	}
	slices.SortFunc(s.Endpoints, func(a, b *workloadv1.Endpoint) int { return strings.Compare(a.WorkloadUid, b.WorkloadUid) })
	return s
}

// appProtocol is Istio's protocol selection: the port's appProtocol, else its name's prefix.
func appProtocol(p corev1.ServicePort) workloadv1.AppProtocol {
	proto := strings.ToLower(p.Name)
	if p.AppProtocol != nil {
		proto = strings.ToLower(*p.AppProtocol)
	}
	switch {
	case proto == "kubernetes.io/h2c" || proto == "http2" || strings.HasPrefix(proto, "http2-"):
		return workloadv1.AppProtocol_HTTP2
	case proto == "grpc" || strings.HasPrefix(proto, "grpc-"):
		return workloadv1.AppProtocol_GRPC
	case proto == "http" || strings.HasPrefix(proto, "http-"):
		return workloadv1.AppProtocol_HTTP11
	}
	return workloadv1.AppProtocol_UNKNOWN
}
