// Package grpcxds holds the independent-consumer conformance test of the waypoint's xDS:
// grpc-go's own xDS client and server (google.golang.org/grpc/xds) read what the controller
// (controller/xds, as a proxyless gRPC node) serves for one waypoint, and the routing and
// RBAC decisions they make are compared with those of Weft's waypoint (waypoint/proxy)
// given the same Listener, RouteConfigurations, Clusters and ClusterLoadAssignments.
//
// Everything runs in one process on loopback: the controller's ADS on 127.0.0.1, two gRPC
// backends (v1 on 127.0.0.2, v2 on 127.0.0.3, same port) that are the endpoints of the
// translated Services. gRPC's transport is plaintext (insecure credentials): there is no
// peer principal, so the policies compared match on paths and headers only.
package grpcxds
