// Package route compiles the Envoy RouteConfigurations the controller serves to a waypoint
// (go-control-plane routev3 types) into an immutable [Table], and implements their
// semantics for a net/http proxy: virtual host and route selection, the route's action, the
// header mutations and rewrites, and the per-route configurations of the fault and CORS
// filters. It is pure: no network, no clock; randomness (runtime fractions, weighted
// clusters, mirrors, faults, back-off) comes from an injected [Rand].
//
// # Selection
//
// [Table.Match] picks the virtual host by :authority (or vhost_header) as Envoy does: exact
// domain, then the longest suffix wildcard ("*.example.com"), then the longest prefix
// wildcard ("example.*"), then "*"; case-insensitive, with the port unless
// ignore_port_in_host_matching. Domains must be unique. Then the first route whose match
// accepts the request: prefix, path, safe_regex (RE2, full match), path_separated_prefix,
// case_sensitive; headers (exact, prefix, suffix, contains, safe_regex, string_match with
// ignore_case, present_match, range_match, invert_match, treat_missing_header_as_empty;
// several values joined with ","; ":method", ":authority", ":scheme", ":path"); a missing
// header fails every matcher but an absent/inverted present_match, as in Envoy;
// query_parameters (first value, percent-decoded; string_match or present_match); grpc
// (content-type application/grpc…); runtime_fraction (the default value, drawn per request).
//
// # Actions
//
// A [Route] forwards ([Forward]), redirects ([Redirect]) or answers directly
// ([DirectResponse]). Forwarding: cluster or weighted_clusters ([Route.Pick]: random %
// total weight), cluster_not_found_response_code, timeout (Envoy's 15 s when unset, 0 for
// none), idle_timeout, max_stream_duration with grpc_timeout_header_max/offset,
// retry_policy ([RetryPolicy]: retry_on 5xx, gateway-error, reset, reset-before-request,
// connect-failure, retriable-4xx, refused-stream, retriable-status-codes and the gRPC
// cancelled, deadline-exceeded, resource-exhausted, unavailable, internal; num_retries
// (default 1), per_try_timeout, per_try_idle_timeout, retry_back_off, the previous_hosts
// predicate; the virtual host's policy when the route has none), request_mirror_policies
// ([Mirror], most specific non-empty list of route, virtual host, route configuration;
// "-shadow" host suffix), prefix_rewrite, regex_rewrite (\N substitutions),
// host_rewrite_literal (also per weighted cluster), append_x_forwarded_host and hash_policy
// ([Route.HashKey]: header, cookie (generated with its TTL when absent), source IP, query
// parameter; terminal). Redirects build the Location as Envoy does (scheme, host, port,
// path_redirect, prefix_rewrite, regex_rewrite, strip_query, response_code). Direct
// responses take an inline body up to max_direct_response_body_size_bytes.
//
// Header mutations (request/response headers to add with append_action, append or
// keep_empty_value, and to remove) apply per level, removals first, in Envoy's order:
// weighted cluster, route, virtual host, route configuration — so the least specific wins an
// overwrite — or the reverse with most_specific_header_mutations_wins
// ([Cluster.PrepareRequest], [Cluster.ApplyResponseHeaders], [Route.ApplyResponseHeaders]).
//
// # Per-filter configuration
//
// typed_per_filter_config is accepted at every level for envoy.filters.http.fault
// ([Fault]: fixed delay and HTTP or gRPC abort, each with its percentage, optional headers
// restriction), envoy.filters.http.cors ([CORS]: policies merged field by field from the
// most specific level, preflights answered directly, forward_not_matching_preflights,
// filter_enabled) and filters named envoy.filters.http.rbac…, kept as is for the RBAC
// package. [Route.FilterConfig] and [Cluster.FilterConfig] return the most specific
// (weighted cluster, route, virtual host, route configuration).
//
// # Refused
//
// Everything else that would change behaviour is a [Compile] error naming the field path,
// so that the waypoint NACKs the configuration rather than serving it differently:
// vhds, internal_only_headers, cluster_specifier_plugins, ignore_path_parameters_in_path_matching;
// virtual host matcher, require_tls other than NONE, rate_limits, legacy cors, hedge_policy,
// retry_policy_typed_config and the attempt-count headers; route filter_action and
// non_forwarding_action; match connect_matcher, path_match_policy, cookies, tls_context,
// dynamic_metadata, filter_state and the StringMatcher custom extension; action
// cluster_header, cluster specifier plugins, metadata_match, path_rewrite_policy,
// auto_host_rewrite and the other host rewrites, rate_limits, legacy cors,
// max_grpc_timeout, grpc_timeout_offset, upgrade_configs, internal redirects, hedge_policy,
// early_data_policy, a non-default priority; weighted cluster header_name and
// use_hash_policy; retry_on values not listed above, retry_priority, other host predicates,
// retriable_headers, retriable_request_headers, rate_limited_retry_back_off; hash
// filter_state; header values with %COMMAND% substitutions; header-controlled faults,
// response rate limits, max_active_faults, upstream_cluster and downstream_nodes; per-filter
// configuration of any other filter. Names, metadata, statistics, tracing and buffer-limit
// fields are accepted and ignored.
package route
