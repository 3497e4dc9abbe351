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
// the condition types Istio writes (ZtunnelAccepted, WaypointAccepted). A targetRefs policy is
// WaypointAccepted=True when every target is a waypoint Gateway, the istio-waypoint class, or a
// Service bound to a waypoint (what the waypoint enforces of it is controller/rbac's to say).
//
// Waypoints (Input.Gateways): a Gateway of class istio-waypoint with one listener on port 15008,
// protocol HBONE, is a waypoint (IsWaypoint). Its pods (label
// gateway.networking.k8s.io/gateway-name=<gateway>, service account <gateway>) are workloads
// with native_tunnel and tunnel protocol HBONE, sent to every node whatever their namespace's
// mode: agents reach them over HBONE and never capture them; waypoints have no waypoint. Its
// Service is an ordinary service (VIP, port 15008, the pods as endpoints). istio.io/use-waypoint
// on a Service or Pod, else on its namespace, names the waypoint ("none" opts out), in the
// namespace istio.io/use-waypoint-namespace names (read from the same object); the Gateway's
// istio.io/waypoint-for (service by default, workload, all, none) decides whether it becomes the
// Service's waypoint (traffic to the VIP), the enrolled Workload's (traffic to the pod IP),
// both or neither. The GatewayAddress always carries the waypoint Service's namespace and
// hostname, and its VIP once the waypoint is deployed: a waypoint that is missing or invalid
// still appears (without address), so agents refuse the traffic instead of bypassing the
// waypoint, unless weft.dev/waypoint-fallback=direct on the pod, service or namespace sets
// fallback_direct. Such problems are warnings. Mesh.Waypoints lists each waypoint with the
// Services and workloads bound to it.
package translate
