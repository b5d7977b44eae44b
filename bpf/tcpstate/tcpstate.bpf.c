//go:build ignore

// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
//
// tcpstate.bpf.c: the TCP life of connections to admission webhook backends,
// from the kernel's TCP tracepoints.
//
// Attaches: BTF tracepoints (tp_btf; no kprobes and no tracefs needed)
//   sock:inet_sock_set_state  (sk, oldstate, newstate)   every TCP state change
//   tcp:tcp_receive_reset     (sk)                        a socket got a RST
//   tcp:tcp_send_reset        (sk or NULL, skb or NULL, reason)  a RST is sent;
//                             sk is NULL for a segment to no socket (a SYN to
//                             a closed port: connection refused), skb is NULL
//                             for an active reset (close with SO_LINGER 0).
//                             Before Linux 6.10: (sk, skb), no reason, and
//                             not fired for a RST sent with no socket.
//   tcp:tcp_retransmit_skb    (sk, skb, err)              a segment is re-sent
//                             (older kernels: (sk, skb), sent ones only)
// A tracepoint whose arguments changed has one program per prototype; the
// loader picks one from the kernel's BTF (see the programs at the end).
//
// Which traffic: only sockets whose local IP:port (the backend's own socket,
// on the node that hosts the pod) or remote IP:port (the caller's socket, on
// the node where the API server runs) is in the `backends` map, filled by the
// agent from its webhook inventory. Each program's entry is only the first
// check, on both ports of the socket (or of the segment a RST answers) in
// the one-cache-line `port_summary`, and a call: a socket whose ports both
// fail it returns at once, counted nowhere. The rest is in __noinline
// functions, which the JIT compiles apart, so other traffic runs a few
// instructions. There, a port's own bit in `backend_ports`, then one hash
// lookup per end. At TCP_CLOSE, and for a RST sent on abort, the kernel has
// released the socket's local port (skc_num is 0): its own port is read
// from inet_sport, and the socket is found in `conns`.
//
// Reads: struct sock_common (family, ports, addresses, state) straight from
// the tracepoint's socket, CO-RE relocated; inet_sock's inet_sport and, for
// a reset with no socket, the segment's ports through bpf_rdonly_cast (Linux
// >= 6.2: plain loads, no helper call); the rest of that segment's IP and
// TCP headers with bpf_probe_read_kernel.
//
// Per connection (LRU hash `conns`, keyed by socket, bounded at 65536 and
// deleted at TCP_CLOSE): start time, endpoints, retransmissions, who closed
// first (a socket that goes ESTABLISHED -> FIN_WAIT1 closed first;
// ESTABLISHED -> CLOSE_WAIT: its peer did; a RST: its sender; TCP_CLOSE with
// neither: this side, which gave up or aborted), resets received and sent.
//
// Counts a connection's syn and established (per-CPU `counters`); with
// send_transitions set, also emits them. Emits (ring buffer `events`,
// struct event): syn (client: connect() sent the
// SYN, before the kernel binds the client port, so it reads 0; server: the
// server socket is created, when the client's final ACK arrives - the kernel
// keeps no full socket for a half-open connection; before Linux 6.15 that
// state change comes before the socket has its peer, so the server side
// starts at established, whose time is then its start), established, refused (a
// RST to the SYN: received by the client, or sent by the backend's node for
// a SYN to a closed port), reset_received / reset_sent (mid-call; an abort
// changes the state to TCP_CLOSE before it sends the RST, so its reset_sent
// follows its close), retransmit (at the 1st, 2nd, 4th, 8th...
// retransmission of a connection, TLPs included), close (at TCP_CLOSE:
// duration, retransmissions, who closed first). Events of one socket share
// its cookie. Failures (refused, resets) wake the reader; the rest are read
// within 50 ms (bpf/include/wake.h). A full ring buffer is counted (COUNTER_EVENTS_DROPPED).
//
// Sample (decoded by the agent):
//   close side=client client=10.0.77.1:40312 server=10.0.77.2:8443
//     established closed_by=server duration=3.1ms retransmits=0

