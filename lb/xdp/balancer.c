/* balancer.c - the XDP pipeline: parse, find the VIP, pick a backend (connection
 * table, else Maglev ring), encapsulate IP-in-IP, transmit. Everything that is
 * not for a VIP passes to the kernel untouched.
 *
 * Every stage either returns a final verdict, counted in `counters` under a
 * reason, or lets the packet continue down the ladder. Malformed or unusual
 * packets to a VIP address are dropped with a reason; anything not addressed to
 * a VIP address is the kernel's business and is passed.
 */
#include <uapi/linux/bpf.h>
#include <linux/in.h>
#include "lb_consts.h"
#include "lb_structs.h"
#include "lb_maps.h"
#include "parsing.h"
#include "flowhash.h"
#include "encap.h"
#ifdef LB_BENCH
#include "bench.h"
#endif

/* What the parse stages learn about a packet to a VIP. */
struct packet {
	__u32 frame_len;          /* bytes as received */
	__u16 l2_len;             /* 14, or 18 with a VLAN tag */
	__be16 vlan_tci;
	__u8 is_syn;              /* TCP SYN without ACK: always a fresh decision */
	__u8 pad0[3];
	struct encap_info encap;
};

static __always_inline int count_pass(struct lb_counters *cnt, int reason)
{
	cnt->n[CNT_PASS]++;
	cnt->n[reason]++;
	return XDP_PASS;
}

static __always_inline int count_drop(struct lb_counters *cnt, int reason)
{
	cnt->n[CNT_DROP]++;
	cnt->n[reason]++;
	return XDP_DROP;
}

/* The backend index in a VIP's ring slot for this hash (0: none). */
static __always_inline __u32 ring_backend(__u32 vip_num, __u32 hash)
{
	__u32 slot = hash % LB_RING_SIZE;
	__u32 key = vip_num * LB_RING_CELLS + slot / LB_RING_CELL_SLOTS;
	struct ring_cell *cell = rings.lookup(&key);

	if (!cell)
		return 0;
	return cell->backend[slot % LB_RING_CELL_SLOTS];
}

/* A backend slot that can be sent to, or NULL. */
static __always_inline struct backend *usable_backend(__u32 idx)
{
	struct backend *be = backends.lookup(&idx);

	if (!be || !(be->flags & F_BACKEND_VALID))
		return NULL;
	return be;
}

/* A connection-table entry still good for this flow: backend usable, UDP not idle too long. */
static __always_inline struct backend *ct_entry_backend(struct ct_entry *e, __u8 proto,
							 const struct lb_config *cfg,
							 struct lb_counters *cnt)
{
	if (proto == IPPROTO_UDP) {
		__u64 now = bpf_ktime_get_coarse_ns();

		if (now - e->atime_ns > cfg->udp_timeout_ns) {
			cnt->n[CNT_CT_UDP_EXPIRED]++;
			return NULL;
		}
		e->atime_ns = now;
	}
	return usable_backend(e->backend);
}

/* Fill the table entry for a fresh decision (UDP entries carry their time). */
static __always_inline void ct_fill(struct ct_entry *e, __u32 idx, __u8 proto)
{
	e->backend = idx;
	e->pad0 = 0;
	e->atime_ns = proto == IPPROTO_UDP ? bpf_ktime_get_coarse_ns() : 0;
}

/* Count a packet sent to a VIP's backend. */
static __always_inline void count_sent(struct packet *p, __u32 vip_num, __u32 idx)
{
	struct lb_stats *vs = vip_stats.lookup(&vip_num);
	struct lb_stats *bs = backend_stats.lookup(&idx);

	if (vs) {
		vs->packets++;
		vs->bytes += p->frame_len;
	}
	if (bs) {
		bs->packets++;
		bs->bytes += p->frame_len;
	}
}

/* Add the outer header and send toward backend `idx`; the VIP and backend stats
 * count only packets that really leave. */
static __always_inline int forward(struct xdp_md *ctx, struct packet *p, const struct vip_meta *vip,
				   __u32 idx, const struct backend *be, const struct lb_config *cfg,
				   struct lb_counters *cnt)
{
	int overhead = be->flags & F_BACKEND_IPV6 ? LB_ENCAP_V6_LEN : LB_ENCAP_V4_LEN;
	void *data, *end;
	int err;

