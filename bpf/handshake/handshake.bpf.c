//go:build ignore

// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
//
// handshake.bpf.c: TCP and TLS handshakes to admission webhook backends.
//
// Attaches: one program at TC (tcx) ingress and egress of the host-side
// interface that routes to a webhook backend pod (for a pod, its veth). Why TC
// and not cgroup_skb or a socket filter: TC sees both directions of every
// connection to the pod exactly once, whoever the client is (the API server on
// this node or on another one), needs no socket or cgroup of the client, and
// works for host network pods' peers alike. Only connections whose server side
// is an IP:port in the `backends` map (filled by the agent from its webhook
// inventory) are looked at. Every other packet costs a read of its headers
// (straight from the packet) and the bits of its two ports in `port_summary`,
// one cache line (bpf/include/backends.h); a bare ACK returns before that.
// Only a client's SYN reads `backends`: the segments after it are found in
// `flows`.
//
// Reads: Ethernet, IPv4/IPv6 and TCP headers, then the 5-byte header of each
// TLS record at the start of each in-order segment (and the few ServerHello
// bytes that hold the version and cipher suite, and the two bytes of a
// cleartext alert), and copies up to 1 KiB of a ClientHello and ServerHello
// to user space, which reads SNI, ALPN and versions from them (bounded copy,
// no parsing here): once a minute per client, backend and kind (hello_sent).
// Records that span segments are skipped using the record length; a segment
// that is out of order, or a record header that is malformed or split across
// segments, stops record parsing for that direction and is counted, never
// trusted. The rest of a request after its first record (an upload) is not
// walked: the client's record boundary is found again at the start of its
// next request's segment, by a strict record header.
//
// Counts a client's SYN to a backend (COUNTER_CONNECTS): the events that
// follow carry its time. Emits (ring buffer `events`, struct event): request
// and response (the first client application-data record of a request, the
// server's answer with its latency; size floors skip HTTP/2 control frames),
// refused
// (the server's RST to that SYN), reset, close (first FIN, with who closed), ClientHello, ServerHello (cipher; TLS
// 1.3 when the suite is 0x13xx), handshake rejected by the client: a
// cleartext alert from the client during the handshake (TLS 1.2: level and
// description), or in TLS 1.3, where the alert is encrypted, the client's
// first record after the server's flight having the size of an encrypted
// alert, or the client closing or resetting right after the server's first
// flight without sending its Finished.
//
// Failures (rejected, refused, reset, alert) wake the reader at once; the
// other events within 50 ms (bpf/include/wake.h).
//
// Sample (decoded by the agent):
//   handshake_rejected client=10.0.0.1:40312 server=10.0.0.7:8443 tls13 encrypted_alert
//     client_hello+0.2ms server_hello+0.9ms rejected+1.4ms

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/pkt_cls.h>
#include <linux/tcp.h>
#include <stddef.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "../include/backends.h"
#include "../include/wake.h"

char __license[] SEC("license") = "Dual BSD/GPL";

#define MAX_FLOWS 65536
#define MAX_RECORDS 8 // TLS records parsed per segment
#define TLS_MAX_RECORD (16384 + 2048)

enum event_kind {
	EVENT_CONNECT = 1,
	EVENT_RESET = 2,
	EVENT_CLOSE = 3,
	EVENT_CLIENT_HELLO = 4,
	EVENT_SERVER_HELLO = 5,
	EVENT_ALERT = 6,
	EVENT_HANDSHAKE_REJECTED = 7,
	EVENT_HANDSHAKE_DONE = 8,
	EVENT_REFUSED = 9, // the server answered the client's SYN with a reset
	EVENT_RESPONSE = 10, // the server's first answer to a request: latency_ns
	EVENT_REQUEST = 11,  // a request, with none outstanding (read at the poll)
};

// A request is a client application-data record of at least REQUEST_MIN
// bytes when none is outstanding; its response the server's next
// application-data record of at least RESPONSE_MIN bytes. The floors skip
// HTTP/2's SETTINGS, WINDOW_UPDATE and PING frames (under 40 bytes with the
// AEAD tag); an admission review and its answer are larger.
#define REQUEST_MIN 96
#define RESPONSE_MIN 64

enum direction {
	DIR_TO_SERVER = 0,
	DIR_TO_CLIENT = 1,
};

enum phase {
	PHASE_TCP = 0,          // SYN seen, no TLS yet
	PHASE_CLIENT_HELLO = 1, // ClientHello sent
	PHASE_SERVER_FLIGHT = 2, // ServerHello seen: the server's first flight is out
	PHASE_DONE = 3,         // the client finished the handshake
	PHASE_REJECTED = 4,     // the client rejected the handshake (reported)
};

