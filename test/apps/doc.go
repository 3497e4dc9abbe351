// Package apps holds the test applications of Weft's test harness.
//
// The applications stand in for the sample apps of service-mesh tutorials
// (gw, books v1/v2, ratings v1/v2, ...). The harness runs them as processes
// inside network namespaces, so every binary is configured by flags and
// environment variables, logs JSON to stderr and exits cleanly on SIGTERM.
//
// Binaries:
//
//   - echo: HTTP/1.1 + h2c echo server with probes, fault injection,
//     payload padding, upstream chaining, optional gRPC health and TCP echo.
//   - client: load generator for HTTP, gRPC health and TCP echo that reports
//     status, version shares, error kinds and latency percentiles.
//   - bulk: bulk TCP transfer with SHA-256 verification and throughput report.
//
// Reusable packages: echo/echoserver (the echo JSON schema and handler),
// client/report (aggregation of client results), client/load (request
// runners) and bulk/transfer (the bulk protocol).
package apps
