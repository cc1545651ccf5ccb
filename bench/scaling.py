"""The scaling benchmark: ns per packet as the work grows (flows in the connection table,
backends, VIPs), and the kernel memory of every map at default sizes and at the maxima.

Per packet, through BPF_PROG_TEST_RUN on the -DLB_BENCH build, with bench.dataplane's
machinery (Subject, BenchStateMap-style bench state, counter checks, the encap floors):

  * new flow: every repetition a new flow (the prologue writes a running 32-bit number over
    the IPv4 source: 2^32 distinct flows, where a 16-bit source port would wrap at 65,536,
    fewer than the 1M flows the table holds), into a table pre-filled with F flows;
  * established, one flow: the same flow every repetition (primed by one call), with F other
    flows in the table;
  * established, cycling: every repetition a different one of the F pre-filled flows (the
    prologue counts through the sources the fill used; F repetitions per call, so every
    flow once), which is what a busy host sees. Its floor is the probe floor (bench/floors.c):
    encap plus one read of a 64-byte line picked by the flow from an array as big as one
    CPU's table, allocated as the table is: the least a packet costs when every flow has a
    line of its own and the lines do not fit in the caches.

for F = 1, 10k, 1M flows, 10 and 1,000 backends per VIP, 1 and 512 VIPs (traffic goes to the
first VIP; the others fill the VIP maps and rings). The table is filled by the program itself
(one test run of F repetitions, a new source each) on the pinned CPU, and counted after.

Measured twice: with every ring slot unsettled (the table path, as above), then with the
rings settled, where established packets skip the table (settled, one flow; settled,
cycling: its floor is the varied encap floor, as nothing is read per flow but the ring slot
and the sampled table reads).

Target: established with 1M flows in the table at most 1.5x established with one flow,
judged on settled cycling against the cheaper one-flow figure, each over its own floor.
Printed beside it: the table path (cycling / one flow), one flow among 1M (the table's size
alone), and the table cycling case's probe floor divided by the one-flow cost: where the
floor alone is over 1.5x, a packet that reads a line per flow cannot meet 1.5x for traffic
spread over 1M flows on that machine.

Memory: every map's `memlock` from /proc/self/fdinfo (the kernel's own accounting), for a
load at default sizes and one at half sizes; at the maxima the figure is computed from those
two (linear in entries) unless a load at the maxima fits `--max-alloc-gib`.

Run as root: `python -m bench.scaling --help`.
"""

from __future__ import annotations

import ctypes
import ipaddress
import os
import re
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from bench import common
from bench.common import Result, flag, log
from bench.dataplane import (
    ENCAP_V4_LEN,
    IPV4_SRC_OFFSET,
    Subject,
    counter_problems,
    floor_subjects,
    frame_problems,
    tcp_ack_v4,
    tcp_syn_v4,
    vip_v4,
)
from bench.dataplane import Options as DataplaneOptions
from lb.xdp.config import Sizes
from lb.xdp.consts import CT_SAMPLE_MASK

DEFAULT_JSON = common.RESULTS_DIR
SCHEMA = "lb-bench-scaling/1"
TARGET_RATIO = 1.5
# First source number of the new-flow case: far from the fill's 1..F.
NEW_FLOW_SEQ = 1 << 31
# Least share of hits the cycling case must see (flows a full set evicted during the fill miss).
MIN_CYCLE_HITS = 0.85
MAXIMA = Sizes(max_vips=65536, max_backends=32768, conn_table_size=1 << 26, filter_bits=24)


def backend_address(k: int) -> str:
    return f"10.200.{k // 250}.{k % 250 + 1}"


# --- memory (pure) --------------------------------------------------------------------------
def parse_fdinfo(text: str) -> dict[str, int]:
    """A map fd's /proc/<pid>/fdinfo as {field: int} (map_type, key_size, value_size,
    max_entries, memlock, ...); fields that are not integers are left out."""
    out = {}
    for m in re.finditer(r"^(\w+):\s+(-?\d+)\s*$", text, re.MULTILINE):
        out[m.group(1)] = int(m.group(2))
    return out


