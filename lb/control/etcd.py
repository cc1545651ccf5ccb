"""A small synchronous etcd v3 client over etcd's JSON gateway (httpx): kv, txn, lease, watch.

Why the gateway and not a gRPC client: etcd serves the same v3 API as JSON over HTTP
(`POST /v3/kv/range`, `/v3/kv/txn`, `/v3/watch`, ...; keys and values base64, 64-bit
integers as strings), httpx is already a dependency, and there is no protobuf or grpc
version to keep in step (PyPI's `etcd3` 0.12 no longer imports with the protobuf of today;
`aetcd` works but is asyncio over gRPC, where the controller is threaded). Endpoints are
tried in order: a member that does not answer is skipped, so a client configured with
every member of a cluster keeps working while a majority is up.

Errors::

    EtcdError              the cluster answered with an error (HTTP status or gRPC code)
    └── EtcdUnreachable    no endpoint answered (connection refused, timeout)
"""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx


class EtcdError(RuntimeError):
    """etcd answered with an error; `.status` is the HTTP status (0 when none)."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


class EtcdUnreachable(EtcdError):
    """No endpoint of the cluster answered."""


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _unb64(text: str | None) -> bytes:
    return base64.b64decode(text) if text else b""


def prefix_end(prefix: bytes) -> bytes:
    """The range end that selects every key starting with `prefix` (etcd's rule)."""
    end = bytearray(prefix)
    while end:
        if end[-1] < 0xFF:
            end[-1] += 1
            return bytes(end)
        end.pop()
    return b"\0"


@dataclass(frozen=True)
class KeyValue:
    """One key as etcd holds it; revisions are the cluster's, `lease` 0 when none."""

    key: bytes
    value: bytes
    create_revision: int
    mod_revision: int
    version: int
    lease: int = 0

    @classmethod
    def from_json(cls, kv: dict[str, Any]) -> KeyValue:
        return cls(key=_unb64(kv.get("key")), value=_unb64(kv.get("value")),
                   create_revision=int(kv.get("create_revision", 0)),
                   mod_revision=int(kv.get("mod_revision", 0)),
                   version=int(kv.get("version", 0)), lease=int(kv.get("lease", 0)))


@dataclass(frozen=True)
class Event:
    """One change seen by a watch: a put (with the new value) or a delete."""

    kind: str  # "put" | "delete"
    kv: KeyValue


@dataclass(frozen=True)
class WatchBatch:
    """The events of one revision (or a progress notice with no events)."""

    revision: int
    events: list[Event] = field(default_factory=list)


def put(key: bytes, value: bytes, lease: int = 0) -> dict[str, Any]:
    """A put operation for `Etcd.txn`."""
    body: dict[str, Any] = {"key": _b64(key), "value": _b64(value)}
    if lease:
        body["lease"] = str(lease)
    return {"request_put": body}


def delete(key: bytes, prefix: bool = False) -> dict[str, Any]:
    """A delete operation for `Etcd.txn` (every key under `key` with prefix=True)."""
    body = {"key": _b64(key)}
    if prefix:
        body["range_end"] = _b64(prefix_end(key))
    return {"request_delete_range": body}


def mod_revision_is(key: bytes, revision: int) -> dict[str, Any]:
    """A compare for `Etcd.txn`: the key was last written at `revision` (0: it does not exist)."""
    return {"key": _b64(key), "target": "MOD", "result": "EQUAL", "mod_revision": str(revision)}


class Etcd:
    """A client of one etcd cluster, given its members' client URLs; safe to share by threads."""

    def __init__(self, endpoints: Sequence[str], timeout_s: float = 2.0) -> None:
        if not endpoints:
            raise ValueError("etcd: no endpoints")
        self.endpoints = [e.rstrip("/") for e in endpoints]
        self.timeout_s = timeout_s
        self._http = httpx.Client(timeout=timeout_s)
        self._lock = threading.Lock()
        self._first = 0  # the endpoint that answered last: tried first next time

    def close(self) -> None:
        self._http.close()

    def _order(self) -> list[str]:
        with self._lock:
            first = self._first
        return self.endpoints[first:] + self.endpoints[:first]

    def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        errors = []
        for url in self._order():
            try:
                r = self._http.post(url + path, json=body)
            except httpx.TransportError as e:
                errors.append(f"{url}: {e or type(e).__name__}")
                continue
            if r.status_code != 200:
                try:
                    message = r.json().get("message") or r.text
                except ValueError:
                    message = r.text
                if r.status_code == 503:  # this member has no leader: try another
                    errors.append(f"{url}: {message}")
                    continue
                raise EtcdError(f"etcd {path}: {message}", r.status_code)
            with self._lock:
                self._first = self.endpoints.index(url)
            return r.json()
        raise EtcdUnreachable(f"etcd unreachable ({'; '.join(errors)})")

    # --- kv ------------------------------------------------------------------------------------
    def get_prefix(self, prefix: bytes) -> tuple[int, list[KeyValue]]:
        """Every key under `prefix`, and the revision the read was made at."""
        out = self._post("/v3/kv/range", {"key": _b64(prefix),
                                          "range_end": _b64(prefix_end(prefix))})
        return int(out["header"]["revision"]), [KeyValue.from_json(kv)
                                                 for kv in out.get("kvs", [])]

    def get(self, key: bytes) -> KeyValue | None:
        out = self._post("/v3/kv/range", {"key": _b64(key)})
        kvs = out.get("kvs", [])
        return KeyValue.from_json(kvs[0]) if kvs else None

    def put(self, key: bytes, value: bytes, lease: int = 0) -> int:
        """Writes one key; returns the revision it was written at."""
        body = put(key, value, lease)["request_put"]
        return int(self._post("/v3/kv/put", body)["header"]["revision"])

    def delete_prefix(self, prefix: bytes) -> int:
        out = self._post("/v3/kv/deleterange", {"key": _b64(prefix),
                                                "range_end": _b64(prefix_end(prefix))})
        return int(out["header"]["revision"])

    def txn(self, compare: list[dict[str, Any]], success: list[dict[str, Any]],
            failure: list[dict[str, Any]] | None = None) -> tuple[bool, int]:
        """One transaction: if every compare holds, the success ops, else the failure ops.
        Returns (succeeded, the revision after it)."""
        out = self._post("/v3/kv/txn", {"compare": compare, "success": success,
                                        "failure": failure or []})
        return bool(out.get("succeeded", False)), int(out["header"]["revision"])

    # --- leases --------------------------------------------------------------------------------
    def lease_grant(self, ttl_s: int) -> int:
        """A new lease of `ttl_s` seconds; keys put with it go when it expires."""
        return int(self._post("/v3/lease/grant", {"TTL": str(ttl_s)})["ID"])

    def lease_keepalive(self, lease: int) -> int:
        """Renews a lease once; returns its TTL in seconds (0: it has expired)."""
        out = self._post("/v3/lease/keepalive", {"ID": str(lease)})
        return int(out.get("result", out).get("TTL", 0))

    def lease_revoke(self, lease: int) -> None:
        self._post("/v3/lease/revoke", {"ID": str(lease)})

    # --- watch ---------------------------------------------------------------------------------
    def watch_prefix(self, prefix: bytes, start_revision: int,
                     stop: threading.Event | None = None) -> Iterator[WatchBatch]:
        """Every change under `prefix` from `start_revision` on, one batch per revision,
        until `stop` is set, the stream is idle for `timeout_s` (it ends: resume from the
        revision after the last batch) or it breaks (EtcdUnreachable; EtcdError when the
        revision was compacted: read the whole prefix again)."""
        body = {"create_request": {"key": _b64(prefix), "range_end": _b64(prefix_end(prefix)),
                                   "start_revision": str(start_revision),
                                   "progress_notify": True}}
        errors = []
        for url in self._order():
            timeout = httpx.Timeout(self.timeout_s, read=self.timeout_s)
            try:
                with self._http.stream("POST", url + "/v3/watch", json=body,
                                       timeout=timeout) as r:
                    if r.status_code != 200:
                        raise EtcdError(f"etcd watch: HTTP {r.status_code}", r.status_code)
                    yield from self._watch_lines(r, stop)
                    return
            except httpx.ReadTimeout:
                # Idle past timeout_s (etcd's progress notices come minutes apart): the stream
                # ends, and the caller resumes from the revision after its last batch.
                return
            except httpx.TransportError as e:
                errors.append(f"{url}: {e or type(e).__name__}")
                continue
        raise EtcdUnreachable(f"etcd unreachable ({'; '.join(errors)})")

    @staticmethod
    def _watch_lines(r: httpx.Response, stop: threading.Event | None) -> Iterator[WatchBatch]:
        for line in r.iter_lines():
            if stop is not None and stop.is_set():
                return
            if not line.strip():
                continue
            msg = json.loads(line)
            if "error" in msg:
                raise EtcdError(f"etcd watch: {msg['error'].get('message', msg['error'])}")
            result = msg.get("result", {})
            if result.get("compact_revision"):
                raise EtcdError(f"etcd watch: revision compacted up to "
                                f"{result['compact_revision']}")
            if result.get("canceled"):
                raise EtcdError(f"etcd watch canceled: {result.get('cancel_reason', '')}")
            events = [Event("delete" if e.get("type") == "DELETE" else "put",
                            KeyValue.from_json(e["kv"])) for e in result.get("events", [])]
            revision = int(result.get("header", {}).get("revision", 0))
            if events:
                revision = max(e.kv.mod_revision for e in events)
            if events or not result.get("created"):
                yield WatchBatch(revision, events)


def parse_store_url(url: str) -> tuple[list[str], bytes]:
    """`etcd://HOST:PORT[,HOST:PORT...]/PREFIX` -> (client URLs, key prefix ending in '/')."""
    parts = urlsplit(url)
    if parts.scheme != "etcd" or not parts.netloc:
        raise ValueError(f"not an etcd store URL (etcd://HOST:PORT[,HOST:PORT...]/PREFIX): {url!r}")
    hosts = [h for h in parts.netloc.split(",") if h]
    for h in hosts:
        host, _, port = h.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"etcd endpoint {h!r} is not HOST:PORT")
    prefix = parts.path.strip("/")
    if not prefix:
        raise ValueError(f"etcd store URL needs a key prefix (etcd://HOST:PORT/PREFIX): {url!r}")
    return [f"http://{h}" for h in hosts], ("/" + prefix + "/").encode()
