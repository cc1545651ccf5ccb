/* flowhash.h - the flow hash that indexes a ring, the VIP pre-filter slot, and
 * the outer source address bits; lb.xdp.flowhash mirrors each one bit for bit.
 */
#pragma once
#include "lb_consts.h"

/* A 32-bit word rotated left by `s` bits (1..31). */
static __always_inline __u32 lb_rol32(__u32 w, int s)
{
	return (w << s) | (w >> (32 - s));
}

/* Bob Jenkins' lookup3 final mix of three words. */
static __always_inline __u32 lb_hash_final(__u32 a, __u32 b, __u32 c)
{
	c ^= b; c -= lb_rol32(b, 14);
	a ^= c; a -= lb_rol32(c, 11);
	b ^= a; b -= lb_rol32(a, 25);
	c ^= b; c -= lb_rol32(b, 16);
	a ^= c; a -= lb_rol32(c, 4);
	b ^= a; b -= lb_rol32(a, 14);
	c ^= b; c -= lb_rol32(b, 24);
	return c;
}

/* Three words and a seed to 32 bits, lookup3-style. */
static __always_inline __u32 lb_hash3(__u32 a, __u32 b, __u32 c, __u32 seed)
{
	a += 0xdeadbeef + seed;
	b += 0xdeadbeef + seed;
	c += 0xdeadbeef + seed;
	return lb_hash_final(a, b, c);
}

/* An IPv6 address to 32 bits; the fourth word enters through the seed. */
static __always_inline __u32 hash_v6_addr(const __be32 *w)
{
	return lb_hash3(w[0], w[1], w[2], LB_HASH_SEED ^ w[3]);
}

/* The ports word of a flow: source port zeroed for F_VIP_HASH_NO_SRC_PORT VIPs. */
static __always_inline __u32 hash_ports(__be16 sport, __be16 dport, __u32 vip_flags)
{
	if (vip_flags & F_VIP_HASH_NO_SRC_PORT)
		sport = 0;
	return ((__u32)sport << 16) | dport;
}

static __always_inline __u32 flow_hash_v4(const struct flow_v4 *f, __u32 vip_flags)
{
	return lb_hash3(f->src, f->dst, hash_ports(f->sport, f->dport, vip_flags),
			    LB_HASH_SEED ^ f->proto);
}

static __always_inline __u32 flow_hash_v6(const struct flow_v6 *f, __u32 vip_flags)
{
	return lb_hash3(hash_v6_addr(f->src), hash_v6_addr(f->dst),
			    hash_ports(f->sport, f->dport, vip_flags), LB_HASH_SEED ^ f->proto);
}

/* A destination address folded to a vip_filter slot. */
static __always_inline __u32 vip_filter_slot(__u32 folded)
{
	folded ^= folded >> 16;
	return folded & (LB_FILTER_SIZE - 1);
}

/* Bits that vary the outer source address per flow, so receivers' RSS spreads flows. */
static __always_inline __u32 encap_src_bits(__u32 src_folded, __be16 sport)
{
	return src_folded ^ (((__u32)sport << 16) | sport);
}

/* An IPv6 address as one word for vip_index_slot (rotated, so that equal words in
 * different places of two addresses do not cancel out). */
static __always_inline __u32 vip_addr_word_v6(const __be32 *w)
{
	return w[0] ^ lb_rol32(w[1], 8) ^ lb_rol32(w[2], 16) ^ lb_rol32(w[3], 24);
}

/* A VIP key's slot in its family's VIP index: multiplicative hashing, top bits.
 * `addr_word` is the IPv4 address, or vip_addr_word_v6() of an IPv6 one. */
static __always_inline __u32 vip_index_slot(__u32 addr_word, __be16 port, __u8 proto)
{
	__u32 x = addr_word ^ ((((__u32)port << 8) | proto) * 0x85ebca6bU);

	return (x * 0x9e3779b1U) >> (32 - LB_VIP_INDEX_BITS);
}