#include <linux/bpf.h>
#include <linux/types.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

#include "../include/backends.h"
#include "../include/wake.h"

char __license[] SEC("license") = "Dual BSD/GPL";

#define MAX_CONNS 65536
#define AF_INET 2
#define AF_INET6 10

// The kernel's own minimal types, CO-RE relocated against its BTF (no
// vmlinux.h is committed).
struct in6_addr {
	union {
		__u8 u6_addr8[16];
		__be32 u6_addr32[4];
	} in6_u;
} __attribute__((preserve_access_index));

struct sock_common {
	__be32 skc_daddr;
	__be32 skc_rcv_saddr;
	__be16 skc_dport;
	__u16 skc_num;
	unsigned short skc_family;
	volatile unsigned char skc_state;
	struct in6_addr skc_v6_daddr;
	struct in6_addr skc_v6_rcv_saddr;
} __attribute__((preserve_access_index));

struct sock {
	struct sock_common __sk_common;
} __attribute__((preserve_access_index));

struct inet_sock {
	struct sock sk;
	__be16 inet_sport;
} __attribute__((preserve_access_index));

struct tcphdr {
	__be16 source;
	__be16 dest;
} __attribute__((preserve_access_index));

// bpf_rdonly_cast (Linux >= 6.2) lets a program read a kernel object as
// another BTF type; the verifier replaces the call with a move, and each
// load through the result is a fault-safe load, no helper call. It is weak:
// where the kernel lacks it, the loader sets its address to 0 and the
// verifier drops the branch that uses it, and the programs read the same
// fields with bpf_probe_read_kernel. no_cast makes them do so anyway (tests
// cover that path on a kernel that has the kfunc).
extern void *bpf_rdonly_cast(const void *obj, __u32 btf_id) __ksym __weak;
const volatile __u8 no_cast = 0;

static __always_inline int can_cast(void)
{
	return !no_cast && (void *)bpf_rdonly_cast != 0;
}

#define core_cast(ptr, type) ((type *)bpf_rdonly_cast((ptr), bpf_core_type_id_kernel(type)))

struct sk_buff {
	unsigned char *head;
	__u16 transport_header;
	__u16 network_header;
} __attribute__((preserve_access_index));

// TCP states, as include/net/tcp_states.h numbers them (a stable ABI: they
// are in /proc/net/tcp and in the tracepoint's format).
enum tcp_state {
	TCP_ESTABLISHED = 1,
	TCP_SYN_SENT = 2,
	TCP_SYN_RECV = 3,
	TCP_FIN_WAIT1 = 4,
	TCP_FIN_WAIT2 = 5,
	TCP_TIME_WAIT = 6,
	TCP_CLOSE = 7,
	TCP_CLOSE_WAIT = 8,
	TCP_LAST_ACK = 9,
	TCP_LISTEN = 10,
	TCP_CLOSING = 11,
	TCP_NEW_SYN_RECV = 12,
};

enum event_kind {
	EVENT_SYN = 1,
	EVENT_ESTABLISHED = 2,
	EVENT_REFUSED = 3,        // a RST answered the SYN
	EVENT_RESET_RECEIVED = 4, // a RST after the SYN was answered
	EVENT_RESET_SENT = 5,
	EVENT_RETRANSMIT = 6,
	EVENT_CLOSE = 7,
};

// side says whose socket saw an event, or who closed first.
enum side {
	SIDE_UNKNOWN = 0,
	SIDE_CLIENT = 1, // the caller's socket (the API server's)
	SIDE_SERVER = 2, // the backend's socket (the webhook pod's)
};

// Bits of event.flags and conn.flags.
enum conn_flag {
	FLAG_ESTABLISHED = 1,
	FLAG_RESET_RECEIVED = 2,
	FLAG_RESET_SENT = 4,
	FLAG_NO_START = 8, // the connection started before it was tracked
	FLAG_CLOSED = 16,  // TCP_CLOSE seen; kept for a reset sent right after
};

