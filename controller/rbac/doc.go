// Package rbac translates the AuthorizationPolicies that apply at a waypoint into Envoy HTTP
// RBAC filter configs (envoy.extensions.filters.http.rbac.v3.RBAC), as istiod does for a
// waypoint (istio pilot/pkg/security/authz/builder), with the differences listed below. It is
// pure: no clients, no caches, no I/O.
//
// # What applies at a waypoint
//
// A policy applies when it has targetRefs (or the older targetRef) naming
//   - the waypoint's Gateway (group gateway.networking.k8s.io, kind Gateway, in the policy's
//     namespace): it applies to all traffic through the waypoint;
//   - the GatewayClass istio-waypoint, from the root namespace: it applies to every waypoint;
//   - a Service (group "" or core, in the policy's namespace) bound to the waypoint
//     (Input.Services): it applies to traffic for that Service only.
//
// Policies with a selector, or with neither, are enforced by the node agents
// (controller/translate), never here.
//
// # Service-targeted policies: keyed by Service
//
// A Service-targeted policy is returned keyed by the Service (Output.Services) rather than
// expressed as a host or destination match: the waypoint already knows which Service a
// request is for (it routes by it), as Istio's waypoint does with one filter chain per
// Service, and a host match would depend on how the client spelled :authority. The
// filters for a Service combine the waypoint-wide policies with the Service's own; traffic to
// a Service with no policy of its own uses Output.Gateway.
//
// # Evaluation order
//
// Each action becomes its own filter, in this order (the order of Output's slices):
//  1. AUDIT: action LOG; it never denies, it marks matching requests for the access log;
//  2. DENY (with CUSTOM, see below): a matching request is denied (403);
//  3. ALLOW: present as soon as one ALLOW policy applies, even one whose rules were all
//     dropped; a request no ALLOW rule matches is denied. Without ALLOW policies there is no
//     ALLOW filter and the request is allowed.
//
// Dry-run policies (annotation istio.io/dry-run: "true") go into the filter's shadow_rules
// with Istio's stat prefixes (istio_dry_run_allow_, istio_dry_run_deny_; istio_dry_run_audit_
// for AUDIT, which Istio does not dry-run) and never decide a request. An annotation value
// that is not a boolean is ignored (the policy is enforced), as in Istio.
//
// # What the consumer must provide
//
// The waypoint that evaluates these configs (waypoint/proxy, with waypoint/rbac) must
// present, per request:
//   - the client's SPIFFE identity from the HBONE mTLS connection as the authenticated
//     principal (principal_name "spiffe://<trust domain>/ns/<ns>/sa/<sa>");
//   - the original client address carried by HBONE as direct_remote_ip, and remote_ip as
//     Envoy derives it (the same address unless X-Forwarded-For is trusted);
//   - the Service port as destination_port and the Service address as destination_ip;
//   - :authority without its port (Envoy's strip_any_host_port, as Istio configures it), so
//     that hosts match "reviews" and not "reviews:9080";
//   - repeated request headers joined with "," (Envoy's rule; the header regexes expect it).
//
// # Differences from istiod, each in the direction that never allows more
//
//   - A field that cannot be enforced here (requestPrincipals, request.auth.*,
//     connection.sni, experimental.*, path templates) or is malformed (bad CIDR, port, empty
//     value, unknown condition key): in ALLOW its whole rule is dropped (it matches nothing),
//     in DENY and AUDIT the field is removed from its rule (which matches more). istiod skips
//     the bad value, which in ALLOW can allow more. Each one is reported in the policy's
//     WaypointAccepted condition with its field path and the fix.
//   - CUSTOM: there is no external authorizer, so the requests a CUSTOM policy's rules match
//     are denied, as istiod does when the provider is not usable.
//   - Regular expressions escape the policy's values (istiod splices them in raw, so "." in a
//     principal matches any character) and namespace matches are anchored on the SPIFFE
//     layout ("spiffe://<td>/ns/<ns>/sa/<sa>").
//   - trustDomains, notTrustDomains and source.trustDomain are matched on the principal's
//     trust domain (no trust-domain aliases).
package rbac
