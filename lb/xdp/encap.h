/* encap.h - writing the frame that carries a packet to its backend: L2 header
 * toward the next hop, then an outer IPv4 or IPv6 header (IP-in-IP).
 *
 * The caller has already moved the head back by the outer header's length; the
 * inner IP packet is untouched and starts right after the outer header.
 */
#pragma once
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include "lb_structs.h"
#include "parsing.h"

/* One's-complement fold of a 32-bit sum of 16-bit words, complemented: the checksum. */
static __always_inline __u16 csum_fold32(__u32 sum)
{
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return ~sum;
}

/* Checksum of a 20-byte IPv4 header whose check field is zero. */
static __always_inline __u16 ipv4_csum(const struct iphdr *ip)
{
	const __u16 *w = (const __u16 *)ip;
	__u32 sum = 0;

#pragma unroll
	for (int i = 0; i < (int)(sizeof(*ip) / 2); i++)
		sum += w[i];
	return csum_fold32(sum);
}

/* What the outer header copies or derives from the inner packet. */
struct encap_info {
	__u16 inner_len;          /* inner IP packet's length from its own header */
	__u8 inner_proto;         /* LB_IPPROTO_IPIP or LB_IPPROTO_IPV6 */
	__u8 tos;                 /* inner DSCP+ECN, copied out (RFC 6040 normal mode) */
	__u32 src_bits;           /* encap_src_bits() of the flow */
};

/* Ethernet from `src` to `dst` (+ the packet's VLAN tag, kept) carrying `proto`. */
static __always_inline void write_l2(void *at, const __u8 *dst, const __u8 *src, int has_vlan,
				     __be16 vlan_tci, __be16 proto)
{
	struct ethhdr *eth = at;

	__builtin_memcpy(eth->h_dest, dst, ETH_ALEN);
	__builtin_memcpy(eth->h_source, src, ETH_ALEN);
	if (has_vlan) {
		struct vlan_tag *tag = (void *)(eth + 1);

		eth->h_proto = bpf_htons(ETH_P_8021Q);
		tag->tci = vlan_tci;
		tag->inner_proto = proto;
	} else {
		eth->h_proto = proto;
	}
}

static __always_inline void write_outer_v4(struct iphdr *o, const struct lb_config *cfg,
					   const struct encap_info *e, __be32 daddr)
{
	o->version = 4;
	o->ihl = 5;
	o->tos = e->tos;
	o->tot_len = bpf_htons(e->inner_len + LB_ENCAP_V4_LEN);
	o->id = 0;
	o->frag_off = 0;
	o->ttl = cfg->ttl;
	o->protocol = e->inner_proto;
	o->check = 0;
	o->saddr = (cfg->encap_src_v4 & cfg->encap_src_v4_mask) |
		   (e->src_bits & ~cfg->encap_src_v4_mask);
	o->daddr = daddr;
	o->check = ipv4_csum(o);
}

static __always_inline void write_outer_v6(struct ipv6hdr *o, const struct lb_config *cfg,
					   const struct encap_info *e, const __be32 *daddr)
{
	__u32 label = e->src_bits & 0xfffff;

	/* version 6, traffic class = inner tos, flow label from the flow */
	o->version = 6;
	o->priority = e->tos >> 4;
	o->flow_lbl[0] = ((e->tos & 0xf) << 4) | (label >> 16);
	o->flow_lbl[1] = label >> 8;
	o->flow_lbl[2] = label;
	o->payload_len = bpf_htons(e->inner_len);
	o->nexthdr = e->inner_proto;
	o->hop_limit = cfg->ttl;
	o->saddr.in6_u.u6_addr32[0] = cfg->encap_src_v6[0];
	o->saddr.in6_u.u6_addr32[1] = cfg->encap_src_v6[1];
	o->saddr.in6_u.u6_addr32[2] = cfg->encap_src_v6[2];
	o->saddr.in6_u.u6_addr32[3] = (cfg->encap_src_v6[3] & cfg->encap_src_v6_mask) |
				       (e->src_bits & ~cfg->encap_src_v6_mask);
	o->daddr.in6_u.u6_addr32[0] = daddr[0];
	o->daddr.in6_u.u6_addr32[1] = daddr[1];
	o->daddr.in6_u.u6_addr32[2] = daddr[2];
	o->daddr.in6_u.u6_addr32[3] = daddr[3];
}

/* Write L2 + outer header at data (l2_len: 14 or 18, a constant at each call site);
 * -1 when the frame is too short, which the caller's length checks rule out. */
static __always_inline int write_encap(void *data, void *end, int l2_len, const struct lb_config *cfg,
				       const struct encap_info *e, const struct backend *be,
				       __be16 vlan_tci)
{
	if (be->flags & F_BACKEND_IPV6) {
		struct ipv6hdr *o = data + l2_len;

		if ((void *)(o + 1) > end)
			return -1;
		write_l2(data, cfg->next_hop_mac, cfg->src_mac, l2_len != ETH_HLEN, vlan_tci,
			 bpf_htons(ETH_P_IPV6));
		write_outer_v6(o, cfg, e, be->addr);
	} else {
		struct iphdr *o = data + l2_len;

		if ((void *)(o + 1) > end)
			return -1;
		write_l2(data, cfg->next_hop_mac, cfg->src_mac, l2_len != ETH_HLEN, vlan_tci,
			 bpf_htons(ETH_P_IP));
		write_outer_v4(o, cfg, e, be->addr[0]);
	}
	return 0;
}
