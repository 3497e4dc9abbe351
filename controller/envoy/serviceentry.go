package envoy

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	networking "istio.io/api/networking/v1alpha3"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
)

// indexServiceEntries takes the hosts of the namespace's ServiceEntries with resolution DNS,
// DNS_ROUND_ROBIN or STATIC: their HTTP ports get a cluster (STRICT_DNS, LOGICAL_DNS or
// STATIC, endpoints inline) and a virtual host, and rules can name them as destinations.
// As for other rules, the oldest ServiceEntry of a host wins.
func (b *builder) indexServiceEntries() {
	ses := slices.Clone(b.in.ServiceEntries)
	slices.SortFunc(ses, func(x, y *networkingv1.ServiceEntry) int { return oldestFirst(x.ObjectMeta, y.ObjectMeta) })
	for _, se := range ses {
		if se.Namespace != b.in.Namespace {
			continue
		}
		report := func(field, msg, fix string) { b.problem("ServiceEntry", se.ObjectMeta, field, msg, fix) }
		spec := &se.Spec
		switch spec.Resolution {
		case networking.ServiceEntry_DNS, networking.ServiceEntry_DNS_ROUND_ROBIN, networking.ServiceEntry_STATIC:
		default:
			report("spec.resolution", fmt.Sprintf("resolution %s is not supported by the waypoint; the ServiceEntry is ignored", spec.Resolution), "use resolution DNS or STATIC")
			continue
		}
		if spec.WorkloadSelector != nil {
			report("spec.workloadSelector", "endpoints selected from workloads are not supported by the waypoint; the ServiceEntry is ignored", "list the endpoints, or use resolution DNS")
			continue
		}
		if spec.Location == networking.ServiceEntry_MESH_INTERNAL {
			report("spec.location", "MESH_INTERNAL is treated as MESH_EXTERNAL: the waypoint connects to the endpoints in plain text", "use MESH_EXTERNAL, or a Service for workloads of the mesh")
		}
		if spec.Resolution == networking.ServiceEntry_STATIC && len(spec.Endpoints) == 0 {
			report("spec.endpoints", "resolution STATIC needs endpoints; the ServiceEntry is ignored", "list the endpoints' IP addresses")
			continue
		}
		var ports []svcPort
		for i, p := range spec.Ports {
			if p == nil {
				continue
			}
			field := fmt.Sprintf("spec.ports[%d]", i)
			var http2 bool
			switch strings.ToUpper(p.Protocol) {
			case "HTTP":
			case "HTTP2", "GRPC":
				http2 = true
			default:
				report(field+".protocol", fmt.Sprintf("protocol %q is not routed by the waypoint at L7; the port is ignored", p.Protocol), "use protocol HTTP, HTTP2 or GRPC for routed ports")
				continue
			}
			if p.Number == 0 || p.Number > 65535 {
				report(field+".number", fmt.Sprintf("%d is not a port", p.Number), "set the port number")
				continue
			}
			ports = append(ports, svcPort{name: p.Name, number: p.Number, target: cmpOr(p.TargetPort, p.Number), http2: http2})
		}
		if len(ports) == 0 {
			continue
		}
		first := ""
		for i, h := range spec.Hosts {
			field := fmt.Sprintf("spec.hosts[%d]", i)
			switch {
			case h == "" || strings.Contains(h, "*"):
				report(field, fmt.Sprintf("host %q cannot be resolved (wildcard); ignored", h), "name the external host")
				continue
			case b.alias[h] != nil:
				report(field, fmt.Sprintf("host %q is a Service of the namespace; ignored", h), "use a DestinationRule or VirtualService for the Service")
				continue
			}
			if old := b.external[h]; old != nil {
				report(field, fmt.Sprintf("host %s already has ServiceEntry %s (older); this one is ignored for it", h, old.se.Name), "merge the entries")
				continue
			}
			s := &service{se: se, host: h, ports: ports}
			if spec.Resolution == networking.ServiceEntry_STATIC {
				s.vips = slices.Clone(spec.Addresses)
			}
			b.external[h] = s
			if first == "" {
				first = h
				b.ses[se.Name] = s
			}
		}
	}
}

func cmpOr(v, def uint32) uint32 {
	if v != 0 {
		return v
	}
	return def
}

// externalClusters builds the clusters of the ServiceEntry hosts, their endpoints inline.
func (b *builder) externalClusters() []*clusterv3.Cluster {
	var out []*clusterv3.Cluster
	for _, host := range sortedKeys(b.external) {
		s := b.external[host]
		spec := &s.se.Spec
		for i := range s.ports {
			port := &s.ports[i]
			name := ClusterName(port.number, "", host)
			c := cluster(name, port, nil, func(string, string, string) {})
			c.EdsClusterConfig = nil
			switch spec.Resolution {
			case networking.ServiceEntry_STATIC:
				c.ClusterDiscoveryType = &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC}
			case networking.ServiceEntry_DNS_ROUND_ROBIN:
				c.ClusterDiscoveryType = &clusterv3.Cluster_Type{Type: clusterv3.Cluster_LOGICAL_DNS}
				c.DnsLookupFamily = clusterv3.Cluster_V4_ONLY
			default:
				c.ClusterDiscoveryType = &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STRICT_DNS}
				c.DnsLookupFamily = clusterv3.Cluster_V4_ONLY
			}
			var lbs []*endpointv3.LbEndpoint
			add := func(addr string, p uint32) {
				lbs = append(lbs, &endpointv3.LbEndpoint{
					HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{Address: socketAddress(addr, p)}},
					HealthStatus:   corev3.HealthStatus_HEALTHY,
				})
			}
			if len(spec.Endpoints) == 0 {
				add(host, port.target) // DNS: the host itself
			}
			for j, e := range spec.Endpoints {
				if e == nil {
					continue
				}
				field := fmt.Sprintf("spec.endpoints[%d].address", j)
				addr := e.Address
				if strings.HasPrefix(addr, "unix://") || addr == "" {
					b.problem("ServiceEntry", s.se.ObjectMeta, field, fmt.Sprintf("address %q cannot be reached by the waypoint; the endpoint is ignored", addr), "use an IP address or a DNS name")
					continue
				}
				if _, err := netip.ParseAddr(addr); err != nil && spec.Resolution == networking.ServiceEntry_STATIC {
					b.problem("ServiceEntry", s.se.ObjectMeta, field, fmt.Sprintf("%q is not an IP address, as resolution STATIC needs; the endpoint is ignored", addr), "use an IP address, or resolution DNS")
					continue
				}
				p := port.target
				if ep, ok := e.Ports[port.name]; ok && ep != 0 && port.name != "" {
					p = ep
				}
				add(addr, p)
			}
			if spec.Resolution == networking.ServiceEntry_DNS_ROUND_ROBIN && len(lbs) > 1 {
				b.problem("ServiceEntry", s.se.ObjectMeta, "spec.endpoints", "resolution DNS_ROUND_ROBIN takes one endpoint; the others are ignored", "use resolution DNS for several endpoints")
				lbs = lbs[:1]
			}
			c.LoadAssignment = &endpointv3.ClusterLoadAssignment{ClusterName: name, Endpoints: []*endpointv3.LocalityLbEndpoints{locality(lbs)}}
			if err := c.ValidateAll(); err != nil {
				b.problem("ServiceEntry", s.se.ObjectMeta, "spec", "the cluster "+name+" is invalid and left out ("+err.Error()+"); requests to it fail with 503", "correct the ServiceEntry")
				continue
			}
			out = append(out, c)
		}
	}
	return out
}
