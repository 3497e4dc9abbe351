package waypointcfg

import (
	"fmt"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	rbacv3 "github.com/envoyproxy/go-control-plane/envoy/config/rbac/v3"
	rbachttpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/rbac/v3"
	rbacnetv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/rbac/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/weftmesh/weft/controller/envoy"
	"github.com/weftmesh/weft/controller/rbac"
)

// Names of the network RBAC filters of TCP chains, in the order they run.
const (
	NetworkAuditFilter = "envoy.filters.network.rbac.audit"
	NetworkDenyFilter  = "envoy.filters.network.rbac.deny"
	NetworkAllowFilter = "envoy.filters.network.rbac.allow"
)

// networkStatPrefix is the stat_prefix of the network RBAC filters, as Istio's ("tcp.").
const networkStatPrefix = "tcp."

var networkFilters = [...]struct {
	name   string
	action rbacv3.RBAC_Action
}{{NetworkAuditFilter, rbacv3.RBAC_LOG}, {NetworkDenyFilter, rbacv3.RBAC_DENY}, {NetworkAllowFilter, rbacv3.RBAC_ALLOW}}

// withNetworkFilters returns a copy of l whose TCP chains (tcp_proxy) have the network RBAC
// filters of their Service (authz.Services, keyed by the chain's name "<host>:<port>") or of
// the waypoint (authz.Gateway) before tcp_proxy.
func withNetworkFilters(l *listenerv3.Listener, authz rbac.Output, suffix string) (*listenerv3.Listener, error) {
	out := proto.Clone(l).(*listenerv3.Listener)
	for _, fc := range out.FilterChains {
		if len(fc.Filters) != 1 || fc.Filters[0].Name != envoy.TCPProxyFilter {
			continue
		}
		fs := authz.Gateway
		if own, ok := authz.Services[serviceKey(fc.Name, suffix)]; ok {
			fs = own
		}
		var add []*listenerv3.Filter
		for _, f := range networkFilters {
			cfg := NetworkRBAC(forAction(fs, f.action))
			if err := cfg.ValidateAll(); err != nil {
				return nil, fmt.Errorf("filter chain %s: %s: %w", fc.Name, f.name, err)
			}
			a, err := anypb.New(cfg)
			if err != nil {
				return nil, err
			}
			add = append(add, &listenerv3.Filter{Name: f.name, ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: a}})
		}
		fc.Filters = append(add, fc.Filters...)
	}
	if err := out.ValidateAll(); err != nil {
		return nil, err
	}
	return out, nil
}

// NetworkRBAC is the network RBAC filter config (stat_prefix "tcp.") that enforces f on TCP
// connections, as Istio's waypoint does for TCP: what needs HTTP attributes (headers,
// paths, methods, hosts, metadata, SNI…) is replaced, in the safe direction, by a constant.
// In ALLOW rules it matches nothing (the connection is never allowed by it: a rule with
// methods matches no TCP connection), in DENY and AUDIT rules it matches everything (the
// rule keeps its L4 parts and denies more, never less). Under a not_rule/not_id the constant
// is inverted, so e.g. notMethods in an ALLOW rule also makes it match nothing.
func NetworkRBAC(f *rbachttpv3.RBAC) *rbacnetv3.RBAC {
	return &rbacnetv3.RBAC{
		StatPrefix:            networkStatPrefix,
		Rules:                 l4Rules(f.GetRules()),
		ShadowRules:           l4Rules(f.GetShadowRules()),
		ShadowRulesStatPrefix: f.GetShadowRulesStatPrefix(),
	}
}

func l4Rules(r *rbacv3.RBAC) *rbacv3.RBAC {
	if r == nil {
		return nil
	}
	// narrow: the result must match no more than r does (ALLOW); otherwise no less.
	narrow := r.GetAction() == rbacv3.RBAC_ALLOW
	out := &rbacv3.RBAC{Action: r.GetAction(), Policies: map[string]*rbacv3.Policy{}}
	for name, p := range r.GetPolicies() {
		if p.GetCondition() != nil || p.GetCheckedCondition() != nil {
			if narrow {
				continue // a condition the connection cannot be checked against: matches nothing
			}
		}
		np := &rbacv3.Policy{}
		for _, x := range p.GetPermissions() {
			np.Permissions = append(np.Permissions, l4Permission(x, narrow))
		}
		for _, x := range p.GetPrincipals() {
			np.Principals = append(np.Principals, l4Principal(x, narrow))
		}
		out.Policies[name] = np
	}
	return out
}

// l4Permission returns p with every leaf that is not an L4 attribute replaced by "matches
// nothing" when narrow, else by "matches everything" (inverted under not_rule).
func l4Permission(p *rbacv3.Permission, narrow bool) *rbacv3.Permission {
	switch r := p.GetRule().(type) {
	case *rbacv3.Permission_Any, *rbacv3.Permission_DestinationIp, *rbacv3.Permission_DestinationPort, *rbacv3.Permission_DestinationPortRange:
		return p
	case *rbacv3.Permission_AndRules:
		set := &rbacv3.Permission_Set{}
		for _, x := range r.AndRules.GetRules() {
			set.Rules = append(set.Rules, l4Permission(x, narrow))
		}
		return &rbacv3.Permission{Rule: &rbacv3.Permission_AndRules{AndRules: set}}
	case *rbacv3.Permission_OrRules:
		set := &rbacv3.Permission_Set{}
		for _, x := range r.OrRules.GetRules() {
			set.Rules = append(set.Rules, l4Permission(x, narrow))
		}
		return &rbacv3.Permission{Rule: &rbacv3.Permission_OrRules{OrRules: set}}
	case *rbacv3.Permission_NotRule:
		return &rbacv3.Permission{Rule: &rbacv3.Permission_NotRule{NotRule: l4Permission(r.NotRule, !narrow)}}
	}
	anyPerm := &rbacv3.Permission{Rule: &rbacv3.Permission_Any{Any: true}}
	if narrow {
		return &rbacv3.Permission{Rule: &rbacv3.Permission_NotRule{NotRule: anyPerm}}
	}
	return anyPerm
}

// l4Principal is l4Permission for principals.
func l4Principal(p *rbacv3.Principal, narrow bool) *rbacv3.Principal {
	switch r := p.GetIdentifier().(type) {
	case *rbacv3.Principal_Any, *rbacv3.Principal_Authenticated_, *rbacv3.Principal_SourceIp, *rbacv3.Principal_DirectRemoteIp, *rbacv3.Principal_RemoteIp:
		return p
	case *rbacv3.Principal_AndIds:
		set := &rbacv3.Principal_Set{}
		for _, x := range r.AndIds.GetIds() {
			set.Ids = append(set.Ids, l4Principal(x, narrow))
		}
		return &rbacv3.Principal{Identifier: &rbacv3.Principal_AndIds{AndIds: set}}
	case *rbacv3.Principal_OrIds:
		set := &rbacv3.Principal_Set{}
		for _, x := range r.OrIds.GetIds() {
			set.Ids = append(set.Ids, l4Principal(x, narrow))
		}
		return &rbacv3.Principal{Identifier: &rbacv3.Principal_OrIds{OrIds: set}}
	case *rbacv3.Principal_NotId:
		return &rbacv3.Principal{Identifier: &rbacv3.Principal_NotId{NotId: l4Principal(r.NotId, !narrow)}}
	}
	anyID := &rbacv3.Principal{Identifier: &rbacv3.Principal_Any{Any: true}}
	if narrow {
		return &rbacv3.Principal{Identifier: &rbacv3.Principal_NotId{NotId: anyID}}
	}
	return anyID
}
