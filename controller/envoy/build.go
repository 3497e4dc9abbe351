package envoy

import (
	"cmp"
	"fmt"
	"slices"
	"strconv"
	"strings"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
)

// Input is what one waypoint's configuration is built from. Objects of other namespaces are
// ignored; the objects are read, never modified.
type Input struct {
	// Namespace is the waypoint's namespace: the services it fronts and the rules that apply.
	Namespace        string
	Services         []*corev1.Service
	EndpointSlices   []*discoveryv1.EndpointSlice
	Pods             []*corev1.Pod // their labels select DestinationRule subsets
	VirtualServices  []*networkingv1.VirtualService
	DestinationRules []*networkingv1.DestinationRule
	// HTTPRoutes are Gateway API routes; those with a parentRef to a Service of the namespace
	// (kind Service, group "": GAMMA) route that service's requests, as in Istio's waypoint.
	HTTPRoutes []*gatewayv1.HTTPRoute
	// ServiceEntries add external hosts (resolution DNS or STATIC) that routes can name.
	ServiceEntries []*networkingv1.ServiceEntry
	// NamespaceLabels are the labels of the namespace (its istio.io/dataplane-mode enrolls its
	// pods, as translate.Enrolled decides); nil means none.
	NamespaceLabels map[string]string
	// Workloads are the uids (translate.WorkloadUID) of the pods whose pod-addressed traffic
	// traverses this waypoint (translate.Waypoint.Workloads: its istio.io/waypoint-for is
	// workload or all); each gets chains of its own (see [PodName]). Pods of other namespaces
	// are reported and not served.
	Workloads []string
}

// Options are the mesh-wide settings of a translation.
type Options struct {
	// ClusterDomain is the DNS suffix of services; empty means "cluster.local".
	ClusterDomain string
	// TrustDomain of the workload identities in endpoint metadata; empty means "cluster.local".
	TrustDomain string
}

// ListenerName is the name of the Listener: like Istio's waypoint, an internal listener to
// which the waypoint hands each request it took out of an HBONE tunnel, with the destination
// port of the tunnel's :authority (VIP:port) selecting the filter chain.
const ListenerName = "main_internal"

// Config is the translation of one namespace. Every resource passed its ValidateAll(); the
// slices are sorted by name.
type Config struct {
	// Listener has a filter chain per HTTP service port, one per TCP (non-HTTP) port of
	// each Service with a cluster IP and those of the bound workloads ([PodName]); nil when
	// there is none.
	Listener  *listenerv3.Listener
	Routes    []*routev3.RouteConfiguration
	Clusters  []*clusterv3.Cluster
	Endpoints []*endpointv3.ClusterLoadAssignment
	// Problems are what could not be translated, sorted, without duplicates.
	Problems []Problem
}

// Problem is a part of a VirtualService, DestinationRule, HTTPRoute or ServiceEntry (or of the generated
// configuration) that could not be translated, and what was done about it.
type Problem struct {
	Kind      string // VirtualService, DestinationRule, HTTPRoute, ServiceEntry, Listener…
	Namespace string
	Name      string
	Field     string // path in the object, e.g. spec.http[0].fault.abort.grpcStatus
	Message   string // what is wrong and what was done (ignored, route dropped…)
	Fix       string
}

func (p Problem) Error() string {
	s := fmt.Sprintf("%s %s/%s: %s: %s", p.Kind, p.Namespace, p.Name, p.Field, p.Message)
	if p.Fix != "" {
		s += " (fix: " + p.Fix + ")"
	}
	return s
}

// ClusterName is Istio's name of the cluster of a service port and subset ("" for none).
func ClusterName(port uint32, subset, host string) string {
	return fmt.Sprintf("outbound|%d|%s|%s", port, subset, host)
}

// RouteName is the name of the RouteConfiguration of a service port.
func RouteName(port uint32) string { return strconv.FormatUint(uint64(port), 10) }

