/* floors.c - the two floors the data-plane benchmark divides by: the cheapest
 * XDP programs that do what the balancer's paths must do at the very least.
 *
 * Both start with the same benchmark prologue as the balancer built with
 * -DLB_BENCH (bench_restore from bench.h), so a ratio to a floor compares like
 * with like: the prologue and BPF_PROG_TEST_RUN's own loop are in both.
 *
 *   floor_pass   restore, then XDP_PASS (what a non-VIP packet must cost at least)
 *   floor_encap  restore, grow the head by an outer IPv4 header, write Ethernet and
 *                the outer header with its checksum, XDP_TX (what a forwarded
 *                packet must cost at least: no parsing, no map but bench_state)
 *   floor_probe  floor_encap plus one read of a 64-byte line picked by hashing the
 *                flow number, from an array as big as one CPU's connection table
 *                (2^FLOOR_PROBE_BITS lines, allocated as ct_v4 is): the least a packet
 *                of one of many flows costs when each flow has a line of its own
 *                (bench.scaling's floor for its cycling case)
 *   floor_tx     XDP_TX of the frame unchanged, no prologue: the throughput
 *                benchmark's ceiling on a live interface (bench.throughput)
 *
 * bench.h's map calls are not rewritten by bcc in an included file, so the
 * bench_state lookup is done here, in the main file.
 */
#include <uapi/linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include "bench.h"

/* Bytes the outer IPv4 header adds (the balancer's LB_ENCAP_V4_LEN). */
#define FLOOR_ENCAP_LEN 20
/* IP protocol number of an inner IPv4 packet (IP-in-IP). */
#define FLOOR_IPPROTO_IPIP 4

int floor_pass(struct xdp_md *ctx)
{
	__u32 zero = 0;

	if (bench_restore(ctx, bench_state.lookup(&zero)))
		return XDP_ABORTED;
	return XDP_PASS;
}

/* floor_probe's array has 2^bits lines; 1 bit when not given. */
#ifndef FLOOR_PROBE_BITS
#define FLOOR_PROBE_BITS 1
#endif

/* Lines of floor_probe's array. */
#define FLOOR_PROBE_LINES (1u << FLOOR_PROBE_BITS)

/* One 64-byte line of floor_probe's array (as a connection-table set is one line). */
struct floor_line {
	__u64 word[8];
};

/* floor_probe's array: zeroes, allocated (mmapable) as the connection table is. */
BPF_F_TABLE("array", __u32, struct floor_line, probe_lines, FLOOR_PROBE_LINES, BPF_F_MMAPABLE);

/* Grow the restored frame by an outer IPv4 header with IP ID `id`, fill it in, XDP_TX. */
static __always_inline int floor_encap_frame(struct xdp_md *ctx, __u16 id)
{
	void *data, *end;
	struct ethhdr *eth;
	struct iphdr *o;
	__u16 *w;
	__u32 sum = 0;
	__u16 inner_len;

	inner_len = (__u16)(ctx->data_end - ctx->data - ETH_HLEN);
	if (bpf_xdp_adjust_head(ctx, -FLOOR_ENCAP_LEN))
		return XDP_ABORTED;
	data = (void *)(long)ctx->data;
	end = (void *)(long)ctx->data_end;
	eth = data;
	o = data + ETH_HLEN;
	if ((void *)(o + 1) > end)
		return XDP_ABORTED;

	eth->h_dest[0] = 0x02; eth->h_dest[1] = 0; eth->h_dest[2] = 0;
	eth->h_dest[3] = 0; eth->h_dest[4] = 0; eth->h_dest[5] = 0x02;
	eth->h_source[0] = 0x02; eth->h_source[1] = 0; eth->h_source[2] = 0;
	eth->h_source[3] = 0; eth->h_source[4] = 0; eth->h_source[5] = 0x01;
	eth->h_proto = bpf_htons(ETH_P_IP);

	o->version = 4;
	o->ihl = 5;
	o->tos = 0;
	o->tot_len = bpf_htons(inner_len + FLOOR_ENCAP_LEN);
	o->id = id;
	o->frag_off = 0;
	o->ttl = 64;
	o->protocol = FLOOR_IPPROTO_IPIP;
	o->check = 0;
	o->saddr = bpf_htonl(0xac100001);  /* 172.16.0.1 */
	o->daddr = bpf_htonl(0x0a000101);  /* 10.0.1.1 */

	w = (__u16 *)o;
#pragma unroll
	for (int i = 0; i < (int)(sizeof(*o) / 2); i++)
		sum += w[i];
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	o->check = ~sum;
	return XDP_TX;
}

int floor_encap(struct xdp_md *ctx)
{
	__u32 zero = 0;

	if (bench_restore(ctx, bench_state.lookup(&zero)))
		return XDP_ABORTED;
	return floor_encap_frame(ctx, 0);
}

int floor_probe(struct xdp_md *ctx)
{
	__u32 zero = 0, line;
	struct bench_state *st = bench_state.lookup(&zero);
	struct floor_line *l;

	if (bench_restore(ctx, st) || !st)
		return XDP_ABORTED;
	/* The line depends on the flow, as a connection-table set does (Fibonacci hashing:
	 * the top bits of the product, so consecutive flows land far apart). */
	line = (st->seq * 2654435761u) >> (32 - FLOOR_PROBE_BITS);
	l = probe_lines.lookup(&line);
	if (!l)
		return XDP_ABORTED;
	/* The line's value (0) goes into the frame, so the read cannot be left out. */
	return floor_encap_frame(ctx, (__u16)l->word[0]);
}

int floor_tx(struct xdp_md *ctx)
{
	return XDP_TX;
}
