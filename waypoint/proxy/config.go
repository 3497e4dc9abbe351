package proxy

import (
	"fmt"
	"strings"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	rbachttpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/rbac/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/weftmesh/weft/waypoint/rbac"
	"github.com/weftmesh/weft/waypoint/route"
)

// Filter names the waypoint implements in a connection manager's http_filters.
const (
	hcmFilter    = "envoy.filters.network.http_connection_manager"
	routerFilter = "envoy.filters.http.router"
)

// Config is one compiled configuration of the waypoint: a chain per HTTP service port, each
// with its routes and its HTTP filters, and the TCP chains (tcp_proxy, by destination port and
// address). It is immutable; the handler swaps it atomically.
type Config struct {
	chains map[uint16]*chain
	tcp    map[uint16][]*tcpChain // TCP chains by destination port (see tcp.go)
}

// chain is one filter chain of the listener: the connection manager of a destination port.
type chain struct {
	name   string
	routes *route.Table
	rbac   []*rbacFilter // in filter order: audit, deny, allow
}

// rbacFilter is one RBAC filter of a chain with the per-route overrides of its routes.
type rbacFilter struct {
	name     string
	base     *rbac.Filter
	perRoute map[*anypb.Any]*rbac.Filter
}

// filter returns the RBAC configuration that applies to a request routed by rt to c (c may
// be nil): the most specific per-route override, else the filter's own.
func (f *rbacFilter) filter(rt *route.Route, c *route.Cluster) *rbac.Filter {
	var a *anypb.Any
	switch {
	case c != nil:
		a = c.FilterConfig(f.name)
	case rt != nil:
		a = rt.FilterConfig(f.name)
	}
	if a != nil {
		if pr, ok := f.perRoute[a]; ok {
			return pr
		}
	}
	return f.base
}

// Ports returns the destination ports the configuration serves.
func (c *Config) Ports() []uint16 {
	out := make([]uint16, 0, len(c.chains)+len(c.tcp))
	for p := range c.chains {
		out = append(out, p)
	}
	for p := range c.tcp {
		if c.chains[p] == nil {
			out = append(out, p)
		}
	}
	return out
}

// Compile builds a Config from the waypoint's Listener and RouteConfigurations. Every field
// that changes behaviour is implemented or refused with an error naming it (the caller NACKs
// and keeps the last good configuration). Listeners other than main_internal are refused.
func Compile(listeners []*listenerv3.Listener, routes []*routev3.RouteConfiguration) (*Config, error) {
	tables := make(map[string]*route.Table, len(routes))
	for _, rc := range routes {
		t, err := route.Compile(rc)
		if err != nil {
			return nil, fmt.Errorf("route configuration %q: %w", rc.GetName(), err)
		}
		tables[rc.GetName()] = t
	}
	cfg := &Config{chains: map[uint16]*chain{}, tcp: map[uint16][]*tcpChain{}}
	for _, l := range listeners {
		for i, fc := range l.GetFilterChains() {
			path := fmt.Sprintf("listener %q: filter_chains[%d]", l.GetName(), i)
			port := fc.GetFilterChainMatch().GetDestinationPort().GetValue()
			if port == 0 || port > 65535 {
				return nil, fmt.Errorf("%s.filter_chain_match.destination_port: %d is not a port; the waypoint selects chains by the tunnel's destination port", path, port)
			}
			if isTCPChain(fc) {
				tc, err := compileTCPChain(path, fc)
				if err != nil {
					return nil, err
				}
				if err := cfg.addTCP(path, uint16(port), tc); err != nil {
					return nil, err
				}
				continue
			}
			if len(fc.GetFilterChainMatch().GetPrefixRanges()) > 0 {
				return nil, fmt.Errorf("%s.filter_chain_match.prefix_ranges: not supported on HTTP chains (the virtual host selects the service); remove them", path)
			}
			if _, dup := cfg.chains[uint16(port)]; dup || cfg.tcpWithoutPrefix(uint16(port)) {
				return nil, fmt.Errorf("%s.filter_chain_match.destination_port: %d has two chains", path, port)
			}
			ch, err := compileChain(path, fc, tables)
			if err != nil {
				return nil, err
			}
			cfg.chains[uint16(port)] = ch
		}
	}
	return cfg, nil
}

