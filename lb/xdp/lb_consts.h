/* lb_consts.h - every define of the data plane: sizes, protocol numbers, flags, counter
 * slots, and the assertions that hold the fixed ones fixed.
 *
 * Sizes are #ifndef defaults; the loader passes every one of them with -D from
 * lb.xdp.config.Sizes, the single source of truth. Flag and counter values are
 * mirrored by lb.xdp.consts, and a test parses this file to keep both equal.
 * (bench.h, the benchmark-only prologue, keeps its own define, struct and map:
 * bench/floors.c includes it alone.)
 */
#pragma once

/* Most VIPs at once; each owns one ring, so ring memory grows with it. */
#ifndef LB_MAX_VIPS
#define LB_MAX_VIPS 512
#endif

/* Backend slots; index 0 is reserved to mean "no backend". At most LB_SLOT_BACKEND + 1: a
 * ring slot holds the index in its low 15 bits. */
#ifndef LB_MAX_BACKENDS
#define LB_MAX_BACKENDS 4096
#endif

/* Maglev ring slots per VIP: a prime well above the backend count (Maglev paper: M >> N). */
#ifndef LB_RING_SIZE
#define LB_RING_SIZE 65537
#endif

/* Ring slots packed in one array element (u16 each: an 8-byte element, the map's minimum). */
#ifndef LB_RING_CELL_SLOTS
#define LB_RING_CELL_SLOTS 4
#endif

/* The kernel pads array values to 8 bytes, and the control plane reads the mmapped rings as
 * one run of u16 slots (lb.xdp.maps): a cell must be a whole number of 8-byte words, so
 * LB_RING_CELL_SLOTS works at any multiple of 4. */
_Static_assert(LB_RING_CELL_SLOTS % 4 == 0 && LB_RING_CELL_SLOTS > 0,
	       "a ring cell must be a whole number of 8-byte words (slots are u16)");

/* Array elements one VIP's ring occupies. */
#define LB_RING_CELLS ((LB_RING_SIZE + LB_RING_CELL_SLOTS - 1) / LB_RING_CELL_SLOTS)

/* The bits of a ring slot that hold its backend index. */
#define LB_SLOT_BACKEND 0x7fff

/* A ring slot holds the backend index in 15 bits (the 16th is LB_SLOT_SETTLED). */
_Static_assert(LB_MAX_BACKENDS >= 2 && LB_MAX_BACKENDS <= LB_SLOT_BACKEND + 1,
	       "backend indexes must fit a ring slot's LB_SLOT_BACKEND bits");

/* Ring slot bit: the slot is settled, no live flow in the connection table names another
 * backend for it, so non-SYN TCP packets of the slot skip the table. The control plane sets
 * it; every rewrite of the slot stores a plain backend index, which clears it. */
#define LB_SLOT_SETTLED 0x8000

/* A settled slot's non-SYN TCP packets read the connection table anyway one time in
 * (LB_CT_SAMPLE_MASK + 1) per CPU: keeps the LRU order, and remembers flows first seen
 * mid-stream. */
#define LB_CT_SAMPLE_MASK 15

/* The sample tick is masked: one in a power of two. */
_Static_assert((LB_CT_SAMPLE_MASK & (LB_CT_SAMPLE_MASK + 1)) == 0,
	       "LB_CT_SAMPLE_MASK must be a power of two minus one");

/* The flow's ring slot before the pipeline read it (a slot itself is a u16). */
#define LB_RING_UNREAD 0x10000

/* The flow's ring slot could not be read (the VIP's number is outside the rings map). */
#define LB_RING_MISSING 0x20000

/* Connection-table entries per CPU per address family: a power of two (sets of LB_CT_WAYS). */
#ifndef LB_CT_SIZE
#define LB_CT_SIZE 262144
#endif

/* Ways per connection-table set: a new flow evicts the least recently used of them. */
#define LB_CT_WAYS 2

/* Fixed: a set's MRU word names one of two ways (conntable.h takes "the other" as the LRU),
 * and two IPv4 ways with the MRU word fill one 64-byte cache line (lb_structs.h). */
_Static_assert(LB_CT_WAYS == 2, "conntable.h's LRU is the way that is not the MRU one");

/* A flow's set is its hash masked by LB_CT_SETS - 1. */
_Static_assert(LB_CT_SIZE >= 2 * LB_CT_WAYS && (LB_CT_SIZE & (LB_CT_SIZE - 1)) == 0,
	       "LB_CT_SIZE must be a power of two");