def map_entries(sizes: Sizes) -> dict[str, int]:
    """max_entries of every map of lb_maps.h for `sizes` (checked against the kernel's
    figures for every load the benchmark makes)."""
    return {
        "lb_config": 1, "vips_v4": 2 * sizes.max_vips, "vips_v6": 2 * sizes.max_vips,
        "vip_index_v4": 1 << sizes.vip_index_bits, "vip_index_v6": 1 << sizes.vip_index_bits,
        "vip_filter": 1 << sizes.filter_bits, "rings": sizes.max_vips * sizes.ring_cells,
        "backends": sizes.max_backends, "ct_v4": sizes.conn_table_entries,
        "ct_v6": sizes.conn_table_entries, "counters": 1, "vip_stats": sizes.max_vips,
        "backend_stats": sizes.max_backends, "icmp_budget": 1,
    }


def extrapolate(a: tuple[int, int], b: tuple[int, int], entries: int) -> int:
    """memlock at `entries` from two (entries, memlock) points, linear (fixed + per entry);
    with one distinct point, memlock is taken as fixed."""
    (ea, ma), (eb, mb) = a, b
    if ea == eb:
        return ma
    per = (ma - mb) / (ea - eb)
    return round(ma + per * (entries - ea))


def judge(ratio: float | None, target: float = TARGET_RATIO) -> str:
    """PASS when the ratio is within the target, MISS above it, INVALID without one."""
    if ratio is None:
        return "INVALID"
    return "PASS" if ratio <= target else "MISS"


def fmt_bytes(n: int) -> str:
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} B"


# --- options --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Options:
    """Everything a run depends on; the CLI flags map one-to-one onto these fields.

    repeat: repetitions per call (established; cycling uses F: every flow once);
    repeat_new: repetitions per new-flow call (the call's own flows land in the table too);
    runs: timed calls per figure (median), after one warm-up call.
    flows / backends / vips: the grid. conn_table_size: per CPU per family, big enough to
    hold 1M flows in 2-way sets. cpu: pinned CPU. max_alloc_gib: load at the maxima only if
    their maps fit this.
    """

    repeat: int = flag(200_000, "repetitions per established call")
    repeat_new: int = flag(20_000, "repetitions per new-flow call")
    runs: int = flag(3, "timed calls per figure")
    flows: tuple[int, ...] = flag((1, 10_000, 1_000_000), "flows pre-filled in the table")
    backends: tuple[int, ...] = flag((10, 1000), "backends per VIP")
    vips: tuple[int, ...] = flag((1, 512), "VIPs")
    conn_table_size: int = flag(1 << 22, "connection-table entries per CPU per family")
    cpu: int | None = flag(None, "CPU to pin to (default: the highest allowed one)", type=int)
    memory: bool = flag(True, "no memory table")
    per_packet: bool = True
    max_alloc_gib: float = flag(2.0, "load at the maxima only if their maps fit this")
    json_path: Path | None = DEFAULT_JSON

    def sizes(self) -> Sizes:
        return Sizes(max_vips=max(512, max(self.vips)), conn_table_size=self.conn_table_size)


