// Package controlplane builds and runs a real Kubernetes control plane for
// tests and the local demo.
//
// [Ensure] builds kube-apiserver, kube-controller-manager, kube-scheduler,
// kube-proxy, kubectl and etcd from the Kubernetes Go modules (plus CoreDNS and
// fortio) into a cache directory keyed by version, so that only the first call
// on a machine is slow. [Start] runs etcd, kube-apiserver,
// kube-controller-manager and kube-scheduler on loopback with freshly generated
// certificates and tokens, and returns once the cluster is usable.
//
// The package is meant for Linux; processes can be placed in a cgroup v2
// directory with [Config.CgroupDir].
package controlplane
