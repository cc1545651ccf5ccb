/* balancer.c - the XDP pipeline: parse, find the VIP, pick a backend (connection
 * table, else Maglev ring), encapsulate IP-in-IP, transmit. A packet that would not
 * fit the MTU once encapsulated is answered with ICMP "too big" (icmp.h). Everything
 * that is not for a VIP passes to the kernel untouched.
 *
 * Every stage either returns a final verdict, counted in `counters` under a
 * reason, or lets the packet continue down the ladder (LB_CONTINUE). Malformed or
 * unusual packets to a VIP address are dropped with a reason; anything not addressed
 * to a VIP address is the kernel's business and is passed. The ladder, as a packet
 * meets it (the functions are defined bottom-up, callees first):
 *
 *   xdp_balancer          Ethernet and one 802.1Q tag      pass: not_ip, l2_truncated
 *   process_v4/v6         IP, pre-filter, ports, the VIP   pass: l3_malformed, not_vip, icmp;
 *                         (unusual_v4/v6: the rare path)    drop: fragment, options,
 *                                                           l4_truncated, l4_malformed, ...
 *   pick_and_forward      the backend, in four stages:
 *     pick_start            config, the flow's hashes       drop: internal
 *     pick_by_settled_slot  a settled ring slot (TCP)       picked: ct_settled
 *     pick_by_conn_table    the flow's way in its set       picked: ct_hit; drop: internal
 *     pick_by_ring          a fresh decision, remembered    picked: ct_miss (non-SYN TCP
 *                                                           also ct_miss_nonsyn);
 *                                                           drop: no_backend, internal
 *     forward             trim to the IP packet, encap,    tx, redirect; drop: encap_failed
 *                         send the pick
 *       too_big           ICMP "too big" instead           icmp_too_big; drop: too_big, ...
 *
 * The connection table's rules live in conntable.h, shared with the control plane's
 * settle (lb/xdp/_ringio.c).
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

/* The connection table's clock (conntable.h): coarse monotonic ns. */
static __always_inline __u64 ct_clock_ns(void)
{
	return bpf_ktime_get_coarse_ns();
}

#include "conntable.h"

/* What the parse stages learn about a packet to a VIP. */
struct packet {
	__u32 frame_len;          /* bytes as received */
	__u16 l2_len;             /* 14, or 18 with a VLAN tag */
	__be16 vlan_tci;
	__u8 is_syn;              /* TCP SYN without ACK: always a fresh decision */
	__u8 pad0[3];
	struct encap_info encap;
};

/* What the backend-picking stages learn about a packet to a VIP. */
struct pick {
	struct lb_config *cfg;
	void *set;                /* the flow's connection-table set; NULL: not looked up */
	__u32 ring_hash;          /* picks the ring slot */
	__u32 set_hash;           /* picks the set: the full 5-tuple's hash */
	__u32 slot;               /* the flow's ring slot (backend | LB_SLOT_SETTLED), read
	                           * once; LB_RING_UNREAD before, LB_RING_MISSING if unreadable */
	__u32 settled;            /* a sampled packet of a settled slot: its backend; else 0 */
	int way;                  /* the flow's way in `set`, or -1 */
	int table;                /* the VIP uses the connection table */
	__u32 idx;                /* LB_PICKED: the backend's index */
	struct backend *be;       /* LB_PICKED: the backend */
};

/* Pass to the kernel, counted under the pass total and `reason`. */
static __always_inline int count_pass(struct lb_counters *cnt, int reason)
{
	cnt->n[CNT_PASS]++;
	cnt->n[reason]++;
	return XDP_PASS;
}

/* Drop, counted under the drop total and `reason`. */
static __always_inline int count_drop(struct lb_counters *cnt, int reason)
{
	cnt->n[CNT_DROP]++;
	cnt->n[reason]++;
	return XDP_DROP;
}

/* A VIP's ring slot for this hash: backend index (0: none) | LB_SLOT_SETTLED if set;
 * LB_RING_MISSING when the VIP's number has no ring. */