// Counter indexes into the `counters` per-CPU array. The MATCHED_* counters
// count runs that passed the backend check, per program (the benchmark
// separates the two paths' costs with them).
enum counter {
	COUNTER_EVENTS_DROPPED = 0, // ring buffer full
	COUNTER_MATCHED_SET_STATE = 1,
	COUNTER_MATCHED_RECEIVE_RESET = 2,
	COUNTER_MATCHED_SEND_RESET = 3,
	COUNTER_MATCHED_RETRANSMIT = 4,
	COUNTER_NO_STATE = 5, // a tracked socket closed with no state (evicted or older)
	COUNTER_SYN = 6,         // a backend's connection began (either socket)
	COUNTER_ESTABLISHED = 7, // and completed its handshake
	COUNTER_MAX = 8,
};

// A connection's start and handshake are counted, not sent: its close
// record carries its start, duration, retransmissions and who closed, and
// failures are sent as they happen. send_transitions sends a record for
// each of them too (the tests of the state machine read them).
const volatile __u8 send_transitions = 0;

// endpoints is a connection seen from one socket, in client/server terms.
struct endpoints {
	__u8 client_addr[16];
	__u8 server_addr[16];
	__u16 client_port; // host byte order
	__u16 server_port;
	__u8 side;
};

struct conn {
	__u64 start_ns; // SYN sent (client) or server socket created; 0 if unknown
	struct endpoints ep; // as last seen with both ports bound
	__u32 retransmits;
	__u8 closed_by;
	__u8 flags;
};

// event is the one record the program sends to user space; Go gets its type
// from bpf2go (-type event).
struct event {
	__u64 ts_ns;    // bpf_ktime_get_ns() (CLOCK_MONOTONIC)
	__u64 start_ns; // conn.start_ns, 0 if unknown
	__u64 cookie;   // the socket's cookie (SO_COOKIE), 0 with no socket
	__u8 client_addr[16];
	__u8 server_addr[16];
	__u16 client_port; // host byte order; 0 in a client's syn (not bound yet)
	__u16 server_port;
	__u32 retransmits;
	__u32 reset_reason; // the kernel's enum sk_rst_reason, for resets sent
	__u8 kind;          // enum event_kind
	__u8 side;          // enum side: whose socket
	__u8 old_state;     // enum tcp_state
	__u8 new_state;
	__u8 closed_by; // enum side: who closed first
	__u8 flags;     // enum conn_flag
	__u16 pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, MAX_CONNS);
	__type(key, __u64); // the socket's address
	__type(value, struct conn);
} conns SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 20);
} events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, COUNTER_MAX);
	__type(key, __u32);
	__type(value, __u64);
} counters SEC(".maps");

// Force the types user space decodes into BTF so bpf2go generates them.
const struct event *unused_event __attribute__((unused));
const enum event_kind *unused_event_kind __attribute__((unused));
const enum counter *unused_counter __attribute__((unused));
const enum side *unused_side __attribute__((unused));
const enum tcp_state *unused_tcp_state __attribute__((unused));
const enum conn_flag *unused_conn_flag __attribute__((unused));

static __always_inline void count(__u32 idx)
{
	__u64 *v = bpf_map_lookup_elem(&counters, &idx);
	if (v)
		*v += 1; // per CPU: no atomics needed
}

static __always_inline void copy_in6(__u8 *dst, const struct in6_addr *a)
{
	__be32 w[4];
	w[0] = a->in6_u.u6_addr32[0];
	w[1] = a->in6_u.u6_addr32[1];
	w[2] = a->in6_u.u6_addr32[2];
	w[3] = a->in6_u.u6_addr32[3];
	__builtin_memcpy(dst, w, 16);
}

static __always_inline int is_backend(const __u8 *addr, __u16 port)
{
	struct backend_key k = {};
	__builtin_memcpy(k.addr, addr, 16);
	k.port = bpf_htons(port);
	return bpf_map_lookup_elem(&backends, &k) != 0;
}

