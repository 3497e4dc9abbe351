package rbac

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	rbacv3 "github.com/envoyproxy/go-control-plane/envoy/config/rbac/v3"
	rbachttpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/rbac/v3"
	securityv1beta1 "istio.io/api/security/v1beta1"
	typev1beta1 "istio.io/api/type/v1beta1"
	securityv1 "istio.io/client-go/pkg/apis/security/v1"

	"github.com/weftmesh/weft/controller/translate"
)

// FilterName is the name of the HTTP filter each config is for.
const FilterName = "envoy.filters.http.rbac"

// WaypointClass is the GatewayClass of waypoints.
const WaypointClass = "istio-waypoint"

const (
	gatewayGroup     = "gateway.networking.k8s.io"
	annotationDryRun = "istio.io/dry-run"
)

// Input is what Build translates. Nothing in it is modified.
type Input struct {
	// WaypointName and WaypointNamespace name the waypoint's Gateway.
	WaypointName, WaypointNamespace string
	// RootNamespace holds mesh-wide policies; empty means "istio-system".
	RootNamespace string
	// Services bound to this waypoint, "<namespace>/<name>". A policy targeting another
	// Service is not for this waypoint.
	Services []string
	// Policies are all AuthorizationPolicies; those that do not apply here are ignored.
	Policies []*securityv1.AuthorizationPolicy
}

// Output is the RBAC configuration of one waypoint. Each slice holds the filters of a chain in
// order (AUDIT, DENY, ALLOW; absent actions are left out); an empty slice allows everything.
type Output struct {
	// Gateway is for traffic to a Service with no policy of its own: the policies attached to
	// the waypoint (its Gateway or the waypoint GatewayClass).
	Gateway []*rbachttpv3.RBAC
	// Services, by "<namespace>/<name>", is for traffic to a Service that has policies of its
	// own: those and the waypoint's.
	Services map[string][]*rbachttpv3.RBAC
	// Status, by translate.PolicyKey, is the WaypointAccepted condition of every policy that
	// applies at this waypoint.
	Status map[string]translate.PolicyCondition
}

// translated is one policy that applies here.
type translated struct {
	key      string // translate.PolicyKey
	action   securityv1beta1.AuthorizationPolicy_Action
	dryRun   bool
	policies map[string]*rbacv3.Policy // by Istio's name ns[..]-policy[..]-rule[..]
	gateway  bool                      // attached to the whole waypoint
	services []string                  // attached to these Services
}

// Build translates the policies that apply at the waypoint in.
func Build(in Input) Output {
	root := in.RootNamespace
	if root == "" {
		root = "istio-system"
	}
	bound := map[string]bool{}
	for _, s := range in.Services {
		bound[s] = true
	}
	out := Output{Services: map[string][]*rbachttpv3.RBAC{}, Status: map[string]translate.PolicyCondition{}}
	var all []*translated
	for _, ap := range in.Policies {
		if ap == nil {
			continue
		}
		t := &translated{key: translate.PolicyKey(ap.Namespace, ap.Name)}
		if !attach(ap, in, root, bound, t) {
			continue
		}
		out.Status[t.key] = translatePolicy(ap, in, t)
		all = append(all, t)
	}
	slices.SortFunc(all, func(a, b *translated) int { return strings.Compare(a.key, b.key) })

	var gw []*translated
	services := map[string][]*translated{}
	for _, t := range all {
		if t.gateway {
			gw = append(gw, t)
		}
		for _, s := range t.services {
			services[s] = append(services[s], t)
		}
	}
	out.Gateway = filters(gw)
	for s, ts := range services {
		set := slices.Clone(gw)
		for _, t := range ts {
			if !t.gateway {
				set = append(set, t)
			}
		}
		slices.SortFunc(set, func(a, b *translated) int { return strings.Compare(a.key, b.key) })
		out.Services[s] = filters(set)
	}
	return out
}

