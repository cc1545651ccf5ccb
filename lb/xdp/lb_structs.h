/* lb_structs.h - every map key and value of the data plane.
 *
 * Each has a ctypes mirror in lb.xdp.structs, checked against what the compiler
 * produced at load time and in a test. Padding is explicit: no hole is implied.
 * Addresses and ports are in network byte order; IPv4 uses the first word.
 */
#pragma once
#include "lb_consts.h"

/* Runtime settings written by the control plane (one entry, key 0). */
struct lb_config {
	__u8 next_hop_mac[6];     /* destination MAC of every encapsulated frame */
	__u8 src_mac[6];          /* source MAC: the egress interface's own */
	__u32 egress_ifindex;     /* 0: XDP_TX out the receiving interface; else XDP_REDIRECT there */
	__u16 mtu;                /* L3 MTU toward backends; bigger encapsulated packets drop */
	__u8 ttl;                 /* outer TTL / hop limit */
	__u8 pad0;
	__be32 encap_src_v4;      /* outer IPv4 source prefix; flow bits fill the host part */
	__be32 encap_src_v4_mask; /* prefix mask of encap_src_v4 */
	__be32 encap_src_v6[4];   /* outer IPv6 source prefix; flow bits fill the last word's host part */
	__be32 encap_src_v6_mask; /* prefix mask over the last word of encap_src_v6 */
	__u64 udp_timeout_ns;     /* UDP flows idle longer than this take a fresh ring decision */
};

/* IPv4 VIP: (address, port, protocol); port 0 = all ports; protocol 0 = address marker. */
struct vip_key_v4 {
	__be32 addr;
	__be16 port;
	__u8 proto;
	__u8 pad0;
};

/* IPv6 VIP: as vip_key_v4. */
struct vip_key_v6 {
	__be32 addr[4];
	__be16 port;
	__u8 proto;
	__u8 pad0;
};

/* What a VIP lookup yields: its number (ring and stats index) and F_VIP_* flags. */
struct vip_meta {
	__u32 vip_num;
	__u32 flags;
};

/* A vip_index_v4 slot: the one IPv4 VIP whose key hashes here, else proto 0 (none) or shared. */
struct vip_slot_v4 {
	__be32 addr;
	__be16 port;
	__u8 proto;               /* 0: no VIP owns the slot */
	__u8 shared;              /* 1: look the key up in vips_v4 (two VIPs want it, or mid-update) */
	struct vip_meta meta;
};

/* A vip_index_v6 slot: as vip_slot_v4, for an IPv6 VIP. */
struct vip_slot_v6 {
	__be32 addr[4];
	__be16 port;
	__u8 proto;
	__u8 shared;
	struct vip_meta meta;
};

/* An IPv4 flow: the connection table's key and the input of the flow hash (8-aligned:
 * compared as two u64 words). */
struct flow_v4 {
	__be32 src;
	__be32 dst;
	__be16 sport;
	__be16 dport;
	__u8 proto;
	__u8 pad0[3];
} __attribute__((aligned(8)));

/* An IPv6 flow: as flow_v4 (five u64 words). */
struct flow_v6 {
	__be32 src[4];
	__be32 dst[4];
	__be16 sport;
	__be16 dport;
	__u8 proto;
	__u8 pad0[3];
} __attribute__((aligned(8)));

/* What a connection-table way remembers of its flow: the backend, and when it was last seen. */
struct ct_state {
	__u16 backend;            /* backend index; 0: the way is empty */
	__u16 idle_settles;       /* settles without a packet while naming another backend than
	                           * its ring slot (counted by the control plane; 0 on a packet) */
	__u32 atime;              /* UDP: coarse ns >> LB_CT_TIME_SHIFT of the last packet; TCP: 0 */
};

/* An IPv4 connection-table way: the full flow (compared, never trusted to the hash) and its state. */
struct ct_entry_v4 {
	struct flow_v4 flow;
	struct ct_state state;
};

/* An IPv4 connection-table set (ct_v4 value): LB_CT_WAYS ways in one 64-byte cache line. */
struct ct_set_v4 {
	struct ct_entry_v4 way[LB_CT_WAYS];
	__u32 mru;                /* the way used last; a new flow replaces the other one */
	__u32 pad0[3];
};

/* A packet of an IPv4 flow reads one cache line of the table. */
_Static_assert(sizeof(struct ct_set_v4) == 64, "an IPv4 set is one 64-byte cache line");

/* An IPv6 connection-table way. */
struct ct_entry_v6 {
	struct flow_v6 flow;
	struct ct_state state;
};

/* An IPv6 connection-table set (ct_v6 value): as ct_set_v4, 104 bytes. */
struct ct_set_v6 {
	struct ct_entry_v6 way[LB_CT_WAYS];
	__u32 mru;
	__u32 pad0;
};

/* A backend: where encapsulated packets go. */
struct backend {
	__be32 addr[4];
	__u32 flags;              /* F_BACKEND_* */
};

/* LB_RING_CELL_SLOTS consecutive ring slots, each a backend index (0: none). */
struct ring_cell {
	__u16 backend[LB_RING_CELL_SLOTS];
};

/* Packet and byte totals (per CPU; the control plane sums them). */
struct lb_stats {
	__u64 packets;
	__u64 bytes;
};

/* A VIP's totals (per CPU): what was sent, and its non-SYN TCP packets that missed the
 * connection table (CNT_CT_MISS_NONSYN, for this VIP). */
struct lb_vip_stats {
	__u64 packets;
	__u64 bytes;
	__u64 ct_miss_nonsyn;
};

/* The global counters of one CPU, indexed by CNT_*. */
struct lb_counters {
	__u64 n[CNT_MAX];
};
