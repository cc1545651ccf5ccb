/* balancer.c - the XDP pipeline: parse, find the VIP, pick a backend (connection
 * table, else Maglev ring), encapsulate IP-in-IP, transmit. A packet that would not
 * fit the MTU once encapsulated is answered with ICMP "too big" (icmp.h). Everything
 * that is not for a VIP passes to the kernel untouched.
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
#include "icmp.h"
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

/* A VIP's ring slot for this hash: backend index (0: none) | LB_SLOT_SETTLED if set. */
static __always_inline __u32 ring_slot(__u32 vip_num, __u32 hash)
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

/* A time stamp for UDP entries: coarse ns in units of 2^LB_CT_TIME_SHIFT ns. */
static __always_inline __u32 ct_now(void)
{
	return (__u32)(bpf_ktime_get_coarse_ns() >> LB_CT_TIME_SHIFT);
}

/* The backend of a way found for this flow, if it is still good: backend slot valid, and
 * for UDP not idle longer than the timeout (then the way's time is refreshed). The way has
 * seen a packet: its idle settles start again from 0. */
static __always_inline struct backend *ct_state_backend(struct ct_state *st, __u8 proto,
							const struct lb_config *cfg,
							struct lb_counters *cnt)
{
	if (proto == IPPROTO_UDP) {
		__u32 now = ct_now();

		if (now - st->atime > (__u32)(cfg->udp_timeout_ns >> LB_CT_TIME_SHIFT)) {
			cnt->n[CNT_CT_UDP_EXPIRED]++;
			return NULL;
		}
		st->atime = now;
	}
	st->idle_settles = 0;
	return usable_backend(st->backend);
}

/* Two IPv4 flows are the same (padding is always zero). */
static __always_inline int flow_eq_v4(const struct flow_v4 *a, const struct flow_v4 *b)
{
	const __u64 *x = (const __u64 *)a, *y = (const __u64 *)b;

	return x[0] == y[0] && x[1] == y[1];
}

/* Two IPv6 flows are the same. */
static __always_inline int flow_eq_v6(const struct flow_v6 *a, const struct flow_v6 *b)
{
	const __u64 *x = (const __u64 *)a, *y = (const __u64 *)b;

	return x[0] == y[0] && x[1] == y[1] && x[2] == y[2] && x[3] == y[3] && x[4] == y[4];
}

/* The way of a set (struct ct_set_v6 when `v6`, else ct_set_v4) holding `flow`, or -1. */
static __always_inline int ct_find(void *set, const void *flow, int v6)
{
	if (v6) {
		struct ct_set_v6 *s = set;

		if (flow_eq_v6(&s->way[0].flow, flow))
			return 0;
		return flow_eq_v6(&s->way[1].flow, flow) ? 1 : -1;
	}
	struct ct_set_v4 *s = set;

	if (flow_eq_v4(&s->way[0].flow, flow))
		return 0;
	return flow_eq_v4(&s->way[1].flow, flow) ? 1 : -1;
}

/* The state of way `way` (0 or 1) of a set. */
static __always_inline struct ct_state *ct_way_state(void *set, int way, int v6)
{
	if (v6)
		return &((struct ct_set_v6 *)set)->way[way & 1].state;
	return &((struct ct_set_v4 *)set)->way[way & 1].state;
}

/* Where a set records its most recently used way. */
static __always_inline __u32 *ct_mru(void *set, int v6)
{
	return v6 ? &((struct ct_set_v6 *)set)->mru : &((struct ct_set_v4 *)set)->mru;
}

/* The way a new flow takes: an empty one, else the least recently used. */
static __always_inline int ct_victim(void *set, int v6)
{
	if (!ct_way_state(set, 0, v6)->backend)
		return 0;
	if (!ct_way_state(set, 1, v6)->backend)
		return 1;
	return !*ct_mru(set, v6);
}

