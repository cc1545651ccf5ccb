/* decap.c - the lab's programs around the balancer: a backend's IP-in-IP decapsulation,
 * and the do-nothing program a veth peer must carry for XDP_TX frames to arrive.
 *
 * xdp_decap runs on every backend's interface. This kernel has no ipip/ip6_tunnel
 * driver, so the outer header the balancer added is stripped here: an IPv4 packet with
 * protocol 4 or 41, or an IPv6 packet with next header 4 or 41 (no extension headers),
 * loses its outer header (bpf_xdp_adjust_head by +20, IPv4 options included, or +40)
 * and gets its Ethernet header back in front of the inner packet, with the inner
 * packet's ethertype. The MAC addresses are kept: the router addressed the frame to
 * this interface, so the destination already is its own MAC and the kernel accepts it
 * as if the client's packet had come straight from the router. Everything else passes
 * untouched; an outer header announcing an inner packet that is not there is dropped.
 *
 * One loaded instance serves every backend (a compile costs about a second), so the
 * counters are keyed by the receiving interface: the frame's destination MAC.
 *
 * xdp_pass runs on the router's side of the balancer's veth: XDP_TX on a veth is
 * delivered only when the peer has an XDP program.
 *
 * Only UAPI headers are included: the kernel-internal linux/ip.h and linux/ipv6.h
 * triple the compile time of a program this small.
 */
#include <uapi/linux/bpf.h>
#include <uapi/linux/if_ether.h>
#include <uapi/linux/in.h>
#include <uapi/linux/ip.h>
#include <uapi/linux/ipv6.h>

/* IP protocol number of an IPv4 packet carried in IP (RFC 2003). */
#define DECAP_IPPROTO_IPIP 4
/* IP protocol number of an IPv6 packet carried in IP (RFC 2473, RFC 4213). */
#define DECAP_IPPROTO_IPV6 41
/* IPv4 "more fragments" flag and fragment offset, as they sit in frag_off. */
#define DECAP_IP_FRAGMENT 0x3fff
/* Longest IPv4 header (IHL 15), the most an outer IPv4 header can take. */
#define DECAP_IPV4_MAX_LEN 60

/* Counter slot: IPv4 in IPv4, decapsulated. */
#define DECAP_4IN4 0
/* Counter slot: IPv6 in IPv4, decapsulated. */
#define DECAP_6IN4 1
/* Counter slot: IPv4 in IPv6, decapsulated. */
#define DECAP_4IN6 2
/* Counter slot: IPv6 in IPv6, decapsulated. */
#define DECAP_6IN6 3
/* Counter slot: not encapsulated (ARP, neighbour discovery, plain IP), passed untouched. */
#define DECAP_PASS 4
/* Counter slot: outer header announces an inner packet that is missing or of the other family. */
#define DECAP_DROP_MALFORMED 5
/* Number of counter slots (lb.lab.veth.DecapSlot mirrors them; a test keeps both equal). */
#define DECAP_SLOTS 6
/* Receiving interfaces counted: far more than the backends of any lab. */
#define DECAP_MAX_INTERFACES 1024

/* Which interface counted a frame: its destination MAC (the backend's own, or broadcast). */
struct decap_key {
	__u8 mac[ETH_ALEN];
	__u16 pad0;
};

/* Frames counted per DECAP_* slot. */
struct decap_stats {
	__u64 packets[DECAP_SLOTS];
};

/* Per-CPU counters by receiving interface; the lab sums them over CPUs. */
BPF_TABLE("percpu_hash", struct decap_key, struct decap_stats, decap_counters,
	  DECAP_MAX_INTERFACES);

/* Count a frame in `slot` for the interface `mac` names, and return `verdict`. */
static __always_inline int count(const __u8 *mac, __u32 slot, int verdict)
{
	struct decap_key key = { .pad0 = 0 };
	struct decap_stats zero = {}, *s;

	__builtin_memcpy(key.mac, mac, ETH_ALEN);
	s = decap_counters.lookup(&key);
	if (!s) {
		decap_counters.update(&key, &zero);
		s = decap_counters.lookup(&key);
	}
	if (s && slot < DECAP_SLOTS)
		s->packets[slot]++;
	return verdict;
}

/* The outer header's length, the inner protocol and the counter slot of an IP-in-IP
 * packet whose IP header starts at `l3`; -1 when it is not IP-in-IP. */
static __always_inline int outer_header(void *l3, void *end, __be16 h_proto, __u8 *inner_proto,
					__u32 *slot)
{
	if (h_proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *ip = l3;

		if ((void *)(ip + 1) > end || ip->ihl < 5 ||
		    (ip->frag_off & bpf_htons(DECAP_IP_FRAGMENT)))
			return -1;
		if (ip->protocol != DECAP_IPPROTO_IPIP && ip->protocol != DECAP_IPPROTO_IPV6)
			return -1;
		*inner_proto = ip->protocol;
		*slot = ip->protocol == DECAP_IPPROTO_IPIP ? DECAP_4IN4 : DECAP_6IN4;
		return ip->ihl * 4;
	}
	if (h_proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = l3;

		if ((void *)(ip6 + 1) > end)
			return -1;
		if (ip6->nexthdr != DECAP_IPPROTO_IPIP && ip6->nexthdr != DECAP_IPPROTO_IPV6)
			return -1;
		*inner_proto = ip6->nexthdr;
		*slot = ip6->nexthdr == DECAP_IPPROTO_IPIP ? DECAP_4IN6 : DECAP_6IN6;
		return sizeof(*ip6);
	}
	return -1;
}

int xdp_decap(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	__u8 macs[2 * ETH_ALEN];
	__u8 inner_proto = 0, *inner;
	__u32 slot = 0;
	int outer_len;

	if ((void *)(eth + 1) > end)
		return XDP_PASS;
	__builtin_memcpy(macs, eth, sizeof(macs));
	outer_len = outer_header(eth + 1, end, eth->h_proto, &inner_proto, &slot);
	if (outer_len < 0 || outer_len > DECAP_IPV4_MAX_LEN)
		return count(macs, DECAP_PASS, XDP_PASS);

	/* the inner packet must be there, and of the family the outer header names */
	inner = (void *)(eth + 1) + outer_len;
	if ((void *)(inner + 1) > end)
		return count(macs, DECAP_DROP_MALFORMED, XDP_DROP);
	if ((*inner >> 4) != (inner_proto == DECAP_IPPROTO_IPIP ? 4 : 6))
		return count(macs, DECAP_DROP_MALFORMED, XDP_DROP);

	if (bpf_xdp_adjust_head(ctx, outer_len))
		return count(macs, DECAP_DROP_MALFORMED, XDP_DROP);
	eth = (void *)(long)ctx->data;
	if ((void *)(eth + 1) > (void *)(long)ctx->data_end)
		return count(macs, DECAP_DROP_MALFORMED, XDP_DROP);
	__builtin_memcpy(eth, macs, sizeof(macs));
	eth->h_proto = bpf_htons(inner_proto == DECAP_IPPROTO_IPIP ? ETH_P_IP : ETH_P_IPV6);
	return count(macs, slot, XDP_PASS);
}

int xdp_pass(struct xdp_md *ctx)
{
	return XDP_PASS;
}
