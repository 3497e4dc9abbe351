// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
// Outbound capture, attached to the node's cgroup v2 directory (pods' cgroups are below it).
//
// cgroup/connect4 and cgroup/connect6 rewrite a TCP connect() made from an enrolled network
// namespace to the agent's outbound listener in that same namespace (127.0.0.1 or ::1, port
// outbound_port), unless the socket is the agent's own (SO_MARK), the destination never leaves the
// namespace, or the port is excluded. The original destination is stored by socket cookie.
// When the kernel has chosen the local port (BPF_SOCK_OPS_TCP_CONNECT_CB, before the SYN is sent)
// the sockops program re-keys it by {netns cookie, local address, local port}: exactly what the
// agent sees as the peer of the accepted connection. The agent looks it up and deletes it; both
// maps are LRU so abandoned entries cannot pile up. UDP is never touched. The same sockops
// program registers the agent's upstream connections for the inbound program (inbound.c).

//go:build ignore

#include "weft.h"

// Set by the loader before load (nodeagent/datapath.Config).
volatile const __u32 agent_mark = 0x539;
volatile const __u32 agent_mark_mask = 0xfff;
volatile const __u32 upstream_mark = 0x1539;
volatile const __u16 outbound_port = 15001;

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, __u64); // socket cookie
	__type(value, struct orig_dst);
	__uint(max_entries, 65536);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} orig_by_cookie SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, struct sock_key);
	__type(value, struct orig_dst);
	__uint(max_entries, 65536);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} orig_dst SEC(".maps");

enum verdict {
	LEAVE = 0,
	REDIRECT = 1,
	REJECT = 2,
};

static __always_inline enum verdict capture(struct bpf_sock_addr *ctx, const struct weft_addr *dst,
					    __u16 port)
{
	count(WEFT_STAT_CONNECT_SEEN);
	__u64 netns = bpf_get_netns_cookie(ctx);
	struct pod_config *pod = bpf_map_lookup_elem(&enrolled, &netns);
	if (!pod)
		return LEAVE;
	count(WEFT_STAT_CONNECT_ENROLLED);
	if (!(pod->flags & WEFT_POD_OUTBOUND)) {
		count(WEFT_STAT_CONNECT_EXEMPT_DISABLED);
		return LEAVE;
	}
	struct bpf_sock *sk = ctx->sk;
	if (sk && (sk->mark & agent_mark_mask) == agent_mark) {
		count(WEFT_STAT_CONNECT_EXEMPT_AGENT);
		return LEAVE;
	}
	if (addr_is_local_only(dst)) {
		count(WEFT_STAT_CONNECT_EXEMPT_LOOPBACK);
		return LEAVE;
	}
	if (port_in(pod->exclude_out_ports, pod->n_exclude_out, port)) {
		count(WEFT_STAT_CONNECT_EXEMPT_PORT);
		return LEAVE;
	}
	struct orig_dst od = {.addr = *dst, .port = port, ._pad = 0};
	__u64 cookie = bpf_get_socket_cookie(ctx);
	if (bpf_map_update_elem(&orig_by_cookie, &cookie, &od, BPF_ANY)) {
		// Redirected without its destination the connection would be lost; refuse it instead.
		count(WEFT_STAT_CONNECT_REJECTED);
		return REJECT;
	}
	count(WEFT_STAT_CONNECT_REDIRECTED);
	return REDIRECT;
}

SEC("cgroup/connect4")
int weft_connect4(struct bpf_sock_addr *ctx)
{
	if (ctx->protocol != IPPROTO_TCP)
		return 1;
	struct weft_addr dst;
	addr_from_v4(&dst, ctx->user_ip4);
	switch (capture(ctx, &dst, bpf_ntohs((__u16)ctx->user_port))) {
	case REJECT:
		return 0; // connect() fails with EPERM
	case REDIRECT:
		ctx->user_ip4 = bpf_htonl(0x7f000001);
		ctx->user_port = bpf_htons(outbound_port);
		return 1;
	default:
		return 1;
	}
}

