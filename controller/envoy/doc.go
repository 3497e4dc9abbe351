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
// Every LbEndpoint backed by a pod of the namespace carries filter_metadata["weft"]: tunnel
// "HBONE" and identity "spiffe://<td>/ns/<ns>/sa/<sa>" for a workload in the mesh (enrolled, as
// translate.Enrolled decides from Input.NamespaceLabels, or a waypoint's pod), so the
// waypoint re-tunnels to it over HBONE and verifies that identity; and workload, namespace,
// app and version (canonical service and revision) for Istio's metrics labels.
//
// controller/waypointcfg merges the RBAC filters of controller/rbac into this configuration;
// controller/app serves the result to each waypoint from controller/xds.
package envoy