// Counter indexes into the `counters` per-CPU array.
enum counter {
	COUNTER_PACKETS = 0,       // segments of traced flows with payload, SYN, FIN or RST
	COUNTER_EVENTS_DROPPED = 1, // ring buffer full
	COUNTER_MALFORMED = 2,     // TLS record header that is not one
	COUNTER_SPLIT = 3,         // record header split across segments
	COUNTER_OUT_OF_ORDER = 4,  // segment not at the expected sequence number
	COUNTER_UNPARSED = 5,      // IPv6 extension headers, IP fragments
	COUNTER_HEADERS_PULLED = 6, // headers read from paged data (pulled in first)
	COUNTER_CONNECTS = 7,      // client SYNs to a backend: counted, not sent
	COUNTER_MAX = 8,
};

struct flow_key {
	__u8 client_addr[16];
	__u8 server_addr[16];
	__be16 client_port;
	__be16 server_port;
};

struct flow_state {
	__u64 start_ns;
	__u32 next_seq[2];  // expected sequence number per direction
	__u32 rec_left[2];  // bytes of the current TLS record still to come
	__u16 tls_version;
	__u16 cipher;
	__u8 phase;
	__u8 seq_known[2];
	__u8 records_lost[2]; // record parsing stopped in that direction
	__u8 tls13;
	__u8 fin_seen;
	__u8 resync; // the client's record boundary is to be found again
	__u64 request_ns; // when the outstanding request was seen; 0 for none
};

// event is the one record the program sends to user space; Go gets its type
// from bpf2go (-type event).
struct event {
	__u64 ts_ns;         // bpf_ktime_get_ns() (CLOCK_MONOTONIC)
	__u64 flow_start_ns; // when the client's SYN was seen, 0 if not seen
	__u8 client_addr[16];
	__u8 server_addr[16];
	__u16 client_port; // host byte order
	__u16 server_port;
	__u8 kind;           // enum event_kind
	__u8 from_server;    // direction of the packet that caused it
	__u8 phase;          // enum phase before this packet
	__u8 tls13;
	__u16 tls_version;   // record version of the ServerHello
	__u16 cipher;        // cipher suite chosen by the server
	__u8 alert_level;    // cleartext alert, else 0
	__u8 alert_desc;
	__u8 encrypted_alert; // the client's record had an encrypted alert's size
	__u8 tcp_flags;
	__u64 latency_ns; // response: since its request; close and reset: since
			  // the request still outstanding, 0 if none
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, MAX_FLOWS);
	__type(key, struct flow_key);
	__type(value, struct flow_state);
} flows SEC(".maps");

// hello_event is a ClientHello or ServerHello event followed by the first
// bytes of the handshake message (from its type byte), so that user space
// can read the SNI, ALPN and versions: parsing extensions here would cost
// the verifier far more than copying bytes. Only hellos carry it; every other
// event is a bare struct event.
#define HELLO_MAX 1024
struct hello_event {
	struct event ev;
	__u16 len; // bytes of data that follow
	__u16 pad[3];
	__u8 data[HELLO_MAX];
};

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 20);
} events SEC(".maps");

// hello_sent: when a client's hello of each kind to a backend was last
// copied. A client calls a backend with the same hellos (the API server's
// TLS configuration for that webhook), so their bytes are copied once a
// minute per client, backend and kind; the hellos in between are sent
// without them (len 0), the versions and cipher the program read in their
// place. Copying them cost two 1 KiB copies per new connection.
struct hello_key {
	__u8 client_addr[16];
	__u8 server_addr[16];
	__be16 server_port;
	__u8 kind;
	__u8 pad;
};

#define HELLO_EVERY_NS (60ULL * 1000 * 1000 * 1000)

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, struct hello_key);
	__type(value, __u64);
} hello_sent SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct hello_event);
} hello_scratch SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, COUNTER_MAX);
	__type(key, __u32);
	__type(value, __u64);
} counters SEC(".maps");

// The SYN ledger: per backend and client address, the SYNs that reached
// the backend's interface on this node and how the backend answered them.
// It is what says "no SYN from the API server reached the pod while it
// reported timeouts" (blocked on the way: a security group, a firewall, a
// route) from "the SYNs arrived and the pod never answered" (dropped at the
// pod: a NetworkPolicy, a host firewall). One update per SYN and per
// SYN-ACK, never on a packet of no backend. The agent's own probes are kept
// apart (`own`), so that a node-side probe that gets through is not read as
// the API server's call arriving.
struct ledger_key {
	__u8 server_addr[16];
	__u8 client_addr[16];
	__be16 server_port;
	__u8 own; // 1: the client port is in `own_ports`
	__u8 pad;
};

