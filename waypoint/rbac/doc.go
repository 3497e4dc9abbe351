// Package rbac evaluates Envoy HTTP RBAC filter configs
// (envoy.extensions.filters.http.rbac.v3.RBAC and RBACPerRoute) for the waypoint proxy, with
// Envoy's semantics. Compile turns one filter config into a Filter once (regexes compiled,
// CIDRs parsed, header names resolved); Filter.Evaluate decides one request without
// allocating (except when a matched header is repeated: its values are joined with ",").
// A chain of filters is evaluated in order, and the first one that denies answers 403
// "RBAC: access denied".
//
// # Actions and rules
//
//   - rules absent: the filter enforces nothing (every request is allowed);
//   - ALLOW: the request is allowed when a policy matches, denied otherwise (so an ALLOW
//     with no policies denies everything);
//   - DENY: the request is denied when a policy matches;
//   - LOG: the request is always allowed; Decision.Logged reports a match (Envoy's
//     access_log_hint), for the access log.
//
// A policy matches when any of its permissions and any of its principals match. Policies are
// tried in the order of their names (Envoy keeps them in a sorted map) and the first match is
// the effective policy (Decision.Policy). shadow_rules are evaluated the same way and
// reported in Decision.Shadow (Envoy's shadow_engine_result and shadow_effective_policy_id),
// never enforced; a LOG shadow engine reports "allowed" and does not mark the access log.
// An RBACPerRoute without rbac disables the filter for the route (rules and shadow rules).
//
// # Matchers
//
// Permissions: any, and_rules, or_rules, not_rule, header, url_path, destination_ip,
// destination_port, destination_port_range ([start, end)), requested_server_name (the
// waypoint has no SNI for a request, so it is matched against "").
//
// Principals: any, and_ids, or_ids, not_id, authenticated, source_ip, direct_remote_ip,
// remote_ip, header, url_path.
//
//   - authenticated matches only a request with a Principal (the peer's SPIFFE ID, the URI
//     SAN of its certificate); without principal_name it matches every authenticated
//     request. Envoy would also try DNS SANs and the subject; the waypoint only has the
//     URI SAN.
//   - source_ip, direct_remote_ip and remote_ip all compare Request.SourceIP, the original
//     client address carried by HBONE; destination_ip compares Request.DestinationIP.
//     IPv4-mapped IPv6 addresses (::ffff:a.b.c.d, as Go reports IPv4 peers of a dual-stack
//     socket) are compared as IPv4. An address of the other family never matches.
//   - header follows Envoy's HeaderMatcher: string_match (exact, prefix, suffix, contains,
//     safe_regex, with ignore_case), the older exact_match, prefix_match, suffix_match,
//     contains_match, safe_regex_match, range_match ([start, end) over the value as a
//     decimal integer) and present_match; invert_match; treat_missing_header_as_empty. A
//     missing header matches nothing unless treat_missing_header_as_empty is set (it is
//     then the empty value), except present_match, which matches a missing header when it
//     is false (or when it is true and inverted). Repeated headers are joined with ",".
//     The names :method, :authority (and host) and :path read Request.Method, Host and
//     Path; an empty one is a missing header.
//   - url_path matches :path without its query string and fragment. The path is matched as
//     given: normalizing it first (Envoy's normalize_path and merge_slashes, which Istio
//     turns on) is the caller's job, or "/a/../admin" escapes a rule on "/admin/".
//   - String matching follows Envoy's StringMatcher: ignore_case folds ASCII letters only
//     and has no effect on safe_regex; a regex must match the whole value (RE2 full match;
//     Go's regexp is RE2's syntax).
//
// # Refused
//
// Compile returns an error naming the field (so the waypoint NACKs the config) for what the
// waypoint cannot evaluate as Envoy would: the filter's matcher and shadow_matcher (matcher
// trees), the engine's audit_logging_options, a policy's condition, checked_condition and
// cel_config (CEL), the permissions metadata, sourced_metadata, matcher and uri_template,
// the principals metadata, sourced_metadata, filter_state and custom, custom string
// matchers, header names that are pseudo-headers other than :method, :authority and :path,
// and unknown fields (a config from a newer API). Invalid values are refused too: a config
// that fails go-control-plane's Validate, an invalid regex, CIDR or port range.
package rbac