# --- per packet -----------------------------------------------------------------------------
class Bench:
    """One -DLB_BENCH load, its service, its bench state and the encap floors."""

    def __init__(self, opts: Options) -> None:
        from lb.control.service import Balancer
        from lb.xdp import loader
        from lb.xdp.config import RuntimeConfig
        from lb.xdp.maps import Dataplane

        self.opts = opts
        self.program = loader.load(opts.sizes(), bench=True)
        self.dp = Dataplane(self.program)
        self.dp.write_config(RuntimeConfig(next_hop_mac="02:00:00:00:00:02",
                                           src_mac="02:00:00:00:00:01"))
        self.service = Balancer(self.dp)
        self.state = self.program.table("bench_state")
        self.frame = tcp_ack_v4(vip_v4(0))
        # The fill and the one-flow priming use SYNs: a SYN reads the table on any slot.
        self.syn = tcp_syn_v4(vip_v4(0))
        floors, self.keep = floor_subjects(DataplaneOptions(), self.frame,
                                           probe_lines=opts.sizes().conn_table_sets)
        self.floors = {f.key: f for f in floors if f.key in ("encap", "encap_vary", "probe")}

    def close(self) -> None:
        self.dp.close()
        self.program.close()
        for bpf in self.keep:
            bpf.cleanup()

    def configure(self, vips: int, backends: int) -> None:
        """Exactly `vips` VIPs of `backends` backends each (one shared pool), via reconcile."""
        from lb.control.service import VipTarget, vip_key
        from lb.xdp.consts import VipFlag

        pool = {ipaddress.ip_address(backend_address(k)): 1 for k in range(backends)}
        self.service.reconcile({vip_key(vip_v4(i), 80, "tcp"): VipTarget(VipFlag(0), pool)
                                for i in range(vips)})

    def unsettle(self) -> None:
        """Every VIP's ring unsettled: each TCP packet reads the table (as after a change)."""
        self.service.unsettle()

    def settle(self) -> int:
        """Settle every ring (the steady state of a production host: the filled flows all
        agree with their slots, so none holds one); returns the slots settled."""
        settled, held = self.service.settle(1, grace_s=0)
        if held:
            raise RuntimeError(f"{held} ring slots held by flows that disagree with them")
        return settled

    def arm(self, seq: int, vary: bool) -> None:
        from lb.xdp.structs import BenchState

        head = self.frame[:BenchState.BENCH_HEAD].ljust(BenchState.BENCH_HEAD, b"\0")
        self.state[ctypes.c_uint32(0)] = BenchState(
            frame_len=len(self.frame), vary_offset=IPV4_SRC_OFFSET if vary else 0,
            vary_flow=int(vary), seq=seq, head=(ctypes.c_uint8 * BenchState.BENCH_HEAD)(*head))

    def seq(self) -> int:
        return self.state[ctypes.c_uint32(0)].seq

    def fill(self, flows: int) -> int:
        """Empty the table, then insert sources 1..flows on this CPU; returns how many live
        entries the table holds on this CPU afterwards."""
        from lb.xdp.testrun import test_run

        self.dp.clear_conn_table()
        self.arm(0, vary=True)
        test_run(self.program.fd, self.syn, flows)
        return self.live_entries()

    def live_entries(self) -> int:
        """Ways of the tables holding a flow on the pinned CPU."""
        return self.dp.live_conn_entries(self.opts.cpu)

    def subject(self, key: str, label: str, flows: int) -> tuple[Subject, int]:
        """A case as a bench.dataplane Subject, with the repeat its calls use."""
        from lb.xdp.consts import XDP_TX
        from lb.xdp.testrun import test_run

        dp, fd = self.dp, self.program.fd
        settled = key.endswith("_settled")
        if key == "new":
            repeat, vary, expected = self.opts.repeat_new, True, {"tx": 1, "ct_miss": 1,
                                                                  "ct_miss_nonsyn": 1}
        elif key == "established":
            repeat, vary, expected = self.opts.repeat, False, {"tx": 1, "ct_hit": 1}
        elif key == "established_settled":
            repeat, vary, expected = self.opts.repeat, False, None
        else:  # cycling: every flow of the fill once per call
            repeat, vary, expected = flows, True, None

        def prepare() -> None:
            if key == "new":
                self.fill(flows)  # the previous call's new flows leave with the refill
                self.arm(NEW_FLOW_SEQ, True)
            elif not vary:
                self.arm(0, False)
                test_run(fd, self.syn, 1)  # insert the flow (source 192.0.2.1)
            else:
                self.arm(0, True)
            dp.clear_stats()

        def inspect(result, n: int) -> list[str]:
            got = dp.counters()
            problems = frame_problems(result.frame, self.frame, ENCAP_V4_LEN, 4, vary)
            if expected is not None:
                return problems + counter_problems({k: n for k in expected}, got)
            # Settled: all but the sampled packets (every CT_SAMPLE_MASK + 1-th, the tick
            # starting at 0) skip the table; the table sees the sampled ones, or all.
            table = n // (CT_SAMPLE_MASK + 1) if settled else n
            hits, misses = got["ct_hit"], got["ct_miss"]
            # Every packet is a non-SYN TCP one: each miss is also a ct_miss_nonsyn.
            others = {k: v for k, v in got.items() if k not in ("ct_hit", "ct_miss")}
            problems += counter_problems({"tx": n, "ct_settled": n - table,
                                          "ct_miss_nonsyn": misses}, others)
            if hits + misses != table or hits < MIN_CYCLE_HITS * table:
                problems.append(f"ct_hit {hits:,} + ct_miss {misses:,} of {table:,} "
                                f"table reads (hits must be >= {MIN_CYCLE_HITS:.0%})")
            hit_share.append(hits / table if table else 0)
            if vary and (self.seq() - (NEW_FLOW_SEQ if key == "new" else 0)) % 2**32 != n:
                problems.append("bench_state.seq did not advance by N")
            return problems

        hit_share: list[float] = []
        s = Subject(key, label, "", "", fd, self.frame, XDP_TX, prepare, inspect)
        s.hit_share = hit_share  # type: ignore[attr-defined]
        return s, repeat


