"""The control-plane benchmark: how fast, and how precisely, a change reaches the kernel rings.

Four figures, each next to its target:

  * change latency: a real `lb run` daemon (lb.lab.daemon.LabDaemon on a VethLab) holds a VIP
    with 100 backends; one backend is taken out (DELETE) and put back (POST) over REST, many
    times. Each change is timed from just before the HTTP request until the VIP's ring in the
    kernel reflects it. The daemon answers only after it wrote the ring (the controller
    applies, commits, then answers), so the benchmark reads the ring the moment the answer
    arrives; if it did not yet reflect the change it would poll, and the time would be that
    of the poll that saw it.
  * ring build: lb.control.maglev.build_ring for 10 / 100 / 1000 / 4000 backends at M=65537
    (median of several builds, in this process).
  * slots rewritten: the balancer writes the slots where the old and new ring differ; the
    minimum is the slots whose backend must change (on removal the removed backend's, on add
    the new backend's share). Computed with build_ring for 1 of N backends, and read from
    the kernel's ring before and after every API change of the latency figure.
  * fan-out: 512 VIPs of 100 backends, one backend in all of them (PUT /config); then one
    PUT /config without it, timed until no kernel ring names its index. Per-VIP DELETE calls
    (512 of them) are timed too, for comparison.

The benchmark reads the daemon's rings through the same pinned maps (a load of the program
with the daemon's pin directory, never attached), by mmap.

Run as root: `python -m bench.controlplane --help`.
"""

from __future__ import annotations

import argparse
import array
import json
import mmap
import socket
import statistics
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx

from bench import common
from bench.common import Result, flag, log
from lb.client import Client
from lb.control.maglev import DEFAULT_RING_SIZE, build_ring, ring_diff
from lb.xdp.consts import SLOT_BACKEND

DEFAULT_JSON = common.RESULTS_DIR
SCHEMA = "lb-bench-controlplane/1"
# Namespace prefix of the benchmark's lab (leftovers of dead runs are removed first).
LAB_PREFIX = "lbc"
VIP_PORT = 80
# A ring slot's top byte without the settled bit (a translate table).
_INDEX_TOPS = bytes(b & SLOT_BACKEND >> 8 for b in range(256))

# Targets, in the unit of each figure.
TARGET_CHANGE_MEDIAN_MS = 15.0
TARGET_BUILD_1000_MS = 5.0
TARGET_FANOUT_MS = 1000.0


def vip_address(i: int) -> str:
    """The i-th VIP (i < 62,500): 10.100.0.1, ..."""
    return f"10.100.{i // 250}.{i % 250 + 1}"


def backend_address(k: int) -> str:
    """The k-th backend of the pool (k < 62,500): 10.200.0.1, ..."""
    return f"10.200.{k // 250}.{k % 250 + 1}"


# The backend every fan-out VIP holds (outside the pool's range).
SHARED_BACKEND = "10.201.0.1"


