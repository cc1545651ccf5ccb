"""What sharing an interface costs per packet: the balancer alone, behind the chain's root,
and behind the root and a firewall in the slot before it (lb/xdp/chain.h).

Method (bench.dataplane's): every figure is the kernel's mean time per repetition of one
BPF_PROG_TEST_RUN call with repeat=N on a -DLB_BENCH build, whose prologue undoes the previous
repetition; every call is checked the same way (counters, verdict, frame). Per round, each
path runs once in each arrangement, one after the other, and the cost of an arrangement is
its difference to the balancer alone in the same round; the report gives the medians.

Arrangements:
  alone      the balancer as lb runs it unshared (no chain code compiled in);
  root       xdp_lb_root attached, the balancer in slot 1 (slot 0 empty: one missed tail call);
  firewall   xdp_lb_root, the example firewall (lb/lab/firewall.c) in slot 0, the balancer in
             slot 1: two tail calls and the firewall's own parse.
The firewall sees the buffer before the balancer's prologue restores it (the previous
repetition's output); it parses it the same way (Ethernet + IPv4 source), so the cost holds.

Run as root: `python -m bench.chain --help`.
"""

from __future__ import annotations

import argparse
import dataclasses
import ipaddress
import json
import os
import shutil
import statistics
import sys
from pathlib import Path

from bench import dataplane as bd
from lb.lab.chain import load_firewall
from lb.xdp import chain, loader
from lb.xdp.maps import Dataplane

DEFAULT_JSON = bd.BENCH_DIR / "results" / "chain.json"
SCHEMA = "lb-bench-chain/1"
PATHS = ("non_vip_pass", "established")
ARRANGEMENTS = ("alone", "root", "firewall")
CHAIN_SLOT = 1


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.chain", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeat", type=int, default=1_000_000, help="repetitions per call")
    p.add_argument("--runs", type=int, default=9, help="rounds (timed calls per figure)")
    p.add_argument("--cpu", type=int, help="pin the process to this CPU")
    p.add_argument("--json", type=Path, default=DEFAULT_JSON, help="where to write the report")
    return p.parse_args(argv)


def _subject(base: bd.Subject, key: str, fd: int, slots: dict[int, int | None],
             pin_dir: Path) -> bd.Subject:
    """`base` run through program `fd`, with the chain's slots set so before each call."""
    def prepare() -> None:
        for slot, prog_fd in slots.items():
            if prog_fd is None:
                chain.clear_slot(pin_dir, slot)
            else:
                chain.set_slot(pin_dir, slot, prog_fd)
        base.prepare()

    return dataclasses.replace(base, key=key, fd=fd, prepare=prepare, runs_ns=[],
                               pair_ratios=[], problems=[], per_call_ns=[],
                               per_call_problems=[])


def measure(subjects: dict[tuple[str, str], bd.Subject], repeat: int, runs: int) -> dict:
    for s in subjects.values():  # warm-up, untimed
        s.run(repeat)
    deltas: dict[tuple[str, str], list[int]] = {k: [] for k in subjects}
    for r in range(runs):
        bd.log(f"round {r + 1}/{runs}")
        for path in PATHS:
            got = {a: subjects[(path, a)].run(repeat) for a in ARRANGEMENTS}
            for a in ARRANGEMENTS:
                subjects[(path, a)].runs_ns.append(got[a])
                deltas[(path, a)].append(got[a] - got["alone"])
    out: dict = {}
    for (path, a), s in subjects.items():
        out.setdefault(path, {})[a] = {
            "valid": s.valid, "problems": s.problems, "ns": s.ns, "runs_ns": s.runs_ns,
            "extra_ns": statistics.median(deltas[(path, a)]) if s.valid else None,
            "extra_runs_ns": deltas[(path, a)]}
    return out


def render(report: dict) -> str:
    lines = [f"{'path':<14}{'arrangement':<12}{'ns/packet':>10}{'extra ns':>10}", "-" * 46]
    for path, arrangements in report["results"].items():
        for a, fig in arrangements.items():
            ns = f"{fig['ns']:.1f}" if fig["valid"] else "INVALID"
            extra = f"{fig['extra_ns']:+.1f}" if fig["valid"] else ""
            lines.append(f"{path:<14}{a:<12}{ns:>10}{extra:>10}")
    host = report["host"]
    lines += ["", f"{host['cpu_model']}, {host['cpus']} CPUs, kernel {host['kernel']}; "
              f"repeat {report['repeat']:,}, {report['runs']} rounds; medians "
              "(extra: per-round difference to 'alone')"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if os.geteuid() != 0:
        bd.log("bench.chain needs root (bpf(), BPF_PROG_TEST_RUN)")
        return 1
    if args.cpu is not None:
        os.sched_setaffinity(0, {args.cpu})
    opts = bd.Options(repeat=args.repeat, runs=args.runs, cpu=args.cpu, vips_v4=4, vips_v6=1,
                      conn_table_size=16384, json_path=None)
    pin_dir = loader.BPFFS / f"lb-bench-chain-{os.getpid()}"
    pin_dir.mkdir()
    keep: list = []
    planes: list[Dataplane] = []
    try:
        bd.log("loading the balancer alone and as chain slot 1, the root, the firewall ...")
        alone = loader.load(opts.sizes(), bench=True)
        slotted = loader.load(opts.sizes(), bench=True, extra_cflags=[
            *loader.chain_cflags(CHAIN_SLOT), f'-DLB_CHAIN_PIN="{chain.pin_path(pin_dir)}"'])
        root_bpf, root_fd = loader.load_root(pin_dir)
        fw_bpf, fw_fd = load_firewall(pin_dir, ipaddress.IPv4Address("0.0.0.0"))
        keep += [alone, slotted, root_bpf, fw_bpf]
        subjects: dict[tuple[str, str], bd.Subject] = {}
        for program in (alone, slotted):
            dp = Dataplane(program)
            planes.append(dp)
            bd.configure(dp, opts)
            for s in bd.balancer_subjects(program, dp, opts):
                if s.key not in PATHS:
                    continue
                if program is alone:
                    subjects[(s.key, "alone")] = s
                else:
                    subjects[(s.key, "root")] = _subject(
                        s, s.key, root_fd, {0: None, CHAIN_SLOT: slotted.fd}, pin_dir)
                    subjects[(s.key, "firewall")] = _subject(
                        s, s.key, root_fd, {0: fw_fd, CHAIN_SLOT: slotted.fd}, pin_dir)
        subjects = {k: subjects[k] for k in sorted(subjects, key=lambda k: (
            PATHS.index(k[0]), ARRANGEMENTS.index(k[1])))}
        results = measure(subjects, args.repeat, args.runs)
    finally:
        for dp in planes:
            dp.close()
        for handle in keep:
            (handle.close if isinstance(handle, loader.Program) else handle.cleanup)()
        shutil.rmtree(pin_dir, ignore_errors=True)
    report = {"schema": SCHEMA, "host": bd.host_facts(opts), "repeat": args.repeat,
              "runs": args.runs, "results": results,
              "measured": {p: subjects[(p, "alone")].measured for p in PATHS}}
    print(render(report))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2) + "\n")
    bd.log(f"wrote {args.json}")
    return 0 if all(f["valid"] for a in results.values() for f in a.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
