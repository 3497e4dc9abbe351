// Package translate turns the Kubernetes objects the controller watches into the resources of
// workload discovery (api/workload/v1) and decides which of them each node agent receives. It
// is pure: no client, no clock, no goroutines, so every decision is pinned by golden files
// (testdata/*.yaml → testdata/*.golden; `go test ./controller/translate -update` rewrites them).
//
// Enrollment follows Istio ambient: a pod is in the mesh (tunnel protocol HBONE) when its own
// istio.io/dataplane-mode label is "ambient", or its namespace's is and the pod's is not "none".
// Host-network pods are never enrolled.
//
// What a node receives: every workload scheduled on it, started or not (its agent enrolls them
// or not; a pod without an address yet is enrolled from the CNI plugin's report, before its
// containers start), every enrolled workload with an address elsewhere (possible destinations of the tunnel), every service with an
// enrolled endpoint or a waypoint, and the workloads behind those services. Workloads and
// services outside the mesh are left out: a connection to them passes through the agent as
// plain TCP whether or not the agent knows them, so they would only cost memory and pushes.
//
// AuthorizationPolicies become authorization resources ("authorization/<namespace>/<name>")
// with Istio ambient's L4 semantics (see authorization): a policy in the root namespace without
// selector is GLOBAL, one without selector NAMESPACE, one with selector.matchLabels
// WORKLOAD_SELECTOR, and every enrolled workload it selects names it in authorization_policies
// (a root-namespace selector selects in every namespace). Policies are enforced by the
// destination's agent, so a node receives the GLOBAL policies, the NAMESPACE policies of the
// namespaces with an enrolled workload on the node, and the WORKLOAD_SELECTOR policies that
// select an enrolled workload on the node. A workload received from another node may name
// policies this node does not receive; only the workload's own node enforces them. What L4
// cannot enforce (HTTP attributes, connection.sni, CUSTOM, dry-run, targetRefs, malformed
// fields) is resolved in the safe direction and reported per policy in Mesh.PolicyStatus, with
// the condition types Istio writes (ZtunnelAccepted, WaypointAccepted).
package translate