type svcPort struct {
	name   string
	number uint32
	target uint32 // 0: a named target port, resolved per endpoint
	http2  bool   // HTTP/2 or gRPC to the upstream
	tcp    bool   // a TCP port served by tcp_proxy (not HTTP)
}

type service struct {
	svc   *corev1.Service            // nil for a ServiceEntry host
	se    *networkingv1.ServiceEntry // set for a ServiceEntry host
	host  string                     // FQDN
	vips  []string
	ports []svcPort // the HTTP ports
	tcp   []svcPort // the other TCP ports (tcp_proxy)
}

func (s *service) port(n uint32) *svcPort {
	for i := range s.ports {
		if s.ports[i].number == n {
			return &s.ports[i]
		}
	}
	return nil
}

type builder struct {
	in       Input
	domain   string
	td       string
	services map[string]*service // by FQDN
	alias    map[string]*service // every name a rule of the namespace may use
	pods     map[string]*corev1.Pod
	drs      map[string]*destinationRule // the winning rule by FQDN
	vss      map[string]*networkingv1.VirtualService
	hrs      map[string][]routeRef // HTTPRoute attachments by service FQDN
	external map[string]*service   // ServiceEntry hosts
	ses      map[string]*service   // by ServiceEntry name: its first host
	problems []Problem
	// podClusters are the clusters of the bound workloads' chains, built with the listener.
	podClusters []*clusterv3.Cluster
}

// Build translates in.
func Build(in Input, o Options) *Config {
	b := &builder{
		in:       in,
		domain:   cmp.Or(o.ClusterDomain, "cluster.local"),
		td:       cmp.Or(o.TrustDomain, "cluster.local"),
		services: map[string]*service{},
		alias:    map[string]*service{},
		pods:     map[string]*corev1.Pod{},
		drs:      map[string]*destinationRule{},
		vss:      map[string]*networkingv1.VirtualService{},
		hrs:      map[string][]routeRef{},
		external: map[string]*service{},
		ses:      map[string]*service{},
	}
	b.indexServices()
	for _, p := range in.Pods {
		if p.Namespace == in.Namespace {
			b.pods[p.Name] = p
		}
	}
	b.indexServiceEntries()
	b.indexDestinationRules()
	b.indexVirtualServices()
	b.indexHTTPRoutes()

	cfg := &Config{}
	cfg.Clusters, cfg.Endpoints = b.clusters()
	cfg.Clusters = append(cfg.Clusters, b.externalClusters()...)
	known := map[string]bool{}
	for _, c := range cfg.Clusters {
		known[c.Name] = true
	}
	cfg.Routes, cfg.Listener = b.routes(known)
	cfg.Clusters = append(b.podClusters, cfg.Clusters...) // "inbound-pod|…" sort before "outbound|…"
	slices.SortFunc(b.problems, func(a, b Problem) int { return strings.Compare(a.Error(), b.Error()) })
	cfg.Problems = slices.Compact(b.problems)
	return cfg
}

func (b *builder) problem(kind string, m metav1.ObjectMeta, field, msg, fix string) {
	b.problems = append(b.problems, Problem{Kind: kind, Namespace: m.Namespace, Name: m.Name, Field: field, Message: msg, Fix: fix})
}

