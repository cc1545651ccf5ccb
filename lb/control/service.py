"""The balancer service: VIPs and their weighted backends, turned into data-plane map writes.

This is the one path by which state reaches the kernel: every change (API call,
health check, test) goes through `Balancer`. It owns the choice of VIP numbers
and backend indexes, builds each VIP's Maglev ring, and writes only what changed.

Backend slots outlive their last VIP: a backend removed from a ring keeps its slot,
so flows already in the connection table keep reaching it. Re-adding the address
reuses its slot; a retired slot is recycled only when no free slot is left, and
then its connection-table entries are purged first, so no flow is ever sent to
the wrong backend.
"""

from __future__ import annotations

import array
import ipaddress
import os
import time
from collections import OrderedDict
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

from lb.control.dataplane import DataplanePort
from lb.control.errors import AlreadyExists, CapacityError, InvalidInput, NotFound
from lb.control.maglev import build_ring, ring_digest
from lb.control.model import ApplyReport
from lb.xdp.consts import VipFlag
from lb.xdp.maps import Dataplane, SettleScan, SettleVip
from lb.xdp.types import PROTOCOLS, Address, VipKey

# Seconds a VIP's ring must go unchanged before a settle may settle its slots: far longer
# than any one packet takes to decide (a program run is microseconds).
SETTLE_GRACE_S = 1.0


def _ordered_difference(a: dict, b: dict) -> list:
    """Keys of `a` that are not keys of `b`, in a's order. set(dict) reuses the dict's
    stored hashes, and a set difference the sets' (hashing an ipaddress object runs Python
    code, which a reconcile of 512 VIPs x 100 backends would otherwise do some 400,000
    times); dict views and difference_update(dict) hash every key again."""
    diff = set(a) - set(b)
    if len(diff) <= 1:
        return list(diff)
    return [k for k in a if k in diff]


def vip_key(address: str, port: int, protocol: str) -> VipKey:
    """Validate and build a VIP key; raises InvalidInput with the field at fault."""
    try:
        addr = ipaddress.ip_address(address)
    except ValueError as e:
        raise InvalidInput(f"address: {e}") from None
    if not 0 <= port <= 65535:
        raise InvalidInput(f"port: must be 0..65535 (0 = all ports), got {port}")
    if protocol not in PROTOCOLS:
        raise InvalidInput(f"protocol: must be one of {sorted(PROTOCOLS)}, got {protocol!r}")
    return VipKey(addr, port, PROTOCOLS[protocol])


@dataclass(frozen=True)
class VipTarget:
    """What one VIP should be: its flags and backends (address -> weight)."""

    flags: VipFlag
    backends: dict[Address, int]


@dataclass
class VipState:
    """A VIP's number, flags and backends (address -> weight), the ring last written; when
    a write last unsettled slots of it (time.monotonic(); from creation or adoption on) and
    whether it may have unsettled slots (until a settle leaves it none)."""

    num: int
    flags: VipFlag
    backends: dict[Address, int] = field(default_factory=dict)
    changed_at: float = field(default_factory=time.monotonic)
    unsettled: bool = True

    def unsettled_now(self) -> None:
        self.changed_at, self.unsettled = time.monotonic(), True


