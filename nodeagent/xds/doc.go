// Package xds is the node agent's workload-discovery client: a [config.Source] that receives
// the mesh from the controller over delta ADS (envoy.service.discovery.v3
// AggregatedDiscoveryService.DeltaAggregatedResources) and delivers it as [state.Snapshot]s,
// as [config.FileSource] delivers a local file.
//
// The resources are weft.workload.v1.Address ([api.AddressType]): a workload named by its uid,
// a service named "<namespace>/<hostname>" or an authorization policy named
// "authorization/<namespace>/<name>". [ConvertResource] turns one into a [state.Workload], a
// [state.Service] or a [state.Authorization] ([Convert] into one of the first two); a
// malformed resource is an [Errors] list of [ResourceError]s naming the resource and the
// field, e.g.
//
//	workload "Kubernetes//Pod/shop/web-1": addresses[1]: "10.0.0.x" is not an IP address; write an IPv4 or IPv6 address
//
// Field paths use the JSON names of the protobuf fields (lowerCamelCase), the notation of
// [state.Snapshot.Validate], whose problems are reported against the resource too.
//
// [Source] subscribes to every Address (a wildcard subscription) and keeps the resources in
// force. Each response is a delta applied on a copy of them; the result is converted,
// validated and handed to the agent. When all of that succeeds the response is ACKed and the
// copy becomes the resources in force. Otherwise it is NACKed with the reason (error_detail,
// code InvalidArgument) and nothing changes: the last good snapshot stays in force and the
// next response applies on top of it. A response is accepted or rejected as a whole.
//
// A broken stream is reopened with jittered exponential back-off. The new stream announces
// the resources in force (initial_resource_versions), so the controller sends only what
// changed meanwhile, removals included. While the controller is away the agent keeps serving
// with the last snapshot; nothing is ever cleared for want of a connection.
//
// The caller makes the gRPC connection (TLS, per-RPC token credentials) and hands it to
// [NewSource]; the package dials nothing.
package xds
