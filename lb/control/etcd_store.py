"""Desired state in etcd, for a fleet: every change one transaction, every host follows the prefix.

Keys under the fleet's prefix P (values JSON)::

    P/vips/<id>       a VIP: address, port, protocol, settings, backends (with positions)
    P/meta/next_id    the next VIP id (ids are never reused)
    P/meta/schema     the layout version (SCHEMA_VERSION)
    P/meta/change     written by every change: its mod revision orders the fleet's changes

A change is buffered by a `Transaction` and committed as ONE etcd transaction that compares
`P/meta/change` with the revision this host last applied: two hosts' concurrent changes cannot
interleave, and a host whose view is behind loses (`Conflict`, answered 409) instead of
overwriting what it has not seen. Every host, the committing one included, learns committed
state from its watch (`follow`). The last applied state is kept in a local copy, so a restart
while etcd is unreachable reconciles to it (`load` falls back to it and says so).
"""

from __future__ import annotations

import copy
import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lb.control.errors import Conflict, StoreError, StoreFull, Unavailable
from lb.control.etcd import Etcd, EtcdError, EtcdUnreachable, delete, mod_revision_is, put
from lb.control.model import Address, BackendSpec, Vip, VipSettings, VipSpec

SCHEMA_VERSION = 1


def _vip_doc(spec: VipSpec) -> dict[str, Any]:
    return {"address": str(spec.address), "port": spec.port, "protocol": spec.protocol,
            "settings": spec.settings().model_dump(mode="json"), "backends": []}


def _vip_from_doc(vip_id: int, doc: dict[str, Any]) -> Vip:
    backends = [BackendSpec(address=b["address"], weight=b["weight"], drain=b["drain"])
                for b in sorted(doc["backends"], key=lambda b: b["position"])]
    return Vip(id=vip_id, address=doc["address"], port=doc["port"], protocol=doc["protocol"],
               backends=backends, **VipSettings.model_validate(doc["settings"]).model_dump())


def _added_at(docs: dict[int, dict[str, Any]], vip_id: int, address: Address) -> float | None:
    for row in docs.get(vip_id, {}).get("backends", []):
        if row["address"] == str(address):
            return row.get("added_at")
    return None


class Transaction:
    """Writes of one change, buffered over the store's applied documents until commit."""

    def __init__(self, docs: dict[int, dict[str, Any]], next_id: int) -> None:
        self.docs = {k: json.loads(json.dumps(v)) for k, v in docs.items()}
        self.next_id = next_id
        self.changed: set[int] = set()

    def insert_vip(self, spec: VipSpec) -> int:
        vip_id, self.next_id = self.next_id, self.next_id + 1
        self.docs[vip_id] = _vip_doc(spec)
        self.changed.add(vip_id)
        return vip_id

    def delete_vip(self, vip_id: int) -> None:
        self.docs.pop(vip_id, None)
        self.changed.add(vip_id)

    def set_settings(self, vip_id: int, settings: VipSettings) -> None:
        self.docs[vip_id]["settings"] = settings.model_dump(mode="json")
        self.changed.add(vip_id)

    def put_backend(self, vip_id: int, backend: BackendSpec, position: int) -> None:
        rows = self.docs[vip_id]["backends"]
        row = {"address": str(backend.address), "weight": backend.weight,
               "drain": backend.drain, "position": position, "added_at": time.time()}
        for r in rows:
            if r["address"] == row["address"]:
                r.update(weight=backend.weight, drain=backend.drain)
                break
        else:
            rows.append(row)
        self.changed.add(vip_id)

    def added_at(self, vip_id: int, address: Address) -> float | None:
        return _added_at(self.docs, vip_id, address)

    def delete_backend(self, vip_id: int, address: Address) -> None:
        doc = self.docs[vip_id]
        doc["backends"] = [r for r in doc["backends"] if r["address"] != str(address)]
        self.changed.add(vip_id)

# What etcd says of a transaction beyond --max-request-bytes or --max-txn-ops.
TOO_LARGE = ("message larger than max", "too many operations in txn request",
             "request is too large")


@dataclass
class _State:
    """One desired state: the VIP documents, the next id, the revision that committed it."""

    docs: dict[int, dict[str, Any]] = field(default_factory=dict)
    next_id: int = 1
    revision: int = 0

    def copy(self) -> _State:
        return _State(copy.deepcopy(self.docs), self.next_id, self.revision)

    def vips(self) -> dict[int, Vip]:
        return {vip_id: _vip_from_doc(vip_id, doc) for vip_id, doc in sorted(self.docs.items())}


