"""The fleet: each host's report under a lease of its own, the fleet's health verdict, ring digests.

Every balancer host of a fleet publishes one key, `P/hosts/<name>`, under an etcd lease it keeps
alive: the revision of desired state it applied, a digest of every VIP's ring as its kernel holds
it, and its own health verdicts. A host that stops (or loses etcd for longer than the lease's
TTL) drops out of the fleet by itself. Every host watches `P/hosts/` and derives the same
**fleet verdict** for each (VIP, backend) from the live hosts' verdicts (`fleet_verdict`), so
rings built from committed state and fleet verdicts are the same on every host.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from lb.control.etcd import Etcd, EtcdError, EtcdUnreachable
from lb.control.health import State
from lb.control.model import Address

log = logging.getLogger("lb.fleet")

# A (VIP id, backend address) as a report's key: "<vip id>/<address>".
TargetKey = str


def target_key(vip_id: int, address: Address) -> TargetKey:
    return f"{vip_id}/{address}"


def fleet_verdict(verdicts: Sequence[State]) -> State:
    """The fleet's verdict on one backend from the live hosts' verdicts on it: DOWN when more
    than half of the hosts that have a verdict say DOWN, UP when at least half say UP, else
    UNKNOWN (no host has checked it yet). A backend only one host of several cannot reach
    stays UP: the rings stay identical, and that host keeps sending it its share."""
    known = [v for v in verdicts if v != State.UNKNOWN]
    if not known:
        return State.UNKNOWN
    down = sum(1 for v in known if v == State.DOWN)
    return State.DOWN if 2 * down > len(known) else State.UP


@dataclass
class HostReport:
    """What one host publishes about itself."""

    name: str
    revision: int = 0                                          # desired state applied
    rings: dict[int, str] = field(default_factory=dict)       # VIP id -> ring digest
    health: dict[TargetKey, str] = field(default_factory=dict)  # target -> State value
    started_at: float = field(default_factory=time.time)
    updated_at: float = 0.0

    def to_json(self) -> bytes:
        return json.dumps({"name": self.name, "revision": self.revision,
                           "rings": {str(k): v for k, v in self.rings.items()},
                           "health": self.health, "started_at": self.started_at,
                           "updated_at": self.updated_at}).encode()

    @classmethod
    def from_json(cls, data: bytes) -> HostReport:
        d: dict[str, Any] = json.loads(data)
        return cls(name=d["name"], revision=d["revision"],
                   rings={int(k): v for k, v in d["rings"].items()}, health=d["health"],
                   started_at=d["started_at"], updated_at=d["updated_at"])


class Fleet:
    """This host's membership: publishes its report under a lease, follows the others'."""

    def __init__(self, etcd: Etcd, prefix: bytes, name: str, ttl_s: int = 10,
                 on_verdicts: Callable[[set[TargetKey]], None] | None = None) -> None:
        self.etcd, self.prefix, self.name, self.ttl_s = etcd, prefix, name, ttl_s
        self.me = HostReport(name)
        self.hosts: dict[str, HostReport] = {}   # the live hosts, this one included
        self._on_verdicts = on_verdicts
        self._verdicts: dict[TargetKey, State] = {}
        self._lease = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._dirty = threading.Event()
        self._threads: list[threading.Thread] = []
        self.revision = 0  # etcd revision of the hosts view

    @property
    def hosts_prefix(self) -> bytes:
        return self.prefix + b"hosts/"

    # --- what this host says -------------------------------------------------------------------
    def report(self, revision: int | None = None, rings: Mapping[int, str] | None = None,
               health: Mapping[TargetKey, State] | None = None) -> None:
        """Update this host's report (published by the keeper thread within a moment)."""
        with self._lock:
            if revision is not None:
                self.me.revision = revision
            if rings is not None:
                self.me.rings = dict(rings)
            if health is not None:
                self.me.health = {k: str(v) for k, v in health.items()}
        self._dirty.set()

    def _publish(self) -> None:
        with self._lock:
            self.me.updated_at = time.time()
            data = self.me.to_json()
        if not self._lease:
            self._lease = self.etcd.lease_grant(self.ttl_s)
        self.etcd.put(self.hosts_prefix + self.name.encode(), data, lease=self._lease)

    def _keep(self) -> None:
        """Publishes on change; renews the lease every ttl/3; a lost lease is granted anew."""
        last_renew = 0.0
        while not self._stop.is_set():
            try:
                if self._dirty.is_set() or not self._lease:
                    self._dirty.clear()
                    self._publish()
                    last_renew = time.monotonic()
                elif time.monotonic() - last_renew >= self.ttl_s / 3:
                    if self.etcd.lease_keepalive(self._lease) <= 0:
                        self._lease = 0  # expired meanwhile: the key went with it
                    last_renew = time.monotonic()
            except (EtcdUnreachable, EtcdError) as e:
                log.warning("fleet event=publish_failed error=%s", e)
                self._stop.wait(1.0)
                continue
            self._dirty.wait(min(1.0, self.ttl_s / 3))

    # --- what the fleet says -------------------------------------------------------------------
    def verdict(self, key: TargetKey) -> State:
        with self._lock:
            return self._verdicts.get(key, State.UNKNOWN)

    def _recompute(self) -> set[TargetKey]:
        keys = {k for h in self.hosts.values() for k in h.health}
        new = {k: fleet_verdict([State(h.health.get(k, State.UNKNOWN))
                                 for h in self.hosts.values()]) for k in keys}
        changed = {k for k in keys | self._verdicts.keys()
                   if new.get(k, State.UNKNOWN) != self._verdicts.get(k, State.UNKNOWN)}
        self._verdicts = new
        return changed

    def _read_all(self) -> set[TargetKey]:
        revision, kvs = self.etcd.get_prefix(self.hosts_prefix)
        with self._lock:
            self.hosts = {h.name: h for h in (HostReport.from_json(kv.value) for kv in kvs)}
            self.revision = revision
            return self._recompute()

    def _follow(self) -> None:
        while not self._stop.is_set():
            try:
                changed = self._read_all()
                if changed and self._on_verdicts:
                    self._on_verdicts(changed)
                for batch in self.etcd.watch_prefix(self.hosts_prefix, self.revision + 1,
                                                    self._stop):
                    with self._lock:
                        for ev in batch.events:
                            name = ev.kv.key[len(self.hosts_prefix):].decode()
                            if ev.kind == "put":
                                self.hosts[name] = HostReport.from_json(ev.kv.value)
                            else:
                                self.hosts.pop(name, None)
                        self.revision = batch.revision
                        changed = self._recompute()
                    if changed and self._on_verdicts:
                        self._on_verdicts(changed)
            except (EtcdUnreachable, EtcdError) as e:
                log.warning("fleet event=watch_failed error=%s", e)
                self._stop.wait(1.0)

    def view(self) -> list[HostReport]:
        """Every live host's last report, by name."""
        with self._lock:
            return [self.hosts[n] for n in sorted(self.hosts)]

    # --- lifecycle -----------------------------------------------------------------------------
    def start(self) -> None:
        self._dirty.set()
        for target, name in ((self._keep, "lb-fleet-keep"), (self._follow, "lb-fleet-follow")):
            t = threading.Thread(target=target, name=name, daemon=True)
            t.start()
            self._threads.append(t)

    def close(self) -> None:
        """Leaves the fleet: stops the threads and revokes the lease (the report goes now)."""
        self._stop.set()
        self._dirty.set()
        for t in self._threads:
            t.join(5)
        if self._lease:
            try:
                self.etcd.lease_revoke(self._lease)
            except (EtcdUnreachable, EtcdError):
                pass  # the lease expires by itself
