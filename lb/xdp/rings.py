"""The rings map through its mmap: ring writes, reads, and settling (lb/xdp/_ringio.c).

A ring update writes only the slots that change (as plain indexes: unsettled), with no
system call per slot; settling marks the slots where no live flow needs the connection
table (the rule is lb/xdp/conntable.h's, which the data plane shares). Mixed into
lb.xdp.maps.Dataplane, which maps the rings (`_slots`, `_slot_bytes`) and the connection
tables the scan reads (`_ct_view`), and knows `sizes`.
"""

from __future__ import annotations

import array
import socket
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from lb.xdp import _ringio
from lb.xdp.config import Sizes
from lb.xdp.consts import SLOT_BACKEND, SLOT_SETTLED
from lb.xdp.mapkeys import vip_key
from lb.xdp.types import VipKey

# A ring slot's top byte (which holds SLOT_SETTLED) is its second byte in memory.
assert sys.byteorder == "little", "ring slots are read as little-endian u16"
_TOP_BYTE = 1
# Top bytes: each without the settled bit (a translate table), and those that have it.
_WITHOUT_SETTLED = bytes(b & ~(SLOT_SETTLED >> 8) for b in range(256))
_SETTLED_TOPS = bytes(range(SLOT_SETTLED >> 8, 256))


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


class RingMaps:
    """Dataplane's ring methods (the `rings` array, mmapped as u16 slots)."""

    sizes: Sizes
    _slots: memoryview        # every VIP's ring, as 'H' slots; VIP n's from n * stride
    _slot_bytes: memoryview   # the same mapping, as bytes
    _identity: array.array    # array('H') i -> i: ring writes given plain backend indexes
    _ct_view: dict[bool, memoryview]  # the connection tables a scan reads (lb.xdp.conntable)

    def _ring_span(self, vip_num: int) -> tuple[int, int]:
        if not 0 <= vip_num < self.sizes.max_vips:
            raise ValueError(f"vip_num {vip_num} outside 0..{self.sizes.max_vips - 1}")
        start = vip_num * self.sizes.ring_cells * self.sizes.ring_cell_slots
        return start, start + self.sizes.ring_size

    def read_ring(self, vip_num: int) -> list[int]:
        """The backend index in each of a VIP's ring_size slots."""
        start, end = self._ring_span(vip_num)
        return [v & SLOT_BACKEND for v in self._slots[start:end].tolist()]

    def ring_slot_raw(self, vip_num: int, slot: int) -> int:
        """Slot `slot` of a VIP's ring as stored: backend index | SLOT_SETTLED if settled."""
        start, end = self._ring_span(vip_num)
        if not 0 <= slot < end - start:
            raise ValueError(f"slot {slot} outside 0..{end - start - 1}")
        return int(self._slots[start + slot])

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
            family = sorted((bytes(vip_key(v.key)), v) for v in vips
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
        settled, left = 0, dict[int, int]()
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