# --- options -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Options:
    """Everything a run depends on; the CLI flags map one-to-one onto these fields.

    changes / warmup: timed and untimed API changes of the latency figure (half removals,
    half additions), on a VIP of `backends` backends.
    build_sizes / build_runs: backend counts whose ring build is timed, and builds per count.
    diff_sizes / diff_samples: backend counts N of the slots figure, changes computed per N
    and kind (remove 1 of N, add 1 to N).
    fanout_vips / fanout_backends / pool: the fan-out configuration: VIPs, backends per VIP
    (the shared one included), distinct other backends they are drawn from.
    fanout_rounds: timed PUT /config removals of the shared backend (each followed by a
    PUT that restores it). per_vip_delete: also time one DELETE per VIP.
    live: run the daemon figures (root); without it only the in-process ones.
    """

    changes: int = flag(200, "timed API changes, half removals, half additions")
    warmup: int = flag(10, "untimed API changes first")
    backends: int = flag(100, "backends of the VIP the changes are made to")
    ring_size: int = flag(DEFAULT_RING_SIZE, "Maglev ring slots per VIP, a prime")
    build_sizes: tuple[int, ...] = flag((10, 100, 1000, 4000),
                                        "backend counts whose ring build is timed",
                                        metavar="N,N,...")
    build_runs: int = flag(9, "timed builds per count, reported as their median")
    diff_sizes: tuple[int, ...] = flag((100, 1000), "backend counts of the slots figure",
                                       metavar="N,N,...")
    diff_samples: int = flag(20, "removals and additions computed per count")
    fanout_vips: int = flag(512, "VIPs sharing one backend")
    fanout_backends: int = flag(100, "backends per fan-out VIP, the shared one included")
    pool: int = flag(4000, "distinct backends the fan-out VIPs' others come from")
    fanout_rounds: int = flag(3, "timed removals of the shared backend")
    per_vip_delete: bool = flag(True, "do not also time one DELETE per fan-out VIP")
    live: bool = flag(True, "skip the daemon figures (no root, no lab)")
    conn_table_size: int = flag(16384, "the daemon's connection table, entries per family")
    json_path: Path | None = DEFAULT_JSON

    @property
    def max_vips(self) -> int:
        return max(self.fanout_vips, 1)

    @property
    def max_backends(self) -> int:
        """Backend slots of the daemon: the production 4096, or more if the distinct
        backends (+ index 0, + one spare) need it."""
        return max(4096, max(self.pool + 1, self.backends) + 2)


# --- pure logic ----------------------------------------------------------------------------
def slots_rewritten(old: Sequence[int], new: Sequence[int]) -> int:
    """Slots a diff write changes: where the rings (in one id space) differ."""
    return len(ring_diff(old, new))


def minimum_slots(old: Sequence[int], new: Sequence[int], backend: int, added: bool) -> int:
    """Slots whose backend must change when `backend` is added (its share of `new`) or
    removed (its share of `old`): no ring update can write fewer."""
    return (new if added else old).count(backend)


def verdict(value: float | None, target: float | None) -> str:
    """met / missed against an upper bound; "-" without a target, "n/a" without a value."""
    if value is None:
        return "n/a"
    if target is None:
        return "-"
    return "met" if value < target else "missed"


def summary_ms(values_s: Sequence[float]) -> dict:
    """Median, p99, min, max of durations in seconds, as ms."""
    ms = [v * 1e3 for v in values_s]
    return {"n": len(ms), "median_ms": round(statistics.median(ms), 3),
            "p99_ms": round(common.percentile(ms, 99), 3), "min_ms": round(min(ms), 3),
            "max_ms": round(max(ms), 3)}


def fanout_document(vips: int, per_vip: int, pool: int, with_shared: bool) -> dict:
    """PUT /config body: `vips` VIPs of `per_vip` backends each, SHARED_BACKEND in every one
    (or, without it, the same VIPs one backend short). The others are `per_vip - 1`
    consecutive backends of a pool of `pool`, each VIP starting where the last one ended, so
    pool backends are spread evenly over the VIPs."""
    if not 1 <= per_vip - 1 <= pool:
        raise ValueError(f"per_vip - 1 ({per_vip - 1}) must be 1..pool ({pool})")
    doc = []
    for i in range(vips):
        others = [backend_address((i * (per_vip - 1) + j) % pool) for j in range(per_vip - 1)]
        backends = ([SHARED_BACKEND] if with_shared else []) + others
        doc.append({"address": vip_address(i), "port": VIP_PORT, "protocol": "tcp",
                    "backends": [{"address": a} for a in backends]})
    return {"vips": doc}


# --- in-process figures --------------------------------------------------------------------
def time_builds(sizes: Sequence[int], runs: int, ring_size: int) -> dict:
    """build_ring timed for each backend count: one warm-up build, then `runs` timed, each
    cold: the cache of the members' permutations (maglev._permutation) is emptied first, so
    every build hashes its backends as a first build does."""
    from lb.control import maglev

    out = {}
    for n in sizes:
        members = [(backend_address(k), 1) for k in range(n)]
        build_ring(members, ring_size)
        times = []
        for _ in range(runs):
            maglev._permutation.cache_clear()
            t0 = time.perf_counter()
            build_ring(members, ring_size)
            times.append(time.perf_counter() - t0)
        out[str(n)] = summary_ms(times)
    return out


