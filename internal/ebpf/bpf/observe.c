// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* Kernel-side observation of one mesh node (docs/ebpf.md). The programs only count: they never
 * change, redirect or drop a packet, and every map they write is bounded. */
#include "kernel.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_core_read.h>

char LICENSE[] SEC("license") = "Dual BSD/GPL";

#define TCX_NEXT -1 /* let whatever else is attached decide */
#define ETH_HLEN 14
#define ETH_P_IP 0x0800
#define ETH_P_IPV6 0x86DD
#define IPPROTO_TCP 6
#define IPPROTO_UDP 17
#define AF_INET6 10
#define BPF_NOEXIST 1

/* Set by the loader before loading: the node's UDP port and its overlay prefix. */
volatile const __u16 mesh_port = 0;
volatile const __u8 overlay_prefix[16] = {};
volatile const __u32 overlay_prefix_len = 0;
/* The node's network namespace (its inode number): tracepoints fire for every namespace, and an
 * ifindex or a port means something only within one. */
volatile const __u32 netns_ino = 0;

/* Underlay: one entry per peer endpoint (an IPv4 address is stored v4-mapped). */
struct endpoint_key {
	__u8 addr[16];
	__u16 port;
	__u16 pad;
};

struct endpoint_value {
	__u64 rx_packets, rx_bytes, tx_packets, tx_bytes;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, struct endpoint_key);
	__type(value, struct endpoint_value);
} endpoints SEC(".maps");

/* Overlay: one entry per IPv6 5-tuple and direction. */
struct flow_key {
	__u8 saddr[16];
	__u8 daddr[16];
	__u16 sport, dport;
	__u8 proto;
	__u8 dir; /* 0: from the host into the mesh (TUN egress), 1: from the mesh to the host */
	__u16 pad;
};

struct flow_value {
	__u64 packets, bytes;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct flow_key);
	__type(value, struct flow_value);
} flows SEC(".maps");

/* Totals that no eviction can lose, summed over CPUs by the loader. */
enum {
	TOTAL_OVERLAY_TX_PACKETS,
	TOTAL_OVERLAY_TX_BYTES,
	TOTAL_OVERLAY_RX_PACKETS,
	TOTAL_OVERLAY_RX_BYTES,
	TOTAL_UNDERLAY_TX_PACKETS,
	TOTAL_UNDERLAY_TX_BYTES,
	TOTAL_UNDERLAY_RX_PACKETS,
	TOTAL_UNDERLAY_RX_BYTES,
	TOTAL_FLOWS_CREATED,
	TOTAL_TCP_RETRANSMITS,
	NUM_TOTALS,
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, NUM_TOTALS);
	__type(key, __u32);
	__type(value, __u64);
} totals SEC(".maps");

/* Devices whose drops count: ifindex -> where (1 underlay, 2 overlay). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 64);
	__type(key, __u32);
	__type(value, __u32);
} watched SEC(".maps");

enum { WHERE_UNDERLAY = 1, WHERE_OVERLAY = 2, WHERE_SOCKET = 3 };

struct drop_key {
	__u32 reason;
	__u32 where;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, struct drop_key);
	__type(value, __u64);
} drops SEC(".maps");

/* TCP health of overlay connections, keyed by the local view of the connection. */
struct tcp_key {
	__u8 laddr[16];
	__u8 raddr[16];
	__u16 lport, rport;
};

struct tcp_value {
	__u64 retransmits; /* segments, as the socket counts them */
	__u32 srtt_us;
	__u32 pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, struct tcp_key);
	__type(value, struct tcp_value);
} tcp_flows SEC(".maps");

static __always_inline void add_total(__u32 idx, __u64 n)
{
	__u64 *v = bpf_map_lookup_elem(&totals, &idx);
	if (v)
		*v += n; /* per-CPU slot: no other CPU writes it */
}

/* ---- underlay ---- */

