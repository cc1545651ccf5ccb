/* icmp.h - the one ICMP error the balancer answers itself: a packet to a VIP that would be
 * bigger than the MTU toward the backends once encapsulated gets "fragmentation needed"
 * (ICMPv4 type 3 code 4, RFC 1191) or "packet too big" (ICMPv6 type 2, RFC 8201) back to
 * its source, from the VIP, so the client's path MTU discovery shrinks its packets rather
 * than losing them.
 *
 * The reply is built in place: the frame is cut to the quote (IPv4: the invoking packet's
 * header and 8 bytes, RFC 792; IPv6: as much as keeps the reply within 1280 bytes, RFC 4443
 * 2.4(c)), the head grows by the reply's IP and ICMP headers, and the frame goes back out
 * the receiving interface to the MAC it came from, on the same VLAN. l2_len is 14 or 18, a
 * constant at each call site. The rate limit (RFC 4443 2.4(f)) is the caller's: it needs a
 * map, and bcc rewrites map calls in the main file only.
 */
#pragma once
#include <linux/icmp.h>
#include <linux/icmpv6.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include "encap.h"
#include "parsing.h"

/* Whether an IPv4 source may be sent an ICMP error (RFC 1122 3.2.2: not 0/8, 127/8,
 * multicast or class E, which includes the limited broadcast). */
static __always_inline int icmp_unicast_v4(__be32 addr)
{
	__u8 first = bpf_ntohl(addr) >> 24;

	return first != 0 && first != 127 && first < 224;
}

/* Whether an IPv6 source may be sent an ICMPv6 error (RFC 4443 2.4(e): not ::, ::1, or
 * multicast). */
static __always_inline int icmp_unicast_v6(const __be32 *addr)
{
	if ((bpf_ntohl(addr[0]) >> 24) == 0xff)
		return 0;
	if (addr[0] | addr[1] | addr[2])
		return 1;
	return addr[3] != 0 && addr[3] != bpf_htonl(1);
}

/* Whether an IPv4 frame is due a "fragmentation needed": DF set (without it the source
 * allows fragments, which are not made here), from a unicast source to our unicast MAC,
 * sent from a unicast MAC (the reply goes to it: never to a group address). */
static __always_inline int icmp_due_v4(struct xdp_md *ctx, int l2_len)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct iphdr *ip = data + l2_len;

	if (data + l2_len + LB_ICMP_QUOTE_V4 > end)
		return 0;
	return (ip->frag_off & bpf_htons(LB_IP_DF)) && icmp_unicast_v4(ip->saddr) &&
	       !(((__u8 *)data)[0] & 1) && !(((__u8 *)data)[ETH_ALEN] & 1);
}

/* Whether an IPv6 frame is due a "packet too big" naming `mtu`: a unicast source, our
 * unicast MAC, a unicast source MAC, an MTU the source will act on, and enough bytes to quote. */
static __always_inline int icmp_due_v6(struct xdp_md *ctx, int l2_len, __u32 mtu)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct ipv6hdr *ip6 = data + l2_len;

	if (data + l2_len + LB_ICMP_QUOTE_V6 > end || mtu < LB_IPV6_MIN_MTU)
		return 0;
	return icmp_unicast_v6(ip6->saddr.in6_u.u6_addr32) && !(((__u8 *)data)[0] & 1) &&
	       !(((__u8 *)data)[ETH_ALEN] & 1);
}

/* Turn an IPv4 frame (icmp_due_v4) into "fragmentation needed, next-hop MTU `mtu`";
 * 0, or LB_ICMP_RESIZE_FAILED. */
static __always_inline int icmp_too_big_v4(struct xdp_md *ctx, int l2_len, __be16 vlan_tci,
					   __u16 mtu)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct iphdr *ip = data + l2_len;
	struct icmphdr *icmp;
	__u8 macs[2 * ETH_ALEN];
	__be32 client, vip;
	__u32 sum = 0;
	__u16 *w;

	if (data + l2_len + LB_ICMP_QUOTE_V4 > end)
		return LB_ICMP_RESIZE_FAILED;
	__builtin_memcpy(macs, data, sizeof(macs));
	client = ip->saddr;
	vip = ip->daddr;
	if (bpf_xdp_adjust_tail(ctx, (int)(l2_len + LB_ICMP_QUOTE_V4) - (int)(end - data)) ||
	    bpf_xdp_adjust_head(ctx, -(int)(sizeof(*ip) + sizeof(*icmp))))
		return LB_ICMP_RESIZE_FAILED;
	data = (void *)(long)ctx->data;
	end = (void *)(long)ctx->data_end;
	ip = data + l2_len;
	icmp = (void *)(ip + 1);
	if ((void *)(icmp + 1) + LB_ICMP_QUOTE_V4 > end)
		return LB_ICMP_RESIZE_FAILED;

	/* Back to the sender's MAC from the one it sent to (macs: destination, source). */
	write_l2(data, macs + ETH_ALEN, macs, l2_len != ETH_HLEN, vlan_tci, bpf_htons(ETH_P_IP));
	ip->version = 4;
	ip->ihl = 5;
	ip->tos = 0;
	ip->tot_len = bpf_htons(sizeof(*ip) + sizeof(*icmp) + LB_ICMP_QUOTE_V4);
	ip->id = 0;                          /* an atomic datagram (DF set): RFC 6864 */
	ip->frag_off = bpf_htons(LB_IP_DF);
	ip->ttl = LB_ICMP_TTL;
	ip->protocol = IPPROTO_ICMP;
	ip->check = 0;
	ip->saddr = vip;
	ip->daddr = client;
	ip->check = ipv4_csum(ip);

	icmp->type = ICMP_DEST_UNREACH;
	icmp->code = ICMP_FRAG_NEEDED;
	icmp->checksum = 0;
	icmp->un.frag.__unused = 0;
	icmp->un.frag.mtu = bpf_htons(mtu);
	w = (__u16 *)icmp;