/* Remember a fresh decision in way `way` of a set (UDP ways carry their time) and make it MRU. */
static __always_inline void ct_fill(void *set, int way, const void *flow, int v6, __u32 idx,
				    __u8 proto)
{
	struct ct_state *st = ct_way_state(set, way, v6);

	if (v6)
		((struct ct_set_v6 *)set)->way[way & 1].flow = *(const struct flow_v6 *)flow;
	else
		((struct ct_set_v4 *)set)->way[way & 1].flow = *(const struct flow_v4 *)flow;
	st->backend = idx;
	st->idle_settles = 0;
	st->atime = proto == IPPROTO_UDP ? ct_now() : 0;
	*ct_mru(set, v6) = way;
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

/* Whether this CPU may send one more ICMP reply now (GCRA: LB_ICMP_RATE per second,
 * bursts of LB_ICMP_BURST); if so, the reply is counted against the budget. */
static __always_inline int icmp_budget_take(void)
{
	const __u64 interval = 1000000000ULL / LB_ICMP_RATE;
	__u32 zero = 0;
	__u64 *due = icmp_budget.lookup(&zero);
	__u64 now = bpf_ktime_get_ns(), next;

	if (!due)
		return 0;
	next = *due > now ? *due : now;
	if (next - now >= LB_ICMP_BURST * interval)
		return 0;
	*due = next + interval;
	return 1;
}

/* A packet too big to forward once encapsulated: answer its source with ICMP "too big"
 * (what fits is `mtu`) when one is due and the budget allows, else drop it. */
static __always_inline int too_big(struct xdp_md *ctx, const struct packet *p, __u16 mtu,
				   struct lb_counters *cnt)
{
	int v4 = p->encap.inner_proto == LB_IPPROTO_IPIP, tagged = p->l2_len != ETH_HLEN;
	int due, err;

	if (v4)
		due = tagged ? icmp_due_v4(ctx, ETH_HLEN + sizeof(struct vlan_tag)) :
			       icmp_due_v4(ctx, ETH_HLEN);
	else
		due = tagged ? icmp_due_v6(ctx, ETH_HLEN + sizeof(struct vlan_tag), mtu) :
			       icmp_due_v6(ctx, ETH_HLEN, mtu);
	if (!due)
		return count_drop(cnt, CNT_DROP_TOO_BIG);
	if (!icmp_budget_take())
		return count_drop(cnt, CNT_DROP_ICMP_RATE_LIMITED);
	if (v4)
		err = tagged ?
			icmp_too_big_v4(ctx, ETH_HLEN + sizeof(struct vlan_tag), p->vlan_tci, mtu) :
			icmp_too_big_v4(ctx, ETH_HLEN, 0, mtu);
	else
		err = tagged ?
			icmp_too_big_v6(ctx, ETH_HLEN + sizeof(struct vlan_tag), p->vlan_tci, mtu) :
			icmp_too_big_v6(ctx, ETH_HLEN, 0, mtu);
	if (err)
		return count_drop(cnt, CNT_DROP_ENCAP_FAILED);
	cnt->n[CNT_ICMP_TOO_BIG]++;
	return XDP_TX;
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
		return too_big(ctx, p, cfg->mtu - overhead, cnt);
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
 * each call site, so the family branches fold away when this is inlined.
 *
 * The table is this CPU's slice of ct_v4/ct_v6 (plain arrays: one inlined address
 * computation, no per-CPU pointer to load first): set = hash of the full 5-tuple &
 * (LB_CT_SETS - 1), two ways compared on the full flow, LRU within the set. A TCP SYN, an
 * expired UDP way or a way whose backend slot is gone takes a fresh decision that
 * overwrites the flow's own way.
 *
 * A non-SYN TCP packet whose ring slot is settled goes to the slot's backend without
 * reading the table (but for one in LB_CT_SAMPLE_MASK + 1): settled means no live flow in
 * the table names another backend for that slot, so the table would agree. On a busy host
 * the table is far bigger than the caches, and its read is most of a packet's cost. A
 * sampled packet whose way names another backend than its settled slot follows the slot. */
static __always_inline int pick_and_forward(struct xdp_md *ctx, struct packet *p, void *flow,
					    int v6, __u8 proto, const struct vip_meta *vip,
					    struct lb_counters *cnt)
{
	__u32 zero = 0;
	struct lb_config *cfg = lb_config.lookup(&zero);
	struct backend *be;
	void *set = NULL;
	__u32 ring_hash, set_hash, set_num, idx;
	__u32 settled = 0;  /* a sampled packet's settled slot: its backend */
	int way = -1;

	if (!cfg)
		return count_drop(cnt, CNT_DROP_NO_BACKEND);
	if (vip->flags & F_VIP_NO_CONN_TABLE) {
		ring_hash = v6 ? flow_hash_v6(flow, vip->flags) : flow_hash_v4(flow, vip->flags);
	} else {
		/* The set's hash is the full 5-tuple's; the ring's drops the source port for
		 * F_VIP_HASH_NO_SRC_PORT VIPs. */
		ring_hash = set_hash = v6 ? flow_hash_v6(flow, 0) : flow_hash_v4(flow, 0);
		if (vip->flags & F_VIP_HASH_NO_SRC_PORT)
			ring_hash = v6 ? flow_hash_v6(flow, vip->flags) :
					 flow_hash_v4(flow, vip->flags);
		if (proto == IPPROTO_TCP && !p->is_syn) {
			idx = ring_slot(vip->vip_num, ring_hash);
			if (idx & LB_SLOT_SETTLED) {
				idx &= LB_SLOT_BACKEND;
				be = usable_backend(idx);
				/* The sample tick: every table-using packet moves one of these. */
				if (be && ((cnt->n[CNT_CT_SETTLED] + cnt->n[CNT_CT_HIT] +
					    cnt->n[CNT_CT_MISS]) & LB_CT_SAMPLE_MASK) !=
					  LB_CT_SAMPLE_MASK) {
					cnt->n[CNT_CT_SETTLED]++;
					return forward(ctx, p, vip, idx, be, cfg, cnt);
				}
				if (be)
					settled = idx;
			}
		}
		set_num = bpf_get_smp_processor_id() * LB_CT_SETS + (set_hash & (LB_CT_SETS - 1));
		set = v6 ? (void *)ct_v6.lookup(&set_num) : (void *)ct_v4.lookup(&set_num);
		if (!set)
			return count_drop(cnt, CNT_DROP_NO_BACKEND);
		way = ct_find(set, flow, v6);
		/* On a settled slot the slot is right: a way naming another backend is a flow
		 * that went idle past the limit and follows the slot now; rewrite it. */
		if (way >= 0 && !p->is_syn &&
		    !(settled && ct_way_state(set, way, v6)->backend != settled)) {
			struct ct_state *st = ct_way_state(set, way, v6);

			be = ct_state_backend(st, proto, cfg, cnt);
			if (be) {
				cnt->n[CNT_CT_HIT]++;
				*ct_mru(set, v6) = way;
				return forward(ctx, p, vip, st->backend, be, cfg, cnt);
			}
		}
	}
	idx = ring_slot(vip->vip_num, ring_hash) & LB_SLOT_BACKEND;
	be = usable_backend(idx);
	if (!be)
		return count_drop(cnt, CNT_DROP_NO_BACKEND);
	if (set) {
		cnt->n[CNT_CT_MISS]++;
		ct_fill(set, way >= 0 ? way : ct_victim(set, v6), flow, v6, idx, proto);
	}
	return forward(ctx, p, vip, idx, be, cfg, cnt);
}

/* The VIP of (address, port, protocol) through the IPv4 VIP index; vips_v4 is asked
 * only when the slot is shared. NULL: not a VIP. */
static __always_inline struct vip_meta *find_vip_v4(__be32 addr, __be16 port, __u8 proto)
{
	__u32 slot = vip_index_slot(addr, port, proto);
	struct vip_slot_v4 *s = vip_index_v4.lookup(&slot);

	if (!s)
		return NULL;
	if (s->shared) {
		struct vip_key_v4 key = { .addr = addr, .port = port, .proto = proto };

		return vips_v4.lookup(&key);
	}
	if (s->addr == addr && s->port == port && s->proto == proto)
		return &s->meta;
	return NULL;
}

/* As find_vip_v4, for IPv6 (`addr_word`: vip_addr_word_v6 of `addr`). */
static __always_inline struct vip_meta *find_vip_v6(const __be32 *addr, __u32 addr_word,
						    __be16 port, __u8 proto)
{
	__u32 slot = vip_index_slot(addr_word, port, proto);
	struct vip_slot_v6 *s = vip_index_v6.lookup(&slot);

	if (!s)
		return NULL;
	if (s->shared) {
		struct vip_key_v6 key = { .port = port, .proto = proto };

		__builtin_memcpy(key.addr, addr, sizeof(key.addr));
		return vips_v6.lookup(&key);
	}
	if (s->addr[0] == addr[0] && s->addr[1] == addr[1] && s->addr[2] == addr[2] &&
	    s->addr[3] == addr[3] && s->port == port && s->proto == proto)
		return &s->meta;
	return NULL;
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

	vip = find_vip_v4(flow.dst, flow.dport, flow.proto);
	if (!vip) {
		vip = find_vip_v4(flow.dst, 0, flow.proto);
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
	__u32 slot, folded, addr_word, *maybe_vip;
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

	addr_word = vip_addr_word_v6(flow.dst);
	vip = find_vip_v6(flow.dst, addr_word, flow.dport, flow.proto);
	if (!vip) {
		vip = find_vip_v6(flow.dst, addr_word, 0, flow.proto);
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

#include "chain.h"
static __always_inline int balance(struct xdp_md *ctx);

/* The entry: the pipeline's verdict, except that when the balancer is one slot of a chain
 * (-DLB_CHAIN_SLOT, chain.h) a packet it passes goes on to the next slot first. */
int xdp_balancer(struct xdp_md *ctx)
{
	int verdict = balance(ctx);

#ifdef LB_CHAIN_SLOT
	if (verdict == XDP_PASS) {
		LB_CHAIN_EACH_NEXT(i)
			chain.call(ctx, i);
	}
#endif
	return verdict;
}

static __always_inline int balance(struct xdp_md *ctx)
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
