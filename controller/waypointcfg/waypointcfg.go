package waypointcfg

import (
	"cmp"
	"fmt"
	"strings"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	rbacv3 "github.com/envoyproxy/go-control-plane/envoy/config/rbac/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	rbachttpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/rbac/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	securityv1 "istio.io/client-go/pkg/apis/security/v1"

	"github.com/weftmesh/weft/controller/envoy"
	"github.com/weftmesh/weft/controller/rbac"
	"github.com/weftmesh/weft/controller/translate"
)

// Names of the RBAC filters, in the order they run; also the keys of their per-route configs.
const (
	AuditFilter = "envoy.filters.http.rbac.audit"
	DenyFilter  = "envoy.filters.http.rbac.deny"
	AllowFilter = "envoy.filters.http.rbac.allow"
)

// rbacFilters are the filter names by the action of their RBAC config, in order.
var rbacFilters = [...]struct {
	name   string
	action rbacv3.RBAC_Action
}{{AuditFilter, rbacv3.RBAC_LOG}, {DenyFilter, rbacv3.RBAC_DENY}, {AllowFilter, rbacv3.RBAC_ALLOW}}

// Input is what one waypoint's configuration is built from; nothing in it is modified.
type Input struct {
	// Name is the waypoint's Gateway; its namespace is Envoy.Namespace.
	Name string
	// Envoy holds the objects of the waypoint's namespace.
	Envoy envoy.Input
	// Services bound to the waypoint, "<namespace>/<name>".
	Services []string
	// Workloads are the uids of the workloads whose pod-addressed traffic traverses the
	// waypoint (translate.Waypoint.Workloads); they replace Envoy.Workloads.
	Workloads []string
	// Policies are all AuthorizationPolicies; those not attached to this waypoint are ignored.
	Policies []*securityv1.AuthorizationPolicy
}

// Options are the mesh-wide settings.
type Options struct {
	Envoy envoy.Options
	// RootNamespace holds mesh-wide policies; empty means "istio-system".
	RootNamespace string
}

// Config is one waypoint's configuration. Every resource passed its ValidateAll(); the slices
// are sorted by name.
type Config struct {
	Listener  *listenerv3.Listener // nil when the namespace has no HTTP service port
	Routes    []*routev3.RouteConfiguration
	Clusters  []*clusterv3.Cluster
	Endpoints []*endpointv3.ClusterLoadAssignment
	// Problems are what could not be translated (see envoy.Problem).
	Problems []envoy.Problem
	// PolicyStatus, by translate.PolicyKey, is the WaypointAccepted condition of every
	// AuthorizationPolicy attached to the waypoint.
	PolicyStatus map[string]translate.PolicyCondition
}

// Build translates in.
func Build(in Input, o Options) *Config {
	ein := in.Envoy
	ein.Workloads = in.Workloads
	env := envoy.Build(ein, o.Envoy)
	authz := rbac.Build(rbac.Input{
		WaypointName: in.Name, WaypointNamespace: in.Envoy.Namespace, RootNamespace: o.RootNamespace,
		Services: in.Services, Policies: in.Policies,
	})
	return Merge(env, authz, o.Envoy.ClusterDomain)
}

// Merge returns env with the RBAC filters of authz merged in (see the package doc). env is
// not modified; clusterDomain ("" = cluster.local) maps virtual hosts to Services.
func Merge(env *envoy.Config, authz rbac.Output, clusterDomain string) *Config {
	cfg := &Config{
		Listener: env.Listener, Routes: env.Routes, Clusters: env.Clusters, Endpoints: env.Endpoints,
		Problems: env.Problems, PolicyStatus: authz.Status,
	}
	if !applies(authz) {
		return cfg
	}
	suffix := ".svc." + cmp.Or(clusterDomain, "cluster.local")
	if env.Listener != nil {
		l, err := withFilters(env.Listener, authz.Gateway)
		if err == nil {
			l, err = withNetworkFilters(l, authz, suffix)
		}
		if err != nil {
			cfg.Listener = nil
			cfg.Problems = append(cfg.Problems, envoy.Problem{Kind: "Listener", Name: envoy.ListenerName, Field: "filterChains",
				Message: "the RBAC filters cannot be added (" + err.Error() + "); the listener is left out so that no request bypasses authorization", Fix: "report this as a bug of Weft"})
		} else {
			cfg.Listener = l
		}
	}
	cfg.Routes = make([]*routev3.RouteConfiguration, len(env.Routes))
	for i, rc := range env.Routes {
		cfg.Routes[i] = rc
		var out *routev3.RouteConfiguration
		var bad error
		for j, vh := range rc.VirtualHosts {
			own, ok := authz.Services[serviceKey(vh.Name, suffix)]
			if !ok {
				continue
			}
			if out == nil {
				out = proto.Clone(rc).(*routev3.RouteConfiguration)
			}
			v := out.VirtualHosts[j]
			if v.TypedPerFilterConfig == nil {
				v.TypedPerFilterConfig = map[string]*anypb.Any{}
			}
			for _, f := range rbacFilters {
				a, err := anypb.New(&rbachttpv3.RBACPerRoute{Rbac: forAction(own, f.action)})
				if err != nil {
					bad = err
					continue
				}
				v.TypedPerFilterConfig[f.name] = a
			}
		}
		if out == nil {
			continue
		}
		if bad == nil {
			bad = out.ValidateAll()
		}
		if err := bad; err != nil {
			// Never serve the route without its Service's policies: fall back to none of its
			// virtual hosts (requests get 404) and say so.
			cfg.Problems = append(cfg.Problems, envoy.Problem{Kind: "RouteConfiguration", Name: rc.Name, Field: "-",
				Message: "invalid with RBAC per-route configs (" + err.Error() + "); the route is left out", Fix: "report this as a bug of Weft"})
			out = &routev3.RouteConfiguration{Name: rc.Name, ValidateClusters: rc.ValidateClusters}
		}
		cfg.Routes[i] = out
	}
	return cfg
}

