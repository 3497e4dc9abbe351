package rbac

import (
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"slices"
	"strings"

	rbacv3 "github.com/envoyproxy/go-control-plane/envoy/config/rbac/v3"
	rbachttpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/rbac/v3"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// Request is what a policy can look at for one HTTP request.
type Request struct {
	// Principal is the authenticated peer's identity (the URI SAN of its certificate),
	// "spiffe://<td>/ns/<ns>/sa/<sa>"; "" when the peer is not authenticated.
	Principal string
	// SourceIP is the original client address; direct_remote_ip, remote_ip and source_ip
	// all use it.
	SourceIP netip.Addr
	// DestinationIP and DestinationPort are the address the client connected to (the
	// Service address and port).
	DestinationIP   netip.Addr
	DestinationPort uint16
	// Method is :method, Host is :authority without any port, Path is :path with its
	// query, normalized as the listener is configured (e.g. normalize_path, merge_slashes)
	// before the request reaches RBAC. An empty one is a missing header.
	Method, Host, Path string
	// Header holds the other request headers, keyed in canonical form as net/http does;
	// repeated values are joined with "," when matched (Envoy's rule).
	Header http.Header
}

// Decision is the outcome of one filter for one request.
type Decision struct {
	// Allowed is false when the request must be answered 403 "RBAC: access denied".
	Allowed bool
	// Policy is the effective policy: the first (by name) matching policy of the enforced
	// rules, whatever their action; "" when none matched or rules are absent.
	Policy string
	// Logged is set when the rules' action is LOG and a policy matched (Envoy's
	// access_log_hint): the access log marks the request.
	Logged bool
	// Shadow is the outcome of the shadow rules, reported and never enforced.
	Shadow ShadowResult
}

// ShadowResult is the outcome of a filter's shadow_rules (Envoy's shadow_engine_result and
// shadow_effective_policy_id).
type ShadowResult struct {
	// Evaluated is set when the filter has shadow rules; the other fields are zero otherwise.
	Evaluated bool
	// Allowed is the shadow engine's result ("allowed" or "denied").
	Allowed bool
	// Policy is the first (by name) matching shadow policy; "" when none matched.
	Policy string
}

// Filter is one compiled RBAC filter config. It is immutable and safe for concurrent use.
type Filter struct {
	rules, shadow *engine // nil when absent
}

// engine is one compiled envoy.config.rbac.v3.RBAC.
type engine struct {
	action   rbacv3.RBAC_Action
	policies []policy // sorted by name, as Envoy's std::map
}

type policy struct {
	name        string
	permissions []matcher
	principals  []matcher
}

// Compile compiles one RBAC filter config. An error names the offending field, e.g.
// rules.policies["ns[foo]-policy[p]-rule[0]"].principals[2].metadata, and says what to use
// instead; the config must then be rejected (NACKed) as a whole.
func Compile(cfg *rbachttpv3.RBAC) (*Filter, error) {
	if cfg == nil {
		return nil, errors.New("rbac: no config; send an RBAC filter config (an empty one enforces nothing)")
	}
	if err := cfg.ValidateAll(); err != nil {
		return nil, fmt.Errorf("rbac: invalid config: %w", err)
	}
	return compile("", cfg)
}

// CompilePerRoute compiles a route's override of the RBAC filter. Without rbac the filter is
// disabled for the route: every request is allowed and no shadow rules run.
func CompilePerRoute(cfg *rbachttpv3.RBACPerRoute) (*Filter, error) {
	if cfg == nil {
		return nil, errors.New("rbac: no per-route config; send an RBACPerRoute (an empty one disables the filter)")
	}
	if err := cfg.ValidateAll(); err != nil {
		return nil, fmt.Errorf("rbac: invalid per-route config: %w", err)
	}
	if len(cfg.ProtoReflect().GetUnknown()) > 0 {
		return nil, errors.New("rbac: unknown fields in RBACPerRoute (from a newer Envoy API?); the waypoint supports only rbac")
	}
	if cfg.GetRbac() == nil {
		return &Filter{}, nil
	}
	return compile("rbac.", cfg.GetRbac())
}

// compile compiles a validated cfg; prefix is the field path of cfg ("" or "rbac.").
func compile(prefix string, cfg *rbachttpv3.RBAC) (*Filter, error) {
	if err := rejectUnknown(cfg.ProtoReflect(), strings.TrimSuffix(prefix, ".")); err != nil {
		return nil, err
	}
	if cfg.GetMatcher() != nil {
		return nil, fmt.Errorf("rbac: %smatcher: matcher trees are not supported by the waypoint; express the policies in rules", prefix)
	}
	if cfg.GetShadowMatcher() != nil {
		return nil, fmt.Errorf("rbac: %sshadow_matcher: matcher trees are not supported by the waypoint; express the policies in shadow_rules", prefix)
	}
	rules, err := compileEngine(prefix+"rules", cfg.GetRules())
	if err != nil {
		return nil, err
	}
	shadow, err := compileEngine(prefix+"shadow_rules", cfg.GetShadowRules())
	if err != nil {
		return nil, err
	}
	return &Filter{rules: rules, shadow: shadow}, nil
}

// Evaluate decides r. A disabled filter or one without rules allows every request.
func (f *Filter) Evaluate(r *Request) Decision {
	d := Decision{Allowed: true}
	if f == nil {
		return d
	}
	if f.shadow != nil {
		allowed, name, _ := f.shadow.eval(r)
		d.Shadow = ShadowResult{Evaluated: true, Allowed: allowed, Policy: name}
	}
	if f.rules != nil {
		allowed, name, matched := f.rules.eval(r)
		d.Allowed, d.Policy = allowed, name
		d.Logged = f.rules.action == rbacv3.RBAC_LOG && matched
	}
	return d
}

// Enforcing reports whether the filter has rules (it can deny or log a request).
func (f *Filter) Enforcing() bool { return f != nil && f.rules != nil }

// eval applies the engine's action to r (Envoy's handleAction).
func (e *engine) eval(r *Request) (allowed bool, name string, matched bool) {
	for i := range e.policies {
		p := &e.policies[i]
		if anyMatch(p.permissions, r) && anyMatch(p.principals, r) {
			name, matched = p.name, true
			break
		}
	}
	switch e.action {
	case rbacv3.RBAC_ALLOW:
		return matched, name, matched
	case rbacv3.RBAC_DENY:
		return !matched, name, matched
	}
	return true, name, matched // LOG
}

func anyMatch(ms []matcher, r *Request) bool {
	for _, m := range ms {
		if m.match(r) {
			return true
		}
	}
	return false
}

func compileEngine(path string, cfg *rbacv3.RBAC) (*engine, error) {
	if cfg == nil {
		return nil, nil
	}
	switch cfg.GetAction() {
	case rbacv3.RBAC_ALLOW, rbacv3.RBAC_DENY, rbacv3.RBAC_LOG:
	default:
		return nil, fmt.Errorf("rbac: %s.action: unknown action %v; use ALLOW, DENY or LOG", path, cfg.GetAction())
	}
	if cfg.GetAuditLoggingOptions() != nil {
		return nil, fmt.Errorf("rbac: %s.audit_logging_options: RBAC audit loggers are not supported by the waypoint; use action LOG and the access log", path)
	}
	e := &engine{action: cfg.GetAction()}
	names := make([]string, 0, len(cfg.GetPolicies()))
	for name := range cfg.GetPolicies() {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		p, err := compilePolicy(fmt.Sprintf("%s.policies[%q]", path, name), name, cfg.GetPolicies()[name])
		if err != nil {
			return nil, err
		}
		e.policies = append(e.policies, p)
	}
	return e, nil
}

func compilePolicy(path, name string, cfg *rbacv3.Policy) (policy, error) {
	p := policy{name: name}
	switch {
	case cfg == nil:
		return p, fmt.Errorf("rbac: %s: the policy is null; give it permissions and principals", path)
	case cfg.GetCondition() != nil:
		return p, fmt.Errorf("rbac: %s.condition: CEL conditions are not supported by the waypoint; express the condition with permissions and principals", path)
	case cfg.GetCheckedCondition() != nil:
		return p, fmt.Errorf("rbac: %s.checked_condition: CEL conditions are not supported by the waypoint; express the condition with permissions and principals", path)
	case cfg.GetCelConfig() != nil:
		return p, fmt.Errorf("rbac: %s.cel_config: CEL is not supported by the waypoint; remove it", path)
	}
	for i, q := range cfg.GetPermissions() {
		m, err := compilePermission(fmt.Sprintf("%s.permissions[%d]", path, i), q)
		if err != nil {
			return p, err
		}
		p.permissions = append(p.permissions, m)
	}
	for i, q := range cfg.GetPrincipals() {
		m, err := compilePrincipal(fmt.Sprintf("%s.principals[%d]", path, i), q)
		if err != nil {
			return p, err
		}
		p.principals = append(p.principals, m)
	}
	return p, nil
}

// rejectUnknown fails on fields this API version does not know (a config from a newer
// Envoy API), which could change the meaning of the config.
func rejectUnknown(m protoreflect.Message, path string) error {
	if len(m.GetUnknown()) > 0 {
		where := path
		if where == "" {
			where = string(m.Descriptor().FullName())
		}
		return fmt.Errorf("rbac: %s: unknown fields (from a newer Envoy API?); the waypoint supports only the fields of envoy.extensions.filters.http.rbac.v3 it knows", where)
	}
	var err error
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		name := string(fd.Name())
		if path != "" {
			name = path + "." + name
		}
		switch {
		case fd.IsList() && fd.Message() != nil:
			l := v.List()
			for i := 0; i < l.Len() && err == nil; i++ {
				err = rejectUnknown(l.Get(i).Message(), fmt.Sprintf("%s[%d]", name, i))
			}
		case fd.IsMap() && fd.MapValue().Message() != nil:
			v.Map().Range(func(k protoreflect.MapKey, mv protoreflect.Value) bool {
				err = rejectUnknown(mv.Message(), fmt.Sprintf("%s[%q]", name, k.String()))
				return err == nil
			})
		case !fd.IsList() && !fd.IsMap() && fd.Message() != nil:
			err = rejectUnknown(v.Message(), name)
		}
		return err == nil
	})
	return err
}