func (b *builder) indexServices() {
	ns := b.in.Namespace
	for _, svc := range b.in.Services {
		if svc.Namespace != ns || svc.Spec.Type == corev1.ServiceTypeExternalName {
			continue
		}
		s := &service{svc: svc, host: svc.Name + "." + ns + ".svc." + b.domain}
		if svc.Spec.ClusterIP != "" && svc.Spec.ClusterIP != corev1.ClusterIPNone {
			s.vips = slices.Clone(svc.Spec.ClusterIPs)
			if len(s.vips) == 0 {
				s.vips = []string{svc.Spec.ClusterIP}
			}
		}
		for _, p := range svc.Spec.Ports {
			if p.Protocol != "" && p.Protocol != corev1.ProtocolTCP {
				continue
			}
			proto, ok := httpProtocol(p)
			sp := svcPort{name: p.Name, number: uint32(p.Port), http2: proto != "http", tcp: !ok}
			if p.TargetPort.IntValue() > 0 {
				sp.target = uint32(p.TargetPort.IntValue())
			} else if p.TargetPort.StrVal == "" {
				sp.target = uint32(p.Port)
			}
			if ok {
				s.ports = append(s.ports, sp)
			} else {
				sp.http2 = false
				s.tcp = append(s.tcp, sp)
			}
		}
		b.services[s.host] = s
		for _, a := range []string{svc.Name, svc.Name + "." + ns, svc.Name + "." + ns + ".svc", s.host} {
			b.alias[a] = s
		}
	}
}

// httpProtocol is Istio's protocol selection for the ports a waypoint routes at L7: the
// port's appProtocol, else its name's prefix. Other TCP ports are relayed by tcp_proxy.
func httpProtocol(p corev1.ServicePort) (string, bool) {
	proto := strings.ToLower(p.Name)
	if p.AppProtocol != nil {
		proto = strings.ToLower(*p.AppProtocol)
	}
	switch {
	case proto == "kubernetes.io/h2c" || proto == "http2" || strings.HasPrefix(proto, "http2-"):
		return "http2", true
	case proto == "grpc" || strings.HasPrefix(proto, "grpc-"):
		return "grpc", true
	case proto == "http" || strings.HasPrefix(proto, "http-"):
		return "http", true
	}
	return "", false
}

// resolve finds the service a rule's host names; short names are relative to the namespace.
func (b *builder) resolve(host string) *service { return b.alias[host] }

// resolveDest finds the service or ServiceEntry host a destination names.
func (b *builder) resolveDest(host string) *service {
	if s := b.alias[host]; s != nil {
		return s
	}
	return b.external[host]
}

// oldestFirst orders objects as Istio resolves conflicts: the oldest wins, then by name.
func oldestFirst(a, b metav1.ObjectMeta) int {
	if c := a.CreationTimestamp.Compare(b.CreationTimestamp.Time); c != 0 {
		return c
	}
	return strings.Compare(a.Name, b.Name)
}

func (b *builder) indexVirtualServices() {
	vss := slices.Clone(b.in.VirtualServices)
	slices.SortFunc(vss, func(x, y *networkingv1.VirtualService) int { return oldestFirst(x.ObjectMeta, y.ObjectMeta) })
	for _, vs := range vss {
		if vs.Namespace != b.in.Namespace {
			continue
		}
		if len(vs.Spec.Gateways) > 0 && !slices.Contains(vs.Spec.Gateways, "mesh") {
			continue // for ingress gateways only
		}
		if len(vs.Spec.Http) == 0 {
			if len(vs.Spec.Tcp) > 0 || len(vs.Spec.Tls) > 0 {
				b.problem("VirtualService", vs.ObjectMeta, "spec.tcp", "tcp and tls routes are not supported by the waypoint; the VirtualService is ignored", "use http routes for HTTP services")
			}
			continue
		}
		for i, h := range vs.Spec.Hosts {
			field := fmt.Sprintf("spec.hosts[%d]", i)
			var matched []*service
			if strings.HasPrefix(h, "*") {
				for _, s := range b.services {
					if h == "*" || strings.HasSuffix(s.host, h[1:]) {
						matched = append(matched, s)
					}
				}
			} else if s := b.resolve(h); s != nil {
				matched = append(matched, s)
			}
			if len(matched) == 0 {
				b.problem("VirtualService", vs.ObjectMeta, field, fmt.Sprintf("host %q is not a service of namespace %s; ignored", h, b.in.Namespace), "name a Service of the waypoint's namespace")
				continue
			}
			for _, s := range matched {
				if len(s.ports) == 0 {
					if !strings.HasPrefix(h, "*") {
						b.problem("VirtualService", vs.ObjectMeta, field, fmt.Sprintf("service %s has no HTTP port; its http routes do not apply", s.host), "name the service's HTTP ports http…, http2… or grpc…, or set their appProtocol")
					}
					continue
				}
				if first := b.vss[s.host]; first != nil && first != vs {
					b.problem("VirtualService", vs.ObjectMeta, field, fmt.Sprintf("host %s already has VirtualService %s (older); this one is ignored for it", s.host, first.Name), "merge the rules into one VirtualService")
					continue
				}
				b.vss[s.host] = vs
			}
		}
	}
}