struct ledger_entry {
	__u64 syns;     // client SYNs, retransmissions included
	__u64 answered; // the server's SYN-ACKs
	__u64 refused;  // the server's resets to a SYN
	__u64 first_ns; // first SYN (bpf_ktime_get_ns)
	__u64 last_syn_ns;
	__u64 last_answer_ns; // last SYN-ACK or refusal, 0 if none
	// Segments from the client of a connection that began before tracing
	// (no state in `flows`): the client holds a connection the ledger has
	// no SYN of, and may call on it with no SYN at all.
	__u64 untracked;
	__u64 last_untracked_ns;
};

#define MAX_LEDGER 8192

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, MAX_LEDGER);
	__type(key, struct ledger_key);
	__type(value, struct ledger_entry);
} syn_ledger SEC(".maps");

// own_ports: the local ports of the agent's probe connections (host byte
// order), written by the agent before each probe connects.
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u16);
	__type(value, __u8);
} own_ports SEC(".maps");

// Force the types user space decodes into BTF so bpf2go generates them.
const struct event *unused_event __attribute__((unused));
const struct hello_event *unused_hello_event __attribute__((unused));
const struct ledger_key *unused_ledger_key __attribute__((unused));
const struct ledger_entry *unused_ledger_entry __attribute__((unused));
const enum event_kind *unused_event_kind __attribute__((unused));
const enum counter *unused_counter __attribute__((unused));
const enum phase *unused_phase __attribute__((unused));

static __always_inline void count(__u32 idx)
{
	__u64 *v = bpf_map_lookup_elem(&counters, &idx);
	if (v)
		*v += 1; // per CPU, and TC programs do not nest on a CPU: no atomics
}

// header returns a pointer to len bytes at off in the packet's linear
// data, or 0. Headers almost always are there; those of a forwarded segment
// can be in paged data, and are pulled in first (the packet's bytes are
// unchanged). It invalidates earlier pointers into the packet.
static __always_inline void *header(struct __sk_buff *skb, __u32 off, __u32 len)
{
	if (off > 127)
		return 0;
	// The bound on the register the pointer is computed with (clang may
	// check a copy): the verifier needs it to give the pointer its range.
	asm volatile("%[off] &= 0x7f" : [off] "+r"(off));
	void *h = (void *)(long)skb->data + off;
	if (h + len > (void *)(long)skb->data_end) {
		if (bpf_skb_pull_data(skb, off + len) < 0)
			return 0;
		count(COUNTER_HEADERS_PULLED);
		h = (void *)(long)skb->data + off;
		if (h + len > (void *)(long)skb->data_end)
			return 0;
	}
	return h;
}

// packet holds what one TCP segment says, in the flow's terms once
// orient has been called.
struct packet {
	struct flow_key key;
	__u8 src[16];
	__u8 dst[16];
	__be16 sport;
	__be16 dport;
	__u32 seq;
	__u32 payload_off;
	__u32 payload_len;
	__u8 dir;
	__u8 flags; // FIN=0x01 SYN=0x02 RST=0x04 PSH=0x08 ACK=0x10
};

#define F_FIN 0x01
#define F_SYN 0x02
#define F_RST 0x04
#define F_ACK 0x10

static __always_inline void fill(struct event *e, struct packet *p, struct flow_state *st, __u8 kind,
				 __u8 phase_before, __u8 alert_level, __u8 alert_desc,
				 __u8 encrypted_alert)
{
	e->ts_ns = bpf_ktime_get_ns();
	e->flow_start_ns = st ? st->start_ns : 0;
	__builtin_memcpy(e->client_addr, p->key.client_addr, 16);
	__builtin_memcpy(e->server_addr, p->key.server_addr, 16);
	e->client_port = bpf_ntohs(p->key.client_port);
	e->server_port = bpf_ntohs(p->key.server_port);
	e->kind = kind;
	e->from_server = p->dir == DIR_TO_CLIENT;
	e->phase = phase_before;
	e->tls13 = st ? st->tls13 : 0;
	e->tls_version = st ? st->tls_version : 0;
	e->cipher = st ? st->cipher : 0;
	e->alert_level = alert_level;
	e->alert_desc = alert_desc;
	e->encrypted_alert = encrypted_alert;
	e->tcp_flags = p->flags;
	e->latency_ns = 0;
	if (st && st->request_ns && kind != EVENT_RESPONSE && kind != EVENT_REQUEST)
		e->latency_ns = e->ts_ns - st->request_ns;
}