def _ring_ids(keys: list[int], ring_size: int) -> list[int]:
    """The ring of backends `keys` (pool numbers), each slot naming a pool number."""
    ring = build_ring([(backend_address(k), 1) for k in keys], ring_size)
    return [keys[m] for m in ring]


def diff_figures(sizes: Sequence[int], samples: int, ring_size: int) -> dict:
    """Slots rewritten vs the minimum for `samples` removals of 1 of N and additions of 1 to
    N backends, spread over the pool; ratio = total written / total minimum."""
    out = {}
    for n in sizes:
        base = list(range(n))
        old = _ring_ids(base, ring_size)
        picks = sorted({round(i * (n - 1) / max(samples - 1, 1)) for i in range(samples)})
        for kind in ("remove", "add"):
            written, minimum = [], []
            for p in picks:
                if kind == "remove":
                    backend = base[p]
                    new = _ring_ids([k for k in base if k != backend], ring_size)
                else:
                    backend = n + p  # a backend not in the base set
                    new = _ring_ids([*base, backend], ring_size)
                written.append(slots_rewritten(old, new))
                minimum.append(minimum_slots(old, new, backend, kind == "add"))
            out[f"{kind}_{n}"] = _slots_summary(written, minimum)
    return out


def _slots_summary(written: list[int], minimum: list[int]) -> dict:
    return {"changes": len(written), "written_mean": round(statistics.mean(written), 1),
            "minimum_mean": round(statistics.mean(minimum), 1),
            "ratio": round(sum(written) / sum(minimum), 4),
            "ratio_max": round(max(w / m for w, m in zip(written, minimum, strict=True)), 4)}


# --- the live daemon -----------------------------------------------------------------------
class KernelRings:
    """The daemon's rings and maps, read through its pinned maps (this process never
    attaches the program it loads for that)."""

    def __init__(self, opts: Options, pin_dir: Path) -> None:
        from lb.xdp import loader
        from lb.xdp.config import Sizes
        from lb.xdp.maps import Dataplane

        sizes = Sizes(max_vips=opts.max_vips, max_backends=opts.max_backends,
                      ring_size=opts.ring_size, conn_table_size=opts.conn_table_size)
        self.program = loader.load(sizes, pin_dir=pin_dir)
        self.dp = Dataplane(self.program)
        # A read-only mapping of its own for the watcher: one VIP's ring as bytes is one
        # copy of 128 KB, cheap enough to poll without slowing the daemon down.
        rings = self.program.table("rings")
        self._cell_slots = sizes.ring_cells * sizes.ring_cell_slots
        self._mmap = mmap.mmap(rings.get_fd(), sizes.max_vips * self._cell_slots * 2,
                               mmap.MAP_SHARED, mmap.PROT_READ)
        self.ring_size = sizes.ring_size

    def close(self) -> None:
        self._mmap.close()
        self.dp.close()
        self.program.close()

    def vip_nums(self) -> dict[str, int]:
        """VIP address (port 80) -> vip_num, as the kernel holds it."""
        return {str(k.address): num for k, (num, _) in self.dp.vips().items()
                if k.port == VIP_PORT}

    def backend_indexes(self) -> dict[str, int]:
        """Backend address -> index, for every valid slot of the backends map."""
        out = {}
        for i in range(1, self.dp.sizes.max_backends):
            address = self.dp.backend(i)
            if address is not None:
                out[str(address)] = i
        return out

    def ring(self, vip_num: int) -> list[int]:
        return self.dp.read_ring(vip_num)

    def ring_bytes(self, vip_num: int) -> bytes:
        """A VIP's ring as the kernel holds it: ring_size little-endian u16 indexes (the
        settled bit of each slot's top byte cleared: the daemon settles slots meanwhile)."""
        start = vip_num * self._cell_slots * 2
        raw = bytearray(self._mmap[start:start + self.ring_size * 2])
        raw[1::2] = bytes(raw[1::2]).translate(_INDEX_TOPS)
        return bytes(raw)

    def holds(self, vip_num: int, index: int) -> bool:
        return index in array.array("H", self.ring_bytes(vip_num))


