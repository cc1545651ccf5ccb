/* conntable.h - the rules of the connection table and of the settled ring slots in front
 * of it, written once. The program (balancer.c) and the control plane's C extension
 * (_ringio.c: settling, and planting flows for tests and benchmarks) both include it, so
 * the two cannot disagree.
 *
 * Nothing here touches a map or calls a BPF helper: the includer looks the maps up (bcc
 * rewrites map calls in the main file only), has IPPROTO_* defined, and defines the clock
 * before including this file: `static __u64 ct_clock_ns(void)`, coarse monotonic ns
 * (bpf_ktime_get_coarse_ns() in the program, CLOCK_MONOTONIC_COARSE in the extension: the
 * same clock).
 *
 * The rules:
 *   where   a flow lives in set (hash of its full 5-tuple) & (sets - 1) of the slice of the
 *           CPU its packets arrive on; its ring slot is ring hash % ring size (the ring hash
 *           leaves the source port out for F_VIP_HASH_NO_SRC_PORT VIPs).
 *   ways    LB_CT_WAYS per set, compared on the full flow. A fresh decision for a flow takes
 *           its own way if it has one, else an empty way, else the least recently used one,
 *           and makes it the most recently used.
 *   hit     a way found answers its packet unless the packet is a TCP SYN, a UDP way has
 *           been idle past the timeout, the backend it names is gone, or the packet is a
 *           sampled one of a settled slot and the way names another backend than the slot
 *           (the slot wins: the way is rewritten by the fresh decision).
 *   sample  non-SYN TCP packets of a settled slot skip the table, but for one in
 *           LB_CT_SAMPLE_MASK + 1 per CPU (the tick: the CPU's settled + hit + miss count).
 *   time    UDP ways carry ct_now() of their last packet; TCP ways 0.
 *   idle    a packet zeroes its way's idle_settles. A settle counts the live TCP ways: one
 *           naming another backend than its slot holds the slot (keeps it unsettled) while
 *           its count is under the settle's limit, and has the count raised by one; one
 *           agreeing with its slot has the count zeroed.
 */
#pragma once
#include "lb_structs.h"

/* Element of a connection-table array holding the set of a flow whose 5-tuple hashes to
 * `set_hash`, in CPU `cpu`'s slice of `sets` sets (a power of two). */
static __always_inline __u32 ct_set_index(__u32 cpu, __u32 set_hash, __u32 sets)
{
	return cpu * sets + (set_hash & (sets - 1));
}

/* The slot of a ring of `ring_size` slots that a flow's ring hash picks. */
static __always_inline __u32 ring_pos(__u32 ring_hash, __u32 ring_size)
{
	return ring_hash % ring_size;
}

/* Now on the table's clock: coarse ns in units of 2^LB_CT_TIME_SHIFT ns, 32 bits. */
static __always_inline __u32 ct_now(void)
{
	return (__u32)(ct_clock_ns() >> LB_CT_TIME_SHIFT);
}

/* Whether a UDP way last seen at `atime` has been idle longer than `timeout_ns` at `now`. */
static __always_inline int ct_expired(__u32 now, __u32 atime, __u64 timeout_ns)
{
	return now - atime > (__u32)(timeout_ns >> LB_CT_TIME_SHIFT);
}

/* Whether a non-SYN TCP packet of a settled slot reads the table anyway; `tick`: the CPU's
 * count of packets that used or skipped the table (settled + hit + miss). */
static __always_inline int ct_sample_due(__u64 tick)
{
	return (tick & LB_CT_SAMPLE_MASK) == LB_CT_SAMPLE_MASK;
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

/* The way of a set (struct ct_set_v6 when `v6`, else ct_set_v4) holding `flow`, or -1.
 * `v6` is a constant at each call site in the program, so the family branches fold away. */
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

/* Whether a way found for a packet may answer it: never a TCP SYN (`is_syn`: always a
 * fresh decision); and for a sampled packet of a settled slot (`settled`: the slot's
 * backend, else 0) only if it names that backend: settled means no live flow needs
 * another, so a way that does is a flow that went idle past the limit and follows the
 * slot now. */
static __always_inline int ct_way_may_answer(const struct ct_state *st, int is_syn,
					     __u32 settled)
{
	return !is_syn && !(settled && st->backend != settled);
}

/* A packet's use of a way it may be answered by: a UDP way idle past `udp_timeout_ns`
 * does not answer (0: take a fresh decision); else a UDP way's time is refreshed, and the
 * way's idle settles start again from 0 (1). */
static __always_inline int ct_touch(struct ct_state *st, __u8 proto, __u64 udp_timeout_ns)
{
	if (proto == IPPROTO_UDP) {
		__u32 now = ct_now();

		if (ct_expired(now, st->atime, udp_timeout_ns))
			return 0;
		st->atime = now;
	}
	st->idle_settles = 0;
	return 1;
}

/* Remember a fresh decision, backend `idx`, for `flow` in way `way` of a set (UDP ways
 * carry their time) and make it the most recently used. */
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

/* A fresh decision for `flow` in its set: its own way if it has one, else the victim. */
static __always_inline void ct_decide(void *set, int way, const void *flow, int v6, __u32 idx,
				      __u8 proto)
{
	ct_fill(set, way >= 0 ? way : ct_victim(set, v6), flow, v6, idx, proto);
}

/* Whether a settle counts a way: it holds a TCP flow (UDP packets always read the table). */
static __always_inline int ct_settle_counts(const struct ct_state *st, __u8 proto)
{
	return st->backend && proto == IPPROTO_TCP;
}

/* A settle's step for a counted way whose idle count is `idle`: `agrees` whether it names
 * its ring slot's backend. Returns the count to store (agreeing: 0; else one more while
 * under `limit`), and in *holds whether the way holds its slot (disagrees, under `limit`). */
static __always_inline __u16 ct_settle_step(__u16 idle, int agrees, __u32 limit, int *holds)
{
	*holds = !agrees && idle < limit;
	if (agrees)
		return 0;
	return *holds ? (__u16)(idle + 1) : idle;
}