	if (p->encap.inner_len + overhead > cfg->mtu)
		return count_drop(cnt, CNT_DROP_TOO_BIG);
	if (bpf_xdp_adjust_head(ctx, -overhead))
		return count_drop(cnt, CNT_DROP_ENCAP_FAILED);
	data = (void *)(long)ctx->data;
	end = (void *)(long)ctx->data_end;
	if (p->l2_len == ETH_HLEN)
		err = write_encap(data, end, ETH_HLEN, cfg, &p->encap, be, 0);
	else
		err = write_encap(data, end, ETH_HLEN + sizeof(struct vlan_tag), cfg, &p->encap, be,
				  p->vlan_tci);
	if (err)
		return count_drop(cnt, CNT_DROP_ENCAP_FAILED);
	count_sent(p, vip->vip_num, idx);
	if (cfg->egress_ifindex) {
		cnt->n[CNT_REDIRECT]++;
		return bpf_redirect(cfg->egress_ifindex, 0);
	}
	cnt->n[CNT_TX]++;
	return XDP_TX;
}

/* Pick the backend of a flow: connection table, else the ring (then remember it).
 * `flow` is a struct flow_v6 when `v6`, else a struct flow_v4; `v6` is a constant at
 * each call site, so the family branches fold away when this is inlined. */
static __always_inline int pick_and_forward(struct xdp_md *ctx, struct packet *p, void *flow,
					    int v6, __u8 proto, const struct vip_meta *vip,
					    struct lb_counters *cnt)
{
	__u32 zero = 0;
	struct lb_config *cfg = lb_config.lookup(&zero);
	int use_ct = !(vip->flags & F_VIP_NO_CONN_TABLE);
	struct backend *be;
	struct ct_entry fresh;
	__u32 hash, idx;

	if (!cfg)
		return count_drop(cnt, CNT_DROP_NO_BACKEND);
	if (use_ct && !p->is_syn) {
		struct ct_entry *e = v6 ? ct_v6.lookup(flow) : ct_v4.lookup(flow);

		if (e) {
			be = ct_entry_backend(e, proto, cfg, cnt);
			if (be) {
				cnt->n[CNT_CT_HIT]++;
				return forward(ctx, p, vip, e->backend, be, cfg, cnt);
			}
		}
	}
	hash = v6 ? flow_hash_v6(flow, vip->flags) : flow_hash_v4(flow, vip->flags);
	idx = ring_backend(vip->vip_num, hash);
	be = usable_backend(idx);
	if (!be)
		return count_drop(cnt, CNT_DROP_NO_BACKEND);
	if (use_ct) {
		cnt->n[CNT_CT_MISS]++;
		ct_fill(&fresh, idx, proto);
		if (v6)
			ct_v6.update(flow, &fresh);
		else
			ct_v4.update(flow, &fresh);
	}
	return forward(ctx, p, vip, idx, be, cfg, cnt);
}

/* Bytes of the TCP or UDP header the program reads (options never). */
static __always_inline __u32 l4_header_len(__u8 proto)
{
	return proto == IPPROTO_TCP ? sizeof(struct tcphdr) : sizeof(struct udphdr);
}

/* Ports (and SYN) of a TCP/UDP header at the cursor; -1 if truncated. The caller
 * has checked that the header lies inside the IP packet, not just the frame. */
static __always_inline int parse_ports(struct cursor *c, __u8 proto, __be16 *sport, __be16 *dport,
				       __u8 *is_syn)
{
	if (proto == IPPROTO_TCP) {
		struct tcphdr *tcp;

		if (parse_tcphdr(c, &tcp))
			return -1;
		*sport = tcp->source;
		*dport = tcp->dest;
		*is_syn = tcp->syn && !tcp->ack;
		return 0;
	}
	struct udphdr *udp;

	if (parse_udphdr(c, &udp))
		return -1;
	*sport = udp->source;
	*dport = udp->dest;
	*is_syn = 0;
	return 0;
}

/* Rare path: is an unusual IPv4 packet's destination a VIP address, and if so why is it refused? */
static __always_inline int unusual_v4(struct iphdr *ip, int bad_length, int l4_truncated,
				      struct lb_counters *cnt)
{
	struct vip_key_v4 marker = { .addr = ip->daddr };

