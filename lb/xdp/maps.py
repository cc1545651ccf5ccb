"""Typed access to a loaded program's maps: config, VIPs, filter, backends, rings, counters.

This layer knows the maps' shapes, not policy: it never decides which VIP number
or backend index to use (the control plane does). Rings are read and written
through an mmap of the `rings` array, so a ring update writes only the slots that
change (as plain indexes: unsettled), with no system call per slot; settling marks
the slots where no live flow needs the connection table. The VIP index (a
direct-mapped cache of the VIP hash maps) is kept consistent here, on every VIP
write. The connection tables (arrays of 2-way sets, one slice per CPU) are mmapped
too: reading, purging, clearing and settling against them is memory access, not
system calls.
"""

from __future__ import annotations

import array
import ctypes
import ipaddress
import mmap
import socket
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from lb.xdp import _ringio, mapelem
from lb.xdp.consts import (
    CT_WAYS,
    SLOT_BACKEND,
    SLOT_SETTLED,
    BackendFlag,
    Counter,
)
from lb.xdp.flowhash import filter_slot, vip_index_slot, words
from lb.xdp.structs import (
    Backend,
    BenchState,
    CtEntryV4,
    CtEntryV6,
    CtSetV4,
    CtSetV6,
    CtState,
    FlowV4,
    FlowV6,
    LbConfig,
    VipKeyV4,
    VipKeyV6,
    VipMeta,
    VipSlotV4,
    VipSlotV6,
)
from lb.xdp.types import Address, Flow, VipKey

if TYPE_CHECKING:
    from lb.xdp.loader import Program

_U32 = ctypes.c_uint32
_BYTES_PER_SLOT = 2
# A ring slot's top byte (which holds SLOT_SETTLED) is its second byte in memory.
assert sys.byteorder == "little", "ring slots are read as little-endian u16"
_TOP_BYTE = 1
# Top bytes: each without the settled bit (a translate table), and those that have it.
_WITHOUT_SETTLED = bytes(b & ~(SLOT_SETTLED >> 8) for b in range(256))
_SETTLED_TOPS = bytes(range(SLOT_SETTLED >> 8, 256))
# Per family: the connection-table map, its set mirror, and its flow mirror.
_CT = {False: ("ct_v4", CtSetV4, CtEntryV4, FlowV4), True: ("ct_v6", CtSetV6, CtEntryV6, FlowV6)}


@dataclass(frozen=True)
class SettleVip:
    """A TCP VIP as Dataplane.settle sees it: where its ring is, how it hashes, and whether
    to settle its slots now (else it is only looked up, so that flows of it are not taken for
    flows of a port-0 VIP of the same address)."""

    key: VipKey
    vip_num: int
    flags: int
    settle: bool
    stamp: float = 0.0  # the caller's version of the ring (Balancer: changed_at), for `still`


@dataclass(frozen=True)
class SettleScan:
    """What Dataplane.scan found, per family (False: IPv4): the TCP VIPs in scan order (the
    rows of the held list) and the held slots, sorted u64 (row << 32 | slot) bytes."""

    families: dict[bool, tuple[list[SettleVip], bytes]]


def _settle_rows(members: Sequence[SettleVip], chosen: Sequence[bool] | None = None
                 ) -> array.array:
    """The `vips` argument of _ringio.scan/settle: vip_num, flags, settle-now per VIP."""
    rows = array.array("I")
    for i, v in enumerate(members):
        rows.extend((v.vip_num, v.flags, int(v.settle if chosen is None else chosen[i])))
    return rows


def _words_array(addr: Address) -> ctypes.Array:
    return (_U32 * 4)(*words(addr))


def _vip_key(vip: VipKey, port: int | None = None, proto: int | None = None):
    port = vip.port if port is None else port
    proto = vip.proto if proto is None else proto
    nport = socket.htons(port)
    if vip.is_v6:
        return VipKeyV6(addr=_words_array(vip.address), port=nport, proto=proto)
    return VipKeyV4(addr=words(vip.address)[0], port=nport, proto=proto)


def _addr_from_words(ws, v6: bool) -> Address:
    n = 4 if v6 else 1
    raw = b"".join(int(ws[i]).to_bytes(4, "little") for i in range(n))
    return ipaddress.ip_address(raw)