// classify decides whose connection local/remote is: the backend's own
// socket (local end is a backend), the caller's (remote end is), or neither
// (-1). Ports are in host byte order.
static __always_inline int classify(struct endpoints *ep, const __u8 *local, __u16 lport,
				    const __u8 *remote, __u16 rport, int lknown, int rknown)
{
	if (lknown && is_backend(local, lport)) {
		ep->side = SIDE_SERVER;
		__builtin_memcpy(ep->server_addr, local, 16);
		__builtin_memcpy(ep->client_addr, remote, 16);
		ep->server_port = lport;
		ep->client_port = rport;
		return 0;
	}
	if (rknown && is_backend(remote, rport)) {
		ep->side = SIDE_CLIENT;
		__builtin_memcpy(ep->server_addr, remote, 16);
		__builtin_memcpy(ep->client_addr, local, 16);
		ep->server_port = rport;
		ep->client_port = lport;
		return 0;
	}
	return -1;
}

// match_sock is the first check for a socket: 0 and ep filled for a
// connection to or from a backend, -1 (early, for almost every socket) if not.
static __always_inline int match_sock(const struct sock *sk, struct endpoints *ep)
{
	__u16 lport = sk->__sk_common.skc_num;
	__u16 rport = bpf_ntohs(sk->__sk_common.skc_dport);
	int lknown = port_is_backend(lport);
	int rknown = port_is_backend(rport);
	if (!lknown && !rknown)
		return -1;

	__u8 local[16], remote[16];
	__u16 family = sk->__sk_common.skc_family;
	if (family == AF_INET) {
		set_v4mapped(local, sk->__sk_common.skc_rcv_saddr);
		set_v4mapped(remote, sk->__sk_common.skc_daddr);
	} else if (family == AF_INET6) {
		copy_in6(local, &sk->__sk_common.skc_v6_rcv_saddr);
		copy_in6(remote, &sk->__sk_common.skc_v6_daddr);
	} else {
		return -1;
	}
	return classify(ep, local, lport, remote, rport, lknown, rknown);
}

static __always_inline __u8 other(__u8 side)
{
	return side == SIDE_CLIENT ? SIDE_SERVER : SIDE_CLIENT;
}

static __always_inline int failure(__u8 kind)
{
	return kind == EVENT_REFUSED || kind == EVENT_RESET_RECEIVED || kind == EVENT_RESET_SENT;
}

static __always_inline void emit(const struct sock *sk, struct endpoints *ep, struct conn *c,
				 __u8 kind, __u8 old_state, __u8 new_state, __u32 reason)
{
	struct event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		count(COUNTER_EVENTS_DROPPED);
		return;
	}
	e->ts_ns = bpf_ktime_get_ns();
	e->start_ns = c ? c->start_ns : 0;
	e->cookie = sk ? bpf_get_socket_cookie((void *)sk) : 0;
	__builtin_memcpy(e->client_addr, ep->client_addr, 16);
	__builtin_memcpy(e->server_addr, ep->server_addr, 16);
	e->client_port = ep->client_port;
	e->server_port = ep->server_port;
	e->retransmits = c ? c->retransmits : 0;
	e->reset_reason = reason;
	e->kind = kind;
	e->side = ep->side;
	e->old_state = old_state;
	e->new_state = new_state;
	e->closed_by = c ? c->closed_by : SIDE_UNKNOWN;
	e->flags = c ? c->flags & ~FLAG_CLOSED : FLAG_NO_START;
	e->pad = 0;
	// Failures wake the reader; the rest only after a quiet spell
	// (wake.h). A reset on an established connection is how many clients
	// close: the handshake program judges whether a call was cut.
	int wake = kind == EVENT_REFUSED ||
		   (failure(kind) && !(e->flags & FLAG_ESTABLISHED));
	bpf_ringbuf_submit(e, wake_flags(wake, e->ts_ns));
}