def measure_config(bench: Bench, vips: int, backends: int, flows: int,
                   settled: bool) -> list[dict]:
    """One grid point: each case between two calls of its floor, `runs` rounds. Unsettled
    rings: new flow, and established (one flow, cycling) through the table; settled rings:
    established again, where non-SYN packets skip the table."""
    opts = bench.opts
    if settled:
        cases = [("established_settled", "settled, one flow", "encap")]
        if flows > 1:
            cases.append(("cycling_settled", "settled, cycling", "encap_vary"))
    else:
        cases = [("new", "new flow", "encap_vary"),
                 ("established", "established, one flow", "encap")]
        if flows > 1:
            cases.append(("cycling", "established, cycling", "probe"))
    held = bench.fill(flows)
    out = []
    for key, label, floor_key in cases:
        s, repeat = bench.subject(key, label, flows)
        floor = bench.floors[floor_key]
        floor_ns, ratios = [], []
        s.run(repeat)  # warm-up
        for _ in range(opts.runs):
            before = floor.run(repeat)
            ns = s.run(repeat)
            after = floor.run(repeat)
            s.runs_ns.append(ns)
            floor_ns += [before, after]
            ratios.append(2 * ns / (before + after))
        hits = getattr(s, "hit_share", [])
        valid = s.valid
        out.append(Result(
            f"{vips}/{backends}/{flows}/{key}", label, s.ns, "ns/packet",
            f"{label}: {flows:,} flows in the table, {vips} VIP(s) x {backends} backends",
            extra={"vips": vips, "backends": backends, "flows": flows, "flows_held": held,
                   "case": key, "repeat": repeat, "valid": valid, "problems": s.problems,
                   "ns": s.ns, "runs_ns": s.runs_ns, "floor": floor_key,
                   "floor_ns": statistics.median(floor_ns),
                   "ratio_to_floor": round(statistics.median(ratios), 3) if valid else None,
                   "hit_share": round(min(hits), 4) if hits else None}).as_dict())
        if key == "new":  # leave the table as the fill made it for the next case
            held = bench.fill(flows)
    return out


def run_per_packet(opts: Options) -> tuple[list[dict], dict]:
    bench = Bench(opts)
    rows = []
    try:
        for vips in opts.vips:
            for backends in opts.backends:
                log(f"  {vips} VIP(s) x {backends} backends: configuring ...")
                t0 = time.monotonic()
                bench.configure(vips, backends)
                bench.unsettle()  # slots a ring kept from the previous point stay settled
                log(f"    configured in {time.monotonic() - t0:.1f} s")
                for settled in (False, True):
                    if settled:
                        log(f"    settled {bench.settle():,} ring slots")
                    for flows in opts.flows:
                        new = measure_config(bench, vips, backends, flows, settled)
                        rows += new
                        log(f"    {flows:>9,} flows ({new[-1]['flows_held']:,} held): "
                            + ", ".join(f"{x['case']} {x['ns']}" for x in new))
    finally:
        bench.close()
    return rows, targets(rows, opts)


