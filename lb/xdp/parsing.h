/* parsing.h - bounds-checked header parsing with a cursor.
 *
 * Contract (every parse_* below): on success the cursor has moved past the
 * header, *hdr points at it and it is entirely inside the packet; on failure
 * (-1) the cursor has not moved and nothing was read out of bounds.
 */
#pragma once
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/tcp.h>
#include <linux/udp.h>

/* Where parsing is in the packet, and where the packet ends. */
struct cursor {
	void *pos;
	void *end;
};

/* An 802.1Q tag as it sits after the MAC addresses. */
struct vlan_tag {
	__be16 tci;
	__be16 inner_proto;
};

static __always_inline int parse_ethhdr(struct cursor *c, struct ethhdr **hdr)
{
	struct ethhdr *eth = c->pos;

	if ((void *)(eth + 1) > c->end)
		return -1;
	c->pos = eth + 1;
	*hdr = eth;
	return 0;
}

static __always_inline int parse_vlan(struct cursor *c, struct vlan_tag **hdr)
{
	struct vlan_tag *tag = c->pos;

	if ((void *)(tag + 1) > c->end)
		return -1;
	c->pos = tag + 1;
	*hdr = tag;
	return 0;
}

/* The fixed 20 bytes only; options are the caller's to judge from ihl. */
static __always_inline int parse_iphdr(struct cursor *c, struct iphdr **hdr)
{
	struct iphdr *ip = c->pos;

	if ((void *)(ip + 1) > c->end)
		return -1;
	c->pos = ip + 1;
	*hdr = ip;
	return 0;
}

static __always_inline int parse_ipv6hdr(struct cursor *c, struct ipv6hdr **hdr)
{
	struct ipv6hdr *ip6 = c->pos;

	if ((void *)(ip6 + 1) > c->end)
		return -1;
	c->pos = ip6 + 1;
	*hdr = ip6;
	return 0;
}

/* The fixed 20 bytes; TCP options are never read. */
static __always_inline int parse_tcphdr(struct cursor *c, struct tcphdr **hdr)
{
	struct tcphdr *tcp = c->pos;

	if ((void *)(tcp + 1) > c->end)
		return -1;
	c->pos = tcp + 1;
	*hdr = tcp;
	return 0;
}

static __always_inline int parse_udphdr(struct cursor *c, struct udphdr **hdr)
{
	struct udphdr *udp = c->pos;

	if ((void *)(udp + 1) > c->end)
		return -1;
	c->pos = udp + 1;
	*hdr = udp;
	return 0;
}