// conn_of returns the socket's state, creating it (start unknown) for a
// connection that began before it was tracked or whose state was evicted.
// ep refreshes the stored endpoints while the local port is bound.
static __always_inline struct conn *conn_of(__u64 *key, struct endpoints *ep)
{
	struct conn *c = bpf_map_lookup_elem(&conns, key);
	if (c && !(c->flags & FLAG_CLOSED)) {
		if (ep->client_port && ep->server_port)
			c->ep = *ep;
		return c;
	}
	struct conn fresh = {.flags = FLAG_NO_START};
	fresh.ep = *ep;
	bpf_map_update_elem(&conns, key, &fresh, BPF_ANY);
	return bpf_map_lookup_elem(&conns, key);
}

// sport is the socket's own port, host byte order. At TCP_CLOSE, and for a
// RST sent on abort, the kernel has given the local port back and zeroed
// skc_num (inet_put_port); inet_sport keeps it for the segments still to
// send.
static __always_inline __u16 sport(const struct sock *sk)
{
	if (can_cast())
		return bpf_ntohs(core_cast(sk, struct inet_sock)->inet_sport);
	__be16 port = 0;
	bpf_probe_read_kernel(&port, sizeof(port), &((const struct inet_sock *)sk)->inet_sport);
	return bpf_ntohs(port);
}

static __always_inline __u16 dport(const struct sock *sk)
{
	return bpf_ntohs(sk->__sk_common.skc_dport);
}

// The programs' entries are the first check (ports_in_summary) and a call,
// so the rejection path of other traffic runs a few instructions in one or
// two cache lines. Everything else is in __noinline functions (the JIT
// gives each its own image), reached only by traffic that may be a
// backend's.

// close_conn reports a socket reaching TCP_CLOSE. By then the kernel has
// released its local port, so the socket is found by its address in
// `conns`, and the endpoints come from there.
static __noinline int close_conn(const struct sock *sk, int oldstate)
{
	if (!port_is_backend(sport(sk)) && !port_is_backend(dport(sk)))
		return 0;
	__u64 key = (__u64)sk;
	struct endpoints ep;
	struct conn *c = bpf_map_lookup_elem(&conns, &key);
	if (c && (c->flags & FLAG_CLOSED)) {
		bpf_map_delete_elem(&conns, &key); // a stale entry of an earlier socket
		c = 0;
	}
	if (!c) {
		// A client's socket still knows its peer: report it without state.
		if (match_sock(sk, &ep) < 0)
			return 0;
		count(COUNTER_MATCHED_SET_STATE);
		count(COUNTER_NO_STATE);
		emit(sk, &ep, 0, EVENT_CLOSE, oldstate, TCP_CLOSE, 0);
		return 0;
	}
	count(COUNTER_MATCHED_SET_STATE);
	// Closed without a FIN or RST from the peer first: this side ended it
	// (gave up on the SYN, timed out, or aborted).
	if (c->closed_by == SIDE_UNKNOWN)
		c->closed_by = c->ep.side;
	emit(sk, &c->ep, c, EVENT_CLOSE, oldstate, TCP_CLOSE, 0);
	// An abort (close with SO_LINGER 0 or with unread data) changes the
	// state to TCP_CLOSE first and sends its RST after: keep the state of a
	// connection that ended without FINs for tcp_send_reset to find.
	if (!(c->flags & FLAG_RESET_RECEIVED) &&
	    (oldstate == TCP_ESTABLISHED || oldstate == TCP_CLOSE_WAIT || oldstate == TCP_SYN_RECV ||
	     oldstate == TCP_FIN_WAIT1 || oldstate == TCP_FIN_WAIT2)) {
		c->flags |= FLAG_CLOSED;
		return 0;
	}
	bpf_map_delete_elem(&conns, &key);
	return 0;
}