static __always_inline int count_endpoint(struct __sk_buff *skb, int ingress)
{
	struct endpoint_key k = {};
	__u32 l4;
	__u16 proto = bpf_ntohs(skb->protocol);

	if (proto == ETH_P_IP) {
		__u8 vihl, ipproto;
		if (bpf_skb_load_bytes(skb, ETH_HLEN, &vihl, 1) ||
		    bpf_skb_load_bytes(skb, ETH_HLEN + 9, &ipproto, 1))
			return TCX_NEXT;
		if (ipproto != IPPROTO_UDP)
			return TCX_NEXT;
		l4 = ETH_HLEN + (vihl & 0xf) * 4;
		k.addr[10] = 0xff;
		k.addr[11] = 0xff;
		if (bpf_skb_load_bytes(skb, ETH_HLEN + (ingress ? 12 : 16), &k.addr[12], 4))
			return TCX_NEXT;
	} else if (proto == ETH_P_IPV6) {
		__u8 nexthdr;
		if (bpf_skb_load_bytes(skb, ETH_HLEN + 6, &nexthdr, 1))
			return TCX_NEXT;
		if (nexthdr != IPPROTO_UDP)
			return TCX_NEXT;
		l4 = ETH_HLEN + 40;
		if (bpf_skb_load_bytes(skb, ETH_HLEN + (ingress ? 8 : 24), k.addr, 16))
			return TCX_NEXT;
	} else {
		return TCX_NEXT;
	}
	__be16 ports[2];
	if (bpf_skb_load_bytes(skb, l4, ports, sizeof(ports)))
		return TCX_NEXT;
	__u16 ours = bpf_ntohs(ingress ? ports[1] : ports[0]);
	if (ours != mesh_port)
		return TCX_NEXT;
	k.port = bpf_ntohs(ingress ? ports[0] : ports[1]);

	/* A GSO or GRO skb carries several datagrams with one set of headers. */
	__u64 segs = skb->gso_segs > 1 ? skb->gso_segs : 1;
	__u64 hdrs = l4 + 8;
	__u64 payload = skb->len > hdrs ? skb->len - hdrs : 0;

	struct endpoint_value *v = bpf_map_lookup_elem(&endpoints, &k);
	if (!v) {
		struct endpoint_value zero = {};
		bpf_map_update_elem(&endpoints, &k, &zero, BPF_NOEXIST);
		v = bpf_map_lookup_elem(&endpoints, &k);
		if (!v)
			return TCX_NEXT;
	}
	if (ingress) {
		__sync_fetch_and_add(&v->rx_packets, segs);
		__sync_fetch_and_add(&v->rx_bytes, payload);
		add_total(TOTAL_UNDERLAY_RX_PACKETS, segs);
		add_total(TOTAL_UNDERLAY_RX_BYTES, payload);
	} else {
		__sync_fetch_and_add(&v->tx_packets, segs);
		__sync_fetch_and_add(&v->tx_bytes, payload);
		add_total(TOTAL_UNDERLAY_TX_PACKETS, segs);
		add_total(TOTAL_UNDERLAY_TX_BYTES, payload);
	}
	return TCX_NEXT;
}

SEC("tcx/ingress")
int x6_underlay_in(struct __sk_buff *skb)
{
	return count_endpoint(skb, 1);
}

SEC("tcx/egress")
int x6_underlay_out(struct __sk_buff *skb)
{
	return count_endpoint(skb, 0);
}

/* ---- overlay (the TUN carries bare IP packets: no link-layer header) ---- */

static __always_inline int count_flow(struct __sk_buff *skb, __u8 dir)
{
	if (bpf_ntohs(skb->protocol) != ETH_P_IPV6)
		return TCX_NEXT;
	struct flow_key k = {};
	k.dir = dir;
	if (bpf_skb_load_bytes(skb, 6, &k.proto, 1) ||
	    bpf_skb_load_bytes(skb, 8, k.saddr, 32))
		return TCX_NEXT;
	__u64 hdrs = 40;
	if (k.proto == IPPROTO_TCP || k.proto == IPPROTO_UDP) {
		__be16 ports[2];
		if (bpf_skb_load_bytes(skb, 40, ports, sizeof(ports)))
			return TCX_NEXT;
		k.sport = bpf_ntohs(ports[0]);
		k.dport = bpf_ntohs(ports[1]);
		if (k.proto == IPPROTO_UDP) {
			hdrs += 8;
		} else {
			__u8 off;
			if (bpf_skb_load_bytes(skb, 40 + 12, &off, 1))
				return TCX_NEXT;
			hdrs += (off >> 4) * 4;
		}
	}
	/* A GSO skb stands for several packets that will each carry the headers. */
	__u64 segs = skb->gso_segs > 1 ? skb->gso_segs : 1;
	__u64 bytes = skb->len + (segs - 1) * hdrs;

	struct flow_value *v = bpf_map_lookup_elem(&flows, &k);
	if (!v) {
		struct flow_value init = {.packets = segs, .bytes = bytes};
		if (bpf_map_update_elem(&flows, &k, &init, BPF_NOEXIST) == 0) {
			add_total(TOTAL_FLOWS_CREATED, 1);
			goto totals;
		}
		v = bpf_map_lookup_elem(&flows, &k);
		if (!v)
			goto totals;
	}
	__sync_fetch_and_add(&v->packets, segs);
	__sync_fetch_and_add(&v->bytes, bytes);
totals:
	add_total(dir ? TOTAL_OVERLAY_RX_PACKETS : TOTAL_OVERLAY_TX_PACKETS, segs);
	add_total(dir ? TOTAL_OVERLAY_RX_BYTES : TOTAL_OVERLAY_TX_BYTES, bytes);
	return TCX_NEXT;
}

