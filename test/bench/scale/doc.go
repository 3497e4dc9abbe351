// Package scale measures how Weft's controller copes with a large cluster: the time from a
// change in the Kubernetes API to the moment the last node agent that must see it has applied
// it (and so ACKs it), with the controller's CPU and memory. It is a benchmark, not a test: it
// reports and asserts nothing about the figures.
//
// A run ([Run]) starts a real control plane (test/controlplane: etcd and kube-apiserver, with
// kube-controller-manager and kube-scheduler idle beside them; no kubelets), fills it with a
// simulated cluster — Node objects kept Ready by Leases, one node-agent Pod per node (bound to
// its node, never run), namespaces of which most are labelled istio.io/dataplane-mode=ambient,
// Services without selectors with the EndpointSlices a kube-controller-manager would keep, and
// Pods with their status (IP, Ready) — then runs bin/weft-controller as a separate process and
// connects one simulated node agent per node: the node agent's own workload-discovery client
// (nodeagent/xds.Source over internal/identity.Dial, authenticated with a TokenRequest token of
// weft-system/weft-nodeagent for audience weft-ca, bound to that node's agent Pod). Each agent
// records the time it applied every snapshot; the Source ACKs as soon as apply returns.
//
// # What is affected by a change
//
// Which agents a change affects, and what they must end up holding, is decided by the
// controller's scoping rules (controller/translate: every node receives its own workloads,
// every enrolled workload, every service with an enrolled endpoint or a waypoint and the
// workloads behind those). Before each change the benchmark translates its own copy of the
// cluster's objects (the objects the apiserver returned) before and after the change and
// compares, per node, the resources that node receives ([Affected]): a node is affected when a
// resource it receives is added, removed or changes version. Its expectation is, for each of
// those resource names, the resource as the agent converts it (nodeagent/xds.Convert), or its
// absence. An agent has a change when a snapshot it applied holds exactly that for every such
// name ([Expectation.Met]); unaffected agents must apply nothing, and applies they make while
// a change is measured are counted as spurious. That the translation is the right oracle is
// checked once per run: after the initial sync every agent must hold exactly the names the
// translation gives its node, and one agent's whole content is compared resource by resource.
//
// # Latency
//
// For each change t0 is when the last apiserver write of the change returned; its latency is
// the time from t0 until the last affected agent applied a snapshot that holds the change (the
// first such snapshot). The controller's own view (/debug/push: when it pushed, sent and saw
// the ACK) is recorded beside it.
package scale
