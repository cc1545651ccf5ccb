"""ctypes mirrors of lb_structs.h, and the check that they match what bcc compiled.

Each mirror quotes its C struct; padding is explicit. `MAP_LAYOUTS` names, for
every map, the mirror of its key and value; `check_layouts` compares them by size
and by field name and offset with the types bcc generated from the C, and raises
`LayoutMismatch` on any drift (the loader calls it on every load).
"""

from __future__ import annotations

import ctypes
from ctypes import c_uint8 as u8
from ctypes import c_uint16 as u16
from ctypes import c_uint32 as u32
from ctypes import c_uint64 as u64

from lb.xdp.config import Sizes
from lb.xdp.consts import COUNTER_SLOTS, CT_WAYS


class LbConfig(ctypes.Structure):
    """struct lb_config { u8 next_hop_mac[6]; u8 src_mac[6]; u32 egress_ifindex; u16 mtu;
    u8 ttl; u8 pad0; be32 encap_src_v4, encap_src_v4_mask; be32 encap_src_v6[4];
    be32 encap_src_v6_mask; u64 udp_timeout_ns; }"""

    _fields_ = [
        ("next_hop_mac", u8 * 6),
        ("src_mac", u8 * 6),
        ("egress_ifindex", u32),
        ("mtu", u16),
        ("ttl", u8),
        ("pad0", u8),
        ("encap_src_v4", u32),
        ("encap_src_v4_mask", u32),
        ("encap_src_v6", u32 * 4),
        ("encap_src_v6_mask", u32),
        ("udp_timeout_ns", u64),
    ]


class VipKeyV4(ctypes.Structure):
    """struct vip_key_v4 { be32 addr; be16 port; u8 proto; u8 pad0; }"""

    _fields_ = [("addr", u32), ("port", u16), ("proto", u8), ("pad0", u8)]


class VipKeyV6(ctypes.Structure):
    """struct vip_key_v6 { be32 addr[4]; be16 port; u8 proto; u8 pad0; }"""

    _fields_ = [("addr", u32 * 4), ("port", u16), ("proto", u8), ("pad0", u8)]


class VipMeta(ctypes.Structure):
    """struct vip_meta { u32 vip_num; u32 flags; }"""

    _fields_ = [("vip_num", u32), ("flags", u32)]


class VipSlotV4(ctypes.Structure):
    """struct vip_slot_v4 { be32 addr; be16 port; u8 proto; u8 shared; struct vip_meta meta; }"""

    _fields_ = [("addr", u32), ("port", u16), ("proto", u8), ("shared", u8), ("meta", VipMeta)]


class VipSlotV6(ctypes.Structure):
    """struct vip_slot_v6 { be32 addr[4]; be16 port; u8 proto; u8 shared;
    struct vip_meta meta; }"""

    _fields_ = [("addr", u32 * 4), ("port", u16), ("proto", u8), ("shared", u8),
                ("meta", VipMeta)]


class FlowV4(ctypes.Structure):
    """struct flow_v4 { be32 src, dst; be16 sport, dport; u8 proto; u8 pad0[3]; }"""

    _fields_ = [("src", u32), ("dst", u32), ("sport", u16), ("dport", u16), ("proto", u8),
                ("pad0", u8 * 3)]


class FlowV6(ctypes.Structure):
    """struct flow_v6 { be32 src[4], dst[4]; be16 sport, dport; u8 proto; u8 pad0[3]; }"""

    _fields_ = [("src", u32 * 4), ("dst", u32 * 4), ("sport", u16), ("dport", u16),
                ("proto", u8), ("pad0", u8 * 3)]


class CtState(ctypes.Structure):
    """struct ct_state { u16 backend; u16 idle_settles; u32 atime; }"""

    _fields_ = [("backend", u16), ("idle_settles", u16), ("atime", u32)]


class CtEntryV4(ctypes.Structure):
    """struct ct_entry_v4 { struct flow_v4 flow; struct ct_state state; }"""

    _fields_ = [("flow", FlowV4), ("state", CtState)]


class CtSetV4(ctypes.Structure):
    """struct ct_set_v4 { struct ct_entry_v4 way[LB_CT_WAYS]; u32 mru; u32 pad0[3]; }  (64 bytes)"""

    _fields_ = [("way", CtEntryV4 * CT_WAYS), ("mru", u32), ("pad0", u32 * 3)]


class CtEntryV6(ctypes.Structure):
    """struct ct_entry_v6 { struct flow_v6 flow; struct ct_state state; }"""

    _fields_ = [("flow", FlowV6), ("state", CtState)]


class CtSetV6(ctypes.Structure):
    """struct ct_set_v6 { struct ct_entry_v6 way[LB_CT_WAYS]; u32 mru; u32 pad0; }  (104 bytes)"""

    _fields_ = [("way", CtEntryV6 * CT_WAYS), ("mru", u32), ("pad0", u32)]