class EtcdStore:
    """The fleet's desired state under one etcd prefix, with a local copy of what was applied.

    Two states are kept: `held`, the one this host's controller has (transactions build on it
    and compare on its revision), and `watched`, the newest the watch has seen. A watched
    state becomes held only once the controller has applied it (`follow`), so a change made
    meanwhile is compared against what the controller really holds, and loses (409) rather
    than committing over a state it never saw.
    """

    def __init__(self, etcd: Etcd, prefix: bytes, local_copy: Path) -> None:
        self.etcd = etcd
        self.prefix = prefix
        self.path = local_copy
        self.held = _State()
        self.watched = _State()
        self._seen = 0             # the etcd revision read or watched up to
        self.from_local_copy = False
        self.reachable = True      # false from a failed call until one succeeds
        self._lock = threading.Lock()

    @property
    def revision(self) -> int:
        """The revision of the desired state held: the commit that last wrote P/meta/change.
        Hosts holding the same state hold the same revision (their fleet reports compare)."""
        return self.held.revision

    # --- keys ----------------------------------------------------------------------------------
    def _key(self, *parts: str) -> bytes:
        return self.prefix + "/".join(parts).encode()

    def _vip_id(self, key: bytes) -> int | None:
        head = self._key("vips", "")
        if key.startswith(head) and key[len(head):].isdigit():
            return int(key[len(head):])
        return None

    # --- reading -------------------------------------------------------------------------------
    def _absorb(self, state: _State, key: bytes, value: bytes | None,
                mod_revision: int) -> bool:
        """Take one key's new value (None: deleted) into `state`; True if it is desired state."""
        if key.startswith(self._key("hosts", "")):
            return False  # the fleet's host reports (lb.control.fleet) share the prefix
        vip_id = self._vip_id(key)
        if vip_id is not None:
            if value is None:
                state.docs.pop(vip_id, None)
            else:
                state.docs[vip_id] = json.loads(value)
        elif key == self._key("meta", "next_id") and value is not None:
            state.next_id = int(value)
        elif key == self._key("meta", "change"):
            state.revision = mod_revision if value is not None else 0
        elif key == self._key("meta", "schema") and value is not None \
                and int(value) != SCHEMA_VERSION:
            raise StoreError(f"etcd {self.prefix.decode()}: schema version {int(value)}, "
                             f"this build reads {SCHEMA_VERSION}")
        return True

    def _read_all(self) -> _State | None:
        """Read the whole prefix into `watched` (None: etcd unreachable). Call with the lock."""
        try:
            revision, kvs = self.etcd.get_prefix(self.prefix)
        except EtcdUnreachable:
            self.reachable = False
            return None
        self.reachable = True
        state = _State()
        for kv in kvs:
            self._absorb(state, kv.key, kv.value, kv.mod_revision)
        self.watched, self._seen = state, revision
        return state

    def load(self) -> dict[int, Vip]:
        """Every VIP by id, as etcd holds it now (held from now on: the caller applies it, at
        start); from the local copy if etcd is unreachable."""
        with self._lock:
            state = self._read_all()
            if state is None:
                return self._load_local_copy()
            self.from_local_copy = False
            self.held = state.copy()
            self._save_local_copy()
            return self.held.vips()

    def _load_local_copy(self) -> dict[int, Vip]:
        try:
            saved = json.loads(self.path.read_text())
        except FileNotFoundError:
            raise Unavailable(f"etcd unreachable and no local copy at {self.path}: "
                              "start once with etcd reachable") from None
        self.held = _State({int(k): v for k, v in saved["vips"].items()}, saved["next_id"],
                           saved["revision"])
        self.watched, self._seen = self.held.copy(), saved["revision"]
        self.from_local_copy = True
        return self.held.vips()

    def _save_local_copy(self) -> None:
        """Write `held` to the local copy (atomically: a crash leaves the old or the new)."""
        tmp = self.path.with_name(self.path.name + ".tmp")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps({"revision": self.held.revision, "next_id": self.held.next_id,
                                   "vips": {str(k): v for k, v in self.held.docs.items()}}))
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, self.path)

    def _hold(self, state: _State) -> None:
        """The controller has applied `state`: it is held (unless a newer one already is)."""
        with self._lock:
            if state.revision > self.held.revision:
                self.held = state
                self.from_local_copy = False
                self._save_local_copy()

    def added_at(self, vip_id: int, address: Address) -> float | None:
        """When the backend joined the VIP, as committed by the host that added it."""
        with self._lock:
            return _added_at(self.held.docs, vip_id, address) or \
                _added_at(self.watched.docs, vip_id, address)

    def next_position(self) -> int:
        """The position after every backend's (positions order a VIP's backends)."""
        with self._lock:
            positions = [b["position"] for d in self.held.docs.values() for b in d["backends"]]
        return max(positions, default=0) + 1

    # --- writing -------------------------------------------------------------------------------
    @contextmanager
    def transaction(self) -> Iterator[Transaction]:
        """Buffers the block's writes; at its end commits them in one etcd transaction, on the
        condition that no other change was committed since the state this host holds."""
        with self._lock:
            if self.from_local_copy:
                raise Unavailable("etcd was unreachable at start: changes wait until it answers")
            tx = Transaction(self.held.docs, self.held.next_id)
            base = self.held.revision
        yield tx
        ops = [put(self._key("vips", str(i)), json.dumps(tx.docs[i]).encode())
               if i in tx.docs else delete(self._key("vips", str(i))) for i in sorted(tx.changed)]
        ops += [put(self._key("meta", "next_id"), str(tx.next_id).encode()),
                put(self._key("meta", "schema"), str(SCHEMA_VERSION).encode()),
                put(self._key("meta", "change"), b"")]
        with self._lock:
            try:
                ok, revision = self.etcd.txn(
                    [mod_revision_is(self._key("meta", "change"), base)], ops)
            except EtcdUnreachable as e:
                self.reachable = False
                raise Unavailable(f"the store (etcd {self.prefix.decode()}) is unreachable: "
                                  f"nothing was changed ({e})") from e
            except EtcdError as e:
                if any(m in str(e) for m in TOO_LARGE):
                    raise StoreFull(f"etcd refused a transaction this large ({len(ops)} "
                                    f"operations): {e}; nothing was changed. Run etcd with "
                                    "larger --max-txn-ops and --max-request-bytes "
                                    "(docs/operations.md)") from e
                raise StoreError(str(e)) from e
            self.reachable = True
            if not ok:
                raise Conflict(f"another host changed the desired state after revision "
                               f"{base}: retry once this host has applied it")
            # Held now; the watch brings the same revision to `watched` in its turn.
            self.held = _State(tx.docs, tx.next_id, revision)
            self._save_local_copy()

    def follow(self, apply: Callable[[int, dict[int, Vip]], None], stop: threading.Event,
               on_error: Callable[[Exception], None] | None = None) -> None:
        """Until `stop`: watch the prefix and call `apply(revision, vips)` for every committed
        desired state (this host's own changes come back as revisions already held: the
        controller skips them; the fleet's host reports are not desired state), then hold it.
        Resumes after the last revision seen when the stream breaks; reads the whole prefix
        again when that revision was compacted, or once etcd answers after a start on the
        local copy."""
        reread = self.from_local_copy
        while not stop.is_set():
            if reread:
                with self._lock:
                    state = self._read_all()
                    state = state.copy() if state is not None else None
                if state is None:
                    stop.wait(1.0)
                    continue
                apply(state.revision, state.vips())
                self._hold(state)
                reread = False
            try:
                for batch in self.etcd.watch_prefix(self.prefix, self._seen + 1, stop):
                    self.reachable = True
                    with self._lock:
                        if batch.revision <= self._seen:
                            continue
                        touched = [self._absorb(self.watched, ev.kv.key,
                                                ev.kv.value if ev.kind == "put" else None,
                                                ev.kv.mod_revision) for ev in batch.events]
                        self._seen = batch.revision
                        if not any(touched):
                            continue
                        state = self.watched.copy()
                    apply(state.revision, state.vips())
                    self._hold(state)
            except EtcdUnreachable as e:
                self.reachable = False
                if on_error:
                    on_error(e)
                stop.wait(1.0)
            except EtcdError as e:
                if on_error:
                    on_error(e)
                reread = True  # compacted past our revision: read it all again
                stop.wait(1.0)
            except Exception as e:  # noqa: BLE001 - apply failed: keep following, retry whole
                if on_error:
                    on_error(e)
                reread = True
                stop.wait(1.0)

    def close(self) -> None:
        self.etcd.close()
