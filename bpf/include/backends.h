// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
//
// backends.h: how both hookscope programs know a webhook backend. The agent
// fills both maps from its inventory (bpf/internal/backendset keeps them
// consistent): `backends`, a hash of IP:port, and `backend_ports`, one bit
// per TCP port, the first and cheapest check. Include after
// <linux/types.h> and <bpf/bpf_helpers.h>.

#ifndef HOOKSCOPE_BACKENDS_H
#define HOOKSCOPE_BACKENDS_H

#define MAX_BACKENDS 4096

// backend_key identifies a webhook backend: its IP (IPv4 as ::ffff:a.b.c.d)
// and TCP port in network byte order.
struct backend_key {
	__u8 addr[16];
	__be16 port;
	__u16 pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_BACKENDS);
	__type(key, struct backend_key);
	__type(value, __u32);
} backends SEC(".maps");

// One bit per TCP port (host byte order): some backend listens on it.
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 65536 / 64);
	__type(key, __u32);
	__type(value, __u64);
} backend_ports SEC(".maps");

static __always_inline int port_is_backend(__u16 port)
{
	__u32 word = port >> 6;
	__u64 *bits = bpf_map_lookup_elem(&backend_ports, &word);
	return bits && (*bits & (1ULL << (port & 63)));
}

// set_v4mapped writes an IPv4 address as ::ffff:a.b.c.d, the keys' form.
static __always_inline void set_v4mapped(__u8 *dst, __be32 addr)
{
	__builtin_memset(dst, 0, 10);
	dst[10] = 0xff;
	dst[11] = 0xff;
	__builtin_memcpy(dst + 12, &addr, 4);
}

#endif
