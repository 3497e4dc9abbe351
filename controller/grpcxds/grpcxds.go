package grpcxds

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	corsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/cors/v3"
	faultv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/fault/v3"
	rbachttpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/rbac/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
)

// ServerListenerPrefix starts the name of a server-side Listener; the rest is the address
// the gRPC server listens on ("ip:port", "[ipv6]:port"). Bootstraps set
// server_listener_resource_name_template to ServerListenerPrefix + "%s".
const ServerListenerPrefix = "grpc/server?xds.resource.listening_address="

// hcmName is the network filter name of the HTTP connection manager.
const hcmName = "envoy.filters.network.http_connection_manager"

// Input is one waypoint's configuration; nothing in it is modified.
type Input struct {
	Listener  *listenerv3.Listener // nil: no HTTP port, nothing to serve
	Routes    []*routev3.RouteConfiguration
	Clusters  []*clusterv3.Cluster
	Endpoints []*endpointv3.ClusterLoadAssignment
}

// Resources are what a proxyless gRPC node is served. Routes, Clusters and Endpoints are
// Input's (the same messages).
type Resources struct {
	Listeners []*listenerv3.Listener // client listeners, then the server listeners asked for
	Routes    []*routev3.RouteConfiguration
	Clusters  []*clusterv3.Cluster
	Endpoints []*endpointv3.ClusterLoadAssignment
}

// Build returns the resources of a gRPC node that asked for the server listeners named
// servers (names without ServerListenerPrefix are ignored).
func Build(in Input, servers []string) (*Resources, error) {
	out := &Resources{Routes: in.Routes, Clusters: in.Clusters, Endpoints: in.Endpoints}
	ls, err := ClientListeners(in)
	if err != nil {
		return nil, err
	}
	out.Listeners = ls
	for _, name := range servers {
		if !strings.HasPrefix(name, ServerListenerPrefix) {
			continue
		}
		l, err := ServerListener(in, name)
		if err != nil {
			return nil, err
		}
		out.Listeners = append(out.Listeners, l)
	}
	return out, nil
}

// ServerListenerName is the name of the server listener for addr.
func ServerListenerName(addr netip.AddrPort) string { return ServerListenerPrefix + addr.String() }

// ParseServerListenerName returns the listening address a server listener's name carries.
func ParseServerListenerName(name string) (netip.AddrPort, error) {
	rest, ok := strings.CutPrefix(name, ServerListenerPrefix)
	if !ok {
		return netip.AddrPort{}, fmt.Errorf("listener %q: a server listener's name starts with %q", name, ServerListenerPrefix)
	}
	ap, err := netip.ParseAddrPort(rest)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("listener %q: the listening address must be ip:port or [ipv6]:port: %w", name, err)
	}
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), nil
}

// filterKind is what a gRPC node does with one HTTP filter of the waypoint.
type filterKind int

const (
	clientFilter filterKind = iota // fault: applied by the client
	serverFilter                   // RBAC: applied by the server
	routerFilter                   // the router: last on both sides
	dropFilter                     // CORS: no meaning for gRPC
)

// kindOf classifies f by the type of its config; any other type is an error.
func kindOf(path string, f *hcmv3.HttpFilter) (filterKind, error) {
	a := f.GetTypedConfig()
	switch {
	case a == nil:
		return 0, fmt.Errorf("%s (%s): typed_config is required", path, f.GetName())
	case a.MessageIs(&faultv3.HTTPFault{}):
		return clientFilter, nil
	case a.MessageIs(&rbachttpv3.RBAC{}):
		return serverFilter, nil
	case a.MessageIs(&routerv3.Router{}):
		return routerFilter, nil
	case a.MessageIs(&corsv3.Cors{}):
		return dropFilter, nil
	}
	return 0, fmt.Errorf("%s (%s): filter type %s has no proxyless gRPC equivalent known to the controller; extend controller/grpcxds before serving it", path, f.GetName(), a.GetTypeUrl())
}

// chain is one filter chain of the waypoint's listener.
type chain struct {
	path string
	hcm  *hcmv3.HttpConnectionManager
}