class Backend(ctypes.Structure):
    """struct backend { be32 addr[4]; u32 flags; }"""

    _fields_ = [("addr", u32 * 4), ("flags", u32)]


class RingCell(ctypes.Structure):
    """struct ring_cell { u16 backend[LB_RING_CELL_SLOTS]; }"""

    _fields_ = [("backend", u16 * Sizes.ring_cell_slots)]


class LbStats(ctypes.Structure):
    """struct lb_stats { u64 packets; u64 bytes; }"""

    _fields_ = [("packets", u64), ("bytes", u64)]


class LbVipStats(ctypes.Structure):
    """struct lb_vip_stats { u64 packets; u64 bytes; u64 ct_miss_nonsyn; }"""

    _fields_ = [("packets", u64), ("bytes", u64), ("ct_miss_nonsyn", u64)]


class LbCounters(ctypes.Structure):
    """struct lb_counters { u64 n[CNT_MAX]; }"""

    _fields_ = [("n", u64 * COUNTER_SLOTS)]


class BenchState(ctypes.Structure):
    """struct bench_state { u32 frame_len; u16 vary_offset; u8 vary_flow; u8 pad0; u32 seq;
    u32 pad1; u8 head[LB_BENCH_HEAD]; }  (benchmark builds only)"""

    BENCH_HEAD = 32
    _fields_ = [("frame_len", u32), ("vary_offset", u16), ("vary_flow", u8), ("pad0", u8),
                ("seq", u32), ("pad1", u32), ("head", u8 * BENCH_HEAD)]


Key = type[ctypes._SimpleCData] | type[ctypes.Structure]

# Every map of lb_maps.h (and bench.h): name -> (key mirror, value mirror).
MAP_LAYOUTS: dict[str, tuple[Key, Key]] = {
    "lb_config": (u32, LbConfig),
    "vips_v4": (VipKeyV4, VipMeta),
    "vips_v6": (VipKeyV6, VipMeta),
    "vip_filter": (u32, u32),
    "rings": (u32, RingCell),
    "backends": (u32, Backend),
    "vip_index_v4": (u32, VipSlotV4),
    "vip_index_v6": (u32, VipSlotV6),
    "ct_v4": (u32, CtSetV4),
    "ct_v6": (u32, CtSetV6),
    "counters": (u32, LbCounters),
    "vip_stats": (u32, LbVipStats),
    "backend_stats": (u32, LbStats),
    "icmp_budget": (u32, u64),
}
BENCH_MAP_LAYOUTS: dict[str, tuple[Key, Key]] = {"bench_state": (u32, BenchState)}


class LayoutMismatch(RuntimeError):
    """A Python mirror disagrees with the struct the C compiler laid out."""


def describe(t: Key) -> list[tuple[str, int, int]]:
    """(field, offset, size) of a struct type, or [("", 0, size)] for a scalar."""
    if not issubclass(t, ctypes.Structure):
        return [("", 0, ctypes.sizeof(t))]
    out = []
    for name, *_ in t._fields_:
        f = getattr(t, name)
        out.append((name, f.offset, f.size))
    return out


def compare(map_name: str, role: str, mirror: Key, compiled: Key) -> list[str]:
    """Differences between a mirror and the compiler's type, as readable lines."""
    problems = []
    if ctypes.sizeof(mirror) != ctypes.sizeof(compiled):
        problems.append(f"{map_name} {role}: size {ctypes.sizeof(mirror)} in Python, "
                        f"{ctypes.sizeof(compiled)} in C")
    mine, theirs = describe(mirror), describe(compiled)
    # bcc names anonymous padding "__pad_N"; compare the named fields only.
    theirs = [f for f in theirs if not f[0].startswith("__pad")]
    if issubclass(mirror, ctypes.Structure) and mine != theirs:
        problems.append(f"{map_name} {role}: fields {mine} in Python, {theirs} in C")
    return problems


def check_layouts(tables: dict[str, tuple[Key, Key]],
                  layouts: dict[str, tuple[Key, Key]]) -> None:
    """Raise LayoutMismatch unless every map's compiled key/value equals its mirror.

    `tables` maps a map name to the (key, value) ctypes types bcc generated; for
    per-CPU maps the value is the per-CPU element.
    """
    problems = []
    for name, (key, value) in layouts.items():
        if name not in tables:
            problems.append(f"{name}: map not found in the compiled program")
            continue
        ckey, cvalue = tables[name]
        problems += compare(name, "key", key, ckey)
        problems += compare(name, "value", value, cvalue)
    if problems:
        raise LayoutMismatch("C and Python struct layouts differ:\n  " + "\n  ".join(problems))
