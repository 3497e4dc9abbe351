// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
// Outbound connection accounting on the node's cgroup v2 root: the first step of Weft's capture.
// Every IPv4 TCP connect() of a process below the cgroup is counted; those made from a network
// namespace listed in `enrolled` (keyed by netns cookie) are counted separately. The program never
// changes or refuses a connection yet: redirection comes with the data path.

//go:build ignore

#include <linux/bpf.h>
#include <linux/in.h>
#include <bpf/bpf_helpers.h>

enum connect_stat {
	STAT_SEEN = 0,     // connect() calls seen
	STAT_ENROLLED = 1, // of those, from an enrolled network namespace
	STAT_MAX,
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, __u64);   // netns cookie
	__type(value, __u32); // reserved (flags)
	__uint(max_entries, 65536);
	__uint(pinning, LIBBPF_PIN_BY_NAME); // survives agent restarts
} enrolled SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, __u64);
	__uint(max_entries, STAT_MAX);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} connect_stats SEC(".maps");

static __always_inline void count(__u32 stat)
{
	__u64 *v = bpf_map_lookup_elem(&connect_stats, &stat);
	if (v)
		(*v)++;
}

SEC("cgroup/connect4")
int weft_connect4(struct bpf_sock_addr *ctx)
{
	if (ctx->protocol != IPPROTO_TCP)
		return 1;
	count(STAT_SEEN);
	__u64 cookie = bpf_get_netns_cookie(ctx);
	if (bpf_map_lookup_elem(&enrolled, &cookie))
		count(STAT_ENROLLED);
	return 1; // allow
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