static __always_inline void emit(struct packet *p, struct flow_state *st, __u8 kind,
				 __u8 phase_before, __u8 alert_level, __u8 alert_desc,
				 __u8 encrypted_alert)
{
	struct event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		count(COUNTER_EVENTS_DROPPED);
		return;
	}
	fill(e, p, st, kind, phase_before, alert_level, alert_desc, encrypted_alert);
	// Failures wake the reader at once; routine events only after a quiet
	// spell (wake.h). A reset is a failure during the handshake or with a
	// request unanswered; after a call it is how many clients close.
	int failure = kind == EVENT_HANDSHAKE_REJECTED || kind == EVENT_REFUSED ||
		      kind == EVENT_ALERT ||
		      (kind == EVENT_RESET && (phase_before != PHASE_DONE || e->latency_ns));
	bpf_ringbuf_submit(e, wake_flags(failure, e->ts_ns));
}

// emit_response reports the server's answer to the request seen at req.
static __always_inline void emit_response(struct packet *p, struct flow_state *st, __u64 req)
{
	struct event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		count(COUNTER_EVENTS_DROPPED);
		return;
	}
	fill(e, p, st, EVENT_RESPONSE, PHASE_DONE, 0, 0, 0);
	e->latency_ns = e->ts_ns - req;
	bpf_ringbuf_submit(e, wake_flags(0, e->ts_ns));
}

// emit_hello sends a hello event with the handshake message's first bytes:
// those in this segment, at most the record's length and HELLO_MAX. pos is
// the record header's offset; avail the record's bytes in this segment.
static __always_inline void emit_hello(struct __sk_buff *skb, struct packet *p,
				       struct flow_state *st, __u8 kind, __u8 phase_before,
				       __u32 pos, __u16 len, __u32 avail)
{
	__u32 zero = 0;
	struct hello_event *h = bpf_map_lookup_elem(&hello_scratch, &zero);
	if (!h)
		return;
	fill(&h->ev, p, st, kind, phase_before, 0, 0, 0);
	__u32 n = avail - 5;
	if (n > len)
		n = len;
	struct hello_key hk = {};
	__builtin_memcpy(hk.client_addr, p->key.client_addr, 16);
	__builtin_memcpy(hk.server_addr, p->key.server_addr, 16);
	hk.server_port = p->key.server_port;
	hk.kind = kind;
	__u64 *last = bpf_map_lookup_elem(&hello_sent, &hk);
	if (last && h->ev.ts_ns - *last < HELLO_EVERY_NS)
		n = 0; // copied within the minute
	else
		bpf_map_update_elem(&hello_sent, &hk, &h->ev.ts_ns, BPF_ANY);
	if (n > 0) {
		// Copy m + 1 bytes, m in [0, HELLO_MAX - 1]: the mask is what
		// the verifier keeps of the bound (HELLO_MAX is a power of two).
		__u32 m = n - 1;
		if (m > HELLO_MAX - 1)
			m = HELLO_MAX - 1;
		asm volatile("%[m] &= %[mask]" : [m] "+r"(m) : [mask] "i"(HELLO_MAX - 1));
		n = bpf_skb_load_bytes(skb, pos + 5, h->data, m + 1) < 0 ? 0 : m + 1;
	}
	h->len = n;
	if (bpf_ringbuf_output(&events, h, offsetof(struct hello_event, data) + n,
			       wake_flags(0, h->ev.ts_ns)) < 0)
		count(COUNTER_EVENTS_DROPPED);
}

// What parse says of a segment's ports: bits of the backend_ports check.
#define DST_PORT_KNOWN 1
#define SRC_PORT_KNOWN 2

// is_backend says whether addr:port (port in network byte order) is in
// `backends`.
static __always_inline int is_backend(const __u8 *addr, __be16 port)
{
	struct backend_key bk = {};
	__builtin_memcpy(bk.addr, addr, 16);
	bk.port = port;
	return bpf_map_lookup_elem(&backends, &bk) != 0;
}

