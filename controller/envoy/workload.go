package envoy

import (
	"cmp"
	"maps"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
)

// PodPrefix starts the names of the filter chain, route configuration, virtual host and
// cluster of a bound workload's port (see [PodName]).
const PodPrefix = "inbound-pod|"

// PodName names everything serving pod-addressed traffic to ip:port, a bound workload's
// address: "inbound-pod|<port>|<ip>". The filter chain, its route configuration, the single
// virtual host and the STATIC cluster share it.
func PodName(ip netip.Addr, port uint32) string {
	return PodPrefix + strconv.FormatUint(uint64(port), 10) + "|" + ip.String()
}

// podPort is a port of a bound workload and how the waypoint serves it.
type podPort struct {
	number uint32
	http   bool // some Service routes it as HTTP (http, http2 or grpc)
	http2  bool // some Service says HTTP/2 or gRPC
}

// workloads builds what serves the pod-addressed traffic of the workloads bound to the
// waypoint (Input.Workloads): per pod address and port, a filter chain matching the port and
// the address (a /32 or /128 prefix range, more specific than any Service chain of the port),
// a STATIC cluster with that one endpoint and its metadata (so the waypoint re-tunnels to the
// pod over HBONE and verifies its identity), and for an HTTP port a route configuration whose
// single virtual host "*" routes every request to that cluster. taken are the destination
// ports of the other chains: a bound pod gets a chain on each of them too (tcp_proxy when no
// Service says the port is HTTP), so its pod-addressed traffic never falls into a Service's
// chain. The results are sorted by name.
func (b *builder) workloads(taken []uint32) ([]*listenerv3.FilterChain, []*routev3.RouteConfiguration, []*clusterv3.Cluster) {
	var chains []*listenerv3.FilterChain
	var routes []*routev3.RouteConfiguration
	var clusters []*clusterv3.Cluster
	seen := map[string]bool{}
	for _, uid := range slices.Sorted(slices.Values(b.in.Workloads)) {
		_, ref, ok := strings.Cut(uid, "//Pod/")
		ns, name, ok2 := strings.Cut(ref, "/")
		if !ok || !ok2 {
			b.problems = append(b.problems, Problem{Kind: "Workload", Name: uid, Field: "uid", Message: "not a pod's workload uid; its pod-addressed traffic is not served by the waypoint", Fix: "report this as a bug of Weft"})
			continue
		}
		if ns != b.in.Namespace {
			b.problems = append(b.problems, Problem{Kind: "Pod", Namespace: ns, Name: name, Field: "metadata.labels[istio.io/use-waypoint]", Message: "the waypoint of namespace " + b.in.Namespace + " serves pod-addressed traffic of its own namespace only; this pod's pod-addressed traffic is refused by the waypoint", Fix: "use a waypoint of the pod's namespace"})
			continue
		}
		pod := b.pods[name]
		if pod == nil {
			continue // gone since the mesh was translated
		}
		ports := b.podPorts(pod)
		for _, p := range taken {
			if _, ok := ports[p]; !ok {
				ports[p] = &podPort{number: p}
			}
		}
		for _, ip := range podIPs(pod) {
			for _, n := range slices.Sorted(maps.Keys(ports)) {
				pp := ports[n]
				nm := PodName(ip, n)
				if seen[nm] {
					continue
				}
				seen[nm] = true
				fc, rc, c, err := b.podChain(pod, ip, pp)
				if err != nil {
					b.problems = append(b.problems, Problem{Kind: "Listener", Name: ListenerName, Field: "filterChains", Message: "the chain " + nm + " is invalid and left out: " + err.Error(), Fix: "report this as a bug of Weft"})
					continue
				}
				chains, clusters = append(chains, fc), append(clusters, c)
				if rc != nil {
					routes = append(routes, rc)
				}
			}
		}
	}
	byName := func(a, b interface{ GetName() string }) int { return strings.Compare(a.GetName(), b.GetName()) }
	slices.SortFunc(chains, func(a, b *listenerv3.FilterChain) int { return byName(a, b) })
	slices.SortFunc(routes, func(a, b *routev3.RouteConfiguration) int { return byName(a, b) })
	slices.SortFunc(clusters, func(a, b *clusterv3.Cluster) int { return byName(a, b) })
	return chains, routes, clusters
}

// podIPs are the pod's addresses, IPv4 first.
func podIPs(pod *corev1.Pod) []netip.Addr {
	var out []netip.Addr
	for _, ip := range pod.Status.PodIPs {
		if a, err := netip.ParseAddr(ip.IP); err == nil && !slices.Contains(out, a.Unmap()) {
			out = append(out, a.Unmap())
		}
	}
	if a, err := netip.ParseAddr(pod.Status.PodIP); err == nil && !slices.Contains(out, a.Unmap()) {
		out = append(out, a.Unmap())
	}
	slices.SortStableFunc(out, func(a, b netip.Addr) int { return cmp.Compare(a.BitLen(), b.BitLen()) })
	return out
}