class Dataplane:
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
        for v6, (name, set_type, *_) in _CT.items():
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
        for v6 in _CT:
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
        self._vip_table(vip.is_v6)[_vip_key(vip)] = VipMeta(vip_num=vip_num, flags=flags)
        users[vip] = (vip_num, flags)
        self._sync_index_slot(vip, users)

    def delete_vip(self, vip: VipKey) -> None:
        table = self._vip_table(vip.is_v6)
        key = _vip_key(vip)
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
            key = _vip_key(only)
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
        key = _vip_key(vip)
        same = bytes(key)[: ctypes.sizeof(key) - 1] == bytes(slot)[: ctypes.sizeof(key) - 1]
        return "own" if same else "other"

    def vips(self) -> dict[VipKey, tuple[int, int]]:
        """Every VIP entry (markers excluded): key -> (vip_num, flags)."""
        out = {}
        for v6 in (False, True):
            for k, v in self._vip_table(v6).items():
                if k.proto == 0:
                    continue
                addr = _addr_from_words(k.addr if v6 else [k.addr], v6)
                out[VipKey(addr, socket.ntohs(k.port), k.proto)] = (v.vip_num, v.flags)
        return out

    def set_address_marker(self, address: Address) -> None:
        """Mark an address as a VIP address (exact check for unusual packets)."""
        vip = VipKey(address, 0, 0)
        self._vip_table(vip.is_v6)[_vip_key(vip)] = VipMeta(vip_num=0, flags=0)

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
            addr=_words_array(address), flags=int(flags))

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
        return _addr_from_words(b.addr, v6), bool(b.flags & BackendFlag.VALID)

    # --- rings ----------------------------------------------------------------------
    def _ring_span(self, vip_num: int) -> tuple[int, int]:
        if not 0 <= vip_num < self.sizes.max_vips:
            raise ValueError(f"vip_num {vip_num} outside 0..{self.sizes.max_vips - 1}")
        start = vip_num * self.sizes.ring_cells * self.sizes.ring_cell_slots
        return start, start + self.sizes.ring_size

    def read_ring(self, vip_num: int) -> list[int]:
        """The backend index in each of a VIP's ring_size slots."""
        start, end = self._ring_span(vip_num)
        return [v & SLOT_BACKEND for v in self._slots[start:end].tolist()]

    def unsettled_slots(self, vip_num: int) -> list[int]:
        """The slot numbers of a VIP's ring that name a backend and are not settled (non-SYN
        TCP packets read the connection table there)."""
        start, end = self._ring_span(vip_num)
        return [s for s, v in enumerate(self._slots[start:end].tolist())
                if v & SLOT_BACKEND and not v & SLOT_SETTLED]

    def unsettle(self, vip_num: int) -> int:
        """Unsettle every slot of a VIP's ring, so that its TCP packets read the connection
        table until a settle finds the slots free; returns how many were settled. Stores
        only each slot's top byte (the flag's), one byte store per slot."""
        start, end = self._ring_span(vip_num)
        top = self._slot_bytes[2 * start + _TOP_BYTE:2 * end:2]
        before = top.tobytes()
        top[:] = before.translate(_WITHOUT_SETTLED)
        return len(before) - len(before.translate(None, _SETTLED_TOPS))

    def scan(self, vips: Sequence[SettleVip], limit: int) -> SettleScan:
        """The first half of a settle: which slots of the VIPs marked `settle` flows in the
        connection table hold. A flow holds its slot if it names another backend and has
        been idle for fewer than `limit` settles (this counts such a flow's idle_settles up;
        its next packet zeroes it). lb/xdp/_ringio.c does it, one pass over each family's
        table. It only reads the rings, so it needs no lock against ring writes: the second
        half (settle_scanned) settles only VIPs whose rings did not change since."""
        if not 0 <= limit <= 0xFFFF:
            raise ValueError(f"limit must be 0..65535, got {limit}")
        stride = self.sizes.ring_cells * self.sizes.ring_cell_slots
        families = {}
        for v6 in (False, True):
            family = sorted((bytes(_vip_key(v.key)), v) for v in vips
                            if v.key.is_v6 == v6 and v.key.proto == socket.IPPROTO_TCP)
            if not any(v.settle for _, v in family):
                continue
            members = [v for _, v in family]
            held = _ringio.scan(self._ct_view[v6], v6, b"".join(k for k, _ in family),
                                _settle_rows(members), self._slots, stride,
                                self.sizes.ring_size, limit)
            families[v6] = (members, held)
        return SettleScan(families)

    def settle_scanned(self, scan: SettleScan,
                       still: Callable[[SettleVip], bool] = lambda v: True
                       ) -> tuple[int, dict[int, int]]:
        """The second half of a settle: settle every unsettled slot of the scanned VIPs to
        settle (for which `still` says their ring has not changed since the scan) that no
        flow holds. Returns the slots settled, and per vip_num settled the slots it keeps
        unsettled. Serialise with write_ring: both store into the same slots."""
        stride = self.sizes.ring_cells * self.sizes.ring_cell_slots
        settled, left = 0, {}
        for members, held in scan.families.values():
            chosen = [v.settle and still(v) for v in members]
            kept = array.array("I", bytes(4 * len(members)))
            settled += _ringio.settle(held, _settle_rows(members, chosen), self._slots, stride,
                                      self.sizes.ring_size, kept)
            left.update((v.vip_num, n) for v, n, c in zip(members, kept, chosen, strict=True)
                        if c)
        return settled, left

    def settle(self, vips: Sequence[SettleVip], limit: int) -> tuple[int, dict[int, int]]:
        """scan, then settle_scanned, in one go (the caller holds off ring writes for both)."""
        return self.settle_scanned(self.scan(vips, limit))

    def reset_idle_settles(self) -> None:
        """Zero every connection-table way's idle_settles (the counts are in units of the
        settle interval of whoever counted them: a restart may change it)."""
        for v6, (_, set_type, entry_type, _) in _CT.items():
            size, way_size = ctypes.sizeof(set_type), ctypes.sizeof(entry_type)
            at = entry_type.state.offset + CtState.idle_settles.offset
            with self._ct_view[v6].cast("H") as u16:
                for way in range(CT_WAYS):
                    field = u16[(way * way_size + at) // 2::size // 2]
                    field[:] = array.array("H", bytes(2 * len(field)))
                    field.release()

    def write_ring(self, vip_num: int, ring: Sequence[int],
                   ids: array.array | None = None) -> int:
        """Make a VIP's ring hold `ring`, writing only slots that differ; returns how many.

        Without `ids`, `ring` holds backend indexes. With `ids` (array('H')), `ring` is an
        array('I') of member positions, as build_ring returns, and slot s gets ids[ring[s]].
        Each slot is one aligned 2-byte store (lb/xdp/_ringio.c), so the data plane reads
        either the old or the new backend, never a mix; each slot written is unsettled (a
        plain index, without SLOT_SETTLED).
        """
        if len(ring) != self.sizes.ring_size:
            raise ValueError(f"ring has {len(ring)} slots, expected {self.sizes.ring_size}")
        if ids is None:
            ring = ring if isinstance(ring, array.array) and ring.typecode == "I" \
                else array.array("I", ring)
            ids = self._identity
        start, end = self._ring_span(vip_num)
        return _ringio.apply(ring, ids, self._slots[start:end])

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

    def backend_stats(self, index: int) -> tuple[int, int]:
        """(packets, bytes) sent to a backend, summed over CPUs."""
        return self._stats("backend_stats", index)

    def clear_stats(self) -> None:
        for name in ("counters", "vip_stats", "backend_stats"):
            self.program.table(name).clear()

    # --- connection table -----------------------------------------------------------
    # Per family, one array of cpus * conn_table_sets sets of 2 ways, CPU-major: CPU c's
    # slice is elements [c * sets, (c + 1) * sets), and a flow lives in set conn_table_set(flow)
    # of the slice of the CPU its packets arrive on. Read and written through the mmap. The
    # control plane's writes (purge, set_conn_entry) can race the program on the same set: a
    # flow the program inserts into that very set meanwhile may be lost, and takes a fresh
    # ring decision on its next packet (as after an eviction).
    def _ct_offset(self, v6: bool, cpu: int, set_num: int) -> int:
        """Byte offset of CPU `cpu`'s copy of set `set_num` in the family's mapping."""
        return (cpu * self.sizes.conn_table_sets + set_num) * ctypes.sizeof(_CT[v6][1])

    def _ct_live(self, v6: bool,
                 backend: int | None = None) -> list[tuple[int, int, int, bytes]]:
        """(set, CPU, way, the way's bytes) of every live way of one family's table (only
        those naming `backend`, if given): each way's backend field is picked out of the
        mapping with a strided slice, so empty ways cost no Python."""
        _, set_type, entry_type, _ = _CT[v6]
        size, way_size = ctypes.sizeof(set_type), ctypes.sizeof(entry_type)
        state_at = entry_type.state.offset + CtState.backend.offset
        sets = self.sizes.conn_table_sets
        view = self._ct_view[v6]
        live = []
        with view.cast("H") as u16:
            for way in range(CT_WAYS):
                at = way * way_size + state_at
                with u16[at // 2::size // 2] as field:
                    found = field.tolist()
                for i, b in enumerate(found):  # i = cpu * sets + set
                    if b and (backend is None or b == backend):
                        start = i * size + way * way_size
                        live.append((i % sets, i // sets, way, bytes(view[start:start + way_size])))
        return live

    def live_conn_entries(self, cpu: int | None = None) -> int:
        """How many ways of both tables hold a flow (on CPU `cpu` only, if given)."""
        return sum(1 for v6 in (False, True) for _set, c, _way, _raw in self._ct_live(v6)
                   if cpu is None or c == cpu)

    def conn_table(self) -> Iterator[tuple[Flow, int]]:
        """Every live (flow, backend index) of both connection tables, over every CPU (a flow
        whose packets came in on two CPUs is there twice)."""
        for v6 in (False, True):
            entry_type = _CT[v6][2]
            for _set, _cpu, _way, raw in self._ct_live(v6):
                e = entry_type.from_buffer_copy(raw)
                k = e.flow
                src = _addr_from_words(k.src if v6 else [k.src], v6)
                dst = _addr_from_words(k.dst if v6 else [k.dst], v6)
                yield (Flow(src, dst, socket.ntohs(k.sport), socket.ntohs(k.dport), k.proto),
                       e.state.backend)

    def clear_conn_table(self) -> None:
        """Empty both connection tables on every CPU."""
        chunk = 1 << 20
        zeros = bytes(chunk)
        for view in self._ct_view.values():
            for at in range(0, len(view), chunk):
                n = min(chunk, len(view) - at)
                view[at:at + n] = zeros[:n]

    def purge_conn_entries(self, backend: int) -> int:
        """Empty every connection-table way (any CPU) that points at `backend`; returns how
        many ways were emptied."""
        purged = 0
        for v6 in (False, True):
            _, _, entry_type, _ = _CT[v6]
            way_size = ctypes.sizeof(entry_type)
            state_at = entry_type.state.offset + CtState.backend.offset
            view, empty = self._ct_view[v6], bytes(way_size)
            for set_num, cpu, way, _raw in self._ct_live(v6, backend):
                start = self._ct_offset(v6, cpu, set_num) + way * way_size
                at = start + state_at
                if int.from_bytes(view[at:at + 2], "little") == backend:  # still it: empty it
                    view[start:start + way_size] = empty
                    purged += 1
        return purged

    def set_conn_entry(self, flow: Flow, backend: int) -> None:
        """Put `flow` -> `backend` in its set on every CPU, as the program would on a fresh
        decision (lb/xdp/_ringio.c's plant, by the program's own rules: lb/xdp/conntable.h).
        Tests and benchmarks prime the table with it."""
        if not 1 <= backend < self.sizes.max_backends:
            raise ValueError(f"backend index {backend} outside 1..{self.sizes.max_backends - 1}")
        v6 = flow.src.version == 6
        flow_type = _CT[v6][3]
        ports = dict(sport=socket.htons(flow.sport), dport=socket.htons(flow.dport),
                     proto=flow.proto)
        if v6:
            key = flow_type(src=_words_array(flow.src), dst=_words_array(flow.dst), **ports)
        else:
            key = flow_type(src=words(flow.src)[0], dst=words(flow.dst)[0], **ports)
        _ringio.plant(self._ct_view[v6], v6, bytes(key), backend, self.sizes.conn_table_sets,
                      self.sizes.cpus)

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