// set_state follows a socket through the changes the entry lets through:
// the start, the handshake's end and the first FIN.
static __noinline int set_state(const struct sock *sk, int oldstate, int newstate)
{
	struct endpoints ep;
	if (match_sock(sk, &ep) < 0)
		return 0;
	count(COUNTER_MATCHED_SET_STATE);

	__u64 key = (__u64)sk;
	// Before Linux 6.15 a server socket changes to SYN_RECV while it is
	// cloned from the listener, before it has its peer (remote address and
	// port 0; no local address either under a wildcard listener): no syn is
	// reported with a peer the kernel has not set, and the connection is
	// taken up at ESTABLISHED. A real peer never has port 0.
	if (newstate == TCP_SYN_RECV && !dport(sk))
		return 0;
	if (newstate == TCP_SYN_SENT || newstate == TCP_SYN_RECV) {
		struct conn fresh = {.start_ns = bpf_ktime_get_ns()};
		fresh.ep = ep;
		bpf_map_update_elem(&conns, &key, &fresh, BPF_ANY);
		count(COUNTER_SYN);
		if (send_transitions)
			emit(sk, &ep, &fresh, EVENT_SYN, oldstate, newstate, 0);
		return 0;
	}

	struct conn *c = conn_of(&key, &ep);
	if (!c)
		return 0;
	switch (newstate) {
	case TCP_ESTABLISHED:
		// A server socket first seen here (see above) is new: the kernel
		// created it for the final ACK it is processing now.
		if ((c->flags & FLAG_NO_START) && oldstate == TCP_SYN_RECV && ep.side == SIDE_SERVER) {
			c->start_ns = bpf_ktime_get_ns();
			c->flags &= ~FLAG_NO_START;
		}
		c->flags |= FLAG_ESTABLISHED;
		count(COUNTER_ESTABLISHED);
		if (send_transitions)
			emit(sk, &ep, c, EVENT_ESTABLISHED, oldstate, newstate, 0);
		break;
	case TCP_FIN_WAIT1: // this socket sent the first FIN
		if (c->closed_by == SIDE_UNKNOWN)
			c->closed_by = ep.side;
		break;
	case TCP_CLOSE_WAIT: // the peer's FIN came first
		if (c->closed_by == SIDE_UNKNOWN)
			c->closed_by = other(ep.side);
		break;
	}
	return 0;
}

SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(inet_sock_set_state, const struct sock *sk, int oldstate, int newstate)
{
	if (newstate == TCP_CLOSE) {
		if (oldstate != TCP_LISTEN && ports_in_summary(sport(sk), dport(sk)))
			close_conn(sk, oldstate);
		return 0;
	}
	// Only these changes tell something: the start, the handshake's end,
	// and who sent the first FIN. FIN_WAIT2, LAST_ACK and CLOSING follow
	// from them, and a listener is no connection.
	if (newstate != TCP_SYN_SENT && newstate != TCP_SYN_RECV && newstate != TCP_ESTABLISHED &&
	    newstate != TCP_FIN_WAIT1 && newstate != TCP_CLOSE_WAIT)
		return 0;
	if (ports_in_summary(sk->__sk_common.skc_num, dport(sk)))
		set_state(sk, oldstate, newstate);
	return 0;
}

static __noinline int receive_reset(const struct sock *sk)
{
	struct endpoints ep;
	if (match_sock(sk, &ep) < 0)
		return 0;
	count(COUNTER_MATCHED_RECEIVE_RESET);
	__u8 state = sk->__sk_common.skc_state;
	__u64 key = (__u64)sk;
	struct conn *c = conn_of(&key, &ep);
	if (c) {
		c->flags |= FLAG_RESET_RECEIVED;
		if (c->closed_by == SIDE_UNKNOWN)
			c->closed_by = other(ep.side);
	}
	__u8 kind = state == TCP_SYN_SENT ? EVENT_REFUSED : EVENT_RESET_RECEIVED;
	emit(sk, &ep, c, kind, state, state, 0);
	return 0;
}

SEC("tp_btf/tcp_receive_reset")
int BPF_PROG(tcp_receive_reset, const struct sock *sk)
{
	if (sk && ports_in_summary(sk->__sk_common.skc_num, dport(sk)))
		receive_reset(sk);
	return 0;
}

#define TCP_FLAG_SYN 0x02
#define TCP_FLAG_ACK 0x10

