// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
//
// backends.h: how both hookscope programs know a webhook backend. The agent
// fills the maps from its inventory (bpf/internal/backendset keeps them
// consistent): `backends`, a hash of IP:port; `backend_ports`, one bit per
// TCP port; and `port_summary`, one cache line of 512 bits where bit
// (port & 511) is set while a backend listens on any port with those low
// bits. The summary is the first check: every run of every program reads
// the same line, so it stays in cache, where the bitmap's 8 KiB do not (a
// port's own word there, read cold, cost 5-40 ns a run in BenchmarkTracepoints).
// Include after <linux/types.h> and <bpf/bpf_helpers.h>.

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

#define PORT_SUMMARY_WORDS 8

struct port_summary {
	__u64 bits[PORT_SUMMARY_WORDS];
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct port_summary);
} port_summary SEC(".maps");

static __always_inline int summary_has(const struct port_summary *sum, __u16 port)
{
	return (sum->bits[(port >> 6) & (PORT_SUMMARY_WORDS - 1)] & (1ULL << (port & 63))) != 0;
}

// ports_in_summary is the first check, of a segment's or socket's two
// ports with one lookup: ports that fail it have no backend; one that
// passes may (512 bits for 65536 ports).
static __always_inline int ports_in_summary(__u16 a, __u16 b)
{
	__u32 zero = 0;
	struct port_summary *sum = bpf_map_lookup_elem(&port_summary, &zero);
	return sum && (summary_has(sum, a) || summary_has(sum, b));
}

// port_is_backend says whether some backend listens on port.
static __always_inline int port_is_backend(__u16 port)
{
	__u32 zero = 0;
	struct port_summary *sum = bpf_map_lookup_elem(&port_summary, &zero);
	if (!sum || !summary_has(sum, port))
		return 0;
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