	if (!vips_v4.lookup(&marker))
		return count_pass(cnt, CNT_PASS_NOT_VIP);
	if (bad_length)
		return count_drop(cnt, CNT_DROP_BAD_LENGTH);
	if (ip->frag_off & bpf_htons(LB_IP_MF | LB_IP_OFFSET))
		return count_drop(cnt, CNT_DROP_FRAGMENT);
	if (ip->ihl != 5)
		return count_drop(cnt, CNT_DROP_IPV4_OPTIONS);
	if (ip->ttl == 0)
		return count_drop(cnt, CNT_DROP_TTL_EXPIRED);
	if (ip->protocol == IPPROTO_ICMP)
		return count_pass(cnt, CNT_PASS_ICMP);
	if (l4_truncated)
		return count_drop(cnt, CNT_DROP_L4_TRUNCATED);
	return count_pass(cnt, CNT_PASS_NOT_VIP);
}

static __always_inline int process_v4(struct xdp_md *ctx, struct cursor *c, struct packet *p,
				      struct lb_counters *cnt)
{
	struct iphdr *ip;
	struct vip_meta *vip;
	struct flow_v4 flow;
	__u32 slot, *maybe_vip;
	__u16 tot_len;
	int bad_length;

	if (parse_iphdr(c, &ip) || ip->version != 4 || ip->ihl < 5)
		return count_pass(cnt, CNT_PASS_L3_MALFORMED);
	slot = vip_filter_slot(ip->daddr);
	maybe_vip = vip_filter.lookup(&slot);
	if (!maybe_vip || !*maybe_vip)
		return count_pass(cnt, CNT_PASS_NOT_VIP);

	tot_len = bpf_ntohs(ip->tot_len);
	bad_length = tot_len < ip->ihl * 4 || (void *)ip + tot_len > c->end;
	if (bad_length || ip->ihl != 5 || ip->ttl == 0 ||
	    (ip->frag_off & bpf_htons(LB_IP_MF | LB_IP_OFFSET)) ||
	    (ip->protocol != IPPROTO_TCP && ip->protocol != IPPROTO_UDP))
		return unusual_v4(ip, bad_length, 0, cnt);

	flow.src = ip->saddr;
	flow.dst = ip->daddr;
	flow.proto = ip->protocol;
	flow.pad0[0] = flow.pad0[1] = flow.pad0[2] = 0;
	if (tot_len < sizeof(*ip) + l4_header_len(flow.proto) ||
	    parse_ports(c, flow.proto, &flow.sport, &flow.dport, &p->is_syn))
		return unusual_v4(ip, 0, 1, cnt);

	struct vip_key_v4 key = { .addr = flow.dst, .port = flow.dport, .proto = flow.proto };

	vip = vips_v4.lookup(&key);
	if (!vip) {
		key.port = 0;
		vip = vips_v4.lookup(&key);
		if (!vip)
			return count_pass(cnt, CNT_PASS_NOT_VIP);
	}
	p->encap.inner_len = tot_len;
	p->encap.inner_proto = LB_IPPROTO_IPIP;
	p->encap.tos = ip->tos;
	p->encap.src_bits = encap_src_bits(flow.src, flow.sport);
	return pick_and_forward(ctx, p, &flow, 0, flow.proto, vip, cnt);
}

/* Rare path for IPv6, as unusual_v4. */
static __always_inline int unusual_v6(struct ipv6hdr *ip6, int bad_length, int l4_truncated,
				      struct lb_counters *cnt)
{
	struct vip_key_v6 marker = {};

	__builtin_memcpy(marker.addr, ip6->daddr.in6_u.u6_addr32, sizeof(marker.addr));
	if (!vips_v6.lookup(&marker))
		return count_pass(cnt, CNT_PASS_NOT_VIP);
	if (bad_length)
		return count_drop(cnt, CNT_DROP_BAD_LENGTH);
	if (ip6->hop_limit == 0)
		return count_drop(cnt, CNT_DROP_TTL_EXPIRED);
	switch (ip6->nexthdr) {
	case IPPROTO_ICMPV6:
		return count_pass(cnt, CNT_PASS_ICMP);
	case IPPROTO_FRAGMENT:
		return count_drop(cnt, CNT_DROP_FRAGMENT);
	case IPPROTO_HOPOPTS:
	case IPPROTO_ROUTING:
	case IPPROTO_DSTOPTS:
	case IPPROTO_AH:
	case IPPROTO_ESP:
	case IPPROTO_MH:
		return count_drop(cnt, CNT_DROP_IPV6_EXT_HEADER);
	}
	if (l4_truncated)
		return count_drop(cnt, CNT_DROP_L4_TRUNCATED);
	return count_pass(cnt, CNT_PASS_NOT_VIP);
}