func compileChain(path string, fc *listenerv3.FilterChain, tables map[string]*route.Table) (*chain, error) {
	if len(fc.GetFilters()) != 1 || fc.GetFilters()[0].GetName() != hcmFilter {
		return nil, fmt.Errorf("%s.filters: want exactly one %s", path, hcmFilter)
	}
	var hcm hcmv3.HttpConnectionManager
	if err := fc.GetFilters()[0].GetTypedConfig().UnmarshalTo(&hcm); err != nil {
		return nil, fmt.Errorf("%s.filters[0].typed_config: %w", path, err)
	}
	rds := hcm.GetRds().GetRouteConfigName()
	if rds == "" {
		return nil, fmt.Errorf("%s: the connection manager must name its routes with rds.route_config_name", path)
	}
	ch := &chain{name: fc.GetName(), routes: tables[rds]}
	if ch.routes == nil {
		ch.routes = &route.Table{} // routes not received yet: every request is 404 (NR), as Envoy does
	}
	router := false
	for i, hf := range hcm.GetHttpFilters() {
		fpath := fmt.Sprintf("%s.http_filters[%d] (%s)", path, i, hf.GetName())
		if router {
			return nil, fmt.Errorf("%s: the router must be the last filter", fpath)
		}
		switch name := hf.GetName(); {
		case name == routerFilter:
			router = true
		case name == route.FaultFilter || name == route.CorsFilter:
			// Configured per route (typed_per_filter_config); the filter itself has no settings the waypoint needs.
		case strings.HasPrefix(name, route.RBACFilterPrefix):
			f, err := compileRBAC(fpath, name, hf.GetTypedConfig(), ch.routes)
			if err != nil {
				return nil, err
			}
			ch.rbac = append(ch.rbac, f)
		default:
			return nil, fmt.Errorf("%s: filter not supported by the waypoint", fpath)
		}
	}
	if !router {
		return nil, fmt.Errorf("%s.http_filters: no %s", path, routerFilter)
	}
	return ch, nil
}

// compileRBAC compiles an RBAC filter and every per-route override of it in t.
func compileRBAC(path, name string, a *anypb.Any, t *route.Table) (*rbacFilter, error) {
	var cfg rbachttpv3.RBAC
	if err := a.UnmarshalTo(&cfg); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	base, err := rbac.Compile(&cfg)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	f := &rbacFilter{name: name, base: base, perRoute: map[*anypb.Any]*rbac.Filter{}}
	add := func(where string, a *anypb.Any) error {
		if a == nil || f.perRoute[a] != nil {
			return nil
		}
		var pr rbachttpv3.RBACPerRoute
		if err := a.UnmarshalTo(&pr); err != nil {
			return fmt.Errorf("%s: typed_per_filter_config[%q]: %w", where, name, err)
		}
		c, err := rbac.CompilePerRoute(&pr)
		if err != nil {
			return fmt.Errorf("%s: typed_per_filter_config[%q]: %w", where, name, err)
		}
		f.perRoute[a] = c
		return nil
	}
	for _, vh := range t.VirtualHosts() {
		if err := add("virtual host "+vh.Name, vh.FilterConfig(name)); err != nil {
			return nil, err
		}
		for _, rt := range vh.Routes {
			if err := add("route "+rt.Name, rt.FilterConfig(name)); err != nil {
				return nil, err
			}
			if rt.Forward != nil {
				for _, c := range rt.Forward.Clusters {
					if err := add("route "+rt.Name+" cluster "+c.Name, c.FilterConfig(name)); err != nil {
						return nil, err
					}
				}
			}
		}
	}
	return f, nil
}
