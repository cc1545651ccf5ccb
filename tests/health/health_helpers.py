"""Helpers of the health-check tests: REST shorthands (lb.client), deadlines, who answers a VIP.

Every configuration goes through the REST API; every verdict is read back through it
(GET /vips/{id}/backends, /vips/{id}/stats, /metrics) or observed with real traffic from the
lab's client (which backend's name answered an HTTP request; decapsulation counters).
"""

from __future__ import annotations

import collections
import socket
import time
from collections.abc import Callable
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from lb.client import Client
from lb.lab.hosts import Backend
from lb.lab.servers import BackendHTTPServer
from lb.lab.veth import VethLab

# Fast checks, so that tests are quick: a probe every 0.2 s, bounded by 0.2 s.
INTERVAL = 0.2
TIMEOUT = 0.2
RISE = 2
FALL = 2
# Added to every deadline: the test's API poll period (20 ms), the daemon applying the verdict
# (ring write, a few ms), and scheduling on a shared 2-vCPU VM where other tests may run.
MARGIN = 0.8
# A backend whose server stopped is out of the ring within this (worst case: the stop lands
# just after a successful probe started, then `FALL` failing probes, the last one timing out).
DOWN_DEADLINE = FALL * INTERVAL + TIMEOUT + MARGIN
# A backend whose server is back is in the ring again within this (`RISE` successful probes,
# the first at most one interval after the server returned).
UP_DEADLINE = RISE * INTERVAL + MARGIN
POLL = 0.02


class Servers:
    """The backend servers of one test: HTTP servers on every address of a backend namespace,
    and silent listeners (accept nothing, answer nothing)."""

    def __init__(self, lab: VethLab) -> None:
        self.lab = lab
        self.http: list[BackendHTTPServer] = []
        self.silent: list[socket.socket] = []

    def start(self, backend: Backend, port: int) -> BackendHTTPServer:
        server = self.lab.start_backend_server(backend, port)
        self.http.append(server)
        return server

    def start_all(self, port: int) -> list[BackendHTTPServer]:
        """One server per backend, in the lab's backend order."""
        return [self.start(b, port) for b in self.lab.backends]

    def stop(self, server: BackendHTTPServer) -> None:
        self.http.remove(server)
        self.lab.stop_server(server)

    def start_silent(self, backend: Backend, port: int) -> socket.socket:
        sock = self.lab.silent_listener(backend, port)
        self.silent.append(sock)
        return sock

    def close(self) -> None:
        for server in self.http:
            self.lab.stop_server(server)
        self.http.clear()
        for sock in self.silent:
            sock.close()
        self.silent.clear()


def fast_check(**fields: Any) -> dict[str, Any]:
    """A check document with the tests' fast timing; `fields` override."""
    return {"type": "tcp", "interval_s": INTERVAL, "timeout_s": TIMEOUT, "rise": RISE,
            "fall": FALL, **fields}


def vip_doc(address: Any, port: int, backends: list[Backend], *, protocol: str = "tcp",
            weight: int = 1, **settings: Any) -> dict[str, Any]:
    """One VIP of a /config document, backends by their own IPv4 address."""
    return {"address": str(address), "port": port, "protocol": protocol, **settings,
            "backends": [{"address": str(b.v4), "weight": weight} for b in backends]}


def put_config(api: Client, *vips: dict[str, Any]) -> list[int]:
    """PUT /config with these VIPs; returns their ids, in the order given."""
    api.put_config({"vips": list(vips)})
    by_key = {(v["address"], v["port"], v["protocol"]): v["id"] for v in api.list_vips()}
    return [by_key[(str(v["address"]), v["port"], v.get("protocol", "tcp"))] for v in vips]


def backends(api: Client, vip_id: int, conn_entries: bool = False) -> dict[str, Any]:
    """GET /vips/{id}/backends, by address."""
    return {b["address"]: b for b in api.list_backends(vip_id, conn_entries)}


def ring_slots(api: Client, vip_id: int) -> dict[str, int]:
    """Ring slots of each backend of a VIP, read from the kernel's ring (GET /vips/{id}/stats)."""
    return {b["address"]: b["ring_slots"] for b in api.vip_stats(vip_id)["backends"]}


def wait_for(predicate: Callable[[], bool], timeout: float) -> float | None:
    """Poll `predicate` every POLL s; seconds until it held, or None if it did not within
    `timeout` (it is polled for at least `timeout` + 5 s before giving up, so a late verdict
    is reported as late, with its time, rather than as never)."""
    start = time.monotonic()
    while True:
        if predicate():
            return time.monotonic() - start
        if time.monotonic() - start > timeout + 5:
            return None
        time.sleep(POLL)


def wait_states(api: Client, vip_id: int, wanted: dict[str, str],
                timeout: float) -> float | None:
    """Wait until each listed backend of a VIP is in the given state; returns the seconds."""
    def reached() -> bool:
        now = backends(api, vip_id)
        return all(now[a]["state"] == s for a, s in wanted.items())
    return wait_for(reached, timeout)


def answers(lab: VethLab, vip: Any, port: int, n: int = 30,
            timeout: float = 2.0) -> collections.Counter[str]:
    """`n` HTTP GETs from the client to vip:port, each a new connection (a new flow); counts
    which backend answered each (its name), or the exception's class name when none did."""
    seen: collections.Counter[str] = collections.Counter()
    for _ in range(n):
        try:
            seen[lab.http_get(vip, port, timeout=timeout).strip()] += 1
        except Exception as e:  # noqa: BLE001 (counted: a failed flow is a result here)
            seen[type(e).__name__] += 1
    return seen


def metrics(api: Client) -> dict[str, list[tuple[str, dict[str, str], float]]]:
    """GET /metrics parsed by prometheus_client's parser: family -> [(sample, labels, value)]."""
    return {f.name: [(s.name, s.labels, s.value) for s in f.samples]
            for f in text_string_to_metric_families(api.metrics())}


def sample(families: dict[str, list[tuple[str, dict[str, str], float]]], family: str,
           **labels: str) -> float:
    """Sum of a family's samples (counters: the `_total` ones) whose labels include `labels`."""
    total = 0.0
    for name, sample_labels, value in families.get(family, []):
        if name.endswith("_created"):
            continue
        if all(sample_labels.get(k) == v for k, v in labels.items()):
            total += value
    return total


def log_event(text: str, **fields: str) -> bool:
    """True if a structured line of the daemon's log carries every `key=value` of `fields`."""
    wanted = [f"{k}={v}" for k, v in fields.items()]
    return any(all(w in line.split() for w in wanted) for line in text.splitlines())
