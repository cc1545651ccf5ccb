"""The controller: every change of desired state, validated, persisted and applied as one unit.

A change runs under one lock (no two changes interleave their map writes), inside one
database transaction: rows are written, the data plane is updated, then the transaction
commits and only then does the caller answer 2xx. If applying fails, the transaction rolls
back and the data plane is put back to the previous state, so a rejected change changes
nothing anywhere. If the process dies mid-change, the database still holds the previous
state (or the new one, if the commit happened) and the next start reconciles the kernel to it.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Iterable

from lb.control import metrics, observed
from lb.control.errors import AlreadyExists, CapacityError, InvalidInput, NotFound
from lb.control.events import ACTOR, EventLog
from lb.control.fleet import Fleet, HostReport, target_key
from lb.control.health import Health, Monitor, ProbeKey, State, Target
from lb.control.model import (
    Address,
    ApplyReport,
    BackendSpec,
    BackendUpdate,
    ConfigDocument,
    Vip,
    VipConfig,
    VipSpec,
    VipUpdate,
    VipView,
)
from lb.control.service import Balancer, VipTarget
from lb.control.settler import Settler
from lb.control.store import RowWriter as Transaction
from lb.control.store import StateStore
from lb.xdp.types import Flow, VipKey

log = logging.getLogger("lb.controller")

# Slow start moves weights on wall-clock boundaries this far apart (seconds): every host of a
# fleet that starts a ramp at the same boundary writes the same weights at the same step.
RAMP_STEP_S = 1.0


def ramp_start(now: float) -> float:
    """The step boundary a ramp begun at wall-clock `now` starts from (the next one)."""
    return math.ceil(now / RAMP_STEP_S) * RAMP_STEP_S


def _with(vip: Vip, **changes: object) -> Vip:
    """A copy of `vip` with fields replaced (values already validated by the caller)."""
    return vip.model_copy(update=changes)


class Controller:
    """Desired state in memory (as committed), the store it is persisted in, the balancer
    that mirrors it into the kernel, and the lock that serialises changes."""

    def __init__(self, store: StateStore, balancer: Balancer, settle_interval_s: float = 0.0,
                 tcp_idle_timeout_s: float = 900.0) -> None:
        self.store = store
        self.balancer = balancer
        self.lock = threading.RLock()
        self.vips: dict[int, Vip] = store.load()
        self.revision = store.revision  # of the committed state the kernel holds
        # Backend address -> ids of the VIPs that have it (None: to be rebuilt when needed).
        self._users: dict[Address, set[int]] | None = self._index_users(self.vips)
        self._next_position = store.next_position()
        self.monitor: Monitor | None = None
        # The fleet this host is one of (None: a single host); with fleet_health "fleet",
        # rings use the fleet's verdicts instead of this host's own.
        self.fleet: Fleet | None = None
        self.fleet_health = "local"
        self._digests: dict[int, str] = {}  # VIP id -> ring digest, kept while in a fleet
        self._any_checks = False  # some VIP has a health check (set by _sync_checks)
        # Slow start: when each ramping (VIP, backend) began; ramps end after slow_start_s.
        self._ramps: dict[Target, float] = {}
        self._ticker: threading.Thread | None = None
        self._stopping = threading.Event()
        # Settling ring slots every settle_interval_s once start_settling runs (0: never).
        self.settler = Settler(balancer, self.lock, settle_interval_s, tcp_idle_timeout_s,
                               self._stopping)
        # Checked backends that the adopted kernel state had out of their VIP's ring: until
        # their first verdict they stay out (a restart must not send flows to a dead backend).
        self._found_out: set[Target] = set()
        # Runs a flow's packet through the program for traces (None: traces say no verdict).
        self.simulator: observed.FlowSimulator | None = None
        # Changes, health transitions, ring rebuilds, starts and reconciles (GET /events).
        self.events = EventLog()
        for v in self.vips.values():
            adopted = balancer.vips.get(v.key)
            if v.check is None or adopted is None or not adopted.backends:
                continue
            self._found_out |= {(v.id, b.address) for b in v.backends
                                if not b.drain and b.address not in adopted.backends}

    def reconcile(self) -> ApplyReport:
        """Make the kernel hold the committed state (at start: after adopting pinned maps)."""
        with self.lock:
            report = self.balancer.reconcile(self._targets(self.vips))
            self.events.emit("reconcile", revision=self.revision, vips=len(self.vips),
                             **report.model_dump())
            self._rebuilt(report, "reconcile")
            return report

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

    def update_vip(self, vip_id: int, update: VipUpdate) -> Vip:
        """Replace the settings `update` gives (flags, check, all_down, slow_start_s)."""
        with self.lock:
            vip = self.get_vip(vip_id)
            fields = {k: getattr(update, k) for k in update.model_fields_set}
            try:
                new = Vip.model_validate({**vip.model_dump(), **fields})
            except ValueError as e:
                raise InvalidInput(str(e)) from None

            def write(tx: Transaction) -> dict[int, Vip]:
                tx.set_settings(vip_id, new.settings())
                return {**self.vips, vip_id: new}

            self._change(write, [vip.key])
            return new

    def set_flags(self, vip_id: int, flags: list[str]) -> Vip:
        return self.update_vip(vip_id, VipUpdate(flags=flags))

    def add_backend(self, vip_id: int, backend: BackendSpec) -> BackendSpec:
        with self.lock:
            vip = self.get_vip(vip_id)
            if any(b.address == backend.address for b in vip.backends):
                raise AlreadyExists(f"backend {backend.address} is already in VIP {vip_id}")
            new = _with(vip, backends=[*vip.backends, backend])

            def write(tx: Transaction) -> dict[int, Vip]:
                tx.put_backend(vip_id, backend, self._next_position)
                return {**self.vips, vip_id: new}

            self._change(write, [vip.key])
            self._next_position += 1
            return backend

    def update_backend(self, vip_id: int, address: Address,
                       update: BackendUpdate) -> BackendSpec:
        """Change a backend's weight and/or drain switch."""
        with self.lock:
            vip = self.get_vip(vip_id)
            old = self._backend(vip, address)
            updated = BackendSpec(
                address=address, weight=old.weight if update.weight is None else update.weight,
                drain=old.drain if update.drain is None else update.drain)
            new = _with(vip, backends=[updated if b.address == address else b
                                       for b in vip.backends])

            def write(tx: Transaction) -> dict[int, Vip]:
                tx.put_backend(vip_id, updated, 0)
                return {**self.vips, vip_id: new}

            self._change(write, [vip.key])
            return updated

    def set_weight(self, vip_id: int, address: Address, weight: int) -> BackendSpec:
        return self.update_backend(vip_id, address, BackendUpdate(weight=weight))

    def remove_backend(self, vip_id: int, address: Address) -> None:
        with self.lock:
            vip = self.get_vip(vip_id)
            self._backend(vip, address)
            new = _with(vip, backends=[b for b in vip.backends if b.address != address])

            def write(tx: Transaction) -> dict[int, Vip]:
                tx.delete_backend(vip_id, address)
                return {**self.vips, vip_id: new}

            self._change(write, [vip.key])

    def update_backend_everywhere(self, address: Address, update: BackendUpdate) -> list[int]:
        """Change a backend in every VIP that has it (one transaction); returns the VIP ids."""
        return self._everywhere(address, lambda b: BackendSpec(
            address=address, weight=b.weight if update.weight is None else update.weight,
            drain=b.drain if update.drain is None else update.drain))

    def remove_backend_everywhere(self, address: Address) -> list[int]:
        """Take a backend out of every VIP that has it (one transaction); returns the VIP ids."""
        return self._everywhere(address, lambda b: None)

    def _everywhere(self, address: Address,
                    change: Callable[[BackendSpec], BackendSpec | None]) -> list[int]:
        with self.lock:
            touched = [v for v in self.vips.values()
                       if any(b.address == address for b in v.backends)]
            if not touched:
                raise NotFound(f"no VIP has backend {address}")
            updated: dict[int, Vip] = {}
            for v in touched:
                backends = []
                for b in v.backends:
                    nb = change(b) if b.address == address else b
                    if nb is not None:
                        backends.append(nb)
                updated[v.id] = _with(v, backends=backends)

            def write(tx: Transaction) -> dict[int, Vip]:
                for v in touched:
                    new_b = next((b for b in updated[v.id].backends if b.address == address),
                                 None)
                    if new_b is None:
                        tx.delete_backend(v.id, address)
                    else:
                        tx.put_backend(v.id, new_b, 0)
                return {**self.vips, **updated}

            self._change(write, [v.key for v in touched])
            return [v.id for v in touched]

    def replace(self, document: ConfigDocument) -> ApplyReport:
        """Make the desired state exactly `document` (PUT /config): VIPs are matched by
        (address, port, protocol) and keep their ids; the same document twice changes
        nothing."""
        # Capacity first: a document that cannot fit writes no row and builds no ring.
        sizes = self.balancer.sizes
        if len(document.vips) > sizes.max_vips:
            raise CapacityError(f"the document has {len(document.vips)} VIPs; the data plane "
                                f"holds {sizes.max_vips} (max_vips)")
        addresses = {b.address for c in document.vips for b in c.backends}
        if len(addresses) > sizes.max_backends - 1:
            raise CapacityError(f"the document has {len(addresses)} distinct backends; the "
                                f"data plane holds {sizes.max_backends - 1} (max_backends - 1)")
        with self.lock:
            by_key = {v.key: v for v in self.vips.values()}
            wanted = {c.key: c for c in document.vips}

            def write(tx: Transaction) -> dict[int, Vip]:
                new: dict[int, Vip] = {}
                for key, stale in by_key.items():
                    if key not in wanted:
                        tx.delete_vip(stale.id)
                for config in document.vips:
                    old = by_key.get(config.key)
                    if old is None:
                        vip_id = tx.insert_vip(config.spec())
                    else:
                        vip_id = old.id
                        if old.settings() != config.settings():
                            tx.set_settings(vip_id, config.settings())
                    self._write_backends(tx, vip_id, old.backends if old else [],
                                         config.backends)
                    # Already validated as part of `document`: no second validation.
                    new[vip_id] = Vip.model_construct(id=vip_id, **dict(config))
                return dict(sorted(new.items()))

            return self._change(write, None)

    # --- internals ------------------------------------------------------------------
    def _write_backends(self, tx: Transaction, vip_id: int, old: list[BackendSpec],
                        new: list[BackendSpec]) -> None:
        """Rows for a VIP's backends going from `old` to `new`, stored in `new`'s order (what
        GET /config answered before a restart, it answers after)."""
        before = {b.address: b for b in old}
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
            if reordered or before.get(backend.address) != backend:
                tx.put_backend(vip_id, backend, self._next_position)
                self._next_position += 1

    @staticmethod
    def _backend(vip: Vip, address: Address) -> BackendSpec:
        for b in vip.backends:
            if b.address == address:
                return b
        raise NotFound(f"no backend {address} in VIP {vip.id}")

    def _targets(self, vips: dict[int, Vip], scope: set[VipKey] | None = None
                 ) -> dict[VipKey, VipTarget]:
        return {v.key: self._target(v) for v in vips.values()
                if scope is None or v.key in scope}

    def _state(self, vip_id: int, address: Address) -> State:
        """A backend's health; before its first verdict, UNKNOWN (counts as up), or DOWN if
        the kernel had it out of the ring when this daemon started."""
        if self.fleet is not None and self.fleet_health == "fleet":
            verdict = self.fleet.verdict(target_key(vip_id, address))
            if verdict != State.UNKNOWN:
                return verdict
        else:
            health = self.monitor.health((vip_id, address)) if self.monitor else None
            if health is not None and health.state != State.UNKNOWN:
                return health.state
        return State.DOWN if (vip_id, address) in self._found_out else State.UNKNOWN

    def _target(self, vip: Vip) -> VipTarget:
        """What the kernel should hold for `vip`: its backends that are neither draining nor
        down (unknown counts as up), at their weights (ramped during slow start). When every
        backend not draining is down, `all_down` decides: keep the ring as it is (less the
        backends no longer configured or draining; if none is left, every backend not
        draining), or empty it."""
        serving = [b for b in vip.backends if not b.drain]
        if vip.check is None and vip.slow_start_s <= 0:  # nothing observed: as configured
            return VipTarget(vip.flag_bits, {b.address: b.weight for b in serving})
        up = {b.address: self._ramped(vip, b) for b in serving
              if self._state(vip.id, b.address) != State.DOWN}
        if serving and not up and vip.all_down == "keep_last_ring":
            current = self.balancer.vips.get(vip.key)
            last = current.backends if current is not None else {}
            up = {b.address: b.weight for b in serving if b.address in last} or \
                {b.address: b.weight for b in serving}
        return VipTarget(vip.flag_bits, up)

    def _ramped(self, vip: Vip, backend: BackendSpec) -> int:
        started = self._ramps.get((vip.id, backend.address))
        if started is None or vip.slow_start_s <= 0:
            return backend.weight
        # On the last wall-clock step boundary: hosts that agree on the start agree on the
        # weight, whenever within the step each of them computes it.
        now = math.floor(time.time() / RAMP_STEP_S) * RAMP_STEP_S
        fraction = max(0.0, now - started) / vip.slow_start_s
        if fraction >= 1:
            return backend.weight
        return max(1, math.ceil(backend.weight * fraction))

    def _change(self, write: Callable[[Transaction], dict[int, Vip]],
                keys: Iterable[VipKey] | None) -> ApplyReport:
        """Write rows, apply to the kernel, commit; on failure roll both back (a commit the
        store refuses, e.g. a full disk or another host's change first, included)."""
        scope = None if keys is None else set(keys)
        kernel_touched = False
        try:
            with self.store.transaction() as tx:
                new = write(tx)
                self._start_ramps(self.vips, new, tx)
                kernel_touched = True
                report = self.balancer.reconcile(self._targets(new, scope), scope)
        except BaseException:
            if kernel_touched:
                # Put the kernel back to the committed state; the store rolled back.
                self.balancer.reconcile(self._targets(self.vips, scope), scope)
            raise
        self.revision = self.store.revision
        before = self.vips
        touched = self._commit_vips(new)
        if self._sync_checks():
            # A backend that joined a probe already running (another VIP checks it the same
            # way) takes that probe's verdict now, not at its next change of state.
            report.add(self.balancer.reconcile(self._targets(new, scope), scope))
        self.events.emit("change", revision=self.revision, who=ACTOR.get(),
                         vips_added=sorted(new.keys() - before.keys()),
                         vips_removed=sorted(before.keys() - new.keys()),
                         vips_changed=sorted(i for i in new.keys() & before.keys()
                                             if new[i] != before[i]),
                         ring_slots_written=report.ring_slots_written)
        self._count(report, "change")
        self._sync_slots(touched)
        self._publish(None if scope is None else
                      [v.id for v in new.values() if v.key in scope])
        return report

    @staticmethod
    def _index_users(vips: dict[int, Vip]) -> dict[Address, set[int]]:
        users: dict[Address, set[int]] = {}
        for v in vips.values():
            for b in v.backends:
                users.setdefault(b.address, set()).add(v.id)
        return users

    def _commit_vips(self, new: dict[int, Vip]) -> set[Address]:
        """Make `new` the committed state and keep the backend -> VIPs index in step;
        returns the backend addresses of the VIPs that changed."""
        if not self._any_checks and not self.balancer.has_disabled_backends():
            # Nothing reads the index until a health check exists: rebuild it then.
            self.vips, self._users = new, None
            return set()
        if self._users is None:
            self._users = self._index_users(self.vips)
        touched: set[Address] = set()
        for vip_id in self.vips.keys() | new.keys():
            old, now = self.vips.get(vip_id), new.get(vip_id)
            if old is now:
                continue
            for b in old.backends if old else ():
                touched.add(b.address)
                self._users[b.address].discard(vip_id)
            for b in now.backends if now else ():
                touched.add(b.address)
                self._users.setdefault(b.address, set()).add(vip_id)
        for address in touched:
            if not self._users.get(address):
                self._users.pop(address, None)
        self.vips = new
        return touched

    def _count(self, report: ApplyReport, cause: str) -> None:
        if report.ring_slots_written:
            metrics.RING_SLOTS_WRITTEN.inc(report.ring_slots_written)
        metrics.RING_REBUILDS.inc(report.vips_changed + report.vips_added)
        self._rebuilt(report, cause)

    def _rebuilt(self, report: ApplyReport, cause: str) -> None:
        """One ring_rebuild event when `report` wrote ring slots (`cause`: what asked)."""
        if report.ring_slots_written:
            self.events.emit("ring_rebuild", cause=cause, revision=self.revision,
                             vips=report.vips_changed + report.vips_added,
                             ring_slots_written=report.ring_slots_written)

    # --- health ---------------------------------------------------------------------
    def attach_monitor(self, monitor: Monitor) -> None:
        """Start health-checking (the daemon does; without a monitor every backend is up)."""
        with self.lock:
            self.monitor = monitor
            self._sync_checks()
        self._ticker = threading.Thread(target=self._tick, name="lb-slow-start", daemon=True)
        self._ticker.start()

    def close(self) -> None:
        self._stopping.set()
        if self.monitor is not None:
            self.monitor.close()

    def _sync_checks(self) -> bool:
        """Make the monitor check what the VIPs ask for; True if a backend joined a probe
        that already has a verdict (its VIP's ring must take it now)."""
        if self.monitor is None:
            return False
        wanted: dict[Target, ProbeKey] = {}
        self._any_checks = False
        for v in self.vips.values():
            if v.check is None or v.check.type == "none":
                continue
            self._any_checks = True
            for b in v.backends:
                wanted[(v.id, b.address)] = ProbeKey(b.address, v.check_port, v.check)
        return bool(self.monitor.sync(wanted))

    def _sync_slots(self, addresses: Iterable[Address]) -> None:
        """A backend that is down wherever it is checked, and in no ring, gets its slot
        disabled: its connection-table entries re-decide. Any other backend's is enabled."""
        if not self._any_checks and not self.balancer.has_disabled_backends():
            return  # no health checks: every slot stays enabled
        if self._users is None:
            self._users = self._index_users(self.vips)
        for address in addresses:
            targets = [(vip_id, address) for vip_id in self._users.get(address, ())]
            down = bool(targets) and all(self._state(*t) == State.DOWN for t in targets)
            self.balancer.set_backend_enabled(
                address, not (down and not self.balancer.in_any_ring(address)))

    def on_health(self, targets: list[Target], state: State, health: Health) -> None:
        """A probe's verdict changed (called by the Monitor): re-decide the affected rings
        (in a fleet on fleet verdicts: publish it, the rings follow the fleet's verdict).
        Health is observed state: nothing is written to the database."""
        metrics.HEALTH_TRANSITIONS.labels(str(state)).inc()
        self.events.emit("health", state=str(state),
                         backends=sorted({str(a) for _, a in targets}),
                         vips=sorted({i for i, _ in targets}),
                         reason=health.last_reason)
        if self.fleet is not None:
            self.fleet.report(health=self.local_verdicts())
            if self.fleet_health == "fleet":
                return
        with self.lock:
            self._found_out.difference_update(targets)
            vips = [self.vips[i] for i, _ in targets if i in self.vips]
            if state == State.UP and health.transitions > 1:  # back from down
                for v in vips:
                    if v.slow_start_s > 0:
                        self._ramps[(v.id, targets[0][1])] = ramp_start(time.time())
            keys = {v.key for v in vips}
            report = self.balancer.reconcile(self._targets(self.vips, keys), keys)
            self._count(report, "health")
            self._sync_slots({a for _, a in targets})
            log.info("health event=applied state=%s backend=%s vips=%s ring_slots_written=%d",
                     state, targets[0][1] if targets else "-",
                     ",".join(str(v.id) for v in vips), report.ring_slots_written)

    def _start_ramps(self, before: dict[int, Vip], after: dict[int, Vip],
                     source: Transaction | StateStore) -> None:
        """Backends added to a VIP with slow start ramp up from the step boundary after they
        were added: as committed, where the store keeps it (a fleet), else from now."""
        now = time.time()
        for v in after.values():
            if v.slow_start_s <= 0:
                continue
            old = {b.address for b in before[v.id].backends} if v.id in before else set()
            for b in v.backends:
                if b.address not in old:
                    added = source.added_at(v.id, b.address)
                    self._ramps[(v.id, b.address)] = ramp_start(now if added is None else added)

    def start_settling(self) -> None:
        """Settle ring slots every settle_interval_s on a thread of its own until close() (the
        daemon starts it once the program is attached); nothing when the interval is 0."""
        self.settler.start()

    def _tick(self) -> None:
        """Re-apply ramping VIPs' weights about ten times per slow start; end finished ramps."""
        while not self._stopping.wait(RAMP_STEP_S / 2 - time.time() % (RAMP_STEP_S / 2) + 0.01):
            with self.lock:
                now = time.time()
                keys = set()
                for (vip_id, address), started in list(self._ramps.items()):
                    vip = self.vips.get(vip_id)
                    if vip is None or now - started >= vip.slow_start_s:
                        del self._ramps[(vip_id, address)]
                    if vip is not None:
                        keys.add(vip.key)
                if keys:
                    self._count(self.balancer.reconcile(self._targets(self.vips, keys), keys),
                                "slow_start")
                    self._publish([v.id for v in self.vips.values() if v.key in keys])

    # --- the fleet (lb.control.fleet) ----------------------------------------------
    def attach_fleet(self, fleet: Fleet, fleet_health: str = "fleet") -> None:
        """Be one host of `fleet`: publish this host's revision, rings and verdicts, and (with
        fleet_health "fleet") build rings from the fleet's verdicts."""
        with self.lock:
            self.fleet, self.fleet_health = fleet, fleet_health
            self._publish(None)
            fleet.report(health=self.local_verdicts())

    def local_verdicts(self) -> dict[str, State]:
        """This host's own verdict on every checked (VIP, backend), by fleet target key."""
        if self.monitor is None:
            return {}
        out = {}
        with self.lock:
            for v in self.vips.values():
                if v.check is None or v.check.type == "none":
                    continue
                for b in v.backends:
                    health = self.monitor.health((v.id, b.address))
                    out[target_key(v.id, b.address)] = health.state if health else State.UNKNOWN
        return out

    def ring_digests(self) -> dict[int, str]:
        """Every VIP's ring digest as the kernel holds it (Balancer.ring_digest), as last
        published; computed afresh for every VIP when no fleet keeps them current."""
        with self.lock:
            if self.fleet is None:
                self._refresh_digests(None)
            return dict(self._digests)

    def _refresh_digests(self, vip_ids: Iterable[int] | None) -> None:
        """Recompute the digests of `vip_ids` (None: all) and forget VIPs that are gone."""
        ids = list(self.vips) if vip_ids is None else [i for i in vip_ids if i in self.vips]
        for i in ids:
            digest = self.balancer.ring_digest(self.vips[i].key)
            if digest is not None:
                self._digests[i] = digest
        for i in self._digests.keys() - self.vips.keys():
            del self._digests[i]

    def _publish(self, vip_ids: Iterable[int] | None) -> None:
        """Tell the fleet this host's revision and the rings of `vip_ids` (None: all)."""
        if self.fleet is None:
            return
        self._refresh_digests(vip_ids)
        self.fleet.report(revision=self.revision, rings=self._digests)

    def fleet_view(self) -> dict[str, object]:
        """Every live host's report (this host's as it is now) and the VIPs whose rings the
        hosts disagree on; a single host reports itself alone."""
        with self.lock:
            me = HostReport(self.fleet.name if self.fleet else "local", self.revision,
                            self.ring_digests(), {k: str(v) for k, v in
                                                  self.local_verdicts().items()})
            hosts = [h for h in (self.fleet.view() if self.fleet else []) if h.name != me.name]
            if self.fleet is not None:
                me.started_at = self.fleet.me.started_at
                me.updated_at = self.fleet.me.updated_at
        every = sorted([me, *hosts], key=lambda h: h.name)
        ids = {i for h in every for i in h.rings}
        disagree = sorted(i for i in ids if len({h.rings.get(i) for h in every}) > 1)
        return {"host": me.name, "store": "etcd" if self.fleet else "sqlite",
                "hosts": [vars(h) for h in every],
                "agreed": not disagree and len({h.revision for h in every}) == 1,
                "disagreeing_vips": disagree}

    def apply_committed(self, revision: int, vips: dict[int, Vip]) -> ApplyReport:
        """A committed state seen by the store's watch (another host's change, or the fleet's
        state after etcd came back): make it this host's, writing only slots that differ."""
        with self.lock:
            if revision <= self.revision:
                # Already held: this host's own change, or a state the watch read before a
                # later change of this host committed (applying it would undo that change).
                return ApplyReport()
            changed = [i for i in self.vips.keys() | vips.keys()
                       if self.vips.get(i) != vips.get(i)]
            self._start_ramps(self.vips, vips, self.store)
            report = self.balancer.reconcile(self._targets(vips))
            touched = self._commit_vips(vips)
            if self._sync_checks():
                report.add(self.balancer.reconcile(self._targets(vips)))
            self.events.emit("change", revision=revision, who="fleet", vips_changed=changed,
                             ring_slots_written=report.ring_slots_written)
            self._count(report, "fleet")
            self._sync_slots(touched)
            self.revision = revision
            self._publish(changed)
            if self.fleet is not None:
                self.fleet.report(health=self.local_verdicts())
        log.info("fleet event=applied revision=%d vips=%d ring_slots_written=%d", revision,
                 len(vips), report.ring_slots_written)
        return report

    def on_fleet_verdicts(self, changed: set[str]) -> None:
        """The fleet's verdict on some (VIP, backend) changed: re-decide those VIPs' rings."""
        if self.fleet_health != "fleet":
            return
        with self.lock:
            ids = {int(k.split("/", 1)[0]) for k in changed}
            keys = {self.vips[i].key for i in ids if i in self.vips}
            if not keys:
                return
            report = self.balancer.reconcile(self._targets(self.vips, keys), keys)
            self._count(report, "fleet_health")
            self._sync_slots({b.address for i in ids if i in self.vips
                              for b in self.vips[i].backends})
            self._publish(ids)
        log.info("fleet event=verdicts_applied vips=%s ring_slots_written=%d",
                 ",".join(str(i) for i in sorted(ids)), report.ring_slots_written)

    # --- observed state (lb.control.observed) ---------------------------------------
    def stats(self) -> dict[str, dict[str, int]]:
        """Global counters grouped: totals, connection table, pass and drop reasons."""
        return observed.counter_groups(self.balancer.dp.counters())

    def vip_stats(self, vip_id: int) -> dict[str, object]:
        """Packets and bytes of a VIP and of each of its backends, with their ring slots."""
        with self.lock:
            return observed.vip_stats(self.balancer, self.get_vip(vip_id))

    def backend_statuses(self, vip_id: int, conn_entries: bool = False) -> list[dict[str, object]]:
        """Each backend of a VIP as configured and as observed (`conn_entries`: count every
        backend's connection-table entries, not only the draining ones')."""
        with self.lock:
            return observed.backend_statuses(self.balancer, self.get_vip(vip_id), self._state,
                                             self.monitor, conn_entries)

    def trace(self, flow: Flow, syn: bool = False) -> dict[str, object]:
        """Why `flow` goes where it goes, and the program's verdict on one of its packets
        (lb.control.observed.trace); changes nothing the running program uses."""
        if self.simulator is not None:
            self.simulator.prepare()  # a first compile, outside the lock
        with self.lock:
            return observed.trace(self.balancer, self.vips.values(), flow, syn, self._state,
                                  self.simulator)

    def check_schedule(self) -> list[dict[str, object]]:
        """Each probe with the start times of its last checks."""
        return observed.check_schedule(self.monitor)

    def all_down(self, vip_id: int) -> bool:
        """True when every backend of the VIP that is not draining is down."""
        with self.lock:
            return self.view(self.get_vip(vip_id)).all_backends_down

    def view(self, vip: Vip) -> VipView:
        """`vip` (as a change or read returned it, even if gone since) with what is observed
        about it, read under the lock: one consistent snapshot."""
        with self.lock:
            serving = [b for b in vip.backends if not b.drain]
            down = bool(serving) and all(self._state(vip.id, b.address) == State.DOWN
                                         for b in serving)
            return VipView(**dict(vip), all_backends_down=down)

    def views(self) -> list[VipView]:
        """Every VIP with what is observed about it, from one snapshot (GET /vips)."""
        with self.lock:
            return [self.view(v) for v in self.vips.values()]

    def metrics_snapshot(self) -> dict[str, object]:
        """What /metrics reports from the kernel and the health checks, read now."""
        with self.lock:
            return observed.metrics_snapshot(self.balancer, self.vips.values(), self._state)
