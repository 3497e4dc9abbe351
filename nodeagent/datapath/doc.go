// Package datapath loads, attaches and pins Weft's eBPF programs (bpf/) and manages their maps.
// It is the only package of Weft that uses cilium/ebpf; programs are compiled by bpf2go (gen.go)
// and the objects are committed, so loading never needs clang on the node.
//
// Every mesh socket lives inside the pod's own network namespace; nothing is attached to
// host-side interfaces, which keeps the data path independent of the cluster's CNI.
//
//   - Outbound: Attach puts cgroup/connect4, cgroup/connect6 and sockops programs on the node's
//     cgroup. A TCP connect() from an enrolled netns is rewritten to the agent's listener on
//     127.0.0.1/::1 port 15001 of that netns; the agent recovers the destination the application
//     asked for with OriginalDst.
//   - Inbound: EnrollPod attaches an sk_lookup program to the pod's netns that gives new TCP
//     connections to the pod's addresses to the agent's 15006 listener there, except HBONE
//     (15008), excluded ports, kubelet probes from the gateway and the agent's own connections
//     over lo.
//   - Source-IP preservation: the agent connects to the application with the source pod's
//     address (TransparentControl); EnrollPod installs the in-pod routing that brings the
//     replies back to it (srcip.go).
//
// Maps and links are pinned under Config.PinDir: closing the handles (an agent restart) leaves
// the programs attached, and the next Attach and EnrollPod switch the pinned links to the new
// programs atomically. README.md records the design decisions and the evidence behind them.
package datapath