SEC("tcx/egress")
int x6_overlay_out(struct __sk_buff *skb)
{
	return count_flow(skb, 0);
}

SEC("tcx/ingress")
int x6_overlay_in(struct __sk_buff *skb)
{
	return count_flow(skb, 1);
}

/* ---- drops ---- */

/* is_mesh_datagram says whether a freed skb is a UDP datagram to or from the mesh port, from the
 * headers the stack already parsed. */
static __always_inline int is_mesh_datagram(struct sk_buff *skb)
{
	__u16 nh = BPF_CORE_READ(skb, network_header);
	__u16 th = BPF_CORE_READ(skb, transport_header);
	unsigned char *head = BPF_CORE_READ(skb, head);
	if (nh == 0xffff || th == 0xffff || th <= nh)
		return 0;
	__u8 first;
	if (bpf_probe_read_kernel(&first, 1, head + nh))
		return 0;
	__u8 proto;
	if ((first >> 4) == 4) {
		if (bpf_probe_read_kernel(&proto, 1, head + nh + 9))
			return 0;
	} else if ((first >> 4) == 6) {
		if (bpf_probe_read_kernel(&proto, 1, head + nh + 6))
			return 0;
	} else {
		return 0;
	}
	if (proto != IPPROTO_UDP)
		return 0;
	__be16 ports[2];
	if (bpf_probe_read_kernel(ports, sizeof(ports), head + th))
		return 0;
	return bpf_ntohs(ports[0]) == mesh_port || bpf_ntohs(ports[1]) == mesh_port;
}

SEC("tp_btf/kfree_skb")
int x6_kfree_skb(__u64 *ctx)
{
	struct sk_buff *skb = (struct sk_buff *)ctx[0];
	__u32 reason = (__u32)ctx[2];
	struct drop_key k = {.reason = reason};

	/* The tracepoint fires for every drop of every namespace of the host, so the test that
	 * rejects other namespaces' drops comes first and reads through the BTF pointers directly
	 * (plain loads the verifier guards), not through helper calls. */
	struct net_device *dev = skb->dev;
	struct sock *sk = skb->sk;
	__u32 ns = 0;
	if (dev)
		ns = dev->nd_net.net->ns.inum;
	else if (sk)
		ns = sk->__sk_common.skc_net.net->ns.inum;
	if (ns != netns_ino)
		return 0;
	if (dev) {
		__u32 ifindex = dev->ifindex;
		__u32 *where = bpf_map_lookup_elem(&watched, &ifindex);
		if (where)
			k.where = *where;
	}
	if (!k.where && is_mesh_datagram(skb))
		k.where = WHERE_SOCKET;
	if (!k.where)
		return 0;
	__u64 *v = bpf_map_lookup_elem(&drops, &k);
	if (v) {
		__sync_fetch_and_add(v, 1);
		return 0;
	}
	__u64 one = 1;
	if (bpf_map_update_elem(&drops, &k, &one, BPF_NOEXIST)) {
		v = bpf_map_lookup_elem(&drops, &k);
		if (v)
			__sync_fetch_and_add(v, 1);
	}
	return 0;
}

/* ---- TCP over the overlay ---- */