// parse fills p from the headers and returns which of its ports some
// backend listens on (DST_PORT_KNOWN, SRC_PORT_KNOWN), or -1 for a segment
// that cannot matter: not TCP, a bare ACK (no payload, no SYN, FIN or RST:
// nothing in it is read), or no port of a backend. The first checks cost
// no map lookup but one array read per port.
static __always_inline int parse(struct __sk_buff *skb, struct packet *p)
{
	__u32 off = ETH_HLEN;
	__u32 ip_payload_len;
	int unparsed = 0;

	if (skb->protocol == bpf_htons(ETH_P_IP)) {
		struct iphdr *ip = header(skb, off, sizeof(*ip));
		if (!ip || ip->protocol != IPPROTO_TCP)
			return -1;
		__u32 ihl = ip->ihl * 4;
		__u32 tot = bpf_ntohs(ip->tot_len);
		if (ihl < sizeof(*ip) || tot < ihl)
			return -1;
		set_v4mapped(p->src, ip->saddr);
		set_v4mapped(p->dst, ip->daddr);
		if (ip->frag_off & bpf_htons(0x3fff)) // MF or offset: a fragment
			unparsed = 1;
		off += ihl;
		ip_payload_len = tot - ihl;
	} else if (skb->protocol == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = header(skb, off, sizeof(*ip6));
		if (!ip6)
			return -1;
		__builtin_memcpy(p->src, &ip6->saddr, 16);
		__builtin_memcpy(p->dst, &ip6->daddr, 16);
		if (ip6->nexthdr != IPPROTO_TCP)
			unparsed = 1; // extension headers, or not TCP
		off += sizeof(*ip6);
		ip_payload_len = bpf_ntohs(ip6->payload_len);
	} else {
		return -1;
	}

	struct tcphdr *th = header(skb, off, sizeof(*th));
	if (!th)
		return -1;
	struct tcphdr tcp = *th;
	if (!ports_in_summary(bpf_ntohs(tcp.dest), bpf_ntohs(tcp.source)))
		return -1; // other traffic: one load of a hot line
	int known = (port_is_backend(bpf_ntohs(tcp.dest)) ? DST_PORT_KNOWN : 0) |
		    (port_is_backend(bpf_ntohs(tcp.source)) ? SRC_PORT_KNOWN : 0);
	if (!known)
		return -1;
	p->sport = tcp.source;
	p->dport = tcp.dest;
	if (unparsed) {
		// Counted for a backend's traffic only; what follows the IP
		// header is not read.
		if (((known & DST_PORT_KNOWN) && is_backend(p->dst, p->dport)) ||
		    ((known & SRC_PORT_KNOWN) && is_backend(p->src, p->sport)))
			count(COUNTER_UNPARSED);
		return -1;
	}
	__u32 doff = tcp.doff * 4;
	if (doff < sizeof(tcp) || doff > ip_payload_len)
		return -1;
	p->seq = bpf_ntohl(tcp.seq);
	p->flags = (tcp.fin ? F_FIN : 0) | (tcp.syn ? F_SYN : 0) | (tcp.rst ? F_RST : 0) |
		   (tcp.ack ? F_ACK : 0);
	p->payload_off = off + doff;
	p->payload_len = ip_payload_len - doff;
	if (p->payload_len == 0 && !(p->flags & (F_SYN | F_FIN | F_RST)))
		return -1; // a bare ACK
	return known;
}

// orient writes p's flow key for direction dir.
static __always_inline void orient(struct packet *p, __u8 dir)
{
	p->dir = dir;
	if (dir == DIR_TO_SERVER) {
		__builtin_memcpy(p->key.client_addr, p->src, 16);
		__builtin_memcpy(p->key.server_addr, p->dst, 16);
		p->key.client_port = p->sport;
		p->key.server_port = p->dport;
	} else {
		__builtin_memcpy(p->key.client_addr, p->dst, 16);
		__builtin_memcpy(p->key.server_addr, p->src, 16);
		p->key.client_port = p->dport;
		p->key.server_port = p->sport;
	}
}

// reject reports a handshake the client gave up on and remembers it.
static __always_inline void reject(struct packet *p, struct flow_state *st, __u8 level,
				   __u8 desc, __u8 encrypted_alert)
{
	__u8 before = st->phase;
	st->phase = PHASE_REJECTED;
	emit(p, st, EVENT_HANDSHAKE_REJECTED, before, level, desc, encrypted_alert);
}