class Balancer:
    """Desired state in memory, mirrored into the data plane's maps on every change."""

    def __init__(self, dataplane: DataplanePort) -> None:
        self.dp = dataplane
        self.sizes = dataplane.sizes
        self.vips: dict[VipKey, VipState] = {}
        self._backend_index: dict[Address, int] = {}
        self._backend_refs: dict[Address, int] = {}
        self._retired: OrderedDict[Address, None] = OrderedDict()
        self._free_vip_nums = list(range(self.sizes.max_vips - 1, -1, -1))
        self._free_backend_slots = list(range(self.sizes.max_backends - 1, 0, -1))
        self._empty_ring = array.array("I", bytes(4 * self.sizes.ring_size))
        self._disabled: set[Address] = set()
        # Rings built ahead by _prebuild: VIP -> (the target's backends dict, its ring's future).
        self._prebuilt: dict[VipKey, tuple[dict[Address, int], Future[array.array]]] = {}

    # --- VIPs -----------------------------------------------------------------------
    def add_vip(self, key: VipKey, flags: int = 0) -> VipState:
        if key in self.vips:
            raise AlreadyExists(f"VIP {key.address} {key.port}/{key.proto} exists")
        if not self._free_vip_nums:
            raise CapacityError(f"all {self.sizes.max_vips} VIPs are in use")
        addresses_before = self._vip_addresses()
        state = VipState(num=self._free_vip_nums.pop(), flags=VipFlag(flags))
        self.vips[key] = state
        self.dp.write_ring(state.num, self._empty_ring)
        self.dp.set_address_marker(key.address)
        self.dp.write_filter(self._vip_addresses(), addresses_before)
        self.dp.set_vip(key, state.num, int(state.flags))
        return state

    def remove_vip(self, key: VipKey) -> None:
        state = self._vip(key)
        addresses_before = self._vip_addresses()
        # Its flows fall to the port-0 VIP of its address, if there is one: on that VIP's
        # ring they must read the table (which holds their backends) until a settle.
        all_ports = VipKey(key.address, 0, key.proto)
        if key.port and all_ports in self.vips:
            self.unsettle(all_ports)
        self.dp.delete_vip(key)
        del self.vips[key]
        if key.address not in self._vip_addresses():
            self.dp.delete_address_marker(key.address)
        self.dp.write_filter(self._vip_addresses(), addresses_before)
        for address in state.backends:
            self._release_backend(address)
        # Free the number first: nothing maps to it any more, and add_vip clears its ring
        # before reuse, so a failed write here must not lose the number.
        self._free_vip_nums.append(state.num)
        self.dp.write_ring(state.num, self._empty_ring)

    def set_flags(self, key: VipKey, flags: int) -> None:
        state = self._vip(key)
        if state.flags != flags:
            # A hash flag moves flows to other slots: every slot must read the table again
            # (before the program sees the new flags) until a settle finds it free.
            self.unsettle(key)
            state.flags = VipFlag(flags)
            self.dp.set_vip(key, state.num, int(state.flags))

    def _vip(self, key: VipKey) -> VipState:
        try:
            return self.vips[key]
        except KeyError:
            raise NotFound(f"no VIP {key.address} {key.port}/{key.proto}") from None

    def _vip_addresses(self) -> list[Address]:
        return sorted({k.address for k in self.vips}, key=lambda a: (a.version, a))

    # --- backends -------------------------------------------------------------------
    def add_backend(self, key: VipKey, address: Address, weight: int = 1) -> int:
        """Add a backend to a VIP; returns the ring slots written."""
        state = self._vip(key)
        if address in state.backends:
            raise AlreadyExists(f"backend {address} is already in VIP {key.address}")
        self._check_weight(weight)
        self._acquire_backend(address)
        state.backends[address] = weight
        return self._write_ring(state)

    def set_weight(self, key: VipKey, address: Address, weight: int) -> int:
        state = self._vip(key)
        if address not in state.backends:
            raise NotFound(f"no backend {address} in VIP {key.address}")
        self._check_weight(weight)
        state.backends[address] = weight
        return self._write_ring(state)

    def remove_backend(self, key: VipKey, address: Address) -> int:
        """Take a backend out of a VIP's ring; its established flows keep going to it."""
        state = self._vip(key)
        if address not in state.backends:
            raise NotFound(f"no backend {address} in VIP {key.address}")
        del state.backends[address]
        written = self._write_ring(state)
        self._release_backend(address)
        return written

    def set_backends(self, key: VipKey, backends: dict[Address, int]) -> int:
        """Make a VIP's backends exactly `backends` (address -> weight), writing its ring
        once; returns the ring slots written (0 when nothing changed)."""
        state = self._vip(key)
        for weight in backends.values():
            self._check_weight(weight)
        added = _ordered_difference(backends, state.backends)
        removed = _ordered_difference(state.backends, backends)
        self._check_backend_room(added, removed)
        if not added and not removed and backends == state.backends:
            return 0
        # Normally removed backends are released after the ring stops naming them. Only
        # when the pool is full do they go first, so their slots can be recycled.
        release_first = self._new_backends(added) > self._room()
        if release_first:
            for address in removed:
                self._release_backend(address)
        for address in added:
            self._acquire_backend(address)
        state.backends = dict(backends)
        prebuilt = self._prebuilt.pop(key, None)
        written = self._write_ring(state, prebuilt[1].result()
                                   if prebuilt and prebuilt[0] is backends else None)
        if not release_first:
            for address in removed:
                self._release_backend(address)
        return written

    def reconcile(self, target: dict[VipKey, VipTarget],
                  scope: set[VipKey] | None = None) -> ApplyReport:
        """Make the data plane hold exactly `target`; returns what it wrote.

        With `scope`, only those VIPs are looked at (a change to one VIP need not walk
        every other). Capacity is checked first, so a target that cannot fit raises
        CapacityError before anything is written. VIPs are removed before others are
        added, so a target that swaps VIPs at full capacity fits.
        """
        report = ApplyReport()
        keys = set(target) | set(self.vips) if scope is None else scope
        added = [k for k in target if k in keys and k not in self.vips]
        removed = [k for k in self.vips if k in keys and k not in target]
        total = len(self.vips) - len(removed) + len(added)
        if total > self.sizes.max_vips:
            raise CapacityError(f"this would make {total} VIPs; the data plane holds "
                                f"{self.sizes.max_vips} (max_vips)")
        wanted: set[Address] = set()
        for t in target.values():
            wanted.update(t.backends)  # from a dict: its stored hashes, no address hashing
        if scope is None and len(wanted) > self.sizes.max_backends - 1:
            raise CapacityError(f"this would make {len(wanted)} distinct backends; the data "
                                f"plane holds {self.sizes.max_backends - 1} (max_backends - 1)")
        for key in removed:
            self.remove_vip(key)
            report.vips_removed += 1
        for key in added:
            self.add_vip(key, target[key].flags)
            report.vips_added += 1
        # VIPs that free backend slots go before those that need more, so that a target
        # that fits as a whole also fits one VIP at a time.
        order = sorted((k for k in target if k in keys),
                       key=lambda k: self._slot_growth(self.vips[k], target[k].backends))
        builders = self._prebuild({k: target[k].backends for k in order
                                    if target[k].backends != self.vips[k].backends})
        try:
            for key in order:
                report.ring_slots_written += self._reconcile_one(key, target[key],
                                                                 key in added, report)
        finally:
            self._prebuilt.clear()
            if builders is not None:
                builders.shutdown(cancel_futures=True)
        return report

    def _reconcile_one(self, key: VipKey, t: VipTarget, added: bool,
                       report: ApplyReport) -> int:
        state = self.vips[key]
        changed = state.flags != t.flags or set(state.backends) != set(t.backends)
        self.set_flags(key, t.flags)
        written = self.set_backends(key, t.backends)
        if (changed or written) and not added:
            report.vips_changed += 1
        return written

    @classmethod
    def adopt(cls, dataplane: Dataplane) -> Balancer:
        """A Balancer that takes over what a data plane already holds (pinned maps of a
        previous run): its VIP numbers, backend slots and rings, so that flows in the
        connection table keep their backends. Weights are not in the kernel: they read as
        0 until the next reconcile, which rewrites only the ring slots that differ. Every
        ring starts unsettled, until a settle finds its slots free."""
        self = cls(dataplane)
        taken = set()
        for index in range(1, self.sizes.max_backends):
            address, enabled = dataplane.backend_slot(index)
            if address is None or address in self._backend_index:
                continue
            self._backend_index[address] = index
            self._backend_refs[address] = 0
            if not enabled:
                self._disabled.add(address)
            taken.add(index)
        self._free_backend_slots = [i for i in self._free_backend_slots if i not in taken]
        by_index = {i: a for a, i in self._backend_index.items()}
        for key, (num, flags) in dataplane.vips().items():
            if num in self._free_vip_nums:
                self._free_vip_nums.remove(num)
            members = {by_index[i] for i in set(dataplane.read_ring(num)) if i in by_index}
            self.vips[key] = VipState(num=num, flags=VipFlag(flags),
                                      backends=dict.fromkeys(members, 0))
            # Which flows disagree with the slots is known only from a scan: start unsettled.
            dataplane.unsettle(num)
            for address in members:
                self._backend_refs[address] += 1
            dataplane.set_address_marker(key.address)
        for address, refs in self._backend_refs.items():
            if refs == 0:
                self._retired[address] = None
        dataplane.write_filter(self._vip_addresses())
        dataplane.reset_idle_settles()  # counted in another run's settle interval, maybe
        return self

    def _new_backends(self, added: list[Address]) -> int:
        """How many of `added` need a slot (the others already have one)."""
        return sum(1 for a in added if a not in self._backend_index)

    def _room(self) -> int:
        """Slots a new backend can take: free ones and retired ones (recycled)."""
        return len(self._free_backend_slots) + len(self._retired)

    def _freed(self, removed: list[Address]) -> int:
        """How many of `removed` leave their last VIP (their slots become recyclable)."""
        return sum(1 for a in removed if self._backend_refs.get(a) == 1)

    def _slot_growth(self, state: VipState, backends: dict[Address, int]) -> int:
        """Backend slots that making `state` hold `backends` takes (negative: frees)."""
        added = _ordered_difference(backends, state.backends)
        removed = _ordered_difference(state.backends, backends)
        return self._new_backends(added) - self._freed(removed)

    def _check_backend_room(self, added: list[Address], removed: list[Address]) -> None:
        if self._new_backends(added) > self._room() + self._freed(removed):
            raise CapacityError(f"all {self.sizes.max_backends - 1} backend slots are in use")

    def set_backend_enabled(self, address: Address, enabled: bool) -> bool:
        """Enable or disable a backend's slot (a disabled slot takes no packets: ring slots
        naming it drop, connection-table entries re-decide); returns True if it changed."""
        if address not in self._backend_index or (address not in self._disabled) == enabled:
            return False
        self.dp.set_backend(self._backend_index[address], address, enabled)
        if enabled:
            self._disabled.discard(address)
        else:
            self._disabled.add(address)
        return True

    def has_disabled_backends(self) -> bool:
        return bool(self._disabled)

    def in_any_ring(self, address: Address) -> bool:
        return self._backend_refs.get(address, 0) > 0

    def ring_digest(self, key: VipKey) -> str | None:
        """A digest of the VIP's ring as the kernel holds it, by backend address (equal on
        every host whose ring is the same); None for a VIP this balancer does not have."""
        state = self.vips.get(key)
        if state is None:
            return None
        addresses = {i: a for a, i in self._backend_index.items()}
        return ring_digest(self.dp.read_ring(state.num), addresses)

    def backend_index_or_none(self, address: Address) -> int | None:
        return self._backend_index.get(address)

    def backend_index(self, address: Address) -> int:
        return self._backend_index[address]

    @staticmethod
    def _check_weight(weight: int) -> None:
        if not isinstance(weight, int) or isinstance(weight, bool) or weight <= 0:
            raise InvalidInput(f"weight: must be a positive integer, got {weight!r}")

    def _acquire_backend(self, address: Address) -> None:
        if address in self._backend_index:
            self._retired.pop(address, None)
            self._backend_refs[address] += 1
            return
        if self._free_backend_slots:
            index = self._free_backend_slots.pop()
        elif self._retired:
            old, _ = self._retired.popitem(last=False)
            index = self._recycle(old)
        else:
            raise CapacityError(f"all {self.sizes.max_backends - 1} backend slots are in use")
        self._backend_index[address] = index
        self._backend_refs[address] = 1
        self.dp.set_backend(index, address)

    def _release_backend(self, address: Address) -> None:
        self._backend_refs[address] -= 1
        if self._backend_refs[address] == 0:
            self._retired[address] = None

    def _recycle(self, address: Address) -> int:
        index = self._backend_index.pop(address)
        del self._backend_refs[address]
        self._disabled.discard(address)
        self.dp.clear_backend(index)
        self.dp.purge_conn_entries(index)
        return index

    def _write_ring(self, state: VipState, ring: array.array | None = None) -> int:
        """Write the ring of state.backends (`ring`, if built ahead from that very dict)."""
        written = 0
        try:
            if not state.backends:
                written = self.dp.write_ring(state.num, self._empty_ring)
            else:
                ids = array.array("H", [self._backend_index[a] for a in state.backends])
                if ring is None:
                    ring = build_ring([(str(a), w) for a, w in state.backends.items()],
                                      self.sizes.ring_size)
                written = self.dp.write_ring(state.num, ring, ids)
        except BaseException:
            state.unsettled_now()  # some slots may have been rewritten before it failed
            raise
        if written:
            state.unsettled_now()
        return written

    # --- settling -------------------------------------------------------------------
    def unsettle(self, key: VipKey | None = None) -> None:
        """Unsettle every slot of a VIP's ring (of every VIP's, without `key`): its TCP
        packets read the connection table until a settle finds the slots free."""
        for state in [self._vip(key)] if key is not None else self.vips.values():
            self.dp.unsettle(state.num)
            state.unsettled_now()

    def settle_plan(self, grace_s: float = SETTLE_GRACE_S) -> list[SettleVip]:
        """The VIPs of a settle: every TCP VIP, those to settle marked (they may have
        unsettled slots, and their ring has not changed within `grace_s`, so that no packet
        still deciding on a slot's old backend can miss it). Empty: nothing to settle."""
        now = time.monotonic()
        todo = {s.num for s in self.vips.values()
                if s.unsettled and now - s.changed_at >= grace_s}
        if not todo:
            return []
        return [SettleVip(key, s.num, int(s.flags), s.num in todo, s.changed_at)
                for key, s in self.vips.items()]

    def settle_apply(self, scan: SettleScan) -> tuple[int, int]:
        """Settle what `scan` (Dataplane.scan of settle_plan's VIPs) found free, in the
        VIPs whose ring no write changed since the plan. Returns (slots settled, held)."""
        def unchanged(v: SettleVip) -> bool:
            state = self.vips.get(v.key)
            return state is not None and (state.num, state.changed_at) == (v.vip_num, v.stamp)

        settled, left = self.dp.settle_scanned(scan, unchanged)
        for state in self.vips.values():
            if state.num in left:
                state.unsettled = left[state.num] > 0
        return settled, sum(left.values())

    def settle(self, limit: int, grace_s: float = SETTLE_GRACE_S) -> tuple[int, int]:
        """Settle the ring slots of TCP VIPs that no flow idle for fewer than `limit` settles
        holds: settle_plan, Dataplane.scan, settle_apply in one go (the caller holds off
        ring writes). Their non-SYN packets then skip the connection table. Returns (slots
        settled, slots held)."""
        plan = self.settle_plan(grace_s)
        return self.settle_apply(self.dp.scan(plan, limit)) if plan else (0, 0)

    def _prebuild(self, targets: dict[VipKey, dict[Address, int]]) -> ThreadPoolExecutor | None:
        """Start building the rings of many VIPs, in `targets`' order, on every CPU (the
        fill loop runs without the GIL); set_backends waits for each VIP's ring when it
        gets to it, so writing the first rings overlaps building the later ones. A reconcile
        of 512 VIPs gains the most. A ring's slots name positions in its backends dict, whose
        order set_backends keeps; VIPs whose dicts are equal, order included, share one ring
        (it is only read). Returns the builders, for the caller to shut down (None: none)."""
        wanted = {k: b for k, b in targets.items() if b}
        if len(wanted) < 2:
            return None
        # Distinct pools, grouped by the hash of their address set (a frozenset made from a
        # dict reuses the dict's stored hashes: an address's own hash is Python code), then
        # compared by items, order included, within a group.
        pools: list[dict[Address, int]] = []
        by_hash: dict[int, list[int]] = {}
        which: dict[VipKey, int] = {}
        for key, backends in wanted.items():
            same = by_hash.setdefault(hash(frozenset(backends)), [])
            found = next((i for i in same if pools[i] == backends
                          and list(pools[i]) == list(backends)), None)
            if found is None:
                found = len(pools)
                pools.append(backends)
                same.append(found)
            which[key] = found

        def build(backends: dict[Address, int]) -> array.array:
            return build_ring([(str(a), w) for a, w in backends.items()], self.sizes.ring_size)

        builders = ThreadPoolExecutor(max_workers=min(len(pools), os.cpu_count() or 1))
        rings = [builders.submit(build, b) for b in pools]
        self._prebuilt.update({k: (b, rings[which[k]]) for k, b in wanted.items()})
        return builders
