"""The fleet benchmark: how long a change through one host takes to be in every host's kernel.

Three real `lb run` daemons (one veth lab, three balancers behind the router's ECMP route, one
etcd member in a lab namespace) share an etcd prefix. Each change is a weight change of one
backend of one VIP (4 backends), made through host A's API, alternating host A, B, C as the
host changed through when `--rotate`. The change is in a host's kernel when that host's digest
of the VIP's ring (GET /fleet: computed from the kernel's ring) equals the one the committing
host reports once its API answered. Figures: the time from sending the request until every
host's digest matches (median, p99, max over `--changes` changes), and the API answer time
alone (the commit in etcd, the committing host's own kernel write included). The polling of
three APIs adds its own period (about 2-5 ms) to every figure.

Run as root: `python -m bench.fleet --help`.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import common
from bench.common import Result, flag, log
from lb.client import Client
from lb.lab.daemon import LabDaemon, fresh_lab
from lb.lab.etcd import EtcdCluster

SCHEMA = "lb-bench-fleet/1"
LAB_PREFIX = "lbb"
TARGET_MEDIAN_MS = 100.0
EXAMPLES = """examples:
  python -m bench.fleet                       200 changes through host A
  python -m bench.fleet --changes 50 --rotate changes through A, B, C in turn
"""


@dataclass(frozen=True)
class Options:
    """Everything a run depends on; the flags are the flag() fields."""

    changes: int = flag(200, "weight changes to time")
    rotate: bool = flag(False, "make the changes through host A, B, C in turn")
    timeout: float = flag(5.0, "seconds one change may take to reach every host")
    json_path: Path | None = None


def _digest(api: Client, vip_id: int) -> str | None:
    view = api.fleet()
    me = next(h for h in view["hosts"] if h["name"] == view["host"])
    return me["rings"].get(str(vip_id))


def run(opts: Options) -> dict[str, Any]:
    with fresh_lab(LAB_PREFIX, n_backends=5, rx_queues=1, n_balancers=3) as lab:
        etcd_host = lab.backends[4]
        with EtcdCluster(1, netns=etcd_host.netns, host=str(etcd_host.v4)) as etcd:
            url = etcd.store_url("bench")
            daemons = [LabDaemon(lab, balancer=b, extra_args=[
                "--store", url, "--host-name", f"lb{j}", "--settle-interval-s", "0"])
                for j, b in enumerate(lab.balancers)]
            try:
                for d in daemons:
                    d.start()
                return _measure(opts, [d.api for d in daemons], lab)
            finally:
                for d in daemons:
                    d.close()
                lab.detach_balancers()


def _measure(opts: Options, apis: list[Client], lab: Any) -> dict[str, Any]:
    vip = apis[0].create_vip("10.100.0.1", 80)
    backends = [str(b.v4) for b in lab.backends[:4]]
    for b in backends:
        apis[0].add_backend(vip["id"], b)
    deadline = time.monotonic() + 15
    while len({_digest(a, vip["id"]) for a in apis}) != 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    converge, answer, lost = [], [], 0
    for i in range(opts.changes):
        via = apis[i % 3] if opts.rotate else apis[0]
        weight = 2 + i % 7
        t0 = time.perf_counter()
        via.update_backend(vip["id"], backends[0], weight=weight)
        t1 = time.perf_counter()
        want = _digest(via, vip["id"])
        pending = [a for a in apis if a is not via]
        until = time.monotonic() + opts.timeout
        while pending and time.monotonic() < until:
            pending = [a for a in pending if _digest(a, vip["id"]) != want]
        if pending:
            lost += 1
            continue
        converge.append((time.perf_counter() - t0) * 1000)
        answer.append((t1 - t0) * 1000)
        if (i + 1) % 50 == 0:
            log(f"  {i + 1} changes")
    return {"converge_ms": converge, "answer_ms": answer, "lost": lost}


def build_report(opts: Options, host: dict[str, Any], raw: dict[str, Any]) -> dict[str, Any]:
    conv, ans = raw["converge_ms"], raw["answer_ms"]

    def pct(v: list[float], p: float) -> float | None:
        return common.percentile(v, p) if v else None

    med = pct(conv, 50)
    results = [
        Result("converge_p50", "change -> every host's kernel, median", med, "ms",
               "request sent until all three hosts' ring digests match", TARGET_MEDIAN_MS,
               "" if med is None else ("ok" if med < TARGET_MEDIAN_MS else "MISS")),
        Result("converge_p99", "change -> every host's kernel, p99", pct(conv, 99), "ms"),
        Result("converge_max", "change -> every host's kernel, max", max(conv, default=None),
               "ms"),
        Result("answer_p50", "API answer (committed in etcd), median", pct(ans, 50), "ms"),
        Result("answer_p99", "API answer (committed in etcd), p99", pct(ans, 99), "ms"),
        Result("lost", "changes not everywhere within the timeout", raw["lost"], "changes"),
    ]
    return {"schema": SCHEMA, "host": host,
            "options": {"changes": opts.changes, "rotate": opts.rotate},
            "figures": common.by_name(results), "_results": results}


def render(report: dict[str, Any]) -> str:
    rows = [(r.label, common.number(r.value, ".1f" if r.unit == "ms" else ".0f", f" {r.unit}"),
             "" if r.target is None else f"< {r.target:g} ms", r.result)
            for r in report["_results"]]
    lines = common.heading("bench.fleet: 3 daemons, 1 etcd member, weight changes",
                           report["host"], f"  {report['options']}")
    return "\n".join([*lines, common.table(rows, ("figure", "value", "target", ""), "lrll")])


def main(argv: list[str] | None = None) -> int:
    opts = common.options_from(Options, common.parser("fleet", EXAMPLES, Options)
                               .parse_args(argv))
    if not common.is_root("fleet", "bpf(), network namespaces"):
        return 1
    common.unwind_on_sigterm()
    report = build_report(opts, common.host_facts(), run(opts))
    print(render(report))
    if opts.json_path is not None:
        data = {k: v for k, v in report.items() if k != "_results"}
        log(f"wrote {common.write_json(data, opts.json_path, 'fleet')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