// chains returns the connection manager of every filter chain of l, by route name.
func chains(l *listenerv3.Listener) (map[string]chain, error) {
	out := map[string]chain{}
	if l == nil {
		return out, nil
	}
	for i, fc := range l.GetFilterChains() {
		path := fmt.Sprintf("listener %s: filter_chains[%d]", l.GetName(), i)
		if len(fc.GetFilters()) != 1 {
			return nil, fmt.Errorf("%s: want exactly one network filter (the HTTP connection manager), have %d", path, len(fc.GetFilters()))
		}
		hcm := &hcmv3.HttpConnectionManager{}
		if a := fc.GetFilters()[0].GetTypedConfig(); a == nil || !a.MessageIs(hcm) {
			return nil, fmt.Errorf("%s.filters[0]: want an HTTP connection manager", path)
		} else if err := a.UnmarshalTo(hcm); err != nil {
			return nil, fmt.Errorf("%s.filters[0]: %w", path, err)
		}
		name := hcm.GetRds().GetRouteConfigName()
		if name == "" {
			return nil, fmt.Errorf("%s: the connection manager must name its routes with rds.route_config_name", path)
		}
		if _, dup := out[name]; dup {
			return nil, fmt.Errorf("%s: a second chain for routes %q", path, name)
		}
		out[name] = chain{path: path, hcm: hcm}
	}
	return out, nil
}

// ClientListeners returns a client listener (api_listener) per virtual host of the routes
// the waypoint's listener uses, named like the virtual host ("<host>:<port>"), sorted.
func ClientListeners(in Input) ([]*listenerv3.Listener, error) {
	cs, err := chains(in.Listener)
	if err != nil {
		return nil, err
	}
	var out []*listenerv3.Listener
	for _, rc := range in.Routes {
		ch, ok := cs[rc.GetName()]
		if !ok {
			continue // no chain uses it
		}
		hcm := proto.Clone(ch.hcm).(*hcmv3.HttpConnectionManager)
		hcm.HttpFilters = nil
		for i, f := range ch.hcm.GetHttpFilters() {
			k, err := kindOf(fmt.Sprintf("%s: http_filters[%d]", ch.path, i), f)
			if err != nil {
				return nil, err
			}
			if k == clientFilter || k == routerFilter {
				hcm.HttpFilters = append(hcm.HttpFilters, f)
			}
		}
		a, err := anypb.New(hcm)
		if err != nil {
			return nil, err
		}
		for _, vh := range rc.GetVirtualHosts() {
			l := &listenerv3.Listener{Name: vh.GetName(), ApiListener: &listenerv3.ApiListener{ApiListener: a}}
			if err := l.ValidateAll(); err != nil {
				return nil, fmt.Errorf("client listener %s: %w", vh.GetName(), err)
			}
			out = append(out, l)
		}
	}
	slices.SortFunc(out, func(a, b *listenerv3.Listener) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// ServerListener returns the server listener of the given name (see the package doc).
func ServerListener(in Input, name string) (*listenerv3.Listener, error) {
	addr, err := ParseServerListenerName(name)
	if err != nil {
		return nil, err
	}
	cs, err := chains(in.Listener)
	if err != nil {
		return nil, err
	}
	routes := map[string]*routev3.RouteConfiguration{}
	for _, rc := range in.Routes {
		routes[rc.GetName()] = rc
	}
	// The service ports addr is an endpoint of: route name → virtual host names.
	want := map[string]map[string]bool{}
	for _, cla := range in.Endpoints {
		if !hasEndpoint(cla, addr) {
			continue
		}
		port, host, ok := parseClusterName(cla.GetClusterName())
		if !ok {
			continue
		}
		if want[port] == nil {
			want[port] = map[string]bool{}
		}
		want[port][host+":"+port] = true
	}
	rc := &routev3.RouteConfiguration{Name: "inbound|" + strconv.Itoa(int(addr.Port()))}
	var filters []*hcmv3.HttpFilter
	var from string
	for _, port := range sortedKeys(want) {
		ch, ok := cs[port]
		r := routes[port]
		if !ok || r == nil {
			continue
		}
		fs, err := serverFilters(ch)
		if err != nil {
			return nil, err
		}
		if filters == nil {
			filters, from = fs, ch.path
		} else if !equalFilters(filters, fs) {
			return nil, fmt.Errorf("server listener %s: the RBAC filters of %s and %s differ, and one gRPC server listener has one filter list", name, from, ch.path)
		}
		for _, vh := range r.GetVirtualHosts() {
			if !want[port][vh.GetName()] {
				continue
			}
			for i, rt := range vh.GetRoutes() {
				for k, a := range rt.GetTypedPerFilterConfig() {
					if a.MessageIs(&rbachttpv3.RBACPerRoute{}) {
						return nil, fmt.Errorf("route configuration %s: virtual_hosts[%s].routes[%d].typed_per_filter_config[%s]: per-route RBAC cannot be applied by a gRPC server listener (it has no routes); put it on the virtual host", port, vh.GetName(), i, k)
					}
				}
			}
			rc.VirtualHosts = append(rc.VirtualHosts, &routev3.VirtualHost{
				Name:                 vh.GetName(),
				Domains:              vh.GetDomains(),
				TypedPerFilterConfig: vh.GetTypedPerFilterConfig(),
				Routes: []*routev3.Route{{
					Match:  &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
					Action: &routev3.Route_NonForwardingAction{NonForwardingAction: &routev3.NonForwardingAction{}},
				}},
			})
		}
	}
	if filters == nil { // no service: no virtual host, every RPC is refused
		a, err := anypb.New(&routerv3.Router{})
		if err != nil {
			return nil, err
		}
		filters = []*hcmv3.HttpFilter{{Name: "envoy.filters.http.router", ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: a}}}
	}
	hcm := &hcmv3.HttpConnectionManager{
		StatPrefix:     "inbound_grpc",
		CodecType:      hcmv3.HttpConnectionManager_AUTO,
		RouteSpecifier: &hcmv3.HttpConnectionManager_RouteConfig{RouteConfig: rc},
		HttpFilters:    filters,
	}
	a, err := anypb.New(hcm)
	if err != nil {
		return nil, err
	}
	l := &listenerv3.Listener{
		Name: name,
		Address: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
			Address: addr.Addr().String(), PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: uint32(addr.Port())},
		}}},
		FilterChains: []*listenerv3.FilterChain{{
			Name:    "inbound",
			Filters: []*listenerv3.Filter{{Name: hcmName, ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: a}}},
		}},
	}
	if err := l.ValidateAll(); err != nil {
		return nil, fmt.Errorf("server listener %s: %w", name, err)
	}
	return l, nil
}