SEC("cgroup/connect6")
int weft_connect6(struct bpf_sock_addr *ctx)
{
	if (ctx->protocol != IPPROTO_TCP)
		return 1;
	struct weft_addr dst;
	dst.w[0] = ctx->user_ip6[0];
	dst.w[1] = ctx->user_ip6[1];
	dst.w[2] = ctx->user_ip6[2];
	dst.w[3] = ctx->user_ip6[3];
	switch (capture(ctx, &dst, bpf_ntohs((__u16)ctx->user_port))) {
	case REJECT:
		return 0;
	case REDIRECT:
		if (addr_is_v4mapped(&dst)) {
			// An IPv4 destination on a dual-stack socket: the IPv4 listener, ::ffff:127.0.0.1.
			ctx->user_ip6[0] = 0;
			ctx->user_ip6[1] = 0;
			ctx->user_ip6[2] = bpf_htonl(0xffff);
			ctx->user_ip6[3] = bpf_htonl(0x7f000001);
		} else {
			ctx->user_ip6[0] = 0;
			ctx->user_ip6[1] = 0;
			ctx->user_ip6[2] = 0;
			ctx->user_ip6[3] = bpf_htonl(1);
		}
		ctx->user_port = bpf_htons(outbound_port);
		return 1;
	default:
		return 1;
	}
}

// sock_addrs reads the local and remote address of a sockops socket; IPv4, also through a
// dual-stack IPv6 socket, comes out IPv4-mapped. Every field is read unconditionally with a load
// of its own (see inbound.c).
static __always_inline void sock_addrs(struct bpf_sock_ops *skops, struct weft_addr *local,
				       struct weft_addr *remote)
{
	__u32 local4 = CTX_READ(skops->local_ip4), remote4 = CTX_READ(skops->remote_ip4);
	for (int i = 0; i < 4; i++) {
		local->w[i] = CTX_READ(skops->local_ip6[i]);
		remote->w[i] = CTX_READ(skops->remote_ip6[i]);
	}
	if (skops->family == AF_INET || addr_is_v4mapped(remote)) {
		addr_from_v4(local, local4);
		addr_from_v4(remote, remote4);
	}
}

// weft_sockops runs when a connecting socket has its local port (before the SYN is sent) and when
// its handshake completes.
//   - A redirected application socket: its original destination is re-keyed by
//     {netns, local address, local port} for OriginalDst.
//   - The agent's upstream socket (SO_MARK upstream_mark): registered in `upstream` until
//     established, so that the pod's sk_lookup program lets its SYN reach the application.
SEC("sockops")
int weft_sockops(struct bpf_sock_ops *skops)
{
	__u32 op = skops->op;
	if (op != BPF_SOCK_OPS_TCP_CONNECT_CB && op != BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB)
		return 1;
	struct bpf_sock *sk = skops->sk;
	int is_upstream = sk && sk->mark == upstream_mark;
	if (op == BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB && !is_upstream)
		return 1;
	struct weft_addr local, remote;
	sock_addrs(skops, &local, &remote);
	__u64 netns = bpf_get_netns_cookie(skops);

	if (is_upstream) {
		struct upstream_key up = {
			.netns_cookie = netns,
			.client = local,
			.server = remote,
			.client_port = (__u16)skops->local_port,
			.server_port = (__u16)bpf_ntohl(skops->remote_port),
			._pad = 0,
		};
		if (op == BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB) {
			bpf_map_delete_elem(&upstream, &up);
			return 1;
		}
		__u32 one = 1;
		if (bpf_map_update_elem(&upstream, &up, &one, BPF_ANY))
			count(WEFT_STAT_UPSTREAM_TRACK_FAILED);
		else
			count(WEFT_STAT_UPSTREAM_TRACKED);
		return 1;
	}

	__u64 cookie = bpf_get_socket_cookie(skops);
	struct orig_dst *od = bpf_map_lookup_elem(&orig_by_cookie, &cookie);
	if (!od)
		return 1;
	struct orig_dst val = *od;
	struct sock_key key = {
		.netns_cookie = netns,
		.addr = local,
		.port = (__u16)skops->local_port,
		._pad0 = 0,
		._pad1 = 0,
	};
	if (bpf_map_update_elem(&orig_dst, &key, &val, BPF_ANY))
		count(WEFT_STAT_CONNECT_TRACK_FAILED);
	else
		count(WEFT_STAT_CONNECT_TRACKED);
	bpf_map_delete_elem(&orig_by_cookie, &cookie);
	return 1;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
