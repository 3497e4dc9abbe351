// Package grpcxds shapes one waypoint's Envoy configuration (controller/waypointcfg's output,
// as controller/xds serves it to waypoints) for proxyless gRPC (google.golang.org/grpc/xds
// and the other gRPC xDS clients), as istiod's "grpc" generator does.
//
// A gRPC xDS client does not run a listener: it asks for a client-side Listener named by its
// dial target ("xds:///books.shop.svc.cluster.local:80" asks for
// "books.shop.svc.cluster.local:80") whose api_listener is an HttpConnectionManager, and
// applies the RouteConfiguration it names (virtual hosts, header matches, weighted clusters,
// fault injection) itself. A gRPC xDS server asks for a server-side Listener named after the
// address it listens on, "grpc/server?xds.resource.listening_address=<ip:port>" (gRFC A36),
// and enforces the RBAC HTTP filters of that Listener's connection manager (gRFC A41).
//
// # What is served
//
//   - The RouteConfigurations, Clusters and ClusterLoadAssignments unchanged (the same
//     messages, byte for byte).
//   - [ClientListeners]: one Listener per virtual host "<host>:<port>" of the waypoint's
//     routes, named like it, whose api_listener is the waypoint's HttpConnectionManager of that
//     port (rds over ADS, same route name) with its HTTP filters minus those gRPC applies on
//     the server side only (the RBAC filters, enforced by the server listener) and minus CORS
//     (a browser protocol: gRPC clients send no preflights and gRPC has no CORS filter). Any
//     other filter than fault and router is an error: nothing is dropped silently.
//   - [ServerListener]: for a requested listening address, a Listener with that address and
//     one filter chain whose connection manager carries the waypoint's RBAC filters (the same
//     HttpFilter messages, in the same AUDIT → DENY → ALLOW order) and the router, and an
//     inline RouteConfiguration with one virtual host per service port the address is an
//     endpoint of (the waypoint's virtual host: same name, domains and
//     typed_per_filter_config, so each Service's own policies replace the waypoint-wide ones
//     exactly as at the waypoint), each with one route matching everything whose action is
//     non_forwarding_action (what gRFC A36 requires of a server). An address that is no
//     endpoint of any service gets a listener without virtual hosts: gRPC refuses every RPC,
//     so a server the controller cannot place never runs without the policies meant for it.
//     An unspecified address (0.0.0.0, ::) matches every endpoint with that port.
//
// gRPC evaluates the RBAC rules with what it knows: with plaintext (insecure) transport there
// is no peer principal, so rules naming principals do not match, as at a waypoint reached
// without mTLS.
package grpcxds