static __always_inline int process_v6(struct xdp_md *ctx, struct cursor *c, struct packet *p,
				      struct lb_counters *cnt)
{
	struct ipv6hdr *ip6;
	struct vip_meta *vip;
	struct flow_v6 flow;
	__u32 slot, folded, *maybe_vip;
	__u16 payload_len;
	int bad_length;

	if (parse_ipv6hdr(c, &ip6) || ip6->version != 6)
		return count_pass(cnt, CNT_PASS_L3_MALFORMED);
	__builtin_memcpy(flow.dst, ip6->daddr.in6_u.u6_addr32, sizeof(flow.dst));
	folded = flow.dst[0] ^ flow.dst[1] ^ flow.dst[2] ^ flow.dst[3];
	slot = vip_filter_slot(folded);
	maybe_vip = vip_filter.lookup(&slot);
	if (!maybe_vip || !*maybe_vip)
		return count_pass(cnt, CNT_PASS_NOT_VIP);

	payload_len = bpf_ntohs(ip6->payload_len);
	bad_length = (void *)(ip6 + 1) + payload_len > c->end;
	if (bad_length || ip6->hop_limit == 0 ||
	    (ip6->nexthdr != IPPROTO_TCP && ip6->nexthdr != IPPROTO_UDP))
		return unusual_v6(ip6, bad_length, 0, cnt);

	__builtin_memcpy(flow.src, ip6->saddr.in6_u.u6_addr32, sizeof(flow.src));
	flow.proto = ip6->nexthdr;
	flow.pad0[0] = flow.pad0[1] = flow.pad0[2] = 0;
	if (payload_len < l4_header_len(flow.proto) ||
	    parse_ports(c, flow.proto, &flow.sport, &flow.dport, &p->is_syn))
		return unusual_v6(ip6, 0, 1, cnt);

	struct vip_key_v6 key = { .port = flow.dport, .proto = flow.proto };

	__builtin_memcpy(key.addr, flow.dst, sizeof(key.addr));
	vip = vips_v6.lookup(&key);
	if (!vip) {
		key.port = 0;
		vip = vips_v6.lookup(&key);
		if (!vip)
			return count_pass(cnt, CNT_PASS_NOT_VIP);
	}
	p->encap.inner_len = payload_len + sizeof(*ip6);
	p->encap.inner_proto = LB_IPPROTO_IPV6;
	p->encap.tos = (ip6->priority << 4) | (ip6->flow_lbl[0] >> 4);
	p->encap.src_bits = encap_src_bits(flow.src[0] ^ flow.src[1] ^ flow.src[2] ^ flow.src[3],
					   flow.sport);
	return pick_and_forward(ctx, p, &flow, 1, flow.proto, vip, cnt);
}

int xdp_balancer(struct xdp_md *ctx)
{
	__u32 zero = 0;
	struct lb_counters *cnt;
	struct ethhdr *eth;
	struct vlan_tag *tag;
	struct packet p;
	struct cursor c;
	__be16 proto;

#ifdef LB_BENCH
	if (bench_restore(ctx, bench_state.lookup(&zero)))
		return XDP_ABORTED;
#endif
	cnt = counters.lookup(&zero);
	if (!cnt)
		return XDP_PASS;
	c.pos = (void *)(long)ctx->data;
	c.end = (void *)(long)ctx->data_end;
	p.frame_len = c.end - c.pos;
	p.l2_len = ETH_HLEN;
	p.vlan_tci = 0;
	p.is_syn = 0;

	if (parse_ethhdr(&c, &eth))
		return count_pass(cnt, CNT_PASS_L2_TRUNCATED);
	proto = eth->h_proto;
	if (proto == bpf_htons(ETH_P_8021Q)) {
		if (parse_vlan(&c, &tag))
			return count_pass(cnt, CNT_PASS_L2_TRUNCATED);
		p.l2_len += sizeof(*tag);
		p.vlan_tci = tag->tci;
		proto = tag->inner_proto;
	}
	if (proto == bpf_htons(ETH_P_IP))
		return process_v4(ctx, &c, &p, cnt);
	if (proto == bpf_htons(ETH_P_IPV6))
		return process_v6(ctx, &c, &p, cnt);
	return count_pass(cnt, CNT_PASS_NOT_IP);
}
