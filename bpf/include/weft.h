// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
// Types, maps and helpers shared by Weft's eBPF programs. Every struct and enum here is mirrored
// in Go (nodeagent/datapath/layout.go); TestLayout compares both through the objects' BTF, so a
// change here without the Go side fails the tests.
//
// Addresses are always 16 bytes: IPv6, or IPv4-mapped IPv6 (::ffff:a.b.c.d) for IPv4, in network
// byte order. Ports are in host byte order.

#ifndef WEFT_H
#define WEFT_H

#include <linux/bpf.h>
#include <linux/in.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#ifndef AF_INET
#define AF_INET 2
#endif
#ifndef AF_INET6
#define AF_INET6 10
#endif

#define WEFT_MAX_POD_IPS 4
#define WEFT_MAX_PROBE_SOURCES 2
#define WEFT_MAX_PORTS 32

struct weft_addr {
	__u32 w[4];
};

enum weft_pod_flag {
	WEFT_POD_OUTBOUND = 1 << 0, // capture outbound connects
	WEFT_POD_INBOUND = 1 << 1,  // steer inbound connections to the agent
};

// Per-pod configuration, the value of `enrolled` (keyed by the pod's netns cookie).
struct pod_config {
	enum weft_pod_flag flags; // bit set of weft_pod_flag
	__u8 n_ips;
	__u8 n_probe_sources;
	__u8 n_exclude_out;
	__u8 n_exclude_in;
	struct weft_addr ips[WEFT_MAX_POD_IPS];
	// Sources never steered inbound: the node-side gateway addresses kubelet probes come from.
	struct weft_addr probe_sources[WEFT_MAX_PROBE_SOURCES];
	__u16 exclude_out_ports[WEFT_MAX_PORTS];
	__u16 exclude_in_ports[WEFT_MAX_PORTS];
};

// The destination an application asked for before connect() was redirected.
struct orig_dst {
	struct weft_addr addr;
	__u16 port;
	__u16 _pad;
};

// A redirected connection as the agent sees it on accept: the client's netns and address.
struct sock_key {
	__u64 netns_cookie;
	struct weft_addr addr; // the client's local address (the accepted socket's peer)
	__u16 port;            // the client's local port
	__u16 _pad0;
	__u32 _pad1;
};

// Key of the agent's inbound listening sockets.
struct listener_key {
	__u64 netns_cookie;
	__u32 family; // AF_INET or AF_INET6; a dual-stack socket is stored as AF_INET6
	__u32 _pad;
};

// A connection the agent is making to an application in a pod, bound to the client's address
// (source-IP preservation), as its SYN appears to the pod's sk_lookup program.
struct upstream_key {
	__u64 netns_cookie;
	struct weft_addr client; // the agent's (transparent) local address
	struct weft_addr server; // the application's address
	__u16 client_port;
	__u16 server_port;
	__u32 _pad;
};

enum weft_stat {
	WEFT_STAT_CONNECT_SEEN = 0,         // TCP connect() calls below the cgroup
	WEFT_STAT_CONNECT_ENROLLED,         // of those, from an enrolled netns
	WEFT_STAT_CONNECT_REDIRECTED,       // rewritten to the agent's outbound listener
	WEFT_STAT_CONNECT_EXEMPT_AGENT,     // the agent's own socket (SO_MARK)
	WEFT_STAT_CONNECT_EXEMPT_LOOPBACK,  // to a loopback or unspecified address
	WEFT_STAT_CONNECT_EXEMPT_PORT,      // to an excluded port
	WEFT_STAT_CONNECT_EXEMPT_DISABLED,  // the pod's outbound capture is off
	WEFT_STAT_CONNECT_REJECTED,         // original destination not stored: connect() refused
	WEFT_STAT_CONNECT_TRACKED,          // original destination re-keyed by the client's address
	WEFT_STAT_CONNECT_TRACK_FAILED,     // re-keying failed: the agent will not find it
	WEFT_STAT_UPSTREAM_TRACKED,         // agent upstream connections registered for sk_lookup
	WEFT_STAT_UPSTREAM_TRACK_FAILED,    // registering failed: the connection will be steered
	WEFT_STAT_INBOUND_SEEN,             // TCP connection lookups in enrolled netns
	WEFT_STAT_INBOUND_STEERED,          // assigned to the agent's inbound listener
	WEFT_STAT_INBOUND_EXEMPT_DISABLED,  // the pod's inbound capture is off
	WEFT_STAT_INBOUND_EXEMPT_AGENT,     // the agent's own upstream connection to the application
	WEFT_STAT_INBOUND_EXEMPT_NOT_POD,   // to an address that is not one of the pod's
	WEFT_STAT_INBOUND_EXEMPT_HBONE,     // to the HBONE port, served directly
	WEFT_STAT_INBOUND_EXEMPT_PORT,      // to an excluded port
	WEFT_STAT_INBOUND_EXEMPT_PROBE,     // from a probe source (kubelet)
	WEFT_STAT_INBOUND_NO_LISTENER,      // no agent listener: dropped (fail closed)
	WEFT_STAT_INBOUND_ASSIGN_FAILED,    // the listener was refused: dropped (fail closed)
	WEFT_STAT_MAX,
};

