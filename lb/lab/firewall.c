/* firewall.c - a lab firewall in slot 0 of an lb chain (chain.h): drops one IPv4 source,
 * hands everything else to the next slot. An example of the chain's contract, used by the
 * sharing tests and bench.chain.
 *
 * Compiled with -DLB_CHAIN_PIN='"<pin_dir>/chain"' and -DBLOCKED_SRC=<IPv4 address as the
 * __be32 the packet carries> (lb.lab.chain.load_firewall does both).
 */
#include <uapi/linux/bpf.h>
#include <uapi/linux/if_ether.h>
#include <uapi/linux/ip.h>
#define LB_CHAIN_SLOT 0
#include "chain.h"

int xdp_firewall(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data, *end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip = data + sizeof(*eth);

	if ((void *)(ip + 1) <= end && eth->h_proto == bpf_htons(ETH_P_IP) &&
	    ip->saddr == BLOCKED_SRC)
		return XDP_DROP;
	LB_CHAIN_EACH_NEXT(i)
		chain.call(ctx, i);
	return XDP_PASS;
}
