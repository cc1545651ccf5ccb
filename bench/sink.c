/* sink.c - the receiving end of the throughput benchmark: counts the frames that
 * arrive on an interface and drops them.
 *
 * It runs on the veth peer of the balancer's interface. XDP_TX on a veth is
 * delivered only when the peer has an XDP program (docs/development.md, "Platform facts"), and dropping
 * here costs the least a receiver can cost: no skb, no stack.
 *
 * Frames are counted per CPU in three slots: all of them, those carrying an
 * IP-in-IP packet (outer IPv4 with protocol 4: what the balancer sends), and
 * those that do not (what the XDP_TX floor sends back unchanged).
 */
#include <uapi/linux/bpf.h>
#include <uapi/linux/if_ether.h>
#include <uapi/linux/ip.h>

/* Counter slot: every frame. */
#define SINK_ALL 0
/* Counter slot: outer IPv4 header with protocol 4 (IP-in-IP). */
#define SINK_IPIP 1
/* Counter slot: anything else. */
#define SINK_OTHER 2
/* Number of counter slots (bench.throughput.SinkSlot mirrors them). */
#define SINK_SLOTS 3

/* Frames counted, per CPU. */
BPF_PERCPU_ARRAY(sink_counters, __u64, SINK_SLOTS);

static __always_inline void bump(__u32 slot)
{
	__u64 *n = sink_counters.lookup(&slot);

	if (n)
		*n += 1;
}

int xdp_sink(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip = data + ETH_HLEN;

	bump(SINK_ALL);
	if ((void *)(ip + 1) <= end && eth->h_proto == bpf_htons(ETH_P_IP) && ip->protocol == 4)
		bump(SINK_IPIP);
	else
		bump(SINK_OTHER);
	return XDP_DROP;
}