// segment_ports reads the ports of the segment a RST answers (host byte
// order): through a cast, two loads and no helper call.
static __always_inline void segment_ports(const struct sk_buff *skb, __u16 *src, __u16 *dst)
{
	unsigned char *th = skb->head + skb->transport_header;
	if (can_cast()) {
		const struct tcphdr *tcp = core_cast(th, struct tcphdr);
		*src = bpf_ntohs(tcp->source);
		*dst = bpf_ntohs(tcp->dest);
		return;
	}
	__be16 ports[2] = {};
	bpf_probe_read_kernel(ports, sizeof(ports), th);
	*src = bpf_ntohs(ports[0]);
	*dst = bpf_ntohs(ports[1]);
}

// match_skb matches the segment a RST answers (src: the peer, dst: the
// local end). Returns the segment's TCP flags, or -1 for other traffic.
static __always_inline int match_skb(const struct sk_buff *skb, struct endpoints *ep)
{
	unsigned char *head = skb->head;
	__u16 th_off = skb->transport_header;
	__u16 nh_off = skb->network_header;
	__u16 rport, lport;
	segment_ports(skb, &rport, &lport);
	int lknown = port_is_backend(lport);
	int rknown = port_is_backend(rport);
	if (!lknown && !rknown)
		return -1;

	__u8 th[14]; // ports, seq, ack, data offset, flags
	if (bpf_probe_read_kernel(th, sizeof(th), head + th_off) < 0)
		return -1;
	__u8 ip[40];
	__u8 local[16], remote[16];
	if (bpf_probe_read_kernel(ip, 20, head + nh_off) < 0)
		return -1;
	if ((ip[0] >> 4) == 4) {
		__be32 s, d;
		__builtin_memcpy(&s, ip + 12, 4);
		__builtin_memcpy(&d, ip + 16, 4);
		set_v4mapped(remote, s);
		set_v4mapped(local, d);
	} else if ((ip[0] >> 4) == 6) {
		if (bpf_probe_read_kernel(ip, 40, head + nh_off) < 0)
			return -1;
		__builtin_memcpy(remote, ip + 8, 16);
		__builtin_memcpy(local, ip + 24, 16);
	} else {
		return -1;
	}
	if (classify(ep, local, lport, remote, rport, lknown, rknown) < 0)
		return -1;
	return th[13];
}

// reset_sent records a RST the socket's side sent and reports it.
static __always_inline void reset_sent(const struct sock *sk, struct endpoints *ep, struct conn *c,
				       __u32 reason)
{
	__u8 state = sk ? sk->__sk_common.skc_state : TCP_CLOSE;
	if (c) {
		c->flags |= FLAG_RESET_SENT;
		if (c->closed_by == SIDE_UNKNOWN)
			c->closed_by = ep->side;
	}
	emit(sk, ep, c, EVENT_RESET_SENT, state, state, reason);
	if (c && (c->flags & FLAG_CLOSED)) {
		__u64 key = (__u64)sk;
		bpf_map_delete_elem(&conns, &key);
	}
}

// reset_reply handles a RST that answers a segment. sk is NULL (no socket:
// for a SYN, that is the refusal), a listener or time-wait socket, or the
// connection's own socket; the segment says whose connection it is.
static __noinline int reset_reply(const struct sock *sk, const struct sk_buff *skb, int reason)
{
	struct endpoints ep;
	int flags = match_skb(skb, &ep);
	if (flags < 0)
		return 0;
	count(COUNTER_MATCHED_SEND_RESET);
	if ((flags & TCP_FLAG_SYN) && !(flags & TCP_FLAG_ACK)) {
		__u8 state = sk ? sk->__sk_common.skc_state : TCP_CLOSE;
		emit(sk, &ep, 0, EVENT_REFUSED, state, state, reason);
		return 0;
	}
	__u64 key = (__u64)sk;
	struct conn *c = sk ? bpf_map_lookup_elem(&conns, &key) : 0;
	reset_sent(sk, &ep, c, reason);
	return 0;
}