/* Sets per CPU per family; a flow's set is its 5-tuple hash masked by LB_CT_SETS - 1. */
#define LB_CT_SETS (LB_CT_SIZE / LB_CT_WAYS)

/* CPUs the connection table has a slice of LB_CT_SETS sets for: the host's possible CPUs
 * (bpf_get_smp_processor_id() < LB_CT_CPUS). No default: the loader always passes it. */
#ifndef LB_CT_CPUS
#error "LB_CT_CPUS (possible CPUs) must be passed with -D; lb.xdp.config.Sizes does"
#endif

/* A UDP entry's time stamp is bpf_ktime_get_coarse_ns() >> this (units of ~1.05 ms, 32 bits). */
#define LB_CT_TIME_SHIFT 20

/* VIP index: 2^bits slots per family, at least 8 per VIP so most VIPs own their slot. */
#ifndef LB_VIP_INDEX_BITS
#define LB_VIP_INDEX_BITS 12
#endif

/* Slots of each VIP index. */
#define LB_VIP_INDEX_SIZE (1 << LB_VIP_INDEX_BITS)

/* VIP-address pre-filter: 2^bits slots, so non-VIP traffic costs one inlined array read. */
#ifndef LB_FILTER_BITS
#define LB_FILTER_BITS 16
#endif

/* Slots of the VIP-address pre-filter. */
#define LB_FILTER_SIZE (1 << LB_FILTER_BITS)

/* Seed of the flow hash; the control plane's mirror (lb.xdp.flowhash) uses the same. */
#ifndef LB_HASH_SEED
#define LB_HASH_SEED 0x5eed1b01
#endif

/* IPv4 "don't fragment" flag, as it sits in frag_off. */
#define LB_IP_DF 0x4000
/* IPv4 "more fragments" flag, as it sits in frag_off. */
#define LB_IP_MF 0x2000
/* IPv4 fragment offset, as it sits in frag_off. */
#define LB_IP_OFFSET 0x1fff

/* IP protocol number of an inner IPv4 packet (IP-in-IP, RFC 2003). */
#define LB_IPPROTO_IPIP 4
/* IP protocol number of an inner IPv6 packet (RFC 2473). */
#define LB_IPPROTO_IPV6 41

/* ICMP "too big" replies each CPU may send per second (RFC 4443 2.4(f) rate limit). */
#define LB_ICMP_RATE 1000
/* Replies each CPU may send back to back before LB_ICMP_RATE applies. */
#define LB_ICMP_BURST 50

/* Bytes an IPv4 outer header adds. */
#define LB_ENCAP_V4_LEN 20
/* Bytes an IPv6 outer header adds. */
#define LB_ENCAP_V6_LEN 40

/* Bytes of an IPv4 packet an ICMP error quotes: its header (never with options here) and 8 more. */
#define LB_ICMP_QUOTE_V4 28
/* Bytes of an IPv6 packet quoted: what keeps the reply (40 + 8 + quote) within 1280 bytes. */
#define LB_ICMP_QUOTE_V6 1232
/* The least MTU an IPv6 "packet too big" may name (RFC 8201: smaller values are ignored). */
#define LB_IPV6_MIN_MTU 1280
/* Hop limit / TTL of the ICMP replies. */
#define LB_ICMP_TTL 64
/* ICMPv6 "packet too big" type (RFC 4443). */
#define LB_ICMPV6_PKT_TOOBIG 2
/* Return of icmp.h's builders: the kernel refused to resize the frame (the caller drops it). */
#define LB_ICMP_RESIZE_FAILED -2

/* A pipeline stage's answer when it has no verdict: the packet goes on down the ladder
 * (every XDP_* verdict is >= 0). */
#define LB_CONTINUE -1
/* A pick stage's answer when it chose the packet's backend: forward it there. */
#define LB_PICKED -2

/* VIP flag: hash the flow without its source port (Katran's F_HASH_NO_SRC_PORT). */
#define F_VIP_HASH_NO_SRC_PORT (1 << 0)
/* VIP flag: bypass the connection table; every packet takes a fresh ring decision. */
#define F_VIP_NO_CONN_TABLE (1 << 1)

