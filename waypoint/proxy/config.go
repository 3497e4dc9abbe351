package proxy

import (
	"fmt"
	"net/netip"
	"slices"
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

// Config is one compiled configuration of the waypoint: the HTTP chains (a Service port's,
// matching any address, and a bound workload's, matching its pod address by prefix_ranges),
// each with its routes and its HTTP filters, and the TCP chains (tcp_proxy). A tunnel's
// destination selects the chain as Envoy does: by port, then the longest prefix range that
// contains the address (a chain without prefix ranges matches any address). It is
// immutable; the handler swaps it atomically.
type Config struct {
	chains map[uint16][]*chain    // HTTP chains by destination port
	tcp    map[uint16][]*tcpChain // TCP chains by destination port (see tcp.go)
}

// chain is one filter chain of the listener: the connection manager of a destination port
// (and, for a bound workload's chain, of its address).
type chain struct {
	name     string
	prefixes []netip.Prefix // filter_chain_match.prefix_ranges; empty matches any address
	routes   *route.Table
	rbac     []*rbacFilter // in filter order: audit, deny, allow
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
		if len(c.chains[p]) == 0 {
			out = append(out, p)
		}
	}
	return out
}

// pick selects the chain of a tunnel's destination as Envoy matches filter chains: by
// destination port, then the most specific prefix range containing the address among the
// HTTP and TCP chains of that port; a chain without prefix ranges matches any address. At
// most one of the results is non-nil; both are nil when no chain matches.
func (c *Config) pick(dst netip.AddrPort) (*chain, *tcpChain) {
	addr := dst.Addr().Unmap()
	bestLen := -2
	var hc *chain
	var tc *tcpChain
	better := func(prefixes []netip.Prefix) bool {
		n := -2
		if len(prefixes) == 0 {
			n = -1
		}
		for _, p := range prefixes {
			if p.Contains(addr) && p.Bits() > n {
				n = p.Bits()
			}
		}
		if n > bestLen {
			bestLen = n
			return true
		}
		return false
	}
	for _, ch := range c.chains[dst.Port()] {
		if better(ch.prefixes) {
			hc, tc = ch, nil
		}
	}
	for _, t := range c.tcp[dst.Port()] {
		if better(t.prefixes) {
			hc, tc = nil, t
		}
	}
	return hc, tc
}

// add adds a chain of port matching prefixes, refusing chains that would match the same
// connections as an earlier one (Envoy refuses such a listener too).
func (c *Config) add(path string, port uint16, name string, prefixes []netip.Prefix, hc *chain, tc *tcpChain) error {
	check := func(otherName string, other []netip.Prefix) error {
		if len(prefixes) == 0 && len(other) == 0 {
			return fmt.Errorf("%s.filter_chain_match.destination_port: %d has two chains matching every address (%q and %q)", path, port, otherName, name)
		}
		for _, p := range prefixes {
			if slices.Contains(other, p) {
				return fmt.Errorf("%s.filter_chain_match.prefix_ranges: %s on port %d is also matched by chain %q", path, p, port, otherName)
			}
		}
		return nil
	}
	for _, o := range c.chains[port] {
		if err := check(o.name, o.prefixes); err != nil {
			return err
		}
	}
	for _, o := range c.tcp[port] {
		if err := check(o.name, o.prefixes); err != nil {
			return err
		}
	}
	if hc != nil {
		c.chains[port] = append(c.chains[port], hc)
	} else {
		c.tcp[port] = append(c.tcp[port], tc)
	}
	return nil
}

// prefixRanges parses a chain's filter_chain_match.prefix_ranges.
func prefixRanges(path string, m *listenerv3.FilterChainMatch) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for i, r := range m.GetPrefixRanges() {
		a, err := netip.ParseAddr(r.GetAddressPrefix())
		if err != nil {
			return nil, fmt.Errorf("%s.filter_chain_match.prefix_ranges[%d].address_prefix: %w", path, i, err)
		}
		p, err := a.Unmap().Prefix(int(r.GetPrefixLen().GetValue()))
		if err != nil {
			return nil, fmt.Errorf("%s.filter_chain_match.prefix_ranges[%d].prefix_len: %w", path, i, err)
		}
		out = append(out, p)
	}
	return out, nil
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
	cfg := &Config{chains: map[uint16][]*chain{}, tcp: map[uint16][]*tcpChain{}}
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
				if err := cfg.add(path, uint16(port), tc.name, tc.prefixes, nil, tc); err != nil {
					return nil, err
				}
				continue
			}
			if f := firstSetField(fc.GetFilterChainMatch().ProtoReflect(), "destination_port", "prefix_ranges"); f != "" {
				return nil, fmt.Errorf("%s.filter_chain_match.%s: not supported by the waypoint; match destination_port and prefix_ranges only", path, f)
			}
			ch, err := compileChain(path, fc, tables)
			if err != nil {
				return nil, err
			}
			if ch.prefixes, err = prefixRanges(path, fc.GetFilterChainMatch()); err != nil {
				return nil, err
			}
			if err := cfg.add(path, uint16(port), ch.name, ch.prefixes, ch, nil); err != nil {
				return nil, err
			}
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
