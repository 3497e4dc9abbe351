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
package translate