def wait_until(check: Callable[[], bool], timeout: float = 10.0) -> float:
    """perf_counter() of the first call of `check` that returned True; TimeoutError after
    `timeout` s."""
    deadline = time.perf_counter() + timeout
    while True:
        if check():
            return time.perf_counter()
        if time.perf_counter() > deadline:
            raise TimeoutError(f"the kernel did not reflect the change within {timeout} s")
        time.sleep(0.0005)


def expected_ring(addresses: Sequence[str], index: dict[str, int], ring_size: int
                  ) -> list[int]:
    """The ring the balancer writes for backends `addresses` (weight 1 each), as kernel
    backend indexes: build_ring depends only on the set of keys, so this process can
    compute it as the daemon does."""
    ring = build_ring([(a, 1) for a in addresses], ring_size)
    indexes = [index[a] for a in addresses]
    return [indexes[m] for m in ring]


class RingWatch(threading.Thread):
    """Polls a ring until it equals `expected`; `seen` is the perf_counter() of the first
    poll that saw it (None if `timeout` s passed). A poll is one 128 KB copy and compare
    (tens of us); it sleeps 0.2 ms between polls so that the thread waiting for the HTTP
    answer gets the GIL at once."""

    def __init__(self, read: Callable[[], bytes], expected: bytes,
                 timeout: float = 10.0) -> None:
        super().__init__(daemon=True)
        self.read, self.expected, self.timeout = read, expected, timeout
        self.seen: float | None = None

    def run(self) -> None:
        deadline = time.perf_counter() + self.timeout
        while time.perf_counter() < deadline:
            if self.read() == self.expected:
                self.seen = time.perf_counter()
                return
            time.sleep(0.0002)


