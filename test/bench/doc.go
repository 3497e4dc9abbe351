// Package bench measures Weft's data path against the physical limit of the harness cluster
// (package test/harness): the same pods, the same cross-node path, with and without a mesh.
//
// A run (type Run) executes a list of workloads (HTTP/1.1 at fixed and maximum rates with fortio,
// one request per connection, bulk TCP with the bulk test app) once per scenario. The first
// scenario is the baseline, "no-mesh": plain pod→pod across the two nodes. Every later scenario
// (Weft L4, Weft L7, peer meshes) is another row per workload, and every row carries the ratio of
// its figures to the baseline row of the same run, so that runs on different machines compare by
// ratio rather than by absolute numbers.
//
// Each workload is repeated (Plan.Repetitions) after a warm-up; the reported figure is the median
// of the repetitions with their minimum and maximum as the spread. Results are written as JSON
// (the Run itself) and as a Markdown table (WriteMarkdown). The command test/bench/cmd/weft-bench
// drives a run against a fresh harness cluster (make bench).
package bench
