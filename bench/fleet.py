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

import json
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
TARGET_CONFIG_MS = 3000.0
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
    config_vips: int = flag(512, "VIPs of the one big PUT /config timed after the changes "
                            "(0: none)")
    config_backends: int = flag(100, "backends of each VIP of that PUT /config")
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
            daemons = [LabDaemon(lab, balancer=b, max_vips=max(16, opts.config_vips),
                                 max_backends=max(64, opts.config_backends + 1), extra_args=[
                "--store", url, "--host-name", f"lb{j}", "--settle-interval-s", "0"])
                for j, b in enumerate(lab.balancers)]
            try:
                for d in daemons:
                    d.start()
                apis = [d.api for d in daemons]
                raw = _measure(opts, apis, lab)
                if opts.config_vips:
                    raw["config"] = _measure_config(opts, apis, etcd.endpoints,
                                                    etcd_host.netns)
                return raw
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


def _config_document(vips: int, backends: int) -> dict[str, Any]:
    addresses = [f"10.2.{j // 250}.{j % 250 + 1}" for j in range(backends)]
    return {"vips": [{"address": f"10.100.{i // 250}.{i % 250 + 1}", "port": 80,
                      "backends": [{"address": a, "weight": 1} for a in addresses]}
                     for i in range(vips)]}


def _measure_config(opts: Options, apis: list[Client], endpoints: list[str],
                    netns: str) -> dict[str, Any]:
    """One PUT /config of config_vips x config_backends through host A: the answer time, the
    time until each host's kernel holds every ring (its digests equal host A's), and etcd's
    own share: the same keys and bytes written in one transaction to a scratch prefix."""
    document = _config_document(opts.config_vips, opts.config_backends)
    t0 = time.perf_counter()
    apis[0].put_config(json.dumps(document))
    answered = (time.perf_counter() - t0) * 1000
    want = _all_digests(apis[0])
    per_host: list[float | None] = [None] * len(apis)
    per_host[0] = answered
    until = time.monotonic() + 60
    while None in per_host and time.monotonic() < until:
        for j, api in enumerate(apis):
            if per_host[j] is None and _all_digests(api) == want:
                per_host[j] = (time.perf_counter() - t0) * 1000
        time.sleep(0.02)
    return {"vips": opts.config_vips, "backends": opts.config_backends,
            "answer_ms": answered, "host_ms": per_host,
            "etcd_txn_ms": _etcd_share(endpoints, netns)}


def _all_digests(api: Client) -> dict[str, str]:
    view = api.fleet()
    return next(h for h in view["hosts"] if h["name"] == view["host"])["rings"]


def _etcd_share(endpoints: list[str], netns: str) -> float:
    """The time etcd takes for the transaction the PUT made: the prefix's keys and values
    written again, in one transaction, under a scratch prefix (from etcd's namespace)."""
    from lb.control.etcd import Etcd, put
    from lb.netns import in_netns

    with in_netns(netns):
        etcd = Etcd(endpoints, timeout_s=60)
        try:
            _, kvs = etcd.get_prefix(b"/bench/")
            ops = [put(b"/scratch" + kv.key, kv.value) for kv in kvs]
            t0 = time.perf_counter()
            etcd.txn([], ops)
            took = (time.perf_counter() - t0) * 1000
            etcd.delete_prefix(b"/scratch/")
            return took
        finally:
            etcd.close()


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
    if "config" in raw:
        c = raw["config"]
        size = f"PUT /config {c['vips']} VIPs x {c['backends']} backends"
        results.append(Result("config_answer", f"{size}: API answer", c["answer_ms"], "ms"))
        for j, ms in enumerate(c["host_ms"]):
            results.append(Result(f"config_host{j}", f"{size}: in host {'ABC'[j]}'s kernel",
                                  ms, "ms", "request sent until the host's digests of every "
                                  "VIP equal host A's", TARGET_CONFIG_MS,
                                  "MISS" if ms is None or ms >= TARGET_CONFIG_MS else "ok"))
        results.append(Result("config_etcd", f"{size}: etcd's own transaction",
                              c["etcd_txn_ms"], "ms", "the same keys and bytes in one "
                              "transaction, timed alone"))
    return {"schema": SCHEMA, "host": host,
            "options": {"changes": opts.changes, "rotate": opts.rotate,
                        "config_vips": opts.config_vips,
                        "config_backends": opts.config_backends},
            "figures": common.by_name(results)}


def render(report: dict[str, Any]) -> str:
    rows = [(f["label"], common.number(f["value"], ".1f" if f["unit"] == "ms" else ".0f",
                                       f" {f['unit']}"),
             "" if f["target"] is None else f"< {f['target']:g} ms", f["result"])
            for f in report["figures"].values()]
    lines = common.heading("bench.fleet: 3 daemons, 1 etcd member, weight changes",
                           report["host"], f"  {report['options']}")
    return "\n".join([*lines, common.table(rows, ("figure", "value", "target", ""), "lrll")])


def main(argv: list[str] | None = None) -> int:
    opts = common.options_from(Options, common.parser("fleet", EXAMPLES, Options)
                               .parse_args(argv))
    if not common.is_root("fleet", "bpf(), network namespaces"):
        return 1
    common.unwind_on_sigterm()
    common.emit("fleet", build_report(opts, common.host_facts(), run(opts)), render,
                opts.json_path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