def targets(rows: list[dict], opts: Options) -> dict:
    """Established with the most flows / established with one flow, per VIP x backend point.

    Judged on settled cycling: traffic spread over all F flows, each packet a different one
    (what a busy host sees), on settled ring slots (its steady state), against the cheaper
    of the two one-flow figures; each figure taken as its ratio to the floor measured around
    it in the same run (the encap floor, varied for cycling: the two cost the same), so that
    the host's speed drifting between the two cases cancels. The plain ns ratio is beside it.
    Then the table path, which the slots a ring change rewrote take until
    tcp_idle_timeout_s has passed: cycling through the table / one flow through the table
    (ns), one flow among F (what the table's size alone does to a lookup), and the probe
    floor of that case divided by the one-flow cost (encap plus one read of a line picked by
    the flow from an array the size of one CPU's table: on a machine where that alone is over
    the target, no table that keeps a line per flow meets it).
    """
    out = []
    top = max(opts.flows)
    for vips in opts.vips:
        for backends in opts.backends:
            def row(case: str, flows: int, vips=vips, backends=backends) -> dict | None:
                for r in rows:
                    if (r["vips"], r["backends"], r["flows"], r["case"]) == \
                            (vips, backends, flows, case):
                        return r
                return None

            def ns(case: str, flows: int) -> float | None:
                r = row(case, flows)
                return r["ns"] if r else None

            def over(a: float | None, b: float | None) -> float | None:
                return round(a / b, 3) if a and b else None

            ones = [r for r in (row("established", 1), row("established_settled", 1))
                    if r and r["ratio_to_floor"]]
            one = min(ones, key=lambda r: r["ratio_to_floor"], default=None)
            cyc_row, table_row = row("cycling_settled", top), row("cycling", top)
            ratio = over(cyc_row["ratio_to_floor"] if cyc_row else None,
                         one["ratio_to_floor"] if one else None)
            table_1 = ns("established", 1)
            probe = table_row["floor_ns"] if table_row else None
            out.append(Result(
                f"{vips}/{backends}", f"{vips} VIPs x {backends} backends", ratio,
                "x the one-flow figure",
                f"settled cycling over {top:,} flows / the cheaper one-flow figure, each over "
                "its floor", TARGET_RATIO, judge(ratio), extra={
                "vips": vips, "backends": backends, "flows": top,
                "ratio": ratio, "target_ratio": TARGET_RATIO,
                "cycling_over_floor": cyc_row["ratio_to_floor"] if cyc_row else None,
                "one_flow_over_floor": one["ratio_to_floor"] if one else None,
                "one_flow_case": one["case"] if one else None,
                "cycling_ns": cyc_row["ns"] if cyc_row else None,
                "established_1_ns": one["ns"] if one else None,
                "ns_ratio": over(cyc_row["ns"] if cyc_row else None,
                                 one["ns"] if one else None),
                "table_established_1_ns": table_1,
                "table_cycling_ns": ns("cycling", top),
                "ratio_table": over(ns("cycling", top), table_1),
                "one_flow_ns": ns("established", top),
                "ratio_one_flow": over(ns("established", top), table_1),
                "probe_floor_ns": probe,
                "ratio_probe_floor": over(probe, table_1),
                "cycling_over_probe": table_row["ratio_to_floor"] if table_row
                else None}).as_dict())
    return {"established_vs_one_flow": out}


# --- memory ---------------------------------------------------------------------------------
def map_memory(sizes: Sizes) -> dict[str, dict]:
    """Load the balancer at `sizes` (not attached) and read every map's fdinfo."""
    from lb.xdp import loader

    program = loader.load(sizes)
    try:
        want = map_entries(sizes)
        out = {}
        for name in want:
            fd = program.table(name).get_fd()
            info = parse_fdinfo(Path(f"/proc/self/fdinfo/{fd}").read_text())
            out[name] = {"max_entries": info["max_entries"], "key_size": info["key_size"],
                         "value_size": info["value_size"], "memlock": info["memlock"],
                         "map_type": info["map_type"],
                         "entries_as_computed": info["max_entries"] == want[name]}
        return out
    finally:
        program.close()


