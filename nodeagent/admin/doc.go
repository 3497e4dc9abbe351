// Package admin serves the node agent's HTTP endpoints and defines its metrics.
//
// [Server] listens on the ports Istio ambient users know: 15000 for administration
// (/config_dump and /debug/pprof/, on 127.0.0.1 only), 15020 for Prometheus metrics (/metrics
// and /stats/prometheus) and 15021 for readiness (/healthz/ready).
//
// [Metrics] holds Istio's standard TCP metrics, with the names and labels of Istio's "Istio
// Standard Metrics" reference and ztunnel's implementation, so existing dashboards work:
//
//	istio_tcp_connections_opened_total
//	istio_tcp_connections_closed_total
//	istio_tcp_sent_bytes_total        bytes to the connection's client (response direction)
//	istio_tcp_received_bytes_total    bytes from the connection's client (request direction)
//
// with the labels reporter, source_workload, source_canonical_service,
// source_canonical_revision, source_workload_namespace, source_principal, source_app,
// source_version, source_cluster, destination_service, destination_service_namespace,
// destination_service_name, destination_workload, destination_canonical_service,
// destination_canonical_revision, destination_workload_namespace, destination_principal,
// destination_app, destination_version, destination_cluster, request_protocol, response_flags
// and connection_security_policy ([TCPLabelNames]). Missing values are "unknown", as in Istio.
// The proxy calls [Metrics.ConnOpened] once per connection and reports bytes and the close
// through the returned [ConnMetrics], which costs an atomic addition per call.
//
// Weft adds weft_nodeagent_passthrough_connections_total and
// weft_nodeagent_denied_connections_total, by direction and reason, for the capture
// decisions of the agent.
//
// Metrics are registered with a *prometheus.Registry the agent passes in, never with the
// global default registry.
package admin