// domains are the names and addresses a request for s on port may carry in :authority.
func (s *service) domains(port uint32) []string {
	p := ":" + strconv.FormatUint(uint64(port), 10)
	names := []string{s.host}
	if s.svc != nil {
		ns := s.svc.Namespace
		names = append(names, s.svc.Name+"."+ns+".svc", s.svc.Name+"."+ns, s.svc.Name)
	}
	var out []string
	for _, n := range names {
		out = append(out, n, n+p)
	}
	for _, v := range s.vips {
		if strings.Contains(v, ":") {
			out = append(out, "["+v+"]", "["+v+"]"+p)
		} else {
			out = append(out, v, v+p)
		}
	}
	return out
}

// endpoints returns the ready endpoints of s on port whose pods carry every label of sel.
func (b *builder) endpoints(s *service, port *svcPort, sel map[string]string) []*endpointv3.LbEndpoint {
	type ep struct {
		addr string
		port uint32
		pod  *corev1.Pod // nil when the endpoint names no pod of the namespace
	}
	var eps []ep
	seen := map[[2]string]bool{}
	for _, es := range b.in.EndpointSlices {
		if es.Namespace != s.svc.Namespace || es.Labels[discoveryv1.LabelServiceName] != s.svc.Name || es.AddressType == discoveryv1.AddressTypeFQDN {
			continue
		}
		target := port.target
		for _, p := range es.Ports {
			if p.Port != nil && (p.Name == nil && port.name == "" || p.Name != nil && *p.Name == port.name) {
				target = uint32(*p.Port)
			}
		}
		if target == 0 {
			target = port.number
		}
		for _, e := range es.Endpoints {
			if len(e.Addresses) == 0 || e.Conditions.Ready != nil && !*e.Conditions.Ready {
				continue
			}
			var pod *corev1.Pod
			if e.TargetRef != nil && e.TargetRef.Kind == "Pod" {
				pod = b.pods[e.TargetRef.Name]
			}
			if len(sel) > 0 && (pod == nil || !matches(sel, pod.Labels)) {
				continue
			}
			k := [2]string{e.Addresses[0], strconv.FormatUint(uint64(target), 10)}
			if !seen[k] {
				seen[k] = true
				eps = append(eps, ep{e.Addresses[0], target, pod})
			}
		}
	}
	slices.SortFunc(eps, func(a, b ep) int { return cmp.Or(strings.Compare(a.addr, b.addr), cmp.Compare(a.port, b.port)) })
	out := make([]*endpointv3.LbEndpoint, len(eps))
	for i, e := range eps {
		out[i] = &endpointv3.LbEndpoint{
			HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{Address: socketAddress(e.addr, e.port)}},
			HealthStatus:   corev3.HealthStatus_HEALTHY,
			Metadata:       b.endpointMetadata(e.pod),
		}
	}
	return out
}

func matches(sel, labels map[string]string) bool {
	for k, v := range sel {
		if l, ok := labels[k]; !ok || l != v {
			return false
		}
	}
	return true
}

func socketAddress(addr string, port uint32) *corev3.Address {
	return &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
		Address: addr, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: port},
	}}}
}

func ads() *corev3.ConfigSource {
	return &corev3.ConfigSource{ResourceApiVersion: corev3.ApiVersion_V3, ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}}}
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