// applies reports whether any policy is enforced at the waypoint.
func applies(authz rbac.Output) bool {
	if len(authz.Gateway) > 0 {
		return true
	}
	for _, fs := range authz.Services {
		if len(fs) > 0 {
			return true
		}
	}
	return false
}

// forAction returns the config of fs for action, or an RBAC without rules (no enforcement).
func forAction(fs []*rbachttpv3.RBAC, action rbacv3.RBAC_Action) *rbachttpv3.RBAC {
	for _, f := range fs {
		r := f.GetRules()
		if r == nil {
			r = f.GetShadowRules()
		}
		if r != nil && r.GetAction() == action {
			return f
		}
	}
	return &rbachttpv3.RBAC{}
}

// serviceKey maps a virtual host named "<name>.<ns>.svc.<domain>:<port>" to "<ns>/<name>";
// other hosts (ServiceEntries) map to "".
func serviceKey(vhost, suffix string) string {
	host, _, _ := strings.Cut(vhost, ":")
	base, ok := strings.CutSuffix(host, suffix)
	if !ok {
		return ""
	}
	name, ns, ok := strings.Cut(base, ".")
	if !ok || strings.Contains(ns, ".") {
		return ""
	}
	return ns + "/" + name
}

// withFilters returns a copy of l whose HTTP connection managers have the RBAC filters of
// gateway inserted after CORS, before everything else.
func withFilters(l *listenerv3.Listener, gateway []*rbachttpv3.RBAC) (*listenerv3.Listener, error) {
	out := proto.Clone(l).(*listenerv3.Listener)
	var add []*hcmv3.HttpFilter
	for _, f := range rbacFilters {
		cfg := forAction(gateway, f.action)
		if err := cfg.ValidateAll(); err != nil {
			return nil, fmt.Errorf("%s: %w", f.name, err)
		}
		a, err := anypb.New(cfg)
		if err != nil {
			return nil, err
		}
		add = append(add, &hcmv3.HttpFilter{Name: f.name, ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: a}})
	}
	for _, fc := range out.FilterChains {
		for _, nf := range fc.Filters {
			hcm := &hcmv3.HttpConnectionManager{}
			if nf.GetTypedConfig() == nil || !nf.GetTypedConfig().MessageIs(hcm) {
				continue
			}
			if err := nf.GetTypedConfig().UnmarshalTo(hcm); err != nil {
				return nil, fmt.Errorf("filter chain %s: %w", fc.Name, err)
			}
			at := 0
			if len(hcm.HttpFilters) > 0 && hcm.HttpFilters[0].Name == envoy.CorsFilter {
				at = 1
			}
			filters := make([]*hcmv3.HttpFilter, 0, len(hcm.HttpFilters)+len(add))
			filters = append(filters, hcm.HttpFilters[:at]...)
			for _, f := range add {
				filters = append(filters, proto.Clone(f).(*hcmv3.HttpFilter))
			}
			hcm.HttpFilters = append(filters, hcm.HttpFilters[at:]...)
			if err := hcm.ValidateAll(); err != nil {
				return nil, fmt.Errorf("filter chain %s: %w", fc.Name, err)
			}
			a, err := anypb.New(hcm)
			if err != nil {
				return nil, err
			}
			nf.ConfigType = &listenerv3.Filter_TypedConfig{TypedConfig: a}
		}
	}
	if err := out.ValidateAll(); err != nil {
		return nil, err
	}
	return out, nil
}

// ForWaypoint translates waypoint wp of the mesh as the controller serves it: from ein, the
// objects of its namespace (whose labels are nsLabels), the Services and workloads bound to it and every
// AuthorizationPolicy, with the mesh's options.
func ForWaypoint(wp *translate.Waypoint, ein envoy.Input, nsLabels map[string]string, policies []*securityv1.AuthorizationPolicy, o translate.Options) *Config {
	ein.NamespaceLabels = nsLabels
	return Build(Input{Name: wp.Name, Envoy: ein, Services: wp.Services, Workloads: wp.Workloads, Policies: policies},
		Options{Envoy: envoy.Options{ClusterDomain: o.ClusterDomain, TrustDomain: o.TrustDomain}, RootNamespace: o.RootNamespace})
}
