"""The desired-state store: its interface (`StateStore`), and SQLite, the single-host default.

Two stores implement `StateStore`: `Store` here (one SQLite file, a single host) and
`lb.control.etcd_store.EtcdStore` (a fleet's shared state in etcd). The controller knows
only the interface.

SQLite:

A change is written inside a transaction that the caller commits only after the data plane
took it (see lb.control.controller): an acknowledged change is on disk (WAL, synchronous=FULL),
and a change that failed or was interrupted leaves the previous state, which the next start
reconciles the kernel to. VIP ids come from AUTOINCREMENT, so an id is never reused.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import sqlite3
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Protocol

from lb.control.errors import StoreError, StoreFull
from lb.control.model import Address, BackendSpec, Vip, VipSettings, VipSpec

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS vips (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    address TEXT NOT NULL,
    port INTEGER NOT NULL,
    protocol TEXT NOT NULL,
    settings TEXT NOT NULL,  -- JSON of lb.control.model.VipSettings
    UNIQUE (address, port, protocol)
);
CREATE TABLE IF NOT EXISTS backends (
    vip_id INTEGER NOT NULL REFERENCES vips(id) ON DELETE CASCADE,
    address TEXT NOT NULL,
    weight INTEGER NOT NULL,
    drain INTEGER NOT NULL DEFAULT 0,
    position INTEGER NOT NULL,
    PRIMARY KEY (vip_id, address)
);
"""




def _is_full(e: sqlite3.Error) -> bool:
    return getattr(e, "sqlite_errorname", "") == "SQLITE_FULL" or "disk is full" in str(e)


class RowWriter(Protocol):
    """The writes of one change, committed or dropped as a whole by `StateStore.transaction`."""

    def insert_vip(self, spec: VipSpec) -> int: ...
    def delete_vip(self, vip_id: int) -> None: ...
    def set_settings(self, vip_id: int, settings: VipSettings) -> None: ...
    def put_backend(self, vip_id: int, backend: BackendSpec, position: int) -> None: ...
    def delete_backend(self, vip_id: int, address: Address) -> None: ...
    def added_at(self, vip_id: int, address: Address) -> float | None: ...


class StateStore(Protocol):
    """Where desired state is kept; `revision` orders its committed states (0: not kept)."""

    path: Path
    revision: int

    def load(self) -> dict[int, Vip]: ...
    def next_position(self) -> int: ...
    def transaction(self) -> AbstractContextManager[RowWriter]: ...
    def close(self) -> None: ...
    def added_at(self, vip_id: int, address: Address) -> float | None:
        """When the backend joined the VIP (wall clock, as committed), if the store keeps it:
        a fleet's hosts ramp slow start from that moment."""
        ...