static __always_inline int in_overlay(const __u8 *a)
{
	__u32 bits = overlay_prefix_len;
	if (bits == 0)
		return 0;
	int differ = 0;
#pragma unroll
	for (int i = 0; i < 16; i++) {
		__u32 left = bits > i * 8 ? bits - i * 8 : 0;
		__u8 mask = left >= 8 ? 0xff : (__u8)(0xff00 >> left);
		differ |= (a[i] ^ overlay_prefix[i]) & mask;
	}
	return !differ;
}

static __always_inline struct tcp_value *tcp_entry(struct sock *sk)
{
	if (BPF_CORE_READ(sk, __sk_common.skc_family) != AF_INET6 ||
	    BPF_CORE_READ(sk, __sk_common.skc_net.net, ns.inum) != netns_ino)
		return 0;
	struct tcp_key k = {};
	BPF_CORE_READ_INTO(&k.laddr, sk, __sk_common.skc_v6_rcv_saddr.in6_u.u6_addr8);
	BPF_CORE_READ_INTO(&k.raddr, sk, __sk_common.skc_v6_daddr.in6_u.u6_addr8);
	if (!in_overlay(k.laddr) && !in_overlay(k.raddr))
		return 0;
	/* inet_sport, not skc_num: a socket going to TIME_WAIT hands its port to the time-wait socket,
	 * which clears skc_num before its last state change (to CLOSE), whose counters must still land
	 * on the connection's entry. */
	k.lport = bpf_ntohs(BPF_CORE_READ((struct inet_sock *)sk, inet_sport));
	k.rport = bpf_ntohs(BPF_CORE_READ(sk, __sk_common.skc_dport));
	/* A connecting socket enters SYN_SENT before it has a local port: not a connection yet. */
	if (k.lport == 0 || k.rport == 0)
		return 0;
	struct tcp_value *v = bpf_map_lookup_elem(&tcp_flows, &k);
	if (v)
		return v;
	struct tcp_value zero = {};
	bpf_map_update_elem(&tcp_flows, &k, &zero, BPF_NOEXIST);
	return bpf_map_lookup_elem(&tcp_flows, &k);
}

/* record copies the socket's own counters: total_retrans counts segments retransmitted, as
 * TCP_INFO reports it, and the delta feeds the node's total. */
static __always_inline void record(struct sock *sk, struct tcp_value *v)
{
	struct tcp_sock *tp = (struct tcp_sock *)sk;
	__u32 retrans = BPF_CORE_READ(tp, total_retrans);
	if (retrans > v->retransmits)
		add_total(TOTAL_TCP_RETRANSMITS, retrans - v->retransmits);
	v->retransmits = retrans;
	v->srtt_us = BPF_CORE_READ(tp, srtt_us) >> 3; /* the kernel keeps it scaled by 8 */
}

SEC("tp_btf/tcp_retransmit_skb")
int x6_tcp_retransmit(__u64 *ctx)
{
	struct sock *sk = (struct sock *)ctx[0];
	struct tcp_value *v = tcp_entry(sk);
	if (v)
		record(sk, v);
	return 0;
}

/* The socket's counters are copied when it retransmits, when it changes state (so a connection that
 * closes keeps its last count), and when the node reads the maps (x6_tcp_iter). Copying them on
 * every received segment (tcp:tcp_probe) would cost a tracepoint entry per segment of every TCP
 * connection of the host, while the node reads them once a second at most. */
SEC("tp_btf/inet_sock_set_state")
int x6_tcp_state(__u64 *ctx)
{
	struct sock *sk = (struct sock *)ctx[0];
	if (BPF_CORE_READ(sk, sk_protocol) != IPPROTO_TCP)
		return 0;
	struct tcp_value *v = tcp_entry(sk);
	if (v)
		record(sk, v);
	return 0;
}

/* x6_tcp_iter walks the TCP sockets of the node's namespace when the node reads the maps, so the
 * smoothed RTT shown is the socket's current one. The iterator holds each socket's lock, as the
 * tracepoints above run under it, so record never races with itself on one socket. */
SEC("iter/tcp")
int x6_tcp_iter(struct bpf_iter__tcp *ctx)
{
	struct sock_common *skc = ctx->sk_common;
	if (!skc)
		return 0;
	struct tcp_sock *tp = bpf_skc_to_tcp_sock(skc);
	if (!tp)
		return 0;
	struct sock *sk = (struct sock *)tp;
	struct tcp_value *v = tcp_entry(sk);
	if (v)
		record(sk, v);
	return 0;
}
