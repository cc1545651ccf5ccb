"""The API-under-load benchmark: /healthz latency while one client sends the largest documents
the limits allow, and while thousands of half-sent requests hold connections open.

A real `lb run` daemon (lb.lab.daemon.LabDaemon on a VethLab, `max_vips` 512) is probed by one
thread that GETs /healthz every 10 ms on a keep-alive connection. Meanwhile, in turn:

  * fits: a `PUT /config` just under `api_max_body_bytes` (4 MiB by default) that fits the
    capacity (512 VIPs x 200 backends): it is applied (200);
  * too_many_vips: a document of the same size with one backend per VIP (far more VIPs than
    `max_vips`): refused whole (507) before any row is written or ring built;
  * over_limit: a body just over `api_max_body_bytes`: refused (413) before it is parsed;
  * half_open: `--half-open` connections that send a request line and one header and stop
    (slowloris), held for `--hold` s, longer than `api_header_timeout_s` (10 s): the figure
    says how many the server closed by then.

Figures per phase: the phase's own time and answer, /healthz p50, p99 and max, and failed
probes (any error or non-200 answer). Run as root: `python -m bench.api --help`.
"""

from __future__ import annotations

import json
import socket
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from bench import common
from bench.common import Result, flag, log
from lb.lab.daemon import LabDaemon, fresh_lab

SCHEMA = "lb-bench-api/1"
LAB_PREFIX = "lba"
# The defaults of api_max_body_bytes and api_header_timeout_s (lb/control/settings.py).
BODY_LIMIT = 4 * 1024 * 1024
HEADER_TIMEOUT_S = 10.0
MAX_VIPS = 512
EXAMPLES = """examples:
  python -m bench.api                        every phase, 3,000 half-open connections
  python -m bench.api --half-open 500 --hold 12
"""


@dataclass(frozen=True)
class Options:
    """Everything a run depends on; the flags are the flag() fields."""

    half_open: int = flag(3000, "half-sent requests held open at once")
    hold: float = flag(15.0, "seconds the half-open connections are held")
    json_path: Path | None = common.RESULTS_DIR


def _probe(url: str, stop: threading.Event, out: list[tuple[float, bool]]) -> None:
    with httpx.Client(base_url=url, timeout=60) as c:
        while not stop.is_set():
            t = time.perf_counter()
            try:
                ok = c.get("/healthz").status_code == 200
            except httpx.HTTPError:
                ok = False
            out.append((time.perf_counter() - t, ok))
            time.sleep(0.01)


def _during(url: str, work: Callable[[], str]) -> dict[str, Any]:
    """Run `work` while /healthz is probed (from 0.5 s before to 0.5 s after)."""
    stop = threading.Event()
    out: list[tuple[float, bool]] = []
    probe = threading.Thread(target=_probe, args=(url, stop, out))
    probe.start()
    time.sleep(0.5)
    t0 = time.perf_counter()
    answer = work()
    took = time.perf_counter() - t0
    time.sleep(0.5)
    stop.set()
    probe.join()
    latency = [d * 1000 for d, _ in out]
    return {"work_s": took, "answer": answer, "probes": len(out),
            "failed": sum(1 for _, ok in out if not ok),
            "p50_ms": common.percentile(latency, 50), "p99_ms": common.percentile(latency, 99),
            "max_ms": max(latency)}


def _document(limit: int, fits: bool) -> tuple[bytes, int]:
    """A PUT /config body of nearly `limit` bytes: 512 VIPs of 200 backends when `fits`,
    else as many one-backend VIPs as the size allows."""
    per, vips, size = (200 if fits else 1), [], 0
    for i in range(10**7):
        vip = {"address": f"10.{100 + i // 60000}.{(i // 250) % 240}.{i % 250 + 1}",
               "port": 80,
               "backends": [{"address": f"10.2.{(j + i) % 4095 // 250}."
                                        f"{(j + i) % 4095 % 250 + 1}", "weight": 1}
                            for j in range(per)]}
        step = len(json.dumps(vip)) + 2
        if size + step > limit - 64 or (fits and i >= MAX_VIPS):
            break
        vips.append(vip)
        size += step
    return json.dumps({"vips": vips}).encode(), len(vips)


