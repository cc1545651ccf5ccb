"""Typed access to a loaded program's maps: config, VIPs, filter, backends, counters; the
rings (lb.xdp.rings) and connection tables (lb.xdp.conntable) through their mmaps.

This layer knows the maps' shapes, not policy: it never decides which VIP number
or backend index to use (the control plane does). `Dataplane` is the one object the
control plane holds: the methods of the rings and of the connection tables are mixed in
from their own modules, which this one maps for them (`_slots`, `_ct_view`). The VIP
index (a direct-mapped cache of the VIP hash maps) is kept consistent here, on every
VIP write.
"""

from __future__ import annotations

import array
import ctypes
import mmap
import socket
from collections.abc import Sequence
from typing import TYPE_CHECKING

from lb.xdp import mapelem
from lb.xdp.conntable import CT_FAMILIES, ConnTableMaps
from lb.xdp.consts import BackendFlag, Counter
from lb.xdp.flowhash import filter_slot, vip_index_slot, words
from lb.xdp.mapkeys import addr_from_words, vip_key, words_array
from lb.xdp.rings import RingMaps, SettleScan, SettleVip
from lb.xdp.structs import (
    Backend,
    BenchState,
    LbConfig,
    VipMeta,
    VipSlotV4,
    VipSlotV6,
)
from lb.xdp.types import Address, VipKey

if TYPE_CHECKING:
    from lb.xdp.loader import Program

__all__ = ["Dataplane", "SettleScan", "SettleVip"]

_U32 = ctypes.c_uint32