// record handles one TLS record header (and, where needed, a few body bytes
// that are in this segment). avail is how many bytes of the record, header
// included, this segment holds.
static __always_inline void record(struct __sk_buff *skb, struct packet *p, struct flow_state *st,
				   __u32 pos, __u8 type, __u16 len, __u32 avail)
{
	__u8 before = st->phase;

	switch (type) {
	case 22: { // handshake
		__u8 hs_type;
		if (avail < 6 || bpf_skb_load_bytes(skb, pos + 5, &hs_type, 1) < 0)
			return;
		if (p->dir == DIR_TO_SERVER && hs_type == 1 && before <= PHASE_SERVER_FLIGHT) {
			st->phase = PHASE_CLIENT_HELLO;
			emit_hello(skb, p, st, EVENT_CLIENT_HELLO, before, pos, len, avail);
		} else if (p->dir == DIR_TO_CLIENT && hs_type == 2 && before == PHASE_CLIENT_HELLO) {
			// ServerHello: type(1) len(3) version(2) random(32) sid_len(1) sid cipher(2)
			__u8 hdr[39];
			__u16 cipher = 0;
			if (avail >= 5 + sizeof(hdr) &&
			    bpf_skb_load_bytes(skb, pos + 5, hdr, sizeof(hdr)) == 0) {
				__u8 sid_len = hdr[38];
				__u8 cs[2];
				if (sid_len <= 32 && avail >= 5 + sizeof(hdr) + sid_len + 2 &&
				    bpf_skb_load_bytes(skb, pos + 5 + sizeof(hdr) + sid_len, cs, 2) == 0)
					cipher = ((__u16)cs[0] << 8) | cs[1];
				st->tls_version = ((__u16)hdr[4] << 8) | hdr[5];
			}
			st->cipher = cipher;
			st->tls13 = (cipher >> 8) == 0x13;
			st->phase = PHASE_SERVER_FLIGHT;
			emit_hello(skb, p, st, EVENT_SERVER_HELLO, before, pos, len, avail);
		}
		return;
	}
	case 21: { // alert
		__u8 a[2] = {0, 0};
		int clear = len == 2 && avail >= 7 && bpf_skb_load_bytes(skb, pos + 5, a, 2) == 0 &&
			    !(st->tls13 && before >= PHASE_SERVER_FLIGHT);
		if (p->dir == DIR_TO_SERVER && before == PHASE_SERVER_FLIGHT) {
			reject(p, st, clear ? a[0] : 0, clear ? a[1] : 0, !clear);
			return;
		}
		emit(p, st, EVENT_ALERT, before, clear ? a[0] : 0, clear ? a[1] : 0, !clear);
		return;
	}
	case 20: // change_cipher_spec: in TLS 1.2 the client accepted the server
		if (p->dir == DIR_TO_SERVER && before == PHASE_SERVER_FLIGHT && !st->tls13) {
			st->phase = PHASE_DONE;
			emit(p, st, EVENT_HANDSHAKE_DONE, before, 0, 0, 0);
		}
		return;
	case 23: // application_data: in TLS 1.3 also the encrypted handshake
		if (before == PHASE_DONE) {
			if (p->dir == DIR_TO_SERVER && len >= REQUEST_MIN && !st->request_ns) {
				st->request_ns = bpf_ktime_get_ns();
				emit(p, st, EVENT_REQUEST, before, 0, 0, 0);
			} else if (p->dir == DIR_TO_CLIENT && len >= RESPONSE_MIN && st->request_ns) {
				__u64 req = st->request_ns;
				st->request_ns = 0;
				emit_response(p, st, req);
			}
			return;
		}
		if (p->dir != DIR_TO_SERVER || before != PHASE_SERVER_FLIGHT)
			return;
		// An encrypted alert is 2 bytes + content type + AEAD tag (16, or 8
		// for CCM_8); a Finished is at least 32 + 1 + 16.
		if (st->tls13 && (len == 19 || len == 11)) {
			reject(p, st, 0, 0, 1);
			return;
		}
		st->phase = PHASE_DONE;
		emit(p, st, EVENT_HANDSHAKE_DONE, before, 0, 0, 0);
		return;
	}
}

// starts_record says whether the segment's payload starts with a strict
// application-data or alert record header (type 23 or 21, version 0x0303, a
// length a record can have): where the client's record boundary is found
// again after its records were not walked.
static __always_inline int starts_record(struct __sk_buff *skb, struct packet *p)
{
	__u8 h[5];
	if (p->payload_len < 5 || bpf_skb_load_bytes(skb, p->payload_off, h, sizeof(h)) < 0)
		return 0;
	__u32 len = ((__u32)h[3] << 8) | h[4];
	__u32 ok = ((h[0] == 23) | (h[0] == 21)) & (h[1] == 3) & (h[2] == 3) & (len <= TLS_MAX_RECORD);
	// Only the verdict leaves: no path splits on the bytes themselves.
	asm volatile("" : "+r"(ok));
	return ok;
}