def _put(url: str, body: bytes) -> Callable[[], str]:
    def put() -> str:
        r = httpx.put(url + "/config", content=body, timeout=600,
                      headers={"content-type": "application/json"})
        return str(r.status_code)
    return put


def _half_open(port: int, count: int, hold: float) -> Callable[[], str]:
    def work() -> str:
        socks: list[socket.socket] = []
        try:
            for _ in range(count):
                try:
                    s = socket.create_connection(("127.0.0.1", port), timeout=5)
                except OSError:
                    break
                socks.append(s)
                s.sendall(b"GET /healthz HTTP/1.1\r\nHost: lb\r\n")
            time.sleep(hold)
            closed = 0
            for s in socks:
                s.setblocking(False)
                try:
                    closed += s.recv(1) == b""
                except BlockingIOError:
                    pass
                except OSError:
                    closed += 1
            return f"{len(socks)} opened, {closed} closed by the server after {hold:g} s"
        finally:
            for s in socks:
                s.close()
    return work


def run(opts: Options) -> dict[str, Any]:
    phases: dict[str, Any] = {}
    with fresh_lab(LAB_PREFIX, n_backends=1, rx_queues=1) as lab, \
            LabDaemon(lab, max_vips=MAX_VIPS, max_backends=4096) as d:
        for name, fits in (("fits", True), ("too_many_vips", False)):
            body, n = _document(BODY_LIMIT, fits)
            log(f"{name}: {len(body)} bytes, {n} VIPs")
            phases[name] = _during(d.url, _put(d.url, body))
            phases[name]["body_bytes"], phases[name]["vips"] = len(body), n
            httpx.put(d.url + "/config", json={"vips": []}, timeout=600).raise_for_status()
        over = b'{"vips": [' + b" " * (BODY_LIMIT + 10) + b"]}"
        phases["over_limit"] = _during(d.url, _put(d.url, over))
        phases["over_limit"]["body_bytes"] = len(over)
        log(f"half_open: {opts.half_open} connections for {opts.hold:g} s")
        phases["half_open"] = _during(d.url, _half_open(d.port, opts.half_open, opts.hold))
    return phases


def build_report(opts: Options, host: dict[str, Any], phases: dict[str, Any]) -> dict[str, Any]:
    results = []
    for name, p in phases.items():
        results.append(Result(f"{name}_p99", f"{name}: /healthz p99", p["p99_ms"], "ms",
                              f"answer {p['answer']} in {p['work_s']:.2f} s; p50 "
                              f"{p['p50_ms']:.1f} ms, max {p['max_ms']:.1f} ms, "
                              f"{p['failed']} of {p['probes']} probes failed"))
    return {"schema": SCHEMA, "host": host,
            "options": {"half_open": opts.half_open, "hold": opts.hold,
                        "body_limit": BODY_LIMIT, "max_vips": MAX_VIPS},
            "phases": phases, "figures": common.by_name(results)}


def render(report: dict[str, Any]) -> str:
    rows = [(f["label"], common.number(f["value"], ".1f", " ms"), f["measured"])
            for f in report["figures"].values()]
    lines = common.heading("bench.api: /healthz while the API is loaded", report["host"],
                           f"  {report['options']}")
    return "\n".join([*lines, common.table(rows, ("phase", "value", "detail"), "lrl")])


def main(argv: list[str] | None = None) -> int:
    opts = common.options_from(Options, common.parser("api", EXAMPLES, Options)
                               .parse_args(argv))
    if not common.is_root("api", "bpf(), network namespaces"):
        return 1
    common.unwind_on_sigterm()
    common.emit("api", build_report(opts, common.host_facts(), run(opts)), render,
                opts.json_path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