static __always_inline __u32 ring_slot(__u32 vip_num, __u32 hash)
{
	__u32 slot = ring_pos(hash, LB_RING_SIZE);
	__u32 key = vip_num * LB_RING_CELLS + slot / LB_RING_CELL_SLOTS;
	struct ring_cell *cell = rings.lookup(&key);

	if (!cell)
		return LB_RING_MISSING;
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

/* The backend of a way found for this flow, if it is still good (conntable.h's ct_touch,
 * then a backend slot that can be sent to). */
static __always_inline struct backend *ct_state_backend(struct ct_state *st, __u8 proto,
							const struct lb_config *cfg,
							struct lb_counters *cnt)
{
	if (!ct_touch(st, proto, cfg->udp_timeout_ns)) {
		cnt->n[CNT_CT_UDP_EXPIRED]++;
		return NULL;
	}
	return usable_backend(st->backend);
}

/* Count a packet sent to a VIP's backend. */
static __always_inline void count_sent(struct packet *p, __u32 vip_num, __u32 idx)
{
	struct lb_vip_stats *vs = vip_stats.lookup(&vip_num);
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

/* Pick stage 1: the config and the flow's hashes. The set's hash is the full 5-tuple's;
 * the ring's drops the source port for F_VIP_HASH_NO_SRC_PORT VIPs. `flow` is a struct
 * flow_v6 when `v6`, else a struct flow_v4; `v6` is a constant at each call site, so the
 * family branches fold away when the stages are inlined. */
static __always_inline int pick_start(struct pick *k, const void *flow, int v6,
				      const struct vip_meta *vip, struct lb_counters *cnt)
{
	__u32 zero = 0;

	k->cfg = lb_config.lookup(&zero);
	if (!k->cfg)
		return count_drop(cnt, CNT_DROP_INTERNAL);
	k->set = NULL;
	k->slot = LB_RING_UNREAD;
	k->settled = 0;
	k->way = -1;
	k->table = !(vip->flags & F_VIP_NO_CONN_TABLE);
	if (!k->table) {
		k->ring_hash = v6 ? flow_hash_v6(flow, vip->flags) : flow_hash_v4(flow, vip->flags);
		return LB_CONTINUE;
	}
	k->ring_hash = k->set_hash = v6 ? flow_hash_v6(flow, 0) : flow_hash_v4(flow, 0);
	if (vip->flags & F_VIP_HASH_NO_SRC_PORT)
		k->ring_hash = v6 ? flow_hash_v6(flow, vip->flags) : flow_hash_v4(flow, vip->flags);
	return LB_CONTINUE;
}

/* Pick stage 2: a non-SYN TCP packet whose ring slot is settled picks the slot's backend
 * without reading the table (but for one in LB_CT_SAMPLE_MASK + 1, which goes on with
 * k->settled set): settled means no live flow in the table names another backend for that
 * slot, so the table would agree. On a busy host the table is far bigger than the caches,
 * and its read is most of a packet's cost. */
static __always_inline int pick_by_settled_slot(const struct packet *p, struct pick *k,
						__u8 proto, const struct vip_meta *vip,
						struct lb_counters *cnt)
{
	struct backend *be;
	__u32 idx;

	if (!k->table || proto != IPPROTO_TCP || p->is_syn)
		return LB_CONTINUE;
	k->slot = ring_slot(vip->vip_num, k->ring_hash);
	if (!(k->slot & LB_SLOT_SETTLED))
		return LB_CONTINUE;
	idx = k->slot & LB_SLOT_BACKEND;
	be = usable_backend(idx);
	if (!be)
		return LB_CONTINUE;
	if (!ct_sample_due(cnt->n[CNT_CT_SETTLED] + cnt->n[CNT_CT_HIT] + cnt->n[CNT_CT_MISS])) {
		cnt->n[CNT_CT_SETTLED]++;
		k->idx = idx;
		k->be = be;
		return LB_PICKED;
	}
	k->settled = idx;
	return LB_CONTINUE;
}

/* Pick stage 3: the connection table, this CPU's slice of ct_v4/ct_v6 (plain arrays: one
 * inlined address computation, no per-CPU pointer to load first). A way holding the flow
 * that may answer it (conntable.h) and whose backend is still good is picked (a hit). */
static __always_inline int pick_by_conn_table(const struct packet *p, struct pick *k,
					      const void *flow, int v6, __u8 proto,
					      struct lb_counters *cnt)
{
	struct ct_state *st;
	struct backend *be;
	__u32 set_num;

	if (!k->table)
		return LB_CONTINUE;
	set_num = ct_set_index(bpf_get_smp_processor_id(), k->set_hash, LB_CT_SETS);
	k->set = v6 ? (void *)ct_v6.lookup(&set_num) : (void *)ct_v4.lookup(&set_num);
	if (!k->set)
		return count_drop(cnt, CNT_DROP_INTERNAL);
	k->way = ct_find(k->set, flow, v6);
	if (k->way < 0)
		return LB_CONTINUE;
	st = ct_way_state(k->set, k->way, v6);
	if (!ct_way_may_answer(st, p->is_syn, k->settled))
		return LB_CONTINUE;
	be = ct_state_backend(st, proto, k->cfg, cnt);
	if (!be)
		return LB_CONTINUE;
	cnt->n[CNT_CT_HIT]++;
	*ct_mru(k->set, v6) = k->way;
	k->idx = st->backend;
	k->be = be;
	return LB_PICKED;
}

/* Why the backend of ring slot `slot` (looked up: `be`, NULL if past the map) cannot be
 * sent to: the VIP has none there (an empty slot, or a disabled backend: it keeps its
 * address), or the maps disagree (no ring, an index past the backends map, or a slot
 * naming an empty backend slot). */
static __always_inline int drop_unusable(__u32 slot, const struct backend *be,
					 struct lb_counters *cnt)
{
	if (slot == LB_RING_MISSING || !be)
		return count_drop(cnt, CNT_DROP_INTERNAL);
	if (!(slot & LB_SLOT_BACKEND) || be->addr[0] | be->addr[1] | be->addr[2] | be->addr[3])
		return count_drop(cnt, CNT_DROP_NO_BACKEND);
	return count_drop(cnt, CNT_DROP_INTERNAL);
}

/* A non-SYN TCP packet that missed the table: its flow's state was lost. Counted globally
 * and for its VIP. */
static __always_inline void count_miss_nonsyn(__u32 vip_num, struct lb_counters *cnt)
{
	struct lb_vip_stats *vs = vip_stats.lookup(&vip_num);

	cnt->n[CNT_CT_MISS_NONSYN]++;
	if (vs)
		vs->ct_miss_nonsyn++;
}

/* Pick stage 4: a fresh decision by the ring slot (read now unless stage 2 did), remembered
 * in the flow's way of the table when the VIP uses it (conntable.h's ct_decide). */
static __always_inline int pick_by_ring(const struct packet *p, struct pick *k, const void *flow,
					int v6, __u8 proto, const struct vip_meta *vip,
					struct lb_counters *cnt)
{
	struct backend *be;
	__u32 idx;

	if (k->slot == LB_RING_UNREAD)
		k->slot = ring_slot(vip->vip_num, k->ring_hash);
	idx = k->slot & LB_SLOT_BACKEND;
	be = backends.lookup(&idx);
	if (!be || !(be->flags & F_BACKEND_VALID))
		return drop_unusable(k->slot, be, cnt);
	if (k->set) {
		cnt->n[CNT_CT_MISS]++;
		if (proto == IPPROTO_TCP && !p->is_syn)
			count_miss_nonsyn(vip->vip_num, cnt);
		ct_decide(k->set, k->way, flow, v6, idx, proto);
	}
	k->idx = idx;
	k->be = be;
	return LB_PICKED;
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
	int trailer = p->frame_len - p->l2_len - p->encap.inner_len;
	void *data, *end;
	int err;

	/* Bytes after the IP packet (Ethernet padding, garbage) are not sent on. */
	if (trailer > 0 && bpf_xdp_adjust_tail(ctx, -trailer))
		return count_drop(cnt, CNT_DROP_ENCAP_FAILED);
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

/* Pick the backend of a flow and send the packet there: the pick stages in order, each
 * returning a verdict (a drop, counted), LB_CONTINUE (ask the next stage) or LB_PICKED
 * (k.idx and k.be hold the backend; counted as ct_settled, ct_hit or ct_miss), then one
 * forward for every pick. The table's rules (ways, hits, sampling, time) are conntable.h's. */
static __always_inline int pick_and_forward(struct xdp_md *ctx, struct packet *p, void *flow,
					    int v6, __u8 proto, const struct vip_meta *vip,
					    struct lb_counters *cnt)
{
	struct pick k;
	int verdict;

	verdict = pick_start(&k, flow, v6, vip, cnt);
	if (verdict == LB_CONTINUE)
		verdict = pick_by_settled_slot(p, &k, proto, vip, cnt);
	if (verdict == LB_CONTINUE)
		verdict = pick_by_conn_table(p, &k, flow, v6, proto, cnt);
	if (verdict == LB_CONTINUE)
		verdict = pick_by_ring(p, &k, flow, v6, proto, vip, cnt);
	if (verdict != LB_PICKED)
		return verdict;
	return forward(ctx, p, vip, k.idx, k.be, k.cfg, cnt);
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

/* Ports (and SYN) of a TCP/UDP header at the cursor, checked against `l4_len`, the IP
 * payload's length: 0, CNT_DROP_L4_TRUNCATED (the header is cut by the frame or the IP
 * packet) or CNT_DROP_L4_MALFORMED (a TCP data offset below 5 or past the payload; a UDP
 * length below 8 or past the payload). */
static __always_inline int parse_ports(struct cursor *c, __u8 proto, __u32 l4_len,
				       __be16 *sport, __be16 *dport, __u8 *is_syn)
{
	if (l4_len < l4_header_len(proto))
		return CNT_DROP_L4_TRUNCATED;
	if (proto == IPPROTO_TCP) {
		struct tcphdr *tcp;

		if (parse_tcphdr(c, &tcp))
			return CNT_DROP_L4_TRUNCATED;
		if (tcp->doff < 5 || tcp->doff * 4 > l4_len)
			return CNT_DROP_L4_MALFORMED;
		*sport = tcp->source;
		*dport = tcp->dest;
		*is_syn = tcp->syn && !tcp->ack;
		return 0;
	}
	struct udphdr *udp;
	__u16 udp_len;

	if (parse_udphdr(c, &udp))
		return CNT_DROP_L4_TRUNCATED;
	udp_len = bpf_ntohs(udp->len);
	if (udp_len < sizeof(*udp) || udp_len > l4_len)
		return CNT_DROP_L4_MALFORMED;
	*sport = udp->source;
	*dport = udp->dest;
	*is_syn = 0;
	return 0;
}

/* Rare path: is an unusual IPv4 packet's destination a VIP address, and if so why is it refused? */
static __always_inline int unusual_v4(struct iphdr *ip, int bad_length, int l4_reason,
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
	if (l4_reason)
		return count_drop(cnt, l4_reason);
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
	int bad_length, l4_reason;

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
	l4_reason = parse_ports(c, flow.proto, tot_len - sizeof(*ip), &flow.sport, &flow.dport,
				&p->is_syn);
	if (l4_reason)
		return unusual_v4(ip, 0, l4_reason, cnt);

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
static __always_inline int unusual_v6(struct ipv6hdr *ip6, int bad_length, int l4_reason,
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
	if (l4_reason)
		return count_drop(cnt, l4_reason);
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
	int bad_length, l4_reason;

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
	l4_reason = parse_ports(c, flow.proto, payload_len, &flow.sport, &flow.dport, &p->is_syn);
	if (l4_reason)
		return unusual_v6(ip6, 0, l4_reason, cnt);

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