// podPorts are the pod's target ports of the Services of the namespace whose endpoints name
// it (ready or not: pod-addressed traffic goes to the pod whatever its readiness), with the
// protocol the Services give them; a port that one Service routes as HTTP is HTTP.
func (b *builder) podPorts(pod *corev1.Pod) map[uint32]*podPort {
	out := map[uint32]*podPort{}
	for _, host := range sortedKeys(b.services) {
		s := b.services[host]
		if s.svc == nil {
			continue
		}
		for _, list := range [][]svcPort{s.ports, s.tcp} {
			for _, port := range list {
				for _, es := range b.in.EndpointSlices {
					if es.Namespace != s.svc.Namespace || es.Labels[discoveryv1.LabelServiceName] != s.svc.Name || es.AddressType == discoveryv1.AddressTypeFQDN {
						continue
					}
					if !slices.ContainsFunc(es.Endpoints, func(e discoveryv1.Endpoint) bool {
						return e.TargetRef != nil && e.TargetRef.Kind == "Pod" && e.TargetRef.Name == pod.Name && cmp.Or(e.TargetRef.Namespace, es.Namespace) == pod.Namespace
					}) {
						continue
					}
					target := port.target
					for _, p := range es.Ports {
						if p.Port != nil && (p.Name == nil && port.name == "" || p.Name != nil && *p.Name == port.name) {
							target = uint32(*p.Port)
						}
					}
					if target == 0 {
						continue // a named target port the slice does not resolve
					}
					pp := out[target]
					if pp == nil {
						pp = &podPort{number: target}
						out[target] = pp
					}
					if !port.tcp {
						pp.http = true
						pp.http2 = pp.http2 || port.http2
					}
				}
			}
		}
	}
	return out
}

// podChain builds the chain, route configuration (HTTP only) and cluster of ip:port of pod.
func (b *builder) podChain(pod *corev1.Pod, ip netip.Addr, pp *podPort) (*listenerv3.FilterChain, *routev3.RouteConfiguration, *clusterv3.Cluster, error) {
	name := PodName(ip, pp.number)
	c := cluster(name, &svcPort{number: pp.number, http2: pp.http2, tcp: !pp.http}, nil, nil)
	c.ClusterDiscoveryType = &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC}
	c.EdsClusterConfig = nil
	c.LoadAssignment = &endpointv3.ClusterLoadAssignment{ClusterName: name, Endpoints: []*endpointv3.LocalityLbEndpoints{{LbEndpoints: []*endpointv3.LbEndpoint{{
		HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{Address: socketAddress(ip.String(), pp.number)}},
		HealthStatus:   corev3.HealthStatus_HEALTHY,
		Metadata:       b.endpointMetadata(pod),
	}}}}}
	if err := c.ValidateAll(); err != nil {
		return nil, nil, nil, err
	}
	match := &listenerv3.FilterChainMatch{
		DestinationPort: wrapperspb.UInt32(pp.number),
		PrefixRanges:    []*corev3.CidrRange{{AddressPrefix: ip.String(), PrefixLen: wrapperspb.UInt32(uint32(ip.BitLen()))}},
	}
	if !pp.http {
		fc, err := tcpChain(&service{}, pp.number, name)
		if err != nil {
			return nil, nil, nil, err
		}
		fc.Name, fc.FilterChainMatch = name, match
		return fc, nil, c, fc.ValidateAll()
	}
	rc := &routev3.RouteConfiguration{Name: name, ValidateClusters: wrapperspb.Bool(false), VirtualHosts: []*routev3.VirtualHost{{
		Name:    name,
		Domains: []string{"*"},
		Routes: []*routev3.Route{{
			Name:  "default",
			Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
			Action: &routev3.Route_Route{Route: &routev3.RouteAction{
				ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: name},
				Timeout:          durationpb.New(0),
				RetryPolicy:      defaultRetry(),
			}},
		}},
	}}}
	if err := rc.ValidateAll(); err != nil {
		return nil, nil, nil, err
	}
	fc, err := filterChain(pp.number, false, false)
	if err != nil {
		return nil, nil, nil, err
	}
	var hcm hcmv3.HttpConnectionManager
	if err := fc.Filters[0].GetTypedConfig().UnmarshalTo(&hcm); err != nil {
		return nil, nil, nil, err
	}
	hcm.StatPrefix = "inbound_" + name
	hcm.GetRds().RouteConfigName = name
	a, err := anypb.New(&hcm)
	if err != nil {
		return nil, nil, nil, err
	}
	fc.Filters[0].ConfigType = &listenerv3.Filter_TypedConfig{TypedConfig: a}
	fc.Name, fc.FilterChainMatch = name, match
	if err := fc.ValidateAll(); err != nil {
		return nil, nil, nil, err
	}
	return fc, rc, c, nil
}

// chainPorts are the distinct destination ports of chains, sorted.
func chainPorts(chains []*listenerv3.FilterChain) []uint32 {
	return sortedPorts(chains, func(fc *listenerv3.FilterChain) uint32 {
		return fc.GetFilterChainMatch().GetDestinationPort().GetValue()
	})
}
