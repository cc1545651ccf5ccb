"""A dict-backed stand-in for lb.xdp.maps.Dataplane, for unit tests of the control plane.

It is a fake of the kernel's maps, never of the code under test: the Balancer and the
Controller run for real on top of it, and tests read back what "the kernel" holds. It
provides lb.control.dataplane.DataplanePort with Dataplane's very signatures
(tests/unit/test_dataplane_port.py checks them).
"""

from __future__ import annotations

import array
import copy
from collections.abc import Callable, Iterator, Sequence

from lb.xdp.config import Sizes
from lb.xdp.consts import Counter
from lb.xdp.maps import SettleScan, SettleVip
from lb.xdp.types import Address, Flow, VipKey

# Members that only tests call: what the kernel holds, for before/after comparisons.
TEST_ONLY = frozenset({"snapshot", "fail_ring_write"})


class RecordingDataplane:
    """Keeps what would be in the maps, in dicts; reads back like Dataplane. Counters and
    stats are whatever a test puts in `counter_values`, `vip_traffic`, `vip_misses`,
    `backend_traffic`."""

    def __init__(self, sizes: Sizes) -> None:
        self.sizes = sizes
        self.vip_entries: dict[VipKey, tuple[int, int]] = {}
        self.markers: set[Address] = set()
        self.filter_addresses: list[Address] = []
        self.backends: dict[int, Address] = {}
        self.disabled: set[int] = set()
        self.rings: dict[int, list[int]] = {}
        self.conn: dict[tuple, int] = {}
        self.counter_values: dict[str, int] = {c.name.lower(): 0 for c in Counter}
        self.vip_traffic: dict[int, tuple[int, int]] = {}
        self.vip_misses: dict[int, int] = {}
        self.backend_traffic: dict[int, tuple[int, int]] = {}

    def snapshot(self) -> dict[str, object]:
        """Everything the maps hold, as a deep copy to compare before and after a change.
        Rings of zeros are left out: in the kernel every ring exists and starts as zeros."""
        rings = {num: ring for num, ring in self.rings.items() if any(ring)}
        return copy.deepcopy({"vips": self.vip_entries, "markers": self.markers,
                              "filter": set(self.filter_addresses), "backends": self.backends,
                              "disabled": self.disabled,
                              "rings": rings, "conn": self.conn})

    # --- VIPs -----------------------------------------------------------------------
    def set_vip(self, vip: VipKey, vip_num: int, flags: int) -> None:
        self.vip_entries[vip] = (vip_num, flags)

    def delete_vip(self, vip: VipKey) -> None:
        self.vip_entries.pop(vip, None)

    def vips(self) -> dict[VipKey, tuple[int, int]]:
        return dict(self.vip_entries)

    def set_address_marker(self, address: Address) -> None:
        self.markers.add(address)

    def delete_address_marker(self, address: Address) -> None:
        self.markers.discard(address)

    def write_filter(self, addresses: Sequence[Address], previous: Sequence[Address] = ()) -> int:
        self.filter_addresses = list(addresses)
        return 0

    # --- backends -------------------------------------------------------------------
    def set_backend(self, index: int, address: Address, enabled: bool = True) -> None:
        assert 1 <= index < self.sizes.max_backends, index
        self.backends[index] = address
        if enabled:
            self.disabled.discard(index)
        else:
            self.disabled.add(index)

    def clear_backend(self, index: int) -> None:
        self.backends.pop(index, None)
        self.disabled.discard(index)

    def backend(self, index: int) -> Address | None:
        return None if index in self.disabled else self.backends.get(index)

    def backend_slot(self, index: int) -> tuple[Address | None, bool]:
        address = self.backends.get(index)
        return address, address is not None and index not in self.disabled

    # --- rings ----------------------------------------------------------------------
    def read_ring(self, vip_num: int) -> list[int]:
        return list(self.rings.get(vip_num, [0] * self.sizes.ring_size))

    def write_ring(self, vip_num: int, ring: Sequence[int],
                   ids: array.array | None = None) -> int:
        assert 0 <= vip_num < self.sizes.max_vips, vip_num
        if ids is not None:
            ring = [ids[m] for m in ring]
        old = self.read_ring(vip_num)
        self.rings[vip_num] = list(ring)
        return sum(a != b for a, b in zip(old, ring, strict=True))

    # Settling is not modelled here (the packet tests cover it): no slot is ever settled,
    # a scan finds nothing to settle.
    def unsettle(self, vip_num: int) -> int:
        assert 0 <= vip_num < self.sizes.max_vips, vip_num
        return 0

    def scan(self, vips: Sequence[SettleVip], limit: int) -> SettleScan:
        return SettleScan({})

    def settle_scanned(self, scan: SettleScan,
                       still: Callable[[SettleVip], bool] = lambda v: True
                       ) -> tuple[int, dict[int, int]]:
        return 0, {}

    # --- connection table -----------------------------------------------------------
    def reset_idle_settles(self) -> None:
        """Idle counts are not modelled here (settling is not): nothing to reset."""

    def purge_conn_entries(self, backend: int) -> int:
        stale = [k for k, v in self.conn.items() if v == backend]
        for k in stale:
            del self.conn[k]
        return len(stale)

    def conn_table(self) -> Iterator[tuple[Flow, int]]:
        yield from list(self.conn.items())

    # --- counters -------------------------------------------------------------------
    def counters(self) -> dict[str, int]:
        return dict(self.counter_values)

    def vip_stats(self, vip_num: int) -> tuple[int, int]:
        return self.vip_traffic.get(vip_num, (0, 0))

    def vip_ct_miss_nonsyn(self, vip_num: int) -> int:
        return self.vip_misses.get(vip_num, 0)

    def backend_stats(self, index: int) -> tuple[int, int]:
        return self.backend_traffic.get(index, (0, 0))


class FailingDataplane(RecordingDataplane):
    """A kernel whose ring writes fail on demand: `fail_ring_write(n)` makes the n-th ring
    write from now raise OSError, once, after writing the first half of the ring (a write
    that dies midway leaves a mix of old and new slots)."""

    def __init__(self, sizes: Sizes) -> None:
        super().__init__(sizes)
        self.ring_writes = 0
        self._fail_at: int | None = None

    def fail_ring_write(self, n: int = 1) -> None:
        self._fail_at = self.ring_writes + n

    def write_ring(self, vip_num: int, ring: Sequence[int],
                   ids: array.array | None = None) -> int:
        if ids is not None:
            ring = [ids[m] for m in ring]
        self.ring_writes += 1
        if self.ring_writes == self._fail_at:
            self._fail_at = None
            half = len(ring) // 2
            super().write_ring(vip_num, [*ring[:half], *self.read_ring(vip_num)[half:]])
            raise OSError(5, f"injected failure writing ring {vip_num}")
        return super().write_ring(vip_num, ring)
