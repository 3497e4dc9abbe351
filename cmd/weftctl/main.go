// Command weftctl inspects a Weft mesh from the cluster's objects, with the controller's own
// translation (controller/explain):
//
//	weftctl authz check <pod> [-n namespace]   the AuthorizationPolicies that apply to a workload, and why
//	weftctl tls-check <pod> [-n namespace]     the effective mutual TLS mode per port
//	weftctl waypoint apply -n <ns> [--name waypoint] [--enroll-namespace] [--for service|workload|all|none] [--wait]
//	weftctl waypoint delete -n <ns> [--name waypoint]
//	weftctl waypoint list [-n <ns> | -A]
//	weftctl analyze [-n <ns> | -A]              what is wrong with the mesh configuration, with the field and the fix
//
// It reads the cluster as kubectl does (--kubeconfig, KUBECONFIG, ~/.kube/config); -o json
// prints the same answer as JSON.
package main

import (
	"fmt"
	"os"
)

func main() {
	cmd := newRootCommand(connectKubeconfig)
	cmd.SetOut(os.Stdout)
	cmd.SetErr(os.Stderr)
	if err := cmd.Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "weftctl:", err)
		os.Exit(1)
	}
}
