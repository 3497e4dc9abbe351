// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
// Inbound capture: an sk_lookup program attached to one enrolled pod's network namespace. A new
// TCP connection to one of the pod's addresses, on any port, is given to the agent's inbound
// listener of that namespace (inbound_socks, keyed by netns cookie), except connections to the
// HBONE port (the agent's own listener serves it directly), to excluded ports, from the pod's
// probe sources (kubelet), and the agent's own upstream connections to the application, which
// the sockops program registers in `upstream`. (They cannot be told apart by ingress_ifindex:
// for traffic to a local address that is not on lo the kernel reports the device holding the
// address, eth0, exactly as for traffic from outside.) With the pod enrolled but no listener
// present, the connection is refused: while the agent is away nothing bypasses it.
//
// sk_lookup programs cannot ask which namespace they run in and bpf_sk_assign accepts a socket
// of any namespace, so each pod gets its own instance of this program with netns_cookie set
// before load: the cookie binds the attachment to the only listener it may select.

//go:build ignore

#include "weft.h"

// Set by the loader before load, per pod.
volatile const __u64 netns_cookie = 0;
volatile const __u16 hbone_port = 15008;

struct {
	__uint(type, BPF_MAP_TYPE_SOCKHASH);
	__type(key, struct listener_key);
	__type(value, __u64);
	__uint(max_entries, 8192);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} inbound_socks SEC(".maps");

SEC("sk_lookup")
int weft_sk_lookup(struct bpf_sk_lookup *ctx)
{
	if (ctx->protocol != IPPROTO_TCP)
		return SK_PASS;
	__u64 netns = netns_cookie;
	struct pod_config *pod = bpf_map_lookup_elem(&enrolled, &netns);
	if (!pod)
		return SK_PASS;
	count(WEFT_STAT_INBOUND_SEEN);
	if (!(pod->flags & WEFT_POD_INBOUND)) {
		count(WEFT_STAT_INBOUND_EXEMPT_DISABLED);
		return SK_PASS;
	}
	// Every address field is read, unconditionally and with a volatile load of its own: clang
	// otherwise turns the choice between the IPv4 and IPv6 fields into one load through a
	// computed context pointer, which the verifier rejects.
	struct weft_addr local, remote;
	__u32 local4 = CTX_READ(ctx->local_ip4), remote4 = CTX_READ(ctx->remote_ip4);
	for (int i = 0; i < 4; i++) {
		local.w[i] = CTX_READ(ctx->local_ip6[i]);
		remote.w[i] = CTX_READ(ctx->remote_ip6[i]);
	}
	if (ctx->family == AF_INET) {
		addr_from_v4(&local, local4);
		addr_from_v4(&remote, remote4);
	}
	if (!addr_in(pod->ips, pod->n_ips, WEFT_MAX_POD_IPS, &local)) {
		count(WEFT_STAT_INBOUND_EXEMPT_NOT_POD);
		return SK_PASS;
	}
	__u16 port = (__u16)ctx->local_port;
	struct upstream_key up = {
		.netns_cookie = netns,
		.client = remote,
		.server = local,
		.client_port = bpf_ntohs(ctx->remote_port),
		.server_port = port,
		._pad = 0,
	};
	if (bpf_map_lookup_elem(&upstream, &up)) {
		count(WEFT_STAT_INBOUND_EXEMPT_AGENT);
		return SK_PASS;
	}
	if (port == hbone_port) {
		count(WEFT_STAT_INBOUND_EXEMPT_HBONE);
		return SK_PASS;
	}
	if (port_in(pod->exclude_in_ports, pod->n_exclude_in, port)) {
		count(WEFT_STAT_INBOUND_EXEMPT_PORT);
		return SK_PASS;
	}
	if (addr_in(pod->probe_sources, pod->n_probe_sources, WEFT_MAX_PROBE_SOURCES, &remote)) {
		count(WEFT_STAT_INBOUND_EXEMPT_PROBE);
		return SK_PASS;
	}

	struct listener_key key = {.netns_cookie = netns, .family = ctx->family, ._pad = 0};
	struct bpf_sock *sk = bpf_map_lookup_elem(&inbound_socks, &key);
	if (!sk && ctx->family == AF_INET) {
		key.family = AF_INET6; // a dual-stack listener serves IPv4 too
		sk = bpf_map_lookup_elem(&inbound_socks, &key);
	}
	if (!sk) {
		count(WEFT_STAT_INBOUND_NO_LISTENER);
		return SK_DROP;
	}
	long err = bpf_sk_assign(ctx, sk, 0);
	bpf_sk_release(sk);
	if (err) {
		count(WEFT_STAT_INBOUND_ASSIGN_FAILED);
		return SK_DROP;
	}
	count(WEFT_STAT_INBOUND_STEERED);
	return SK_PASS;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