class Transaction:
    """Row writes of one change; committed or rolled back as a whole by Store.transaction."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def insert_vip(self, spec: VipSpec) -> int:
        cur = self._db.execute(
            "INSERT INTO vips (address, port, protocol, settings) VALUES (?, ?, ?, ?)",
            (str(spec.address), spec.port, spec.protocol, spec.settings().model_dump_json()))
        assert cur.lastrowid is not None  # set by every INSERT
        return cur.lastrowid

    def delete_vip(self, vip_id: int) -> None:
        self._db.execute("DELETE FROM vips WHERE id = ?", (vip_id,))

    def set_settings(self, vip_id: int, settings: VipSettings) -> None:
        self._db.execute("UPDATE vips SET settings = ? WHERE id = ?",
                         (settings.model_dump_json(), vip_id))

    def put_backend(self, vip_id: int, backend: BackendSpec, position: int) -> None:
        self._db.execute(
            "INSERT INTO backends (vip_id, address, weight, drain, position) "
            "VALUES (?, ?, ?, ?, ?) ON CONFLICT (vip_id, address) "
            "DO UPDATE SET weight = excluded.weight, drain = excluded.drain",
            (vip_id, str(backend.address), backend.weight, int(backend.drain), position))

    def added_at(self, vip_id: int, address: Address) -> float | None:
        return None  # a single host ramps from the moment it applies the change

    def delete_backend(self, vip_id: int, address: Address) -> None:
        self._db.execute("DELETE FROM backends WHERE vip_id = ? AND address = ?",
                         (vip_id, str(address)))


def _openable(path: Path) -> None:
    """Make `path`'s folder if needed and check the file can be opened for writing; else
    StoreError naming the path, the errno and the fix (SQLite says only "unable to open
    database file")."""
    fix = (f"make {path.parent} a writable directory for this user (uid {os.geteuid()}), "
           "or choose another with --state-dir (LB_STATE_DIR)")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
        # SQLite's WAL and journal files are created beside the database.
        probe = path.parent / f".{path.name}.probe-{os.getpid()}"
        os.close(os.open(probe, os.O_RDWR | os.O_CREAT, 0o600))
        probe.unlink()
    except OSError as e:
        name = errno.errorcode.get(e.errno or 0, "?")
        raise StoreError(f"cannot open the state database {path}: {e.strerror} (errno "
                         f"{e.errno} {name}) at {e.filename}; fix: {fix}") from e


class Store:
    """One SQLite file holding the desired state."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.revision = 0  # a single host: the committed state is the only one
        _openable(self.path)
        try:
            self._db = sqlite3.connect(self.path, isolation_level=None,
                                       check_same_thread=False)
            self._db.execute("PRAGMA journal_mode = WAL")
            self._db.execute("PRAGMA synchronous = FULL")
            self._db.execute("PRAGMA foreign_keys = ON")
            self._db.executescript(_SCHEMA)
            row = self._db.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
            if row is None:
                self._db.execute("INSERT INTO meta VALUES ('schema', ?)", (str(SCHEMA_VERSION),))
            elif int(row[0]) != SCHEMA_VERSION:
                self._db.close()
                raise StoreError(f"{self.path}: schema version {row[0]}, this build reads "
                                 f"{SCHEMA_VERSION}")
        except sqlite3.Error as e:
            raise StoreError(f"{self.path}: {e}") from e

    def close(self) -> None:
        self._db.close()

    def added_at(self, vip_id: int, address: Address) -> float | None:
        return None

    @contextmanager
    def transaction(self) -> Iterator[Transaction]:
        """BEGIN IMMEDIATE ... COMMIT, or ROLLBACK if the block raises."""
        try:
            self._db.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as e:
            raise self._error("begin", e) from e
        step = "write"
        try:
            yield Transaction(self._db)
            step = "commit"
            self._db.execute("COMMIT")
        except BaseException as e:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            # A write the schema refuses is the caller's bug and stays as it is; a commit
            # that fails, or any write on a full disk, is the store's error.
            if isinstance(e, sqlite3.Error) and (step == "commit" or _is_full(e)):
                raise self._error(step, e) from e
            raise

    def _error(self, step: str, e: sqlite3.Error) -> StoreError:
        """A store error naming the file, the step and SQLite's reason (full disk: StoreFull)."""
        cls = StoreFull if _is_full(e) else StoreError
        return cls(f"{self.path}: {step} failed: {e}; nothing was changed")

    def next_position(self) -> int:
        """The position after every backend's (positions order a VIP's backends)."""
        (position,) = self._db.execute(
            "SELECT COALESCE(MAX(position), 0) + 1 FROM backends").fetchone()
        return int(position)

    def load(self) -> dict[int, Vip]:
        """Every VIP with its backends (in the order they were added), by id."""
        backends: dict[int, list[BackendSpec]] = {}
        for vip_id, address, weight, drain in self._db.execute(
                "SELECT vip_id, address, weight, drain FROM backends "
                "ORDER BY vip_id, position"):
            backends.setdefault(vip_id, []).append(BackendSpec(
                address=ipaddress.ip_address(address), weight=weight, drain=bool(drain)))
        vips = {}
        for vip_id, address, port, protocol, settings in self._db.execute(
                "SELECT id, address, port, protocol, settings FROM vips ORDER BY id"):
            vips[vip_id] = Vip(id=vip_id, address=ipaddress.ip_address(address), port=port,
                               protocol=protocol, backends=backends.get(vip_id, []),
                               **VipSettings.model_validate_json(settings).model_dump())
        return vips
