// Package xds is the waypoint's client of the controller's Envoy xDS: one delta ADS stream
// with a wildcard subscription to each of Listener, RouteConfiguration, Cluster and
// ClusterLoadAssignment, over a gRPC connection the caller provides (internal/identity.Dial
// with the pod's token as identity.TokenCredentials).
//
// Each response is applied on a copy of the resources held for its type; every resource is
// unmarshalled and checked with its generated ValidateAll(), and its name must be the one it
// is sent under. The complete set of the four types (a [Resources], each slice sorted by
// name) is then handed to the caller's apply function. When anything fails — a resource, or
// apply — the response is NACKed with an error_detail (InvalidArgument) naming the resource
// and the reason, and the last good set stays in force; otherwise it is ACKed.
//
// Until a set has been applied once, responses are validated and ACKed but apply is called
// only when each of the four types has answered (go-control-plane answers a wildcard
// subscription at once, even empty), so the proxy never starts from a Listener without its
// routes and clusters.
//
// A broken stream is reopened after a jittered exponential back-off (100 ms doubling to 5 s,
// reset after a stream stayed up 10 s), announcing the versions held
// (initial_resource_versions) so the server sends only what differs. After a NACK that no
// later response settled, the stream is ended and reopened after ResyncAfterNACK, as the node
// agent does, so the server resends what it believed delivered. The node ID and metadata go
// on the first request of every stream.
//
// The package imports neither controller/ nor nodeagent/.
package xds