// serverFilters returns the RBAC filters and the router of ch, the same messages.
func serverFilters(ch chain) ([]*hcmv3.HttpFilter, error) {
	var out []*hcmv3.HttpFilter
	for i, f := range ch.hcm.GetHttpFilters() {
		k, err := kindOf(fmt.Sprintf("%s: http_filters[%d]", ch.path, i), f)
		if err != nil {
			return nil, err
		}
		if k == serverFilter || k == routerFilter {
			out = append(out, f)
		}
	}
	return out, nil
}

func equalFilters(a, b []*hcmv3.HttpFilter) bool {
	return slices.EqualFunc(a, b, func(x, y *hcmv3.HttpFilter) bool { return proto.Equal(x, y) })
}

// hasEndpoint reports whether cla has an endpoint at addr (any address with its port when
// addr's address is unspecified).
func hasEndpoint(cla *endpointv3.ClusterLoadAssignment, addr netip.AddrPort) bool {
	for _, loc := range cla.GetEndpoints() {
		for _, ep := range loc.GetLbEndpoints() {
			sa := ep.GetEndpoint().GetAddress().GetSocketAddress()
			if sa == nil || sa.GetPortValue() != uint32(addr.Port()) {
				continue
			}
			if addr.Addr().IsUnspecified() {
				return true
			}
			if ip, err := netip.ParseAddr(sa.GetAddress()); err == nil && ip.Unmap() == addr.Addr() {
				return true
			}
		}
	}
	return false
}

// parseClusterName splits Istio's "outbound|<port>|<subset>|<host>".
func parseClusterName(name string) (port, host string, ok bool) {
	parts := strings.Split(name, "|")
	if len(parts) != 4 || parts[0] != "outbound" || parts[1] == "" || parts[3] == "" {
		return "", "", false
	}
	return parts[1], parts[3], true
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