// attach reports whether ap applies at this waypoint and records where.
func attach(ap *securityv1.AuthorizationPolicy, in Input, root string, bound map[string]bool, t *translated) bool {
	spec := &ap.Spec
	refs := slices.Clone(spec.GetTargetRefs())
	if spec.GetTargetRef() != nil {
		refs = append([]*typev1beta1.PolicyTargetReference{spec.GetTargetRef()}, refs...)
	}
	if len(refs) == 0 || spec.GetSelector() != nil {
		// Node-agent policies; both set is reported by controller/translate.
		return false
	}
	for _, ref := range refs {
		if ref.GetNamespace() != "" && ref.GetNamespace() != ap.Namespace {
			continue // Istio: a targetRef names an object of the policy's own namespace
		}
		switch {
		case ref.GetKind() == "Gateway" && ref.GetGroup() == gatewayGroup:
			if ap.Namespace == in.WaypointNamespace && ref.GetName() == in.WaypointName {
				t.gateway = true
			}
		case ref.GetKind() == "GatewayClass" && ref.GetGroup() == gatewayGroup:
			if ap.Namespace == root && ref.GetName() == WaypointClass {
				t.gateway = true
			}
		case ref.GetKind() == "Service" && (ref.GetGroup() == "" || ref.GetGroup() == "core"):
			key := ap.Namespace + "/" + ref.GetName()
			if bound[key] && !slices.Contains(t.services, key) {
				t.services = append(t.services, key)
			}
		}
	}
	if t.gateway {
		t.services = nil // already covered
	}
	slices.Sort(t.services)
	return t.gateway || len(t.services) > 0
}

// translatePolicy fills t's policies and returns its condition.
func translatePolicy(ap *securityv1.AuthorizationPolicy, in Input, t *translated) translate.PolicyCondition {
	spec := &ap.Spec
	cond := translate.PolicyCondition{Type: translate.ConditionWaypointAccepted, ObservedGeneration: ap.Generation}
	bound := fmt.Sprintf("bound to %s/%s", in.WaypointNamespace, in.WaypointName)
	t.action = spec.GetAction()
	t.policies = map[string]*rbacv3.Policy{}

	var notes []string
	if v, ok := ap.Annotations[annotationDryRun]; ok {
		dry, err := strconv.ParseBool(v)
		if err != nil {
			notes = append(notes, fmt.Sprintf("Annotation %s: %q is not a boolean, so the policy is enforced (as Istio does); write \"true\" or \"false\".", annotationDryRun, v))
		}
		t.dryRun = dry
		if dry {
			notes = append(notes, "Dry-run: the policy is evaluated in shadow rules and never decides a request.")
		}
	}
	switch t.action {
	case securityv1beta1.AuthorizationPolicy_ALLOW, securityv1beta1.AuthorizationPolicy_DENY, securityv1beta1.AuthorizationPolicy_AUDIT:
	case securityv1beta1.AuthorizationPolicy_CUSTOM:
		notes = append(notes, "CUSTOM: there is no external authorization provider, so the requests its rules match are denied; use ALLOW or DENY.")
	default:
		cond.Reason = translate.ReasonInvalid
		cond.Message = fmt.Sprintf("action: unknown action %v; use ALLOW, DENY or AUDIT. The policy is not enforced.", spec.GetAction())
		return cond
	}
	dropRule := t.action == securityv1beta1.AuthorizationPolicy_ALLOW

	if len(spec.GetRules()) == 0 {
		notes = append(notes, "The policy has no rules, so it matches no request; add `rules: [{}]` to match every request.")
	}
	var all []problem
	var dropped []string
	for i, r := range spec.GetRules() {
		c := &ruleCtx{path: fmt.Sprintf("rules[%d]", i), namespace: ap.Namespace}
		p := c.rule(r)
		all = append(all, c.problems...)
		name := fmt.Sprintf("ns[%s]-policy[%s]-rule[%d]", ap.Namespace, ap.Name, i)
		if err := p.ValidateAll(); err != nil {
			// Not expected: every value is checked above. Fail safe.
			all = append(all, problem{kind: problemInvalid, path: c.path, detail: "the rule does not translate into a valid RBAC policy (" + err.Error() + ")"})
			if !dropRule {
				p = &rbacv3.Policy{Permissions: []*rbacv3.Permission{anyPermission()}, Principals: []*rbacv3.Principal{anyPrincipal()}}
			}
		}
		if dropRule && (len(c.problems) > 0 || p.ValidateAll() != nil) {
			dropped = append(dropped, c.path)
			continue
		}
		if len(c.problems) > 0 && matchesEverything(p) {
			notes = append(notes, fmt.Sprintf("%s now matches every request.", c.path))
		}
		t.policies[name] = p
	}
	if dropRule && len(dropped) > 0 && len(t.policies) == 0 {
		notes = append(notes, "No rule is left: the policy allows no request.")
	}

	msg, invalid := problemsMessage(t.action, all)
	if len(notes) > 0 {
		msg = strings.TrimSpace(msg + " " + strings.Join(notes, " "))
	}
	switch {
	case len(all) == 0 && len(notes) == 0:
		cond.Status, cond.Reason, cond.Message = true, translate.ReasonAccepted, bound
	case len(all) == 0 && t.action != securityv1beta1.AuthorizationPolicy_CUSTOM:
		cond.Status, cond.Reason, cond.Message = true, translate.ReasonAccepted, bound+". "+msg
	case invalid:
		cond.Status, cond.Reason, cond.Message = true, translate.ReasonPartiallyInvalid, bound+". "+msg
	default:
		cond.Status, cond.Reason, cond.Message = true, translate.ReasonUnsupportedValue, bound+". "+msg
	}
	return cond
}

