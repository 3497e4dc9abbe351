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
// Pod-addressed traffic (a waypoint whose istio.io/waypoint-for is workload or all; its bound
// pods are Input.Workloads): as Istio's waypoint, the waypoint forwards such traffic to that
// very pod. Per address and port of a bound pod of the namespace there is a filter chain
// "inbound-pod|<port>|<ip>" ([PodName]) matching the port and the address (prefix_ranges
// /32 or /128, more specific than the Service chains of the port, which Envoy's matching
// prefers), and a STATIC cluster of the same name whose one endpoint is the pod with the
// metadata above, so the waypoint re-tunnels over HBONE and verifies the pod's identity (an
// ORIGINAL_DST cluster would carry no identity). An HTTP port (one some Service of the pod
// names http/http2/grpc) gets a connection manager whose route configuration has one virtual
// host "*" routing every request to the pod (Istio's default retry policy, no timeout; the
// Services' VirtualServices, DestinationRules and faults do not apply, and the Host header
// cannot steer it elsewhere); other ports get tcp_proxy. The ports are the pod's target ports
// of its Services plus every port a Service chain uses, so pod-addressed traffic never falls
// into a Service's chain; other ports have no chain and the waypoint refuses them. Pods of
// other namespaces are reported and not served.
//
// controller/waypointcfg merges the RBAC filters of controller/rbac into this configuration;
// controller/app serves the result to each waypoint from controller/xds.
package envoy