def estimate_bytes(sizes: Sizes) -> int:
    """A rough upper estimate of the maps' memory (arrays dominate), to decide whether a load
    at these sizes is reasonable: value bytes x entries (x CPUs for per-CPU maps)."""
    cpus = sizes.cpus
    e = map_entries(sizes)
    return (e["rings"] * 8 + e["ct_v4"] * 64 + e["ct_v6"] * 112
            + e["vip_filter"] * 4 + e["backends"] * 24 + (e["vip_stats"] + e["backend_stats"])
            * 16 * cpus + e["vips_v4"] * 64 + e["vips_v6"] * 80)


def run_memory(opts: Options) -> dict:
    default = Sizes()
    half = Sizes(max_vips=256, max_backends=2048, conn_table_size=default.conn_table_size // 2,
                 filter_bits=default.filter_bits - 1)
    log("  memory: loading at default sizes and at half sizes ...")
    a, b = map_memory(default), map_memory(half)
    est = estimate_bytes(MAXIMA)
    measured = None
    if est <= opts.max_alloc_gib * (1 << 30):
        log("  memory: loading at the maxima ...")
        measured = map_memory(MAXIMA)
    maxima_entries = map_entries(MAXIMA)
    rows = {}
    for name in a:
        computed = extrapolate((a[name]["max_entries"], a[name]["memlock"]),
                               (b[name]["max_entries"], b[name]["memlock"]),
                               maxima_entries[name])
        rows[name] = {
            "default": a[name], "half": b[name],
            "maxima": {"max_entries": maxima_entries[name],
                       "memlock": measured[name]["memlock"] if measured else computed,
                       "how": "measured" if measured else "computed"},
        }
    return {
        "sizes": {"default": default.__dict__, "half": half.__dict__,
                  "maxima": MAXIMA.__dict__},
        "maxima_estimate_bytes": est, "max_alloc_bytes": int(opts.max_alloc_gib * (1 << 30)),
        "maxima_loaded": measured is not None,
        "maps": rows,
        "total": {k: sum(r[k]["memlock"] for r in rows.values())
                  for k in ("default", "half", "maxima")},
    }


# --- output ---------------------------------------------------------------------------------
def _x(v: float | None) -> str:
    return f"{v:.2f}x" if v else "-"