class Dataplane(RingMaps, ConnTableMaps):
    """The maps of one loaded balancer program, with typed reads and writes."""

    def __init__(self, program: Program) -> None:
        self.program = program
        self.sizes = program.sizes
        rings = program.table("rings")
        length = self.sizes.max_vips * self.sizes.ring_cells * ctypes.sizeof(rings.Leaf)
        self._rings_mmap = mmap.mmap(rings.get_fd(), length, mmap.MAP_SHARED,
                                     mmap.PROT_READ | mmap.PROT_WRITE)
        self._slot_bytes = memoryview(self._rings_mmap)
        self._slots = self._slot_bytes.cast("H")
        # Backend index i is its own id: ring writes given plain indexes.
        self._identity = array.array("H", range(self.sizes.max_backends))
        # Per family: the connection table's mapping, and a byte view of it.
        self._ct_mmap: dict[bool, mmap.mmap] = {}
        self._ct_view: dict[bool, memoryview] = {}
        for v6, (name, set_type, *_) in CT_FAMILIES.items():
            assert ctypes.sizeof(set_type) % 8 == 0, "array values are 8-byte multiples"
            length = self.sizes.conn_table_entries * ctypes.sizeof(set_type)
            self._ct_mmap[v6] = mmap.mmap(program.table(name).get_fd(), length, mmap.MAP_SHARED,
                                          mmap.PROT_READ | mmap.PROT_WRITE)
            self._ct_view[v6] = memoryview(self._ct_mmap[v6])
        # VIP index slot (family, slot) -> {VIP: (vip_num, flags)} of the VIPs that hash to
        # it; built from the VIP hash maps (the authority) on first use.
        self._index_users: dict[tuple[bool, int], dict[VipKey, tuple[int, int]]] | None = None

    def close(self) -> None:
        """Drop the ring and connection-table mappings (the maps themselves live on while
        pinned or attached)."""
        self._slots.release()
        self._slot_bytes.release()
        self._rings_mmap.close()
        for v6 in CT_FAMILIES:
            self._ct_view[v6].release()
            self._ct_mmap[v6].close()

    # --- runtime config -------------------------------------------------------------
    def write_config(self, cfg) -> None:
        """Write a lb.xdp.config.RuntimeConfig into `lb_config`."""
        nh, src = cfg.mac_bytes()
        v6_words = words(cfg.encap_v6.network_address)
        value = LbConfig(
            next_hop_mac=(ctypes.c_uint8 * 6)(*nh),
            src_mac=(ctypes.c_uint8 * 6)(*src),
            egress_ifindex=cfg.egress_ifindex,
            mtu=cfg.mtu,
            ttl=cfg.ttl,
            encap_src_v4=words(cfg.encap_v4.network_address)[0],
            encap_src_v4_mask=words(cfg.encap_v4.netmask)[0],
            encap_src_v6=(_U32 * 4)(*v6_words),
            encap_src_v6_mask=words(cfg.encap_v6.netmask)[3],
            udp_timeout_ns=int(cfg.udp_timeout_s * 1e9),
        )
        self.program.table("lb_config")[_U32(0)] = value

    def read_config(self) -> LbConfig:
        return self.program.table("lb_config")[_U32(0)]

    # --- VIPs -----------------------------------------------------------------------
    def _vip_table(self, v6: bool):
        return self.program.table("vips_v6" if v6 else "vips_v4")

    def set_vip(self, vip: VipKey, vip_num: int, flags: int) -> None:
        """Map a VIP to its number (ring and stats index) and F_VIP_* flags (hash map, then
        the VIP index slot)."""
        if not 0 <= vip_num < self.sizes.max_vips:
            raise ValueError(f"vip_num {vip_num} outside 0..{self.sizes.max_vips - 1}")
        users = self._users(vip)
        self._vip_table(vip.is_v6)[vip_key(vip)] = VipMeta(vip_num=vip_num, flags=flags)
        users[vip] = (vip_num, flags)
        self._sync_index_slot(vip, users)

    def delete_vip(self, vip: VipKey) -> None:
        table = self._vip_table(vip.is_v6)
        key = vip_key(vip)
        if key in table:
            del table[key]
        if vip.proto and self._users(vip).pop(vip, None) is not None:
            self._sync_index_slot(vip, self._users(vip))

    # The VIP index: a direct-mapped array in front of the VIP hash maps. A slot holds the one
    # VIP hashing there (key compared in full), or nothing, or `shared` when two or more VIPs
    # do: the program then asks the hash map. A slot's key and meta are only ever rewritten
    # while its `shared` byte is set, and setting or clearing that byte is a write that
    # changes no other byte: a packet racing an update reads either a consistent slot or a
    # shared one, never a mix of two VIPs.
    def _index_slot(self, vip: VipKey) -> int:
        return vip_index_slot(vip.address, vip.port, vip.proto, self.sizes.vip_index_bits)

    def _users(self, vip: VipKey) -> dict[VipKey, tuple[int, int]]:
        """The VIPs that hash to `vip`'s index slot (building the table on first use)."""
        if self._index_users is None:
            self._index_users = {}
            for k, meta in self.vips().items():
                self._index_users.setdefault((k.is_v6, self._index_slot(k)), {})[k] = meta
        return self._index_users.setdefault((vip.is_v6, self._index_slot(vip)), {})

    def _sync_index_slot(self, vip: VipKey, users: dict[VipKey, tuple[int, int]]) -> None:
        """Make `vip`'s index slot say what `users` (every VIP hashing there) implies."""
        v6 = vip.is_v6
        table = self.program.table("vip_index_v6" if v6 else "vip_index_v4")
        slot_type = VipSlotV6 if v6 else VipSlotV4
        fd, slot = table.get_fd(), self._index_slot(vip)
        want = slot_type(shared=1)
        if len(users) == 1:
            (only, (num, flags)), = users.items()
            key = vip_key(only)
            want = slot_type(addr=key.addr, port=key.port, proto=key.proto, shared=0,
                             meta=VipMeta(vip_num=num, flags=flags))
        elif not users:
            want = slot_type()
        have = slot_type()
        mapelem.lookup_elem(fd, slot, have)
        if bytes(have) == bytes(want):
            return
        have.shared = 1
        mapelem.update_elem(fd, slot, have)       # readers fall back to the hash map
        shared_want = slot_type.from_buffer_copy(bytes(want))
        shared_want.shared = 1
        mapelem.update_elem(fd, slot, shared_want)  # new contents, still ignored
        if not want.shared:
            mapelem.update_elem(fd, slot, want)   # only the shared byte changes

    def index_slot_state(self, vip: VipKey) -> str:
        """What a VIP's index slot holds: "own" (this VIP), "shared", "other" or "empty"."""
        table = self.program.table("vip_index_v6" if vip.is_v6 else "vip_index_v4")
        slot = (VipSlotV6 if vip.is_v6 else VipSlotV4)()
        mapelem.lookup_elem(table.get_fd(), self._index_slot(vip), slot)
        if slot.shared:
            return "shared"
        if not slot.proto:
            return "empty"
        key = vip_key(vip)
        same = bytes(key)[: ctypes.sizeof(key) - 1] == bytes(slot)[: ctypes.sizeof(key) - 1]
        return "own" if same else "other"

    def vips(self) -> dict[VipKey, tuple[int, int]]:
        """Every VIP entry (markers excluded): key -> (vip_num, flags)."""
        out = {}
        for v6 in (False, True):
            for k, v in self._vip_table(v6).items():
                if k.proto == 0:
                    continue
                addr = addr_from_words(k.addr if v6 else [k.addr], v6)
                out[VipKey(addr, socket.ntohs(k.port), k.proto)] = (v.vip_num, v.flags)
        return out

    def set_address_marker(self, address: Address) -> None:
        """Mark an address as a VIP address (exact check for unusual packets)."""
        vip = VipKey(address, 0, 0)
        self._vip_table(vip.is_v6)[vip_key(vip)] = VipMeta(vip_num=0, flags=0)

    def delete_address_marker(self, address: Address) -> None:
        self.delete_vip(VipKey(address, 0, 0))

    def write_filter(self, addresses: Sequence[Address], previous: Sequence[Address] = ()) -> int:
        """Make the pre-filter mark exactly `addresses` (was `previous`); returns slots written."""
        bits = self.sizes.filter_bits
        want = {filter_slot(a, bits) for a in addresses}
        had = {filter_slot(a, bits) for a in previous}
        table = self.program.table("vip_filter")
        for slot in want - had:
            table[_U32(slot)] = _U32(1)
        for slot in had - want:
            table[_U32(slot)] = _U32(0)
        return len(want ^ had)

    # --- backends -------------------------------------------------------------------
    def set_backend(self, index: int, address: Address, enabled: bool = True) -> None:
        """Put a backend in slot `index` (1..max_backends-1; 0 means "none").

        A disabled slot keeps its address (so a restarted control plane finds it) but the
        program treats it as empty: ring slots naming it drop, table entries re-decide.
        """
        if not 1 <= index < self.sizes.max_backends:
            raise ValueError(f"backend index {index} outside 1..{self.sizes.max_backends - 1}")
        flags = (BackendFlag.VALID if enabled else 0) | \
            (BackendFlag.IPV6 if address.version == 6 else 0)
        self.program.table("backends")[_U32(index)] = Backend(
            addr=words_array(address), flags=int(flags))

    def clear_backend(self, index: int) -> None:
        """Empty slot `index`: nothing is sent there any more, table entries re-decide."""
        self.program.table("backends")[_U32(index)] = Backend()

    def backend(self, index: int) -> Address | None:
        """The address in slot `index` if the slot is enabled."""
        address, enabled = self.backend_slot(index)
        return address if enabled else None

    def backend_slot(self, index: int) -> tuple[Address | None, bool]:
        """(address, enabled) of slot `index`; (None, False) when empty."""
        b = self.program.table("backends")[_U32(index)]
        v6 = bool(b.flags & BackendFlag.IPV6)
        if not b.flags & BackendFlag.VALID and not any(b.addr[: 4 if v6 else 1]):
            return None, False
        return addr_from_words(b.addr, v6), bool(b.flags & BackendFlag.VALID)

    # --- counters and stats ---------------------------------------------------------
    def counters(self) -> dict[str, int]:
        """Global counters summed over CPUs, by lower-case Counter name."""
        per_cpu = self.program.table("counters")[_U32(0)]
        totals = [0] * len(Counter)
        for cpu in per_cpu:
            for i in range(len(Counter)):
                totals[i] += cpu.n[i]
        return {c.name.lower(): totals[c] for c in Counter}

    def _stats(self, table: str, index: int) -> tuple[int, int]:
        per_cpu = self.program.table(table)[_U32(index)]
        return sum(c.packets for c in per_cpu), sum(c.bytes for c in per_cpu)

    def vip_stats(self, vip_num: int) -> tuple[int, int]:
        """(packets, bytes) sent for a VIP, summed over CPUs."""
        return self._stats("vip_stats", vip_num)

    def vip_ct_miss_nonsyn(self, vip_num: int) -> int:
        """Non-SYN TCP packets of a VIP that missed the connection table, summed over CPUs."""
        return sum(c.ct_miss_nonsyn for c in self.program.table("vip_stats")[_U32(vip_num)])

    def backend_stats(self, index: int) -> tuple[int, int]:
        """(packets, bytes) sent to a backend, summed over CPUs."""
        return self._stats("backend_stats", index)

    def clear_stats(self) -> None:
        for name in ("counters", "vip_stats", "backend_stats"):
            self.program.table(name).clear()

    # --- benchmark builds -----------------------------------------------------------
    def set_bench_frame(self, frame: bytes, vary_offset: int = 0,
                        vary_flow: bool = False) -> None:
        """Tell a -DLB_BENCH build which frame every repetition starts from; with
        vary_flow, each repetition writes a new 32-bit number at byte vary_offset
        (e.g. 26, the IPv4 source address) so that it is a new flow."""
        head = frame[:BenchState.BENCH_HEAD].ljust(BenchState.BENCH_HEAD, b"\0")
        self.program.table("bench_state")[_U32(0)] = BenchState(
            frame_len=len(frame), vary_offset=vary_offset, vary_flow=int(vary_flow),
            head=(ctypes.c_uint8 * BenchState.BENCH_HEAD)(*head))

