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

int floor_encap(struct xdp_md *ctx)
{
	__u32 zero = 0;
	void *data, *end;
	struct ethhdr *eth;
	struct iphdr *o;
	__u16 *w;
	__u32 sum = 0;
	__u16 inner_len;

	if (bench_restore(ctx, bench_state.lookup(&zero)))
		return XDP_ABORTED;
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
	o->id = 0;
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

int floor_tx(struct xdp_md *ctx)
{
	return XDP_TX;
}
