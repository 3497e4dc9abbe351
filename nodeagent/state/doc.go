// Package state holds what the node agent knows about the mesh: workloads, services, the
// peer authentication that applies to each workload and the authorization policies, as one
// immutable [Snapshot] per configuration version, and the [Store] that hands the current
// snapshot to the proxy.
//
// The types follow Istio's workload-discovery API (istio.workload.Workload and
// istio.workload.Service), with the same field names where the concepts match, so that a
// workload-discovery xDS client can fill them directly. Where Weft needs more than Istio's API
// carries (the excluded ports of the traffic.sidecar.istio.io annotations, the effective
// PeerAuthentication modes of a workload), the controller resolves it and sends the result.
//
// A [Snapshot] is built once by [NewSnapshot], which copies the workloads, services and
// authorizations ([WithAuthorizations]) it is given and indexes them for the lookups of the
// proxy's hot path: [Snapshot.WorkloadByIP], [Snapshot.WorkloadByUID],
// [Snapshot.ServiceByAddr], [Snapshot.LocalWorkloads], [Snapshot.PickEndpoint],
// [Snapshot.InboundMode] and [Snapshot.PoliciesFor]. None of them allocates.
//
// An [Authorization] is an Istio AuthorizationPolicy as the agent enforces it at L4 (scope,
// action, rules of clauses of matches); package nodeagent/authz evaluates the policies that
// [Snapshot.PoliciesFor] returns for a workload. [Snapshot.Validate]
// reports every problem of the content with the path of the field at fault, in the same
// notation as the configuration file (workloads[3].addresses[0]), and how to fix it.
//
// A [Store] holds the snapshot in force. [Store.Replace] swaps in a new one atomically and
// refuses a snapshot that does not validate; readers call [Store.Load] and never wait for a
// writer. A connection should load the snapshot once and make all its decisions with it.
//
// The package does no I/O.
package state
