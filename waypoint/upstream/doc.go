// Package upstream holds the waypoint's upstream clusters: it compiles Envoy Clusters and
// ClusterLoadAssignments (as controller/envoy emits them) and implements them — endpoint
// discovery, load balancing, per-endpoint connection pools, circuit breakers and outlier
// detection — following Envoy's documented semantics. Every connection is opened through
// a [Dialer] (HBONE or plain TCP, chosen by the proxy from [Endpoint.Tunnel]); HTTP is
// spoken by net/http's single-connection [http.ClientConn], HTTP/1.1 or HTTP/2 cleartext
// with prior knowledge (h2c), never parsed here. [Cluster.DialTCP] opens a raw connection
// for tcp_proxy instead (load balancer, max_connections and outlier detection apply; see it).
//
// [Manager.Update] is all-or-nothing: everything is compiled first and any field the
// waypoint does not implement is refused with an error naming the cluster and the field,
// so the waypoint NACKs instead of silently behaving differently. Unchanged clusters keep
// their pools, counters and outlier state; endpoints are hosts by value, so a host that
// stays in a load assignment keeps its state too.
//
// Supported cluster fields:
//   - type EDS (eds_cluster_config over ADS; the load assignment named service_name or the
//     cluster's name), STATIC, STRICT_DNS and LOGICAL_DNS (load_assignment inline; names
//     resolved with the [Resolver] every dns_refresh_rate, default 5s, per
//     dns_lookup_family; requests wait for the first resolution; a failed lookup keeps the
//     previous addresses), ORIGINAL_DST with lb_policy CLUSTER_PROVIDED (the endpoint is
//     [Pick.OriginalDst]; unused hosts are forgotten after cleanup_interval, default 5s).
//   - lb_policy ROUND_ROBIN, RANDOM, LEAST_REQUEST (power of choice_count random choices,
//     default 2, over active requests), RING_HASH (minimum/maximum_ring_size; XX_HASH is
//     accepted but the ring is built with FNV-1a — placement differs from Envoy's, the
//     behaviour does not), MAGLEV (table_size, prime). The hash policies use
//     [Pick.HashKey]; without a hash they pick at random, as Envoy does. Only healthy,
//     non-ejected hosts are candidates, unless their share falls below
//     common_lb_config.healthy_panic_threshold (default 50%, 0 disables panic), when every
//     host is. [Pick.Exclude] avoids hosts already tried when others remain.
//   - connect_timeout (default 5s) bounds each dial.
//   - circuit_breakers.thresholds (priority DEFAULT; HIGH is accepted and unused, the
//     waypoint routes at default priority): max_connections, max_pending_requests,
//     max_requests, max_retries (defaults 1024, 1024, 1024, 3), track_remaining. As in
//     Envoy's pools: a request takes a free connection of its host, else waits as pending
//     (refused when max_pending_requests are waiting) while connections are opened up to
//     max_connections (a host without any connection still gets one); max_requests is
//     checked when a request gets its connection. Refusals are [*OverflowError] (503, UO).
//     max_retries is the [Cluster.TryRetry] budget.
//   - typed_extension_protocol_options[envoy.extensions.upstreams.http.v3.HttpProtocolOptions]:
//     explicit_http_config with http_protocol_options (HTTP/1.1, also the default without
//     the extension) or http2_protocol_options (h2c), both without options;
//     common_http_protocol_options idle_timeout (default 1h), max_connection_duration,
//     max_requests_per_connection.
//   - upstream_connection_options.tcp_keepalive, applied when the Dialer's connection
//     supports it (plain TCP).
//   - outlier_detection: consecutive_5xx, consecutive_gateway_failure (502/503/504 and
//     connect failures), consecutive_local_origin_failure with
//     split_external_local_origin_errors, their enforcing_* probabilities (defaults 100,
//     0, 100), success rate (enforcing_success_rate defaults to 100, as in Envoy) and
//     failure percentage detection, for both origins, each interval; interval (10s),
//     base_ejection_time (30s) × times ejected, capped by max_ejection_time (300s or
//     base), max_ejection_time_jitter, max_ejection_percent (10; a host is ejected only if
//     (ejected+1)/hosts stays within it), always_eject_one_host. Ejected hosts come back
//     when their time is over (at each interval and lazily at each pick); the multiplier
//     decays by one per interval a host stays in.
//   - load assignments: lb_endpoints with health_status HEALTHY/UNKNOWN (healthy) or
//     UNHEALTHY/DRAINING/TIMEOUT (not picked, counted for the panic threshold), the
//     metadata filter_metadata["weft"] (tunnel "HBONE", identity, workload, namespace, app,
//     version; absent = plain TCP), equal load_balancing_weights, locality (informational),
//     priority 0, policy.overprovisioning_factor.
//
// Refused: other cluster types and lb_policies, load_balancing_policy, transport_socket,
// health_checks, per-host thresholds, retry_budget, max_connection_pools, auto/downstream
// protocol selection, HTTP/1 or HTTP/2 protocol options, locality-weighted or zone-aware
// balancing, priorities, unequal endpoint weights, DEGRADED endpoints, respect_dns_ttl,
// custom DNS resolvers, and every other field that is set.
package upstream
