// Package bench measures Weft's data path against the physical limit of the harness cluster
// (package test/harness): the same pods, the same cross-node path, with and without a mesh.
//
// A run (type Run) executes a list of workloads (HTTP/1.1 at fixed and maximum rates with fortio,
// one request per connection, bulk TCP with the bulk test app) for every scenario. The first
// scenario is the baseline, "no-mesh": plain pod→pod across the two nodes. Every later scenario
// (Weft L4; Weft L7 through a waypoint, at the fixed rates only — Scenario.Workloads; the HAProxy
// and stunnel mTLS tunnels and nginx, DeployPeers; the agents with iptables capture, IPTablesPass,
// a second pass) is another row per workload, and every row carries the ratio of its figures to
// the baseline row of the same run, so that runs on different machines compare by ratio rather
// than by absolute numbers.
//
// The same-node pair (SameNodeScenarios) measures the path without an underlay hop: client and
// server pods both on the client's node (Targets.SameNode), once plain ("no-mesh-same-node") and
// once enrolled ("weft-same-node": the node's agent takes the connection and hands it to the
// server pod itself), for a few workloads (SameNodeWorkloads). A scenario may name its own
// baseline (Scenario.Baseline): both rows of the pair divide by "no-mesh-same-node", so that
// weft-same-node is not flattered by comparing it with the cross-node no-mesh.
//
// The scenarios are interleaved to limit drift (Runner.Run): for each workload and repetition,
// each scenario in turn is entered (Scenario.Enter; MeshSwitch enrols or unenrols the namespace
// and checks the path) and measured after a warm-up. Each workload is repeated
// (Plan.Repetitions); the reported figure is the median of the repetitions with their minimum and
// maximum as the spread. An AgentMeter records, for every repetition, the CPU time and peak
// memory of the mesh's node agents from their cgroups and /proc (the Agent* metrics); a
// WaypointMeter does the same for the waypoint pod (the Waypoint* metrics), and the Markdown
// sets the L7 rows against their targets (p99 overhead, vCPU and peak RSS per 1000 rps).
//
// Results are written as JSON (the Run itself), as SVG plots of latency, the agents' resources
// and throughput (WritePlots, with gonum/plot) and as Markdown tables (WriteMarkdown) that link
// the plots (WritePlotLinks). The
// command test/bench/cmd/weft-bench drives a run against a fresh harness cluster (make bench).
package bench
