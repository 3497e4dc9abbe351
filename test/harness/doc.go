// Package harness builds a small Kubernetes cluster out of network namespaces on one Linux kernel,
// for Weft's privileged tests, the local demo and the benchmarks.
//
// The control plane is real (kube-apiserver, etcd, kube-controller-manager, kube-scheduler from
// package controlplane, on loopback). The harness plays the rest of a cluster:
//
//   - Nodes are network namespaces on an underlay bridge that lives in a namespace of its own. Each
//     node has a node IP, a cgroup v2 subtree, a bpffs pin directory, a kube-proxy process and a
//     forwarder that makes the apiserver reachable at APIServerVIP:6443 from inside the node.
//   - Pods bound to a node are run as a kubelet would: a network namespace built by the real CNI
//     plugins (bridge + host-local, chained so a mesh plugin can join), a cgroup under the node,
//     volumes (configMap, secret, projected service-account token, downward API, emptyDir,
//     hostPath) bind-mounted in a private mount namespace, and container images mapped to local
//     binaries (see Images). Status, probes and deletion work as in a cluster.
//
// Addresses come from ranges reserved for documentation and benchmarking (RFC 5737, RFC 2544),
// which exist only inside the namespaces the harness creates:
//
//	underlay (node IPs)   192.0.2.0/24      node N is 192.0.2.(10+N); IPv6 2001:db8:2::(10+N)
//	pod CIDR              198.18.0.0/16     node N owns 198.18.N.0/24; IPv6 2001:db8:18:N::/64
//	service CIDR          198.19.0.0/16     kubernetes = 198.19.0.1, kube-dns = 198.19.0.10
//	apiserver VIP         203.0.113.1:6443  on the loopback device of every node
//
// Everything a run creates carries its run ID (namespaces weft-<run>-*, cgroup weft-<run>, pins
// under /sys/fs/bpf/weft-<run>, state under /run/weft-harness/<run>) and is removed by Cluster.Close,
// on SIGINT/SIGTERM by the CLI, and by Clean after a crash.
package harness
