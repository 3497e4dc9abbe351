// Package envoy translates the traffic rules of one waypoint's namespace — Services, their
// EndpointSlices and Pods, Istio VirtualServices, DestinationRules and ServiceEntries, Gateway
// API HTTPRoutes attached to Services (GAMMA) — into standard Envoy
// xDS resources built with go-control-plane's types: one Listener, a RouteConfiguration per
// HTTP service port, a Cluster per service port and DestinationRule subset (named
// "outbound|<port>|<subset>|<host>" as Istio names them) and a ClusterLoadAssignment per EDS
// cluster; ServiceEntry hosts (resolution DNS or STATIC) get STRICT_DNS/LOGICAL_DNS/STATIC
// clusters with their endpoints inline.
//
// HTTPRoutes of a Service are merged and their matches ordered by Gateway API precedence, as
// Istio does; on a port that an HTTPRoute routes, a VirtualService of the same service is
// ignored and reported (Istio does not support mixing both and favours Gateway API routes).
//
// The translation is pure (no I/O, no clock) and golden-tested (testdata/*.yaml → *.golden, go
// test -update rewrites them). Every resource it returns passed its generated ValidateAll();
// what it cannot translate is reported as a [Problem] naming the object, the field and the
// fix, and only the affected part is left out: a route is dropped, a field is ignored when
// ignoring it is harmless, an object is skipped when it is not.
//
// Nothing consumes it yet: the next step (issue 6) is the controller's waypoint support —
// finding the waypoints (Gateways of class istio-waypoint, listed by controller/cluster),
// calling [Build] for each waypoint's namespace and serving the result to that waypoint over
// delta ADS from controller/xds, writing the Problems as VirtualService and DestinationRule
// status conditions — and the waypoint proxy (waypoint/) that implements these resources.
package envoy
