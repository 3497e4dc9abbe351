// Package iptables is the node agent's alternative capture: iptables REDIRECT rules in each
// enrolled pod's network namespace, as Istio's in-pod redirection installs them, instead of the
// eBPF data path (nodeagent/datapath). It exists to measure what eBPF buys (bench scenario
// weft-iptables); the eBPF path stays the default.
//
// EnrollPod installs, in the pod's netns (nat table, IPv4 and, for pods with IPv6 addresses,
// IPv6), two chains and the jumps to them:
//
//   - WEFT_OUTPUT (from OUTPUT, TCP): sockets marked with the agent mark (SO_MARK&AgentMarkMask ==
//     AgentMark: the agent's own, upstream ones included) and traffic over lo are left alone, as
//     are excluded outbound ports; every other TCP connection is REDIRECTed to OutboundPort
//     (127.0.0.1 / ::1).
//   - WEFT_PREROUTING (from PREROUTING, TCP): HBONE (HBONEPort), excluded inbound ports,
//     connections from the gateways (kubelet probes) and from lo are left alone; TCP to the pod's
//     addresses is REDIRECTed to InboundPort.
//
// The rules are applied atomically per family with iptables-restore --noflush (whichever
// iptables the node has, nft or legacy), run on a thread inside the pod's netns. The reply
// routing that brings the application's replies back to the agent's transparent upstream sockets
// is the eBPF path's (datapath.InstallReplyRouting): the same marks, so datapath.MarkControl and
// datapath.TransparentControl configure the agent's sockets in both modes.
//
// A REDIRECTed connection's original destination comes from conntrack: OriginalDst reads
// SO_ORIGINAL_DST (IPv4) or IP6T_SO_ORIGINAL_DST (IPv6) from the accepted socket, for outbound
// connections and inbound plaintext alike (after REDIRECT the local address is the agent's).
//
// Pod.Close removes the chains and jumps and the reply routing. Like the eBPF path, the rules
// stay when the agent stops (a connection of an enrolled pod then fails instead of leaving in
// plaintext); unlike it, nothing records which namespaces carry them, so a pod is cleaned up only
// by an agent that unenrolls it (or goes away with its netns).
package iptables
