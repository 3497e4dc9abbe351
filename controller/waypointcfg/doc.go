// Package waypointcfg builds the complete Envoy configuration of one waypoint: the routing of
// its namespace (controller/envoy) with the HTTP RBAC filters of the AuthorizationPolicies
// attached to it (controller/rbac) merged in. It is pure, like both.
//
// # The merge
//
// When at least one policy applies at the waypoint, every HTTP connection manager of the
// Listener gets three RBAC filters, named [AuditFilter], [DenyFilter] and [AllowFilter], after
// the CORS filter (CORS preflights are answered before authorization, as in Istio) and before
// the fault filter and the router: Istio's AUDIT → DENY → ALLOW order. Each carries the
// waypoint-wide config (rbac.Output.Gateway) of its action, or an RBAC without rules (no
// enforcement, Envoy's meaning of an absent `rules`) when there is none for that action.
//
// A Service with policies of its own (rbac.Output.Services) gets, on each of its virtual hosts,
// typed_per_filter_config[<filter>] = RBACPerRoute{rbac: its config for that action}, or an
// RBAC without rules when it has none for that action: Envoy uses the most specific
// per-route config in place of the filter's own, so the Service's set (which already includes
// the waypoint-wide policies) replaces the waypoint's.
//
// TCP chains (tcp_proxy, one per Service TCP port, named "<host>:<port>") get three network
// RBAC filters before tcp_proxy, named [NetworkAuditFilter], [NetworkDenyFilter] and
// [NetworkAllowFilter], carrying the Service's own set when it has policies, else the
// waypoint-wide set, each made L4-only by [NetworkRBAC] in the safe direction (an ALLOW rule
// needing HTTP attributes matches nothing; DENY and AUDIT rules drop their HTTP parts).
//
// The chains of pod-addressed traffic ("inbound-pod|<port>|<ip>", envoy.PodName) name no
// Service: they get the waypoint-wide filters only, HTTP and network alike, and their virtual
// host no per-route override — as in Istio, policies targeting a Service apply to traffic
// addressed to the Service, not to traffic addressed to one of its pods.
//
// Without any applicable policy no RBAC filter is added. If the filters cannot be added (not
// expected: every config passed ValidateAll), the Listener is left out, so the waypoint serves
// nothing rather than serving without authorization, and a Problem says so.
package waypointcfg