// records walks the TLS records that start in this segment.
static __always_inline void records(struct __sk_buff *skb, struct packet *p, struct flow_state *st)
{
	__u8 d = p->dir & 1;
	if (st->records_lost[d])
		return;
	__u32 pos = p->payload_off;
	__u32 left = p->payload_len;
	for (int i = 0; i < MAX_RECORDS; i++) {
		__u32 skip = st->rec_left[d];
		if (skip >= left) {
			st->rec_left[d] = skip - left;
			return;
		}
		pos += skip;
		left -= skip;
		st->rec_left[d] = 0;
		if (left == 0)
			return;
		if (left < 5) {
			count(COUNTER_SPLIT);
			st->records_lost[d] = 1;
			return;
		}
		__u8 h[5];
		if (bpf_skb_load_bytes(skb, pos, h, sizeof(h)) < 0)
			return;
		__u16 len = ((__u16)h[3] << 8) | h[4];
		if (h[0] < 20 || h[0] > 24 || h[1] != 3 || len > TLS_MAX_RECORD) {
			count(COUNTER_MALFORMED);
			st->records_lost[d] = 1;
			return;
		}
		record(skb, p, st, pos, h[0], len, left);
		st->rec_left[d] = 5 + (__u32)len;
	}
	// More records than we walk: give up on this direction rather than guess.
	if (st->rec_left[d] < left) {
		st->records_lost[d] = 1;
		count(COUNTER_SPLIT);
	}
}

enum ledger_mark {
	LEDGER_SYN = 0,
	LEDGER_ANSWERED = 1,
	LEDGER_REFUSED = 2,
	LEDGER_UNTRACKED = 3,
};

// ledger_note counts a client's SYN to a backend, or the server's answer to
// it (a SYN-ACK or a reset), for the flow fk at now. A function of its own
// (__noinline): inlined, its branches multiply the parser's states the
// verifier walks (TestVerifierBudget: 264k instructions inlined, 156k so,
// 154k without the ledger).
static __noinline void ledger_note(const struct flow_key *fk, __u64 now, __u32 mark)
{
	struct ledger_key k = {};
	__builtin_memcpy(k.server_addr, fk->server_addr, 16);
	__builtin_memcpy(k.client_addr, fk->client_addr, 16);
	k.server_port = fk->server_port;
	__u16 cport = bpf_ntohs(fk->client_port);
	k.own = bpf_map_lookup_elem(&own_ports, &cport) ? 1 : 0;
	struct ledger_entry *e = bpf_map_lookup_elem(&syn_ledger, &k);
	if (!e) {
		if (mark != LEDGER_SYN && mark != LEDGER_UNTRACKED)
			return; // an answer to a SYN the ledger lost (LRU)
		struct ledger_entry fresh = {};
		if (mark == LEDGER_SYN)
			fresh.syns = 1, fresh.first_ns = now, fresh.last_syn_ns = now;
		else
			fresh.untracked = 1, fresh.last_untracked_ns = now;
		// BPF_NOEXIST: a SYN on another CPU may have made it first.
		if (bpf_map_update_elem(&syn_ledger, &k, &fresh, BPF_NOEXIST) == 0)
			return;
		e = bpf_map_lookup_elem(&syn_ledger, &k);
		if (!e)
			return;
	}
	if (mark == LEDGER_SYN) {
		__sync_fetch_and_add(&e->syns, 1);
		e->last_syn_ns = now;
		return;
	}
	if (mark == LEDGER_UNTRACKED) {
		__sync_fetch_and_add(&e->untracked, 1);
		e->last_untracked_ns = now;
		return;
	}
	if (mark == LEDGER_REFUSED)
		__sync_fetch_and_add(&e->refused, 1);
	else
		__sync_fetch_and_add(&e->answered, 1);
	e->last_answer_ns = now;
}