// Enrolled pods, keyed by netns cookie. Shared by every program; pinned so that an agent restart
// finds it again.
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, __u64);
	__type(value, struct pod_config);
	__uint(max_entries, 4096);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} enrolled SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, enum weft_stat);
	__type(value, __u64);
	__uint(max_entries, WEFT_STAT_MAX);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} stats SEC(".maps");

// CTX_READ reads a context field with a load of its own.
#define CTX_READ(field) (*(volatile typeof(field) *)&(field))

// The agent's upstream connections being set up (registered by sockops at connect, removed once
// established). Every lookup of their SYN, retransmissions too, must leave them alone.
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, struct upstream_key);
	__type(value, __u32);
	__uint(max_entries, 16384);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} upstream SEC(".maps");

static __always_inline void count(enum weft_stat s)
{
	__u64 *v = bpf_map_lookup_elem(&stats, &s);
	if (v)
		(*v)++;
}

static __always_inline void addr_from_v4(struct weft_addr *a, __u32 ip4)
{
	a->w[0] = 0;
	a->w[1] = 0;
	a->w[2] = bpf_htonl(0xffff);
	a->w[3] = ip4;
}

static __always_inline void addr_from_v6(struct weft_addr *a, const __u32 *ip6)
{
	a->w[0] = ip6[0];
	a->w[1] = ip6[1];
	a->w[2] = ip6[2];
	a->w[3] = ip6[3];
}

static __always_inline int addr_is_v4mapped(const struct weft_addr *a)
{
	return a->w[0] == 0 && a->w[1] == 0 && a->w[2] == bpf_htonl(0xffff);
}

static __always_inline int addr_eq(const struct weft_addr *a, const struct weft_addr *b)
{
	return a->w[0] == b->w[0] && a->w[1] == b->w[1] && a->w[2] == b->w[2] && a->w[3] == b->w[3];
}

// addr_is_local_only reports destinations that never leave the network namespace: 127.0.0.0/8,
// 0.0.0.0/8, ::1 and ::.
static __always_inline int addr_is_local_only(const struct weft_addr *a)
{
	if (addr_is_v4mapped(a)) {
		__u32 net8 = bpf_ntohl(a->w[3]) >> 24;
		return net8 == 127 || net8 == 0;
	}
	return a->w[0] == 0 && a->w[1] == 0 && a->w[2] == 0 &&
	       (a->w[3] == 0 || a->w[3] == bpf_htonl(1));
}

static __always_inline int addr_in(const struct weft_addr *set, __u32 n, __u32 max,
				   const struct weft_addr *a)
{
	for (__u32 i = 0; i < max; i++) {
		if (i >= n)
			break;
		if (addr_eq(&set[i], a))
			return 1;
	}
	return 0;
}

static __always_inline int port_in(const __u16 *set, __u32 n, __u16 port)
{
	for (__u32 i = 0; i < WEFT_MAX_PORTS; i++) {
		if (i >= n)
			break;
		if (set[i] == port)
			return 1;
	}
	return 0;
}

#endif // WEFT_H
