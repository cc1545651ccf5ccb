"""Typed access to a loaded program's maps: config, VIPs, filter, backends, rings, counters.

This layer knows the maps' shapes, not policy: it never decides which VIP number
or backend index to use (the control plane does). Rings are read and written
through an mmap of the `rings` array, so a ring update writes only the slots
that change, with no system call per slot.
"""

from __future__ import annotations

import ctypes
import ipaddress
import mmap
import socket
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from lb.xdp.consts import BackendFlag, Counter
from lb.xdp.flowhash import Address, filter_slot, words
from lb.xdp.loader import Program
from lb.xdp.structs import (
    Backend,
    BenchState,
    CtEntry,
    FlowV4,
    FlowV6,
    LbConfig,
    VipKeyV4,
    VipKeyV6,
    VipMeta,
)

PROTOCOLS = {"tcp": socket.IPPROTO_TCP, "udp": socket.IPPROTO_UDP}
_U32 = ctypes.c_uint32
_BYTES_PER_SLOT = 2


@dataclass(frozen=True)
class VipKey:
    """A VIP as the data plane keys it: address, port (0 = all ports), IP protocol number."""

    address: Address
    port: int
    proto: int

    @property
    def is_v6(self) -> bool:
        return self.address.version == 6


@dataclass(frozen=True)
class Flow:
    """A connection-table key read back from the kernel."""

    src: Address
    dst: Address
    sport: int
    dport: int
    proto: int


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
        self._slots = memoryview(self._rings_mmap).cast("H")

    def close(self) -> None:
        """Drop the ring mapping (the maps themselves live on while pinned or attached)."""
        self._slots.release()
        self._rings_mmap.close()

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
        """Map a VIP to its number (ring and stats index) and F_VIP_* flags."""
        if not 0 <= vip_num < self.sizes.max_vips:
            raise ValueError(f"vip_num {vip_num} outside 0..{self.sizes.max_vips - 1}")
        self._vip_table(vip.is_v6)[_vip_key(vip)] = VipMeta(vip_num=vip_num, flags=flags)

    def delete_vip(self, vip: VipKey) -> None:
        table = self._vip_table(vip.is_v6)
        key = _vip_key(vip)
        if key in table:
            del table[key]

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
    def set_backend(self, index: int, address: Address) -> None:
        """Put a backend in slot `index` (1..max_backends-1; 0 means "none")."""
        if not 1 <= index < self.sizes.max_backends:
            raise ValueError(f"backend index {index} outside 1..{self.sizes.max_backends - 1}")
        flags = BackendFlag.VALID | (BackendFlag.IPV6 if address.version == 6 else 0)
        self.program.table("backends")[_U32(index)] = Backend(
            addr=_words_array(address), flags=int(flags))

    def clear_backend(self, index: int) -> None:
        """Empty slot `index`: nothing is sent there any more, table entries re-decide."""
        self.program.table("backends")[_U32(index)] = Backend()

    def backend(self, index: int) -> Address | None:
        b = self.program.table("backends")[_U32(index)]
        if not b.flags & BackendFlag.VALID:
            return None
        return _addr_from_words(b.addr, bool(b.flags & BackendFlag.IPV6))

    # --- rings ----------------------------------------------------------------------
    def _ring_span(self, vip_num: int) -> tuple[int, int]:
        if not 0 <= vip_num < self.sizes.max_vips:
            raise ValueError(f"vip_num {vip_num} outside 0..{self.sizes.max_vips - 1}")
        start = vip_num * self.sizes.ring_cells * self.sizes.ring_cell_slots
        return start, start + self.sizes.ring_size

    def read_ring(self, vip_num: int) -> list[int]:
        """The backend index in each of a VIP's ring_size slots."""
        start, end = self._ring_span(vip_num)
        return self._slots[start:end].tolist()

    def write_ring(self, vip_num: int, ring: Sequence[int]) -> int:
        """Make a VIP's ring equal `ring` (backend indexes), writing only slots that differ.

        Returns the number of slots written. Each slot is one aligned 2-byte store, so
        the data plane reads either the old or the new backend, never a mix.
        """
        if len(ring) != self.sizes.ring_size:
            raise ValueError(f"ring has {len(ring)} slots, expected {self.sizes.ring_size}")
        start, end = self._ring_span(vip_num)
        current = self._slots[start:end].tolist()
        written = 0
        slots = self._slots
        for i, (old, new) in enumerate(zip(current, ring, strict=True)):
            if old != new:
                slots[start + i] = new
                written += 1
        return written

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
    def conn_table(self) -> Iterator[tuple[Flow, int]]:
        """Every (flow, backend index) in both connection tables."""
        for name, v6 in (("ct_v4", False), ("ct_v6", True)):
            for k, v in self.program.table(name).items():
                src = _addr_from_words(k.src if v6 else [k.src], v6)
                dst = _addr_from_words(k.dst if v6 else [k.dst], v6)
                yield (Flow(src, dst, socket.ntohs(k.sport), socket.ntohs(k.dport), k.proto),
                       v.backend)

    def clear_conn_table(self) -> None:
        for name in ("ct_v4", "ct_v6"):
            self.program.table(name).clear()

    def purge_conn_entries(self, backend: int) -> int:
        """Delete every connection-table entry that points at `backend`; returns how many."""
        purged = 0
        for name in ("ct_v4", "ct_v6"):
            table = self.program.table(name)
            stale = [k for k, v in table.items() if v.backend == backend]
            for k in stale:
                table.pop(k, None)
            purged += len(stale)
        return purged

    def set_conn_entry(self, flow: Flow, backend: int) -> None:
        """Write one connection-table entry (tests and benchmarks prime the table with it)."""
        v6 = flow.src.version == 6
        ports = dict(sport=socket.htons(flow.sport), dport=socket.htons(flow.dport),
                     proto=flow.proto)
        if v6:
            key = FlowV6(src=_words_array(flow.src), dst=_words_array(flow.dst), **ports)
        else:
            key = FlowV4(src=words(flow.src)[0], dst=words(flow.dst)[0], **ports)
        self.program.table("ct_v6" if v6 else "ct_v4")[key] = CtEntry(backend=backend)

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

    def bench_seq(self) -> int:
        return self.program.table("bench_state")[_U32(0)].seq