def render(report: dict) -> str:
    lines = common.heading("Scaling benchmark: ns per packet as the work grows, and map memory",
                           report["host"])[:-1]
    m = report.get("method")
    if report.get("rows"):
        lines += [f"  repeat {m['repeat']:,} (new flow {m['repeat_new']:,}; cycling "
                  f"the flow count), {m['runs']} timed calls per figure + 1 warm-up; "
                  f"connection table {m['conn_table_size']:,} per CPU per family", ""]
        lines.append(common.table(
            [[r["vips"], r["backends"], f"{r['flows']:,}", f"{r['flows_held']:,}", r["label"],
              common.number(r["ns"], ".0f", none="INVALID"), r["floor"], f"{r['floor_ns']:.0f}",
              _x(r["ratio_to_floor"]),
              "" if r["hit_share"] is None else f"{100 * r['hit_share']:.1f}%"]
             for r in report["rows"]],
            ["VIPs", "backends", "flows", "held", "case", "ns/pkt", "floor", "ns", "ratio",
             "hits"], "rrrrlrlrrr"))
        lines += ["", "established with the most flows / established with one flow "
                  f"(target <= {TARGET_RATIO}x): settled cycling over its floor / the cheaper "
                  "one-flow figure over its floor (ns beside); then the table path that "
                  "changed slots take, one flow among them, and the table path's probe floor "
                  "(encap + one read of a line per flow):"]
        for t in report["targets"]["established_vs_one_flow"]:
            lines.append(f"  {t['vips']:>3} VIPs x {t['backends']:>4} backends: settled "
                         f"cycling {_x(t['cycling_over_floor'])} / one flow "
                         f"{_x(t['one_flow_over_floor'])} = {_x(t['ratio'])} {t['result']} "
                         f"(ns: {t['cycling_ns'] or 0:.0f} / {t['established_1_ns'] or 0:.0f} "
                         f"= {_x(t['ns_ratio'])})")
            lines.append(f"  {'':>27}table path: cycling {t['table_cycling_ns'] or 0:.0f} / "
                         f"{t['table_established_1_ns'] or 0:.0f} ns = {_x(t['ratio_table'])}; "
                         f"one flow among {t['flows']:,} {_x(t['ratio_one_flow'])}; the probe "
                         f"floor alone {_x(t['ratio_probe_floor'])} (cycling / floor "
                         f"{_x(t['cycling_over_probe'])})")
        for r in report["rows"]:
            for p in r["problems"]:
                lines.append(f"  INVALID {r['vips']}/{r['backends']}/{r['flows']} "
                             f"{r['case']}: {p}")
    mem = report.get("memory")
    if mem:
        lines += ["", "Map memory (memlock in /proc/self/fdinfo; maxima "
                  + ("measured" if mem["maxima_loaded"] else
                     f"computed from the two loads: about {fmt_bytes(mem['maxima_estimate_bytes'])}"
                     f", over --max-alloc-gib") + ")"]
        sz = mem["sizes"]
        lines.append("  default: " + ", ".join(f"{k} {v}" for k, v in sz["default"].items()))
        lines.append("  maxima:  " + ", ".join(f"{k} {v}" for k, v in sz["maxima"].items()))
        t = mem["total"]
        lines.append(common.table(
            [[name, f"{r['default']['max_entries']:,}", fmt_bytes(r["default"]["memlock"]),
              f"{r['maxima']['max_entries']:,}", fmt_bytes(r["maxima"]["memlock"])]
             for name, r in mem["maps"].items()]
            + [["total", "", fmt_bytes(t["default"]), "", fmt_bytes(t["maxima"])]],
            ["map", "entries", "default", "entries", "maxima"], "lrrrr"))
    return "\n".join(lines)


# --- CLI ------------------------------------------------------------------------------------
EXAMPLES = """\
examples:
  python -m bench.scaling                          # the grid and the memory table
  python -m bench.scaling --runs 1 --repeat 50000 --flows 1,10000 --vips 1 --backends 10
  python -m bench.scaling --memory-only            # map memory only (about 15 s)
  python -m bench.scaling --no-memory --json /tmp/scaling.json
"""


def parse_args(argv: list[str] | None = None) -> Options:
    p = common.parser("scaling", EXAMPLES, Options)
    p.add_argument("--memory-only", action="store_true", help="only the memory table")
    a = p.parse_args(argv)
    if min(a.repeat, a.repeat_new, a.runs, *a.flows, *a.backends, *a.vips) < 1:
        p.error("counts must be >= 1")
    if max(a.backends) > Sizes.max_backends - 1:
        p.error(f"--backends at most {Sizes.max_backends - 1}")
    cpu = max(os.sched_getaffinity(0)) if a.cpu is None else a.cpu
    opts = common.options_from(Options, a, cpu=cpu, per_packet=not a.memory_only)
    try:
        opts.sizes()
    except ValueError as e:
        p.error(str(e))
    return opts


def main(argv: list[str] | None = None) -> int:
    opts = parse_args(argv)
    if not common.is_root("scaling", "bpf(), BPF_PROG_TEST_RUN"):
        return 1
    os.sched_setaffinity(0, {opts.cpu})
    report: dict = {"schema": SCHEMA,
                    "host": common.host_facts(pinned_cpu=opts.cpu, **common.bpf_facts()),
                    "method": {**{k: v for k, v in opts.__dict__.items() if k != "json_path"},
                               "new_flow": "prologue writes seq over the IPv4 source",
                               "cycling": "prologue counts through the fill's sources 1..F",
                               "floors": "bench/floors.c encap and encap +vary, paired"}}
    if opts.per_packet:
        log("per packet ...")
        report["rows"], report["targets"] = run_per_packet(opts)
    if opts.memory:
        report["memory"] = run_memory(opts)
    common.emit("scaling", report, render, opts.json_path)
    rows = report.get("rows", [])
    return 1 if any(not r["valid"] for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