def change_latency(client: Client, rings: KernelRings, opts: Options) -> dict:
    """Remove and re-add one backend of a VIP of `opts.backends` over REST. Each change is
    timed until a watcher thread sees the kernel ring equal the ring expected after it, and
    until the HTTP answer; slots written are the kernel ring's before/after difference."""
    vip = vip_address(0)
    backends = [backend_address(k) for k in range(opts.backends)]
    doc = {"vips": [{"address": vip, "port": VIP_PORT, "protocol": "tcp",
                     "backends": [{"address": a} for a in backends]}]}
    client.put_config(doc)
    vip_id = next(v["id"] for v in client.list_vips() if v["address"] == vip)
    num = rings.vip_nums()[vip]
    index = rings.backend_indexes()
    members = list(backends)
    ring = expected_ring(members, index, opts.ring_size)
    if rings.ring(num) != ring or rings.ring_bytes(num) != array.array("H", ring).tobytes():
        raise RuntimeError("the kernel ring (read by Dataplane.read_ring and by the "
                           "watcher's mapping) is not the one build_ring gives: the "
                           "benchmark cannot tell when a change has reached it")
    kernel: dict[str, list[float]] = {"remove": [], "add": []}
    answer: dict[str, list[float]] = {"remove": [], "add": []}
    at_answer = 0
    written: list[int] = []
    minimum: list[int] = []
    for c in range(opts.warmup + opts.changes):
        address = backends[(c // 2) % len(backends)]
        added = c % 2 == 1
        kind = "add" if added else "remove"
        members = [*members, address] if added else [a for a in members if a != address]
        expected = expected_ring(members, index, opts.ring_size)
        before = rings.ring(num)
        watch = RingWatch(lambda: rings.ring_bytes(num), array.array("H", expected).tobytes())
        watch.start()
        t0 = time.perf_counter()
        if added:
            client.add_backend(vip_id, address)
        else:
            client.remove_backend(vip_id, address)
        t1 = time.perf_counter()
        after = rings.ring(num)
        watch.join()
        if watch.seen is None:
            raise RuntimeError(f"{kind} {address}: the kernel ring never became the "
                               "expected one")
        if c < opts.warmup:
            continue
        at_answer += after == expected
        kernel[kind].append(watch.seen - t0)
        answer[kind].append(t1 - t0)
        written.append(slots_rewritten(before, expected))
        minimum.append(minimum_slots(before, expected, index[address], added))
    return {"vip_backends": opts.backends, "changes": opts.changes,
            "warmup_changes": opts.warmup,
            "kernel": {**summary_ms(kernel["remove"] + kernel["add"]),
                       "remove": summary_ms(kernel["remove"]), "add": summary_ms(kernel["add"])},
            "answer": {**summary_ms(answer["remove"] + answer["add"]),
                       "remove": summary_ms(answer["remove"]), "add": summary_ms(answer["add"])},
            "reflected_at_answer": at_answer,
            "slots": _slots_summary(written, minimum)}


def fanout(client: Client, rings: KernelRings, opts: Options) -> dict:
    """Take SHARED_BACKEND out of every fan-out VIP with one PUT /config, until no kernel
    ring names it; then (optionally) with one DELETE per VIP."""
    with_doc = fanout_document(opts.fanout_vips, opts.fanout_backends, opts.pool, True)
    without_doc = fanout_document(opts.fanout_vips, opts.fanout_backends, opts.pool, False)
    body_with, body_without = json.dumps(with_doc).encode(), json.dumps(without_doc).encode()

    def put(body: bytes) -> tuple[float, float, dict]:
        t0 = time.perf_counter()
        report = client.put_config(body)
        t1 = time.perf_counter()
        return t0, t1, dict(report)

    log(f"  loading {opts.fanout_vips} VIPs x {opts.fanout_backends} backends (PUT /config) ...")
    t0, t1, load_report = put(body_with)
    load_ms = round((t1 - t0) * 1e3, 1)
    nums = rings.vip_nums()
    vip_nums = [nums[vip_address(i)] for i in range(opts.fanout_vips)]
    shared = rings.backend_indexes()[SHARED_BACKEND]

    def holding() -> int:
        return sum(rings.holds(n, shared) for n in vip_nums)

    if holding() != len(vip_nums):
        raise RuntimeError("after loading, not every ring names the shared backend")
    removals, restores, reports, at_response = [], [], [], 0
    for r in range(opts.fanout_rounds):
        log(f"  round {r + 1}/{opts.fanout_rounds}: PUT /config without {SHARED_BACKEND}")
        t0, t1, report = put(body_without)
        left = holding()
        t_end = t1 if left == 0 else wait_until(lambda: holding() == 0, 30)
        at_response += left == 0
        removals.append(t_end - t0)
        reports.append(report)
        t0, t1, _ = put(body_with)
        restores.append(t1 - t0)
    # The one-call path: DELETE /backends/{address} takes it out of every VIP at once.
    one_call, one_call_at_answer = [], 0
    for r in range(opts.fanout_rounds):
        log(f"  round {r + 1}/{opts.fanout_rounds}: DELETE /backends/{SHARED_BACKEND}")
        t0 = time.perf_counter()
        client.remove_backend_everywhere(SHARED_BACKEND)
        t1 = time.perf_counter()
        left = holding()
        t_end = t1 if left == 0 else wait_until(lambda: holding() == 0, 30)
        one_call_at_answer += left == 0
        one_call.append(t_end - t0)
        put(body_with)
    out = {"vips": opts.fanout_vips, "backends_per_vip": opts.fanout_backends,
           "distinct_backends": min(opts.pool, opts.fanout_vips * (opts.fanout_backends - 1)) + 1,
           "body_bytes": len(body_without),
           "load_ms": load_ms, "load_report": load_report,
           "put_config": {**summary_ms(removals), "runs_ms": [round(v * 1e3, 1) for v in removals],
                          "reflected_at_answer": at_response, "apply_reports": reports},
           "put_config_restore": summary_ms(restores),
           "delete_everywhere": {**summary_ms(one_call),
                                 "runs_ms": [round(v * 1e3, 1) for v in one_call],
                                 "reflected_at_answer": one_call_at_answer}}
    if opts.per_vip_delete:
        log(f"  {opts.fanout_vips} x DELETE /vips/{{id}}/backends/{SHARED_BACKEND}")
        ids = [v["id"] for v in client.list_vips()]
        t0 = time.perf_counter()
        for vip_id in ids:
            client.remove_backend(vip_id, SHARED_BACKEND)
        t1 = time.perf_counter()
        left = holding()
        t_end = t1 if left == 0 else wait_until(lambda: holding() == 0, 30)
        out["per_vip_delete"] = {"calls": len(ids), "total_ms": round((t_end - t0) * 1e3, 1),
                                 "per_call_ms": round((t_end - t0) * 1e3 / len(ids), 3),
                                 "reflected_at_answer": left == 0}
    return out


def api_client(url: str) -> Client:
    """An HTTP client with TCP_NODELAY: without it a request whose body goes in a second
    segment waits for the server's delayed ACK (40 ms on loopback), which is the client's
    delay, not the daemon's."""
    nodelay = [(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)]
    return Client(url, timeout=300, transport=httpx.HTTPTransport(socket_options=nodelay))


def run_live(opts: Options) -> dict:
    """The daemon figures: a VethLab, `lb run` on it, its rings read through its pins."""
    from lb.lab.daemon import LabDaemon, remove_leftover_pins
    from lb.lab.namespaces import remove_leftovers
    from lb.lab.veth import VethLab

    remove_leftovers(LAB_PREFIX)
    remove_leftover_pins()
    log("building a veth lab and starting `lb run` on it ...")
    with VethLab(n_backends=1, prefix=LAB_PREFIX) as lab, \
            LabDaemon(lab, max_vips=opts.max_vips, max_backends=opts.max_backends,
                      conn_table_size=opts.conn_table_size) as daemon:
        log(f"  daemon pid {daemon.process.pid}, API {daemon.url}, pins {daemon.pin_dir}")
        log("loading the program against the daemon's pinned maps (read side) ...")
        rings = KernelRings(opts, daemon.pin_dir)
        try:
            with api_client(daemon.url) as client:
                log(f"change latency: {opts.changes} changes (+{opts.warmup} warm-up) of 1 "
                    f"of {opts.backends} backends ...")
                latency = change_latency(client, rings, opts)
                log(f"fan-out: 1 backend in {opts.fanout_vips} VIPs ...")
                fan = fanout(client, rings, opts)
                client.put_config({"vips": []})
        finally:
            rings.close()
        setup = {"daemon": " ".join(daemon.args[1:]), "state_dir": str(daemon.state_dir),
                 "lab": "VethLab(n_backends=1); daemon API on 127.0.0.1, data plane in the "
                        "lab's balancer namespace"}
    return {"latency": latency, "fanout": fan, "daemon": setup}


# --- report --------------------------------------------------------------------------------
# What each kind of figure measured (its key's first word).
MEASURED = {
    "change": "from just before the HTTP request until the kernel ring (or the HTTP answer) "
              "reflected the change",
    "build": "lb.control.maglev.build_ring in this process, cold permutation cache",
    "slots": "ring slots a change rewrites over the slots whose backend must change",
    "fanout": "from just before the request(s) until no kernel ring names the backend",
}
def build_report(opts: Options, host: dict, builds: dict, diffs: dict,
                 live: dict | None) -> dict:
    """Everything measured, its targets and results, as one JSON-ready dict."""
    figures: list[Result] = []

    def figure(key: str, label: str, value: float | None, unit: str,
               target: float | None = None, **extra: object) -> None:
        figures.append(Result(key, label, value, unit, MEASURED[key.split("_")[0]], target,
                              verdict(value, target), extra))

    if live:
        lat = live["latency"]
        n, k, a = lat["vip_backends"], lat["kernel"], lat["answer"]
        figure("change_kernel_median", f"API change -> kernel ring, 1 of {n}: median",
               k["median_ms"], "ms", TARGET_CHANGE_MEDIAN_MS)
        figure("change_kernel_p99", f"API change -> kernel ring, 1 of {n}: p99",
               k["p99_ms"], "ms")
        figure("change_kernel_remove", "  remove (DELETE): median / p99",
               k["remove"]["median_ms"], "ms", p99=k["remove"]["p99_ms"])
        figure("change_kernel_add", "  add (POST): median / p99",
               k["add"]["median_ms"], "ms", p99=k["add"]["p99_ms"])
        figure("change_answer_remove", "API change -> HTTP answer, remove: median / p99",
               a["remove"]["median_ms"], "ms", p99=a["remove"]["p99_ms"])
        figure("change_answer_add", "API change -> HTTP answer, add: median / p99",
               a["add"]["median_ms"], "ms", p99=a["add"]["p99_ms"])
    for n, b in builds.items():
        figure(f"build_{n}", f"ring build, {n} backends (M={opts.ring_size})", b["median_ms"],
               "ms", TARGET_BUILD_1000_MS if n == "1000" else None)
    for key, d in diffs.items():
        kind, n = key.split("_")
        what = f"remove 1 of {n}" if kind == "remove" else f"add 1 to {n}"
        figure(f"slots_{key}", f"slots written / minimum, {what}", d["ratio"], "x",
               written_mean=d["written_mean"], minimum_mean=d["minimum_mean"])
    if live:
        s = live["latency"]["slots"]
        figure("slots_api", f"  the same in the kernel, API changes of 1 of "
               f"{live['latency']['vip_backends']}", s["ratio"], "x",
               written_mean=s["written_mean"], minimum_mean=s["minimum_mean"])
        f = live["fanout"]
        figure("fanout_delete_everywhere",
               f"1 backend out of {f['vips']} VIPs: DELETE /backends/{{address}}",
               f["delete_everywhere"]["median_ms"], "ms", TARGET_FANOUT_MS)
        figure("fanout_put_config", "  the same by PUT /config (whole document)",
               f["put_config"]["median_ms"], "ms")
        if "per_vip_delete" in f:
            figure("fanout_per_vip_delete", f"  the same by {f['vips']} x DELETE (total)",
                   f["per_vip_delete"]["total_ms"], "ms")
    return {
        "schema": SCHEMA,
        "host": host,
        "method": {
            "clock": "time.perf_counter in the benchmark process",
            "change_latency": "kernel: from just before the HTTP request until a watcher "
                              "thread, polling the VIP's ring (mmap of the pinned rings map) "
                              "every ~0.25 ms, sees it equal the ring build_ring gives for the "
                              "new backend set; answer: until the HTTP answer arrived (the "
                              "ring is also checked then: reflected_at_answer)",
            "change_schedule": "DELETE backend j, POST it back, j = 0, 1, ... (alternating)",
            "build": f"median of {opts.build_runs} build_ring calls after one warm-up",
            "slots": "written: slots where old and new ring differ (what the diff write "
                     "writes); minimum: the removed backend's slots in the old ring, or the "
                     "added backend's in the new one; ratio: sum written / sum minimum",
            "fanout": "PUT /config of the same document without the shared backend, timed "
                      "until no kernel ring of the VIPs names its index; each round then "
                      "restores it with another PUT (timed apart)",
        },
        "setup": {"ring_size": opts.ring_size, "max_vips": opts.max_vips,
                  "max_backends": opts.max_backends, "conn_table_size": opts.conn_table_size,
                  "build_sizes": list(opts.build_sizes), "diff_sizes": list(opts.diff_sizes),
                  "diff_samples": opts.diff_samples,
                  **({"daemon": live["daemon"]} if live else {"daemon": None})},
        "figures": common.by_name(figures),
        "builds": builds,
        "diffs": diffs,
        **({"latency": live["latency"], "fanout": live["fanout"]} if live else {}),
    }


def _value(f: dict) -> str:
    if "p99" in f:
        return f"{f['value']:.1f} / {f['p99']:.1f} ms"
    return common.number(f["value"], ".2f", "x") if f["unit"] == "x" else \
        common.number(f["value"], ".1f", f" {f['unit']}")


def _target(f: dict) -> str:
    return "" if f["target"] is None else f"< {f['target']:g} {f['unit']}"


def render(report: dict) -> str:
    """The human table: host facts, one line per figure with its target and result."""
    h, s = report["host"], report["setup"]
    lines = common.heading("Control-plane benchmark: from an API call to the kernel rings", h,
                           f"  rings of {s['ring_size']} slots; daemon sized for "
                           f"{s['max_vips']} VIPs, {s['max_backends']} backends")
    lines.append(common.table([[f["label"], _value(f), _target(f), f["result"]]
                               for f in report["figures"].values()],
                              ["figure", "value", "target", "result"], "lrrl"))
    if "latency" in report:
        lat, fan = report["latency"], report["fanout"]
        lines += [
            "",
            f"change latency: {lat['changes']} changes; kernel ring min "
            f"{lat['kernel']['min_ms']:.1f}, max {lat['kernel']['max_ms']:.1f} ms; "
            f"{lat['reflected_at_answer']} of {lat['changes']} already in the ring when "
            "the answer arrived",
            f"fan-out: {fan['vips']} VIPs x {fan['backends_per_vip']} backends "
            f"({fan['distinct_backends']} distinct), body {fan['body_bytes'] / 1e6:.1f} MB; "
            f"removal runs {fan['put_config']['runs_ms']} ms, restore median "
            f"{fan['put_config_restore']['median_ms']:.0f} ms, first load {fan['load_ms']:.0f} ms",
        ]
    lines += ["", "slots: written mean / minimum mean per change"]
    for f in report["figures"].values():
        if f["unit"] == "x":
            lines.append(f"  {f['label'].strip():<50}{f['written_mean']:>9} / "
                         f"{f['minimum_mean']}")
    return "\n".join(lines)


# --- CLI -----------------------------------------------------------------------------------
EXAMPLES = """\
examples:
  python -m bench.controlplane                 # full run: table, bench/results/controlplane-*.json
  python -m bench.controlplane --no-live       # only ring builds and slot counts (no root)
  python -m bench.controlplane --changes 1000  # more API changes for a steadier p99
  python -m bench.controlplane --changes 50 --fanout-rounds 1 --no-per-vip-delete \\
      --json /tmp/quick.json                   # a quick look
  python -m bench.controlplane --fanout-vips 128 --pool 1000   # a smaller fan-out
"""


def parse_args(argv: list[str] | None = None) -> tuple[Options, argparse.Namespace]:
    p = common.parser("controlplane", EXAMPLES, Options)
    p.add_argument("--fail-on-miss", action="store_true",
                   help="exit 2 when a figure misses its target")
    a = p.parse_args(argv)
    if min(a.changes, a.backends, a.build_runs, a.diff_samples, a.fanout_vips,
           a.fanout_rounds, *a.build_sizes, *a.diff_sizes) < 1 or a.warmup < 0:
        p.error("--changes, --backends, --build-runs, --diff-samples, --fanout-vips, "
                "--fanout-rounds and the counts of --build-sizes and --diff-sizes must be "
                ">= 1; --warmup >= 0")
    if not 2 <= a.fanout_backends <= a.pool + 1:
        p.error("--fanout-backends must be 2..--pool + 1")
    return common.options_from(Options, a), a


def main(argv: list[str] | None = None) -> int:
    opts, args = parse_args(argv)
    if opts.live and not common.is_root("controlplane", "the daemon figures; or use --no-live"):
        return 1
    common.unwind_on_sigterm()
    host = common.host_facts()
    log(f"ring builds: {', '.join(map(str, opts.build_sizes))} backends, "
        f"{opts.build_runs} runs each ...")
    builds = time_builds(opts.build_sizes, opts.build_runs, opts.ring_size)
    log(f"slots written per change: {', '.join(map(str, opts.diff_sizes))} backends ...")
    diffs = diff_figures(opts.diff_sizes, opts.diff_samples, opts.ring_size)
    live = run_live(opts) if opts.live else None
    report = build_report(opts, host, builds, diffs, live)
    common.emit("controlplane", report, render, opts.json_path)
    if args.fail_on_miss and any(f["result"] == "missed" for f in report["figures"].values()):
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
