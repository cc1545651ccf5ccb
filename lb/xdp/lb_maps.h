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

/* IPv4 VIPs and their address markers (so twice LB_MAX_VIPS). */
LB_MAP("hash", struct vip_key_v4, struct vip_meta, vips_v4, 2 * LB_MAX_VIPS);

/* IPv6 VIPs and their address markers. */
LB_MAP("hash", struct vip_key_v6, struct vip_meta, vips_v6, 2 * LB_MAX_VIPS);

/* Pre-filter: non-zero where some VIP address folds to the slot (see vip_filter_slot). */
LB_MAP("array", __u32, __u32, vip_filter, LB_FILTER_SIZE);

/* The rings: VIP n owns cells [n * LB_RING_CELLS, (n + 1) * LB_RING_CELLS); mmapped by the control plane. */
LB_MAP_FLAGS("array", __u32, struct ring_cell, rings, LB_MAX_VIPS * LB_RING_CELLS, BPF_F_MMAPABLE);

/* Backends by index; index 0 stays empty. */
LB_MAP("array", __u32, struct backend, backends, LB_MAX_BACKENDS);

/* IPv4 connection table: per-CPU LRU lists over one table, so a flow's entry is found on any CPU. */
LB_MAP_FLAGS("lru_hash", struct flow_v4, struct ct_entry, ct_v4, LB_CT_SIZE, BPF_F_NO_COMMON_LRU);

/* IPv6 connection table. */
LB_MAP_FLAGS("lru_hash", struct flow_v6, struct ct_entry, ct_v6, LB_CT_SIZE, BPF_F_NO_COMMON_LRU);

/* Global counters (per CPU, one entry). */
LB_MAP("percpu_array", __u32, struct lb_counters, counters, 1);

/* Per-VIP packets and bytes, by vip_num. */
LB_MAP("percpu_array", __u32, struct lb_stats, vip_stats, LB_MAX_VIPS);

/* Per-backend packets and bytes, by backend index. */
LB_MAP("percpu_array", __u32, struct lb_stats, backend_stats, LB_MAX_BACKENDS);