/* Backend flag: the slot holds a backend (a zeroed slot is never sent to). */
#define F_BACKEND_VALID (1 << 0)
/* Backend flag: the backend's address is IPv6, so the outer header is IPv6. */
#define F_BACKEND_IPV6 (1 << 1)

/* Verdict totals, then connection-table outcomes, then one slot per pass and drop reason,
 * then ICMP replies (a verdict total of their own). */
/* Packets handed to the kernel (XDP_PASS), whatever the reason. */
#define CNT_PASS 0
/* Packets dropped (XDP_DROP), whatever the reason. */
#define CNT_DROP 1
/* Packets encapsulated and sent back out the receiving interface (XDP_TX). */
#define CNT_TX 2
/* Packets encapsulated and redirected to the egress interface (XDP_REDIRECT). */
#define CNT_REDIRECT 3
/* Connection-table lookups that found the flow's backend. */
#define CNT_CT_HIT 4
/* Fresh ring decisions for flows that use the table (not found, TCP SYN, expired, gone). */
#define CNT_CT_MISS 5
/* UDP entries found but idle longer than the timeout (also counted as misses). */
#define CNT_CT_UDP_EXPIRED 6
/* Pass: no IPv4/IPv6 after at most one 802.1Q tag (ARP, LLDP, QinQ...). */
#define CNT_PASS_NOT_IP 7
/* Pass: frame too short for its Ethernet/VLAN header (drivers drop runts; seen with a VLAN tag). */
#define CNT_PASS_L2_TRUNCATED 8
/* Pass: IP header truncated or invalid (version, IHL); not ours to judge. */
#define CNT_PASS_L3_MALFORMED 9
/* Pass: destination is not a VIP (address, port, protocol). */
#define CNT_PASS_NOT_VIP 10
/* Pass: ICMP/ICMPv6 to a VIP address, for the host's stack (echo, neighbour discovery). */
#define CNT_PASS_ICMP 11
/* Drop: IPv4 fragment or IPv6 fragment header to a VIP address (no L4 ports to hash). */
#define CNT_DROP_FRAGMENT 12
/* Drop: IPv4 options to a VIP address. */
#define CNT_DROP_IPV4_OPTIONS 13
/* Drop: IPv6 extension header (other than fragment) to a VIP address. */
#define CNT_DROP_IPV6_EXT_HEADER 14
/* Drop: TCP/UDP header truncated, to a VIP address. */
#define CNT_DROP_L4_TRUNCATED 15
/* Drop: IP length fields disagree with the frame, to a VIP address. */
#define CNT_DROP_BAD_LENGTH 16
/* Drop: TTL / hop limit 0, to a VIP address. */
#define CNT_DROP_TTL_EXPIRED 17
/* Drop: the VIP's ring slot names no usable backend (no backends configured, or the one it
 * names is disabled). */
#define CNT_DROP_NO_BACKEND 18
/* Drop: larger than the MTU once encapsulated, and due no ICMP reply (IPv4 without DF, a
 * source that must not get ICMP errors, an IPv6 MTU under 1280). */
#define CNT_DROP_TOO_BIG 19
/* Drop: the kernel refused to grow the headroom for the outer header (or to resize the frame
 * into an ICMP reply). */
#define CNT_DROP_ENCAP_FAILED 20
/* Packets too big once encapsulated, answered with ICMP "too big" to their source (XDP_TX). */
#define CNT_ICMP_TOO_BIG 21
/* Drop: too big once encapsulated, and this CPU's ICMP reply budget is spent. */
#define CNT_DROP_ICMP_RATE_LIMITED 22
/* Non-SYN TCP packets sent by a settled ring slot without reading the connection table. */
#define CNT_CT_SETTLED 23
/* Drop: the maps disagree with each other (config entry, ring cell or connection-table set
 * missing; a ring slot naming a backend index past the backends map or an empty backend
 * slot): a bug or a half-written state, never a VIP without backends. */
#define CNT_DROP_INTERNAL 24
/* Drop: a TCP data offset below 5 or past the IP payload, or a UDP length below 8 or past
 * the IP payload, to a VIP address. */
#define CNT_DROP_L4_MALFORMED 25
/* Non-SYN TCP packets of a VIP using the connection table that missed it (took a fresh ring
 * decision): flows that lost their state (an ECMP change, a restart, an eviction). */
#define CNT_CT_MISS_NONSYN 26
/* Number of counter slots. */
#define CNT_MAX 27
