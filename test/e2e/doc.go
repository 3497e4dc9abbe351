// Package e2e holds Weft's end-to-end tests. They run in harness clusters (package
// test/harness) and are privileged: named TestPrivileged…, gated by privileged.Require.
package e2e
