// Package proxy is the waypoint's data path: it terminates HBONE tunnels, selects the filter
// chain of each tunnel's destination as Envoy matches filter chains (destination port, then
// the longest prefix range containing the address; a chain without prefix ranges matches any
// address), and serves the chain: an HTTP connection manager (HTTP/1.1 and prior-knowledge
// HTTP/2 through net/http, with CORS, RBAC, fault and the router) or tcp_proxy with network
// RBAC. A Service's HTTP chain picks the virtual host by the tunnel's destination (the
// service VIP:port), else by :authority.
//
// Pod-addressed traffic (waypoint-for workload or all): the controller gives each bound pod
// address and port a chain with a /32 or /128 prefix range, more specific than the Service
// chains of the port, whose single virtual host "*" (or tcp_proxy) sends everything to a
// STATIC cluster holding only that pod, with its identity in the endpoint metadata: the
// request reaches that very pod over an HBONE tunnel verifying its identity, whatever its Host
// header, under the waypoint-wide RBAC filters of the chain; metrics name the pod as the
// destination workload. A destination with no chain is refused (Accept answers 400).
package proxy
