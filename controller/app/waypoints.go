package app

import (
	"maps"
	"slices"

	"github.com/weftmesh/weft/controller/envoy"
	"github.com/weftmesh/weft/controller/status"
	"github.com/weftmesh/weft/controller/translate"
	"github.com/weftmesh/weft/controller/waypointcfg"
	"github.com/weftmesh/weft/controller/xds"
)

// waypointResult is the translation of every waypoint of one push.
type waypointResult struct {
	configs map[xds.WaypointKey]*xds.WaypointConfig
	// routes are the verdicts on the VirtualServices, DestinationRules and HTTPRoutes of the
	// waypoints' namespaces.
	routes map[status.RouteKey]status.RouteVerdict
	// policies are the AuthorizationPolicy conditions: the mesh's, with the WaypointAccepted
	// conditions of the waypoint translation in place of translate's for the policies that
	// apply at a waypoint.
	policies map[string]translate.PolicyCondition
	// problems of the translations, for the log.
	problems []error
}

// buildWaypoints translates the configuration of every waypoint of m (one translation per
// waypoint Gateway) from the objects of its namespace.
func buildWaypoints(m *translate.Mesh, in translate.Input, envoyInput func(namespace string) (envoy.Input, error), o translate.Options) (waypointResult, error) {
	res := waypointResult{
		configs:  map[xds.WaypointKey]*xds.WaypointConfig{},
		routes:   map[status.RouteKey]status.RouteVerdict{},
		policies: maps.Clone(m.PolicyStatus),
	}
	if res.policies == nil {
		res.policies = map[string]translate.PolicyCondition{}
	}
	nsLabels := map[string]map[string]string{}
	for _, ns := range in.Namespaces {
		nsLabels[ns.Name] = ns.Labels
	}
	inputs := map[string]envoy.Input{} // by namespace: waypoints of a namespace share it
	fromWaypoint := map[string]bool{}  // policies whose condition a waypoint wrote
	for _, key := range slices.Sorted(maps.Keys(m.Waypoints)) {
		wp := m.Waypoints[key]
		ein, ok := inputs[wp.Namespace]
		if !ok {
			var err error
			if ein, err = envoyInput(wp.Namespace); err != nil {
				return res, err
			}
			inputs[wp.Namespace] = ein
		}
		cfg := waypointcfg.ForWaypoint(wp, ein, nsLabels[wp.Namespace], in.AuthorizationPolicies, o)
		wc := &xds.WaypointConfig{Listener: cfg.Listener, Routes: cfg.Routes, Clusters: cfg.Clusters, Endpoints: cfg.Endpoints}
		res.configs[xds.WaypointKey{Namespace: wp.Namespace, Name: wp.Name}] = wc
		for k, v := range status.RouteVerdicts(ein, cfg.Problems) {
			res.routes[k] = v
		}
		for _, p := range cfg.Problems {
			res.problems = append(res.problems, p)
		}
		for pk, c := range cfg.PolicyStatus {
			// A policy applying at several waypoints (the GatewayClass from the root
			// namespace) shows the first waypoint's verdict, unless another's is worse.
			if prev, ok := res.policies[pk]; fromWaypoint[pk] && ok && !(prev.Reason == translate.ReasonAccepted && c.Reason != translate.ReasonAccepted) {
				continue
			}
			res.policies[pk] = c
			fromWaypoint[pk] = true
		}
	}
	return res, nil
}
