"""The controller: every change of desired state, validated, persisted and applied as one unit.

A change runs under one lock (no two changes interleave their map writes), inside one
database transaction: rows are written, the data plane is updated, then the transaction
commits and only then does the caller answer 2xx. If applying fails, the transaction rolls
back and the data plane is put back to the previous state, so a rejected change changes
nothing anywhere. If the process dies mid-change, the database still holds the previous
state (or the new one, if the commit happened) and the next start reconciles the kernel to it.
"""

from __future__ import annotations

import collections
import threading
from collections.abc import Callable, Iterable

from lb.control.model import (
    Address,
    ApplyReport,
    BackendSpec,
    ConfigDocument,
    Vip,
    VipConfig,
    VipSpec,
    check_backend_family,
)
from lb.control.service import AlreadyExists, Balancer, InvalidInput, NotFound, VipTarget
from lb.control.store import Store, Transaction
from lb.xdp.consts import Counter
from lb.xdp.maps import VipKey


def _target(vip: VipConfig) -> VipTarget:
    return VipTarget(vip.flag_bits, {b.address: b.weight for b in vip.backends})


def _with(vip: Vip, **changes: object) -> Vip:
    """A copy of `vip` with fields replaced (values already validated by the caller)."""
    return vip.model_copy(update=changes)