static __always_inline int handle(struct __sk_buff *skb)
{
	struct packet p = {};
	int known = parse(skb, &p);
	if (known < 0)
		return TC_ACT_OK;

	if ((p.flags & F_SYN) && !(p.flags & F_ACK)) {
		// A client's SYN: a new flow, if it goes to a backend. Only here
		// is `backends` read: every later segment of a traced connection
		// is found in `flows`, and one of no flow is not judged.
		if (!(known & DST_PORT_KNOWN) || !is_backend(p.dst, p.dport))
			return TC_ACT_OK;
		orient(&p, DIR_TO_SERVER);
		count(COUNTER_PACKETS);
		struct flow_state fresh = {};
		fresh.start_ns = bpf_ktime_get_ns();
		ledger_note(&p.key, fresh.start_ns, LEDGER_SYN);
		fresh.next_seq[0] = p.seq + 1;
		fresh.seq_known[0] = 1;
		bpf_map_update_elem(&flows, &p.key, &fresh, BPF_ANY);
		// Counted, not sent: every later event of the flow carries its
		// start (flow_start_ns), and the SYN ledger counts what a SYN
		// tells of the path.
		count(COUNTER_CONNECTS);
		return TC_ACT_OK;
	}

	// No state: a connection that started before tracing, a segment after
	// the flow ended (a second RST), or no backend's. None can be judged.
	struct flow_state *st = 0;
	if (known & DST_PORT_KNOWN) {
		orient(&p, DIR_TO_SERVER);
		st = bpf_map_lookup_elem(&flows, &p.key);
	}
	if (!st && (known & SRC_PORT_KNOWN)) {
		orient(&p, DIR_TO_CLIENT);
		st = bpf_map_lookup_elem(&flows, &p.key);
	}
	if (!st) {
		// A client's data to a backend with no state: its connection
		// began before tracing. The ledger notes it, so that no SYN is
		// never read as "the client's calls do not arrive". (A FIN or RST
		// after a flow ended carries no data, and is not noted.)
		if (p.payload_len > 0 && (known & DST_PORT_KNOWN) && is_backend(p.dst, p.dport)) {
			orient(&p, DIR_TO_SERVER);
			ledger_note(&p.key, bpf_ktime_get_ns(), LEDGER_UNTRACKED);
		}
		return TC_ACT_OK;
	}
	count(COUNTER_PACKETS);
	__u8 d = p.dir & 1;

	if ((p.flags & F_SYN) && p.dir == DIR_TO_CLIENT) {
		if (!st->seq_known[1])
			ledger_note(&p.key, bpf_ktime_get_ns(), LEDGER_ANSWERED);
		st->next_seq[1] = p.seq + 1;
		st->seq_known[1] = 1;
		return TC_ACT_OK;
	}

	if (p.payload_len > 0) {
		if (st->seq_known[d] && p.seq != st->next_seq[d]) {
			// A retransmission (seq behind) is harmless; a gap is not.
			if ((__s32)(p.seq - st->next_seq[d]) > 0) {
				st->records_lost[d] = 1;
				count(COUNTER_OUT_OF_ORDER);
			}
		} else {
			st->next_seq[d] = p.seq + p.payload_len;
			st->seq_known[d] = 1;
			if (d == DIR_TO_SERVER && st->phase == PHASE_DONE && st->request_ns)
				// The rest of a request (an upload) tells nothing: its
				// records are not walked, and their boundary is found
				// again when the client sends its next request.
				st->resync = 1, st->rec_left[d] = 0;
			else if (d == DIR_TO_SERVER && st->resync && !starts_record(skb, &p))
				// The client's segments were not walked while its request
				// was outstanding. Its next request starts a record,
				// written after the answer was read: wait for a segment
				// that starts with one. A request missed this way is no
				// call, never a false one.
				;
			else {
				if (d == DIR_TO_SERVER)
					st->resync = 0;
				records(skb, &p, st);
			}
		}
	}

	__u8 phase = st->phase;
	if (p.flags & F_RST) {
		if (p.dir == DIR_TO_SERVER && phase == PHASE_SERVER_FLIGHT)
			reject(&p, st, 0, 0, 0);
		// A reset from the server before its SYN-ACK refuses the connection.
		__u8 kind = (p.dir == DIR_TO_CLIENT && !st->seq_known[1]) ? EVENT_REFUSED : EVENT_RESET;
		if (kind == EVENT_REFUSED)
			ledger_note(&p.key, bpf_ktime_get_ns(), LEDGER_REFUSED);
		emit(&p, st, kind, phase, 0, 0, 0);
		bpf_map_delete_elem(&flows, &p.key);
		return TC_ACT_OK;
	}
	if (p.flags & F_FIN) {
		if (p.dir == DIR_TO_SERVER && phase == PHASE_SERVER_FLIGHT)
			reject(&p, st, 0, 0, 0);
		if (st->fin_seen) {
			bpf_map_delete_elem(&flows, &p.key);
			return TC_ACT_OK;
		}
		st->fin_seen = 1;
		emit(&p, st, EVENT_CLOSE, phase, 0, 0, 0);
	}
	return TC_ACT_OK;
}

// One program for both directions: handle reads a segment the same way
// whichever way it goes, and the kernel verifies it once at load (two
// copies took twice the agent's start). It only observes: TC_ACT_UNSPEC is
// tcx's "next", so the packet goes on as if hookscope were not there.
SEC("tc")
int handshake(struct __sk_buff *skb)
{
	handle(skb);
	return TC_ACT_UNSPEC;
}