// reset_abort handles an active reset (close with SO_LINGER 0 or unread
// data): only the socket, which may have released its local port already;
// a tracked one is in `conns`.
static __noinline int reset_abort(const struct sock *sk, int reason)
{
	struct endpoints ep;
	__u64 key = (__u64)sk;
	struct conn *c = bpf_map_lookup_elem(&conns, &key);
	if (c) {
		count(COUNTER_MATCHED_SEND_RESET);
		ep = c->ep;
		reset_sent(sk, &ep, c, reason);
		return 0;
	}
	if (match_sock(sk, &ep) < 0)
		return 0;
	count(COUNTER_MATCHED_SEND_RESET);
	reset_sent(sk, &ep, 0, reason);
	return 0;
}

// send_reset is the entry of both tcp_send_reset programs.
static __always_inline int send_reset(const struct sock *sk, const struct sk_buff *skb, int reason)
{
	if (!skb) {
		if (sk && ports_in_summary(sport(sk), dport(sk)))
			reset_abort(sk, reason);
		return 0;
	}
	// A socket with its ports bound answers the first check without the
	// segment; the segment's ports answer it otherwise.
	if (sk && sk->__sk_common.skc_num) {
		if (ports_in_summary(sk->__sk_common.skc_num, dport(sk)))
			reset_reply(sk, skb, reason);
		return 0;
	}
	__u16 src, dst;
	segment_ports(skb, &src, &dst);
	if (ports_in_summary(src, dst))
		reset_reply(sk, skb, reason);
	return 0;
}

// Two programs per changed tracepoint: a tp_btf program may read only the
// arguments the kernel's tracepoint passes (the verifier rejects a third one
// on a kernel that passes two), so the loader reads the tracepoint's
// prototype (btf_trace_<name>) from the kernel's BTF and loads the program
// that matches it, deleting the other.

// tcp_send_reset: Linux >= 6.10 passes the reason (enum sk_rst_reason).
SEC("tp_btf/tcp_send_reset")
int BPF_PROG(tcp_send_reset, const struct sock *sk, const struct sk_buff *skb, int reason)
{
	return send_reset(sk, skb, reason);
}

// tcp_send_reset_noreason: before 6.10, (sk, skb) and no reason (reported as 0).
SEC("tp_btf/tcp_send_reset")
int BPF_PROG(tcp_send_reset_noreason, const struct sock *sk, const struct sk_buff *skb)
{
	return send_reset(sk, skb, 0);
}

static __noinline int retransmit(const struct sock *sk, int err)
{
	struct endpoints ep;
	if (match_sock(sk, &ep) < 0)
		return 0;
	count(COUNTER_MATCHED_RETRANSMIT);
	if (err) // not sent (busy device, no route): no retransmission took place
		return 0;
	__u64 key = (__u64)sk;
	struct conn *c = conn_of(&key, &ep);
	if (!c)
		return 0;
	__u32 n = ++c->retransmits;
	if ((n & (n - 1)) == 0) { // 1, 2, 4, 8...: bounded events per connection
		__u8 state = sk->__sk_common.skc_state;
		emit(sk, &ep, c, EVENT_RETRANSMIT, state, state, 0);
	}
	return 0;
}

// tcp_retransmit_skb: newer kernels pass err and fire for failed attempts too.
SEC("tp_btf/tcp_retransmit_skb")
int BPF_PROG(tcp_retransmit_skb, const struct sock *sk, const struct sk_buff *skb, int err)
{
	if (ports_in_summary(sk->__sk_common.skc_num, dport(sk)))
		retransmit(sk, err);
	return 0;
}

// tcp_retransmit_skb_noerr: older kernels pass (sk, skb) and fire only for a
// retransmission that was sent, which is err 0.
SEC("tp_btf/tcp_retransmit_skb")
int BPF_PROG(tcp_retransmit_skb_noerr, const struct sock *sk, const struct sk_buff *skb)
{
	if (ports_in_summary(sk->__sk_common.skc_num, dport(sk)))
		retransmit(sk, 0);
	return 0;
}
