package rbac

import (
	"errors"
	"fmt"

	rbachttpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/rbac/v3"
	rbacnetv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/rbac/v3"
)

// CompileNetwork compiles one network RBAC filter config
// (envoy.extensions.filters.network.rbac.v3.RBAC), which the waypoint evaluates once per
// TCP connection, when the tunnel arrives. Its rules are the same envoy.config.rbac.v3.RBAC
// as the HTTP filter's; the connection's Request has no HTTP fields, so header, url_path and
// similar matchers see a request without them, as Envoy's network filter does. Refused:
// matcher trees, enforcement_type CONTINUOUS (the decision is made once) and delay_deny.
func CompileNetwork(cfg *rbacnetv3.RBAC) (*Filter, error) {
	if cfg == nil {
		return nil, errors.New("rbac: no network config; send an RBAC filter config (an empty one enforces nothing)")
	}
	if err := cfg.ValidateAll(); err != nil {
		return nil, fmt.Errorf("rbac: invalid network config: %w", err)
	}
	if len(cfg.ProtoReflect().GetUnknown()) > 0 {
		return nil, errors.New("rbac: unknown fields in the network RBAC (from a newer Envoy API?); the waypoint supports rules, shadow_rules, stat_prefix and shadow_rules_stat_prefix")
	}
	switch {
	case cfg.GetMatcher() != nil:
		return nil, errors.New("rbac: matcher: matcher trees are not supported by the waypoint; express the policies in rules")
	case cfg.GetShadowMatcher() != nil:
		return nil, errors.New("rbac: shadow_matcher: matcher trees are not supported by the waypoint; express the policies in shadow_rules")
	case cfg.GetEnforcementType() != rbacnetv3.RBAC_ONE_TIME_ON_FIRST_BYTE:
		return nil, fmt.Errorf("rbac: enforcement_type %s is not supported: the waypoint decides once per connection; use ONE_TIME_ON_FIRST_BYTE", cfg.GetEnforcementType())
	case cfg.GetDelayDeny() != nil:
		return nil, errors.New("rbac: delay_deny is not supported by the waypoint; remove it")
	}
	return compile("", &rbachttpv3.RBAC{Rules: cfg.GetRules(), ShadowRules: cfg.GetShadowRules(), ShadowRulesStatPrefix: cfg.GetShadowRulesStatPrefix()})
}
