/* lb_maps.h - every map of the data plane.
 *
 * With -DLB_PIN_DIR="..." each map is pinned at LB_PIN_DIR/<name> (reused if it
 * exists), so a restarted control plane reattaches to the live state.
 */
#pragma once
#include "lb_structs.h"

#ifdef LB_PIN_DIR
/* A map pinned at LB_PIN_DIR/<name>. */
#define LB_MAP(type, key, value, name, size) \
	BPF_TABLE_PINNED(type, key, value, name, size, LB_PIN_DIR "/" #name)
/* A pinned map created with BPF_F_* flags. */
#define LB_MAP_FLAGS(type, key, value, name, size, flags) \
	BPF_TABLE_PINNED(type, key, value, name, size, LB_PIN_DIR "/" #name, flags)
#else
/* A map that lives as long as the program. */
#define LB_MAP(type, key, value, name, size) BPF_TABLE(type, key, value, name, size)
/* A map created with BPF_F_* flags. */
#define LB_MAP_FLAGS(type, key, value, name, size, flags) \
	BPF_F_TABLE(type, key, value, name, size, flags)
#endif

/* Runtime settings (one entry). */
LB_MAP("array", __u32, struct lb_config, lb_config, 1);

/* IPv4 VIPs and their address markers (so twice LB_MAX_VIPS): the authority vip_index_v4 caches. */
LB_MAP("hash", struct vip_key_v4, struct vip_meta, vips_v4, 2 * LB_MAX_VIPS);

/* IPv6 VIPs and their address markers. */
LB_MAP("hash", struct vip_key_v6, struct vip_meta, vips_v6, 2 * LB_MAX_VIPS);

/* IPv4 VIP index, direct-mapped by vip_index_slot(): answers most lookups without vips_v4. */
LB_MAP("array", __u32, struct vip_slot_v4, vip_index_v4, LB_VIP_INDEX_SIZE);

/* IPv6 VIP index, as vip_index_v4. */
LB_MAP("array", __u32, struct vip_slot_v6, vip_index_v6, LB_VIP_INDEX_SIZE);

/* Pre-filter: non-zero where some VIP address folds to the slot (see vip_filter_slot). */
LB_MAP("array", __u32, __u32, vip_filter, LB_FILTER_SIZE);

/* The rings: VIP n owns cells [n * LB_RING_CELLS, (n + 1) * LB_RING_CELLS); mmapped by the control plane. */
LB_MAP_FLAGS("array", __u32, struct ring_cell, rings, LB_MAX_VIPS * LB_RING_CELLS, BPF_F_MMAPABLE);

/* Backends by index; index 0 stays empty. */
LB_MAP("array", __u32, struct backend, backends, LB_MAX_BACKENDS);

/* IPv4 connection table: one slice of LB_CT_SETS 2-way sets per CPU (element cpu * LB_CT_SETS
 * + set), each CPU using only its own; mmapped by the control plane (values page-aligned, so
 * a 64-byte set is one cache line). */
LB_MAP_FLAGS("array", __u32, struct ct_set_v4, ct_v4, LB_CT_CPUS * LB_CT_SETS, BPF_F_MMAPABLE);

/* IPv6 connection table: as ct_v4. */
LB_MAP_FLAGS("array", __u32, struct ct_set_v6, ct_v6, LB_CT_CPUS * LB_CT_SETS, BPF_F_MMAPABLE);

/* Global counters (per CPU, one entry). */
LB_MAP("percpu_array", __u32, struct lb_counters, counters, 1);

/* Per-VIP packets and bytes, by vip_num. */
LB_MAP("percpu_array", __u32, struct lb_vip_stats, vip_stats, LB_MAX_VIPS);

/* Per-backend packets and bytes, by backend index. */
LB_MAP("percpu_array", __u32, struct lb_stats, backend_stats, LB_MAX_BACKENDS);

/* ICMP reply budget (per CPU, one entry): when, in ns, the next reply is due (GCRA). */
LB_MAP("percpu_array", __u32, __u64, icmp_budget, 1);