#pragma unroll
	for (int i = 0; i < (int)(sizeof(*icmp) + LB_ICMP_QUOTE_V4) / 2; i++)
		sum += w[i];
	icmp->checksum = csum_fold32(sum);
	return 0;
}

/* As icmp_too_big_v4, for an IPv6 frame (icmp_due_v6): "packet too big, MTU `mtu`". */
static __always_inline int icmp_too_big_v6(struct xdp_md *ctx, int l2_len, __be16 vlan_tci,
					   __u32 mtu)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct ipv6hdr *ip6 = data + l2_len;
	struct icmp6hdr *icmp;
	__u8 macs[2 * ETH_ALEN];
	__be32 client[4], vip[4];
	__u64 partial;
	__u32 sum;
	__u16 *w;
	void *msg;

	if (data + l2_len + LB_ICMP_QUOTE_V6 > end)
		return LB_ICMP_RESIZE_FAILED;
	__builtin_memcpy(macs, data, sizeof(macs));
	__builtin_memcpy(client, ip6->saddr.in6_u.u6_addr32, sizeof(client));
	__builtin_memcpy(vip, ip6->daddr.in6_u.u6_addr32, sizeof(vip));
	if (bpf_xdp_adjust_tail(ctx, (int)(l2_len + LB_ICMP_QUOTE_V6) - (int)(end - data)) ||
	    bpf_xdp_adjust_head(ctx, -(int)(sizeof(*ip6) + sizeof(*icmp))))
		return LB_ICMP_RESIZE_FAILED;
	data = (void *)(long)ctx->data;
	end = (void *)(long)ctx->data_end;
	ip6 = data + l2_len;
	icmp = (void *)(ip6 + 1);
	if ((void *)(icmp + 1) + LB_ICMP_QUOTE_V6 > end)
		return LB_ICMP_RESIZE_FAILED;

	write_l2(data, macs + ETH_ALEN, macs, l2_len != ETH_HLEN, vlan_tci, bpf_htons(ETH_P_IPV6));
	ip6->version = 6;
	ip6->priority = 0;
	ip6->flow_lbl[0] = ip6->flow_lbl[1] = ip6->flow_lbl[2] = 0;
	ip6->payload_len = bpf_htons(sizeof(*icmp) + LB_ICMP_QUOTE_V6);
	ip6->nexthdr = IPPROTO_ICMPV6;
	ip6->hop_limit = LB_ICMP_TTL;
	__builtin_memcpy(ip6->saddr.in6_u.u6_addr32, vip, sizeof(vip));
	__builtin_memcpy(ip6->daddr.in6_u.u6_addr32, client, sizeof(client));

	icmp->icmp6_type = LB_ICMPV6_PKT_TOOBIG;
	icmp->icmp6_code = 0;
	icmp->icmp6_cksum = 0;
	icmp->icmp6_dataun.un_data32[0] = bpf_htonl(mtu);
	/* The message (header and quote, 1240 bytes) in chunks bpf_csum_diff takes (<= 512,
	 * multiples of 4), then the pseudo-header: source, destination, length, next header. */
	msg = icmp;
	partial = bpf_csum_diff(0, 0, msg, 512, 0);
	partial = bpf_csum_diff(0, 0, msg + 512, 512, (__u32)partial);
	partial = bpf_csum_diff(0, 0, msg + 1024, sizeof(*icmp) + LB_ICMP_QUOTE_V6 - 1024,
				(__u32)partial);
	sum = (__u32)partial;
	sum = (sum & 0xffff) + (sum >> 16);
	sum += bpf_htons(sizeof(*icmp) + LB_ICMP_QUOTE_V6) + bpf_htons(IPPROTO_ICMPV6);
	w = (__u16 *)&ip6->saddr;
#pragma unroll
	for (int i = 0; i < 16; i++)
		sum += w[i];
	icmp->icmp6_cksum = csum_fold32(sum);
	return 0;
}