// matchesEverything reports whether p is any/any.
func matchesEverything(p *rbacv3.Policy) bool {
	return len(p.GetPermissions()) == 1 && p.GetPermissions()[0].GetAny() &&
		len(p.GetPrincipals()) == 1 && p.GetPrincipals()[0].GetAny()
}

// filters assembles the filter chain for the policies ts, sorted by key.
func filters(ts []*translated) []*rbachttpv3.RBAC {
	type slot struct {
		action   rbacv3.RBAC_Action
		prefix   string
		present  bool // a non-dry-run policy of this action applies
		rules    map[string]*rbacv3.Policy
		shadow   map[string]*rbacv3.Policy
		isShadow bool
	}
	slots := []*slot{
		{action: rbacv3.RBAC_LOG, prefix: "istio_dry_run_audit_"},
		{action: rbacv3.RBAC_DENY, prefix: "istio_dry_run_deny_"},
		{action: rbacv3.RBAC_ALLOW, prefix: "istio_dry_run_allow_"},
	}
	for _, t := range ts {
		var s *slot
		switch t.action {
		case securityv1beta1.AuthorizationPolicy_AUDIT:
			s = slots[0]
		case securityv1beta1.AuthorizationPolicy_DENY, securityv1beta1.AuthorizationPolicy_CUSTOM:
			s = slots[1]
		case securityv1beta1.AuthorizationPolicy_ALLOW:
			s = slots[2]
		default:
			continue
		}
		if t.dryRun {
			s.isShadow = true
			if s.shadow == nil {
				s.shadow = map[string]*rbacv3.Policy{}
			}
			for k, p := range t.policies {
				s.shadow[k] = p
			}
			continue
		}
		s.present = true
		if s.rules == nil {
			s.rules = map[string]*rbacv3.Policy{}
		}
		for k, p := range t.policies {
			s.rules[k] = p
		}
	}
	var out []*rbachttpv3.RBAC
	for _, s := range slots {
		// DENY and AUDIT without a policy left match nothing: no filter. ALLOW with an
		// applicable policy is kept even when empty: it denies every request.
		enforce := s.present && (s.action == rbacv3.RBAC_ALLOW || len(s.rules) > 0)
		if !enforce && !s.isShadow {
			continue
		}
		f := &rbachttpv3.RBAC{}
		if enforce {
			f.Rules = &rbacv3.RBAC{Action: s.action, Policies: s.rules}
		}
		if s.isShadow {
			f.ShadowRules = &rbacv3.RBAC{Action: s.action, Policies: s.shadow}
			f.ShadowRulesStatPrefix = s.prefix
		}
		out = append(out, f)
	}
	return out
}