class Controller:
    """Desired state in memory (as committed), the store it is persisted in, the balancer
    that mirrors it into the kernel, and the lock that serialises changes."""

    def __init__(self, store: Store, balancer: Balancer) -> None:
        self.store = store
        self.balancer = balancer
        self.lock = threading.RLock()
        self.vips: dict[int, Vip] = store.load()
        self._next_position = store.next_position()

    def reconcile(self) -> ApplyReport:
        """Make the kernel hold the committed state (at start: after adopting pinned maps)."""
        with self.lock:
            return self.balancer.reconcile(self._targets(self.vips))

    # --- reads ----------------------------------------------------------------------
    def list_vips(self) -> list[Vip]:
        with self.lock:
            return list(self.vips.values())

    def get_vip(self, vip_id: int) -> Vip:
        with self.lock:
            try:
                return self.vips[vip_id]
            except KeyError:
                raise NotFound(f"no VIP with id {vip_id}") from None

    def export(self) -> ConfigDocument:
        with self.lock:
            return ConfigDocument(vips=[VipConfig(**v.model_dump(exclude={"id"}))
                                        for v in self.vips.values()])

    # --- changes --------------------------------------------------------------------
    def create_vip(self, spec: VipSpec) -> Vip:
        with self.lock:
            if any(v.key == spec.key for v in self.vips.values()):
                raise AlreadyExists(f"VIP {spec.describe()} exists")
            created: list[Vip] = []

            def write(tx: Transaction) -> dict[int, Vip]:
                vip_id = tx.insert_vip(spec)
                created.append(Vip(id=vip_id, **spec.model_dump()))
                return {**self.vips, vip_id: created[0]}

            self._change(write, [spec.key])
            return created[0]

    def delete_vip(self, vip_id: int) -> None:
        with self.lock:
            vip = self.get_vip(vip_id)

            def write(tx: Transaction) -> dict[int, Vip]:
                tx.delete_vip(vip_id)
                return {i: v for i, v in self.vips.items() if i != vip_id}

            self._change(write, [vip.key])

    def set_flags(self, vip_id: int, flags: list[str]) -> Vip:
        with self.lock:
            vip = self.get_vip(vip_id)
            new = _with(vip, flags=VipSpec(address=vip.address, port=vip.port,
                                           protocol=vip.protocol, flags=flags).flags)

            def write(tx: Transaction) -> dict[int, Vip]:
                tx.set_flags(vip_id, new.flags)
                return {**self.vips, vip_id: new}

            self._change(write, [vip.key])
            return new

    def add_backend(self, vip_id: int, backend: BackendSpec) -> BackendSpec:
        with self.lock:
            vip = self.get_vip(vip_id)
            if any(b.address == backend.address for b in vip.backends):
                raise AlreadyExists(f"backend {backend.address} is already in VIP {vip_id}")
            try:
                check_backend_family(vip.address, backend.address)
            except ValueError as e:
                raise InvalidInput(f"address: {e}") from None
            new = _with(vip, backends=[*vip.backends, backend])

            def write(tx: Transaction) -> dict[int, Vip]:
                tx.put_backend(vip_id, backend, self._next_position)
                return {**self.vips, vip_id: new}

            self._change(write, [vip.key])
            self._next_position += 1
            return backend

    def set_weight(self, vip_id: int, address: Address, weight: int) -> BackendSpec:
        with self.lock:
            vip = self.get_vip(vip_id)
            self._backend(vip, address)
            updated = BackendSpec(address=address, weight=weight)
            new = _with(vip, backends=[updated if b.address == address else b
                                       for b in vip.backends])

            def write(tx: Transaction) -> dict[int, Vip]:
                tx.put_backend(vip_id, updated, 0)
                return {**self.vips, vip_id: new}

            self._change(write, [vip.key])
            return updated

    def remove_backend(self, vip_id: int, address: Address) -> None:
        with self.lock:
            vip = self.get_vip(vip_id)
            self._backend(vip, address)
            new = _with(vip, backends=[b for b in vip.backends if b.address != address])

            def write(tx: Transaction) -> dict[int, Vip]:
                tx.delete_backend(vip_id, address)
                return {**self.vips, vip_id: new}

            self._change(write, [vip.key])

    def replace(self, document: ConfigDocument) -> ApplyReport:
        """Make the desired state exactly `document` (PUT /config): VIPs are matched by
        (address, port, protocol) and keep their ids; the same document twice changes
        nothing."""
        with self.lock:
            by_key = {v.key: v for v in self.vips.values()}
            wanted = {c.key: c for c in document.vips}

            def write(tx: Transaction) -> dict[int, Vip]:
                new: dict[int, Vip] = {}
                for key, old in by_key.items():
                    if key not in wanted:
                        tx.delete_vip(old.id)
                for config in document.vips:
                    old = by_key.get(config.key)
                    if old is None:
                        vip_id = tx.insert_vip(config.spec())
                    else:
                        vip_id = old.id
                        if old.flags != config.flags:
                            tx.set_flags(vip_id, config.flags)
                    self._write_backends(tx, vip_id, old.backends if old else [],
                                         config.backends)
                    new[vip_id] = Vip(id=vip_id, **config.model_dump())
                return dict(sorted(new.items()))

            return self._change(write, None)

    # --- internals ------------------------------------------------------------------
    def _write_backends(self, tx: Transaction, vip_id: int, old: list[BackendSpec],
                        new: list[BackendSpec]) -> None:
        """Rows for a VIP's backends going from `old` to `new`, stored in `new`'s order (what
        GET /config answered before a restart, it answers after)."""
        before = {b.address: b.weight for b in old}
        after = {b.address for b in new}
        # Kept rows keep their positions and added ones go last: if that is not `new`'s
        # order, every row is written again with fresh positions.
        stored = [*(a for a in before if a in after),
                  *(b.address for b in new if b.address not in before)]
        reordered = stored != [b.address for b in new]
        for address in before:
            if address not in after or reordered:
                tx.delete_backend(vip_id, address)
        for backend in new:
            if reordered or before.get(backend.address) != backend.weight:
                tx.put_backend(vip_id, backend, self._next_position)
                self._next_position += 1

    @staticmethod
    def _backend(vip: Vip, address: Address) -> BackendSpec:
        for b in vip.backends:
            if b.address == address:
                return b
        raise NotFound(f"no backend {address} in VIP {vip.id}")

    @staticmethod
    def _targets(vips: dict[int, Vip], scope: set[VipKey] | None = None
                 ) -> dict[VipKey, VipTarget]:
        return {v.key: _target(v) for v in vips.values() if scope is None or v.key in scope}

    def _change(self, write: Callable[[Transaction], dict[int, Vip]],
                keys: Iterable[VipKey] | None) -> ApplyReport:
        """Write rows, apply to the kernel, commit; on failure roll both back."""
        with self.store.transaction() as tx:
            new = write(tx)
            scope = None if keys is None else set(keys)
            try:
                report = self.balancer.reconcile(self._targets(new, scope), scope)
            except BaseException:
                # Put the kernel back to the committed state; the transaction rolls back.
                self.balancer.reconcile(self._targets(self.vips, scope), scope)
                raise
        self.vips = new
        return report

    # --- observed state -------------------------------------------------------------
    def stats(self) -> dict[str, dict[str, int]]:
        """Global counters grouped: totals, connection table, pass and drop reasons."""
        c = self.balancer.dp.counters()
        groups: dict[str, dict[str, int]] = {"totals": {}, "conn_table": {},
                                              "pass_reasons": {}, "drop_reasons": {}}
        for counter in Counter:
            name = counter.name.lower()
            if name.startswith("ct_"):
                groups["conn_table"][name[3:]] = c[name]
            elif name.startswith("pass_"):
                groups["pass_reasons"][name[5:]] = c[name]
            elif name.startswith("drop_"):
                groups["drop_reasons"][name[5:]] = c[name]
            else:
                groups["totals"][name] = c[name]
        return groups

    def vip_stats(self, vip_id: int) -> dict[str, object]:
        """Packets and bytes sent for a VIP and to each of its backends (a backend's counters
        cover every VIP it serves), with each backend's ring slots."""
        with self.lock:
            vip = self.get_vip(vip_id)
            dp = self.balancer.dp
            num = self.balancer.vips[vip.key].num
            packets, nbytes = dp.vip_stats(num)
            slots = collections.Counter(dp.read_ring(num))
            backends = []
            for b in vip.backends:
                index = self.balancer.backend_index(b.address)
                bp, bb = dp.backend_stats(index)
                backends.append({"address": str(b.address), "weight": b.weight,
                                 "ring_slots": slots[index], "packets": bp, "bytes": bb})
            return {"id": vip_id, "packets": packets, "bytes": nbytes,
                    "ring_size": self.balancer.sizes.ring_size, "backends": backends}
