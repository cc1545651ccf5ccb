"""The data-plane benchmark: ns per packet of the balancer's main paths, next to two floors.

Every figure is the kernel's own mean time per repetition of one BPF_PROG_TEST_RUN call
with repeat=N, on a build of lb/xdp/balancer.c with -DLB_BENCH. That build starts with a
prologue (lb/xdp/bench.h) that undoes the previous repetition, because the kernel runs
every repetition on the same buffer: without it all but the first repetition would
measure an already-encapsulated packet. The floors (bench/floors.c) run the same
prologue, so a ratio to a floor compares like with like.

Method:
  * every figure gets one untimed warm-up call, then `runs` timed calls; its ns/packet is
    the median of the timed calls;
  * in each round every case runs right between two calls of its floor, and that run's
    ratio is the case over the mean of those two floor calls; the reported ratio is the
    median of these. A shared host's speed moves in stretches of about a second, and a
    ratio of neighbours cancels that where a ratio of medians cannot;
  * every call is checked: the data plane's counters (cleared before it) must show exactly
    N packets on the intended path and nothing else, the last verdict and the frame left
    must be the intended ones, and where the prologue varies the flow its sequence number
    must have advanced by N (so no repetition failed its restore). A figure with a failed
    check is INVALID and is never printed as a number.

Run as root: `python -m bench.dataplane --help`.
"""

from __future__ import annotations

import argparse
import ctypes
import ipaddress
import math
import os
import statistics
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from scapy.layers.inet import IP, TCP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Ether

from bench import common
from bench.common import Result, flag, log
from lb.control.service import Balancer, vip_key
from lb.xdp import loader
from lb.xdp.config import RuntimeConfig, Sizes
from lb.xdp.consts import VERDICT_NAMES, XDP_PASS, XDP_TX
from lb.xdp.flowhash import filter_slot
from lb.xdp.maps import Dataplane
from lb.xdp.structs import BenchState
from lb.xdp.testrun import TestRunResult, test_run

BENCH_DIR = Path(__file__).resolve().parent
FLOORS_FILE = BENCH_DIR / "floors.c"
DEFAULT_JSON = common.RESULTS_DIR
SCHEMA = "lb-bench-dataplane/1"

# Where the IPv4 source address sits in an untagged frame: what the new-flow case varies.
IPV4_SRC_OFFSET = 26
# Bytes an outer IPv4 / IPv6 header adds (the balancer's LB_ENCAP_V4_LEN / LB_ENCAP_V6_LEN).
ENCAP_V4_LEN, ENCAP_V6_LEN = 20, 40
ETH_HLEN = 14

# The lab the benchmark configures (documentation and private ranges).
LB_MAC, PEER_MAC, NEXT_HOP_MAC = "02:00:00:00:00:01", "02:00:00:00:00:09", "02:00:00:00:00:02"
CLIENT_V4, CLIENT_V6 = "192.0.2.1", "2001:db8:1::1"
NON_VIP_V4 = "198.51.100.7"
CLIENT_PORT, VIP_PORT = 40000, 80


def vip_v4(i: int) -> str:
    return f"10.100.{i // 250}.{i % 250 + 1}"


def vip_v6(i: int) -> str:
    return f"2001:db8:100::{i + 1:x}"


def backend_v4(vip: int, j: int) -> str:
    return f"10.200.{vip}.{j + 1}"


def backend_v6(vip: int, j: int) -> str:
    return f"fd00:be:{vip:x}::{j + 1:x}"


# --- options -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Options:
    """Everything a benchmark run depends on; the flags are the flag() fields.

    repeat: repetitions per BPF_PROG_TEST_RUN call (the kernel reports their mean, in ns).
    runs: timed calls per figure (ns/packet is their median); warmup: untimed calls first.
    conn_table_size: connection-table entries per CPU per address family (2-way sets);
        the production default, so the new-flow row evicts from a table of real size.
    vips_v4 / vips_v6 / backends: what is configured through the service before measuring.
    cpu: CPU the process (and so every test run) is pinned to; None leaves it unpinned.
    per_call: if > 0, also time this many repeat=1 calls per figure (a different method).
    source / extra_cflags: the balancer build under test (a variant, for investigations).
    """

    repeat: int = flag(1_000_000, "repetitions per BPF_PROG_TEST_RUN call")
    runs: int = flag(5, "timed calls per figure, reported as their median")
    warmup: int = flag(1, "untimed calls per figure first")
    conn_table_size: int = flag(Sizes.conn_table_size,
                                "connection-table entries per CPU per address family, a power "
                                "of two (the production default)")
    max_vips: int = flag(Sizes.max_vips, "VIP capacity, which sizes the ring map")
    ring_size: int = flag(Sizes.ring_size, "Maglev ring slots per VIP, a prime")
    vips_v4: int = flag(16, "IPv4 VIPs configured")
    vips_v6: int = flag(4, "IPv6 VIPs configured")
    backends: int = flag(8, "backends per VIP")
    cpu: int | None = flag(None, "CPU to pin to (default: the highest allowed one); -1: do not pin",
                           type=int)
    per_call: int = flag(0, "also time CALLS calls of repeat=1 per figure (0: off)",
                         metavar="CALLS")
    source: Path = flag(loader.PROGRAM_FILE, "balancer source to build")
    extra_cflags: tuple[str, ...] = ()
    json_path: Path | None = DEFAULT_JSON

    def sizes(self) -> Sizes:
        return Sizes(max_vips=self.max_vips, ring_size=self.ring_size,
                     conn_table_size=self.conn_table_size)

    def balancer_cflags(self) -> list[str]:
        return loader.compile_flags(self.sizes(), bench=True, extra=list(self.extra_cflags))

    def floor_cflags(self) -> list[str]:
        """Flags for bench/floors.c (load_function puts -I lb/xdp, where bench.h is, first)."""
        return ["-DLB_BENCH"]


# --- frames --------------------------------------------------------------------------------
def tcp_ack_v4(dst: str) -> bytes:
    """Ethernet + IPv4 + TCP ACK (no payload, 54 bytes) from the lab client to dst:80."""
    return bytes(Ether(dst=LB_MAC, src=PEER_MAC) / IP(src=CLIENT_V4, dst=dst)
                 / TCP(sport=CLIENT_PORT, dport=VIP_PORT, flags="A"))


def tcp_syn_v4(dst: str) -> bytes:
    """As tcp_ack_v4 with SYN instead of ACK: the first packet of a flow."""
    return bytes(Ether(dst=LB_MAC, src=PEER_MAC) / IP(src=CLIENT_V4, dst=dst)
                 / TCP(sport=CLIENT_PORT, dport=VIP_PORT, flags="S"))


def tcp_ack_v6(dst: str) -> bytes:
    """As tcp_ack_v4 over IPv6 (74 bytes)."""
    return bytes(Ether(dst=LB_MAC, src=PEER_MAC) / IPv6(src=CLIENT_V6, dst=dst)
                 / TCP(sport=CLIENT_PORT, dport=VIP_PORT, flags="A"))


# --- checks (pure) -------------------------------------------------------------------------
def counter_problems(expected: dict[str, int], got: dict[str, int]) -> list[str]:
    """Why `got` is not exactly `expected` (counters not named must be 0); [] if it is."""
    problems = []
    for name in sorted(set(expected) | {k for k, v in got.items() if v}):
        want, have = expected.get(name, 0), got.get(name, 0)
        if want != have:
            problems.append(f"{name} = {have:,}, expected {want:,}")
    return problems


def frame_problems(out: bytes, frame: bytes, grow: int, outer_proto: int | None = None,
                   varied: bool = False) -> list[str]:
    """Why `out` is not `frame` with `grow` bytes of outer header put in front; [] if it is.

    The inner IP packet must be unchanged (bar the source address when `varied`); with
    `outer_proto`, the outer header's protocol / next header must be it (4 or 41).
    """
    if len(out) != len(frame) + grow:
        return [f"frame left is {len(out)} bytes, expected {len(frame) + grow}"]
    skip = grow + ETH_HLEN if grow else 0  # a passed frame must be untouched, L2 too
    inner, orig = out[skip:], frame[skip - grow:]
    if varied:
        cut = IPV4_SRC_OFFSET - (skip - grow)
        inner, orig = inner[:cut] + inner[cut + 4:], orig[:cut] + orig[cut + 4:]
    problems = [] if inner == orig else ["the inner packet is not the input's"]
    if outer_proto is not None:
        at = ETH_HLEN + (9 if grow == ENCAP_V4_LEN else 6)
        if out[at] != outer_proto:
            problems.append(f"outer protocol {out[at]}, expected {outer_proto}")
    return problems


def judge(ratio: float | None, target: float | None, valid: bool) -> str:
    """PASS / MISS against a target ratio ("-" without one); INVALID if a check failed."""
    if not valid or ratio is None:
        return "INVALID"
    if target is None:
        return "-"
    return "PASS" if ratio <= target else "MISS"


def spread_pct(values: list[float]) -> float:
    """(max - min) / median of a figure's runs, in percent."""
    med = statistics.median(values)
    return 100.0 * (max(values) - min(values)) / med if med else 0.0


# --- what is measured ----------------------------------------------------------------------
@dataclass
class Subject:
    """One thing timed, a balancer case or a floor, with the checks every call must pass.

    prepare(): write the bench state (and prime the table) before each call.
    inspect(result, repeat): problems with a finished call ([] = it took the intended path).
    """

    key: str
    label: str
    measured: str
    path_check: str
    fd: int
    frame: bytes
    verdict: int
    prepare: Callable[[], None]
    inspect: Callable[[TestRunResult, int], list[str]]
    runs_ns: list[int] = field(default_factory=list)
    pair_ratios: list[float] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    per_call_ns: list[int] = field(default_factory=list)
    per_call_problems: list[str] = field(default_factory=list)

    def run(self, repeat: int) -> int:
        """One BPF_PROG_TEST_RUN of `repeat` repetitions, checked; returns its mean ns."""
        self.prepare()
        result = test_run(self.fd, self.frame, repeat)
        found = []
        if result.verdict != self.verdict:
            found.append(f"last verdict {result.verdict_name}, "
                         f"expected {VERDICT_NAMES[self.verdict]}")
        found += self.inspect(result, repeat)
        self.problems += [p for p in found if p not in self.problems]
        return result.duration_ns

    def run_calls(self, calls: int) -> None:
        """`calls` calls of repeat=1 after one prepare(), checked together as one run."""
        self.prepare()
        result = None
        for _ in range(calls):
            result = test_run(self.fd, self.frame, 1)
            self.per_call_ns.append(result.duration_ns)
            if result.verdict != self.verdict:
                self.per_call_problems.append(f"a verdict was {result.verdict_name}")
                return
        self.per_call_problems += self.inspect(result, calls)

    @property
    def valid(self) -> bool:
        return not self.problems and bool(self.runs_ns)

    @property
    def ns(self) -> float | None:
        """Median of the timed calls, ns per packet; None when a check failed."""
        return statistics.median(self.runs_ns) if self.valid else None


class BenchStateMap:
    """One program's bench_state entry (balancer and floors each have their own).

    arm() writes the frame as Dataplane.set_bench_frame does, but keeps the flow sequence
    where the last call left it, so that the new-flow case's sources never repeat.
    """

    def __init__(self, table) -> None:
        self.table = table
        self.seq = 0

    def arm(self, frame: bytes, vary_flow: bool) -> None:
        self.seq = self.table[ctypes.c_uint32(0)].seq
        head = frame[:BenchState.BENCH_HEAD].ljust(BenchState.BENCH_HEAD, b"\0")
        self.table[ctypes.c_uint32(0)] = BenchState(
            frame_len=len(frame), vary_offset=IPV4_SRC_OFFSET if vary_flow else 0,
            vary_flow=int(vary_flow), seq=self.seq,
            head=(ctypes.c_uint8 * BenchState.BENCH_HEAD)(*head))

    def advanced(self, repeat: int) -> list[str]:
        moved = (self.table[ctypes.c_uint32(0)].seq - self.seq) % 2**32  # seq is a u32
        if moved != repeat:
            return [f"bench_state.seq advanced by {moved:,}, expected {repeat:,} "
                    "(a repetition failed its restore)"]
        return []


def table_fill(opts: Options) -> str:
    """How full the new-flow case finds its table: the warm-up call alone makes repeat *
    warmup new flows on the pinned CPU, spread over the sets by the hash (Poisson)."""
    sets = opts.sizes().conn_table_sets
    flows = opts.repeat * opts.warmup
    lam = flows / sets
    full = 1 - math.exp(-lam) * (1 + lam)  # P(a set got >= 2 flows)
    return (f"{flows:,} warm-up flows into {sets:,} sets: {100 * full:.1f}% of sets full "
            "before the timed calls, so nearly every insert evicts" if full > 0.95 else
            f"{flows:,} warm-up flows into {sets:,} sets: {100 * full:.1f}% of sets full "
            "before the timed calls")


def balancer_subjects(program: loader.Program, dp: Dataplane, opts: Options) -> list[Subject]:
    """The four balancer cases, on a program whose maps configure() has filled."""
    state = BenchStateMap(program.table("bench_state"))
    fd = program.fd

    def make(key, label, measured, frame, verdict, expected, grow, outer=None, vary=False,
             prime=False):
        def prepare() -> None:
            state.arm(frame, vary)
            if prime:  # the call that inserts the flow (a table miss, as a first packet)
                test_run(fd, frame, 1)
            dp.clear_stats()

        def inspect(result: TestRunResult, repeat: int) -> list[str]:
            problems = counter_problems({name: repeat for name in expected}, dp.counters())
            problems += frame_problems(result.frame, frame, grow, outer, vary)
            return problems + (state.advanced(repeat) if vary else [])

        check = ", ".join(f"{n} == N" for n in expected) + ", every other counter 0"
        check += f", verdict {VERDICT_NAMES[verdict]}"
        check += f", frame + {grow}-byte outer header" if grow else ", frame untouched"
        if vary:
            check += ", bench_state.seq += N"
        return Subject(key, label, measured, check, fd, frame, verdict, prepare, inspect)

    fill = table_fill(opts)
    v4, v6 = vip_v4(0), vip_v6(0)
    return [
        make("non_vip_pass", "non-VIP pass",
             f"TCP ACK to {NON_VIP_V4}:80, not a VIP address (its pre-filter slot is empty)",
             tcp_ack_v4(NON_VIP_V4), XDP_PASS, ["pass", "pass_not_vip"], 0),
        make("new_flow", "VIP, new flow",
             f"TCP ACK to VIP {v4}:80 from a new IPv4 source every repetition: table miss, "
             f"ring decision, table insert (table {fill}), IPv4 encap",
             tcp_ack_v4(v4), XDP_TX, ["tx", "ct_miss", "ct_miss_nonsyn"], ENCAP_V4_LEN, 4,
             vary=True),
        make("established", "VIP, established",
             f"TCP ACK to VIP {v4}:80 of a flow already in the table: table hit, IPv4 encap",
             tcp_ack_v4(v4), XDP_TX, ["tx", "ct_hit"], ENCAP_V4_LEN, 4, prime=True),
        make("established_v6", "IPv6 VIP, established",
             f"TCP ACK to VIP [{v6}]:80 of a flow already in the table: table hit, "
             "IPv6 encap to an IPv6 backend",
             tcp_ack_v6(v6), XDP_TX, ["tx", "ct_hit"], ENCAP_V6_LEN, 41, prime=True),
    ]


def floor_subjects(opts: Options, frame: bytes,
                   probe_lines: int | None = None) -> tuple[list[Subject], list]:
    """The floors, pass and encap, each with the flow held fixed and varied as the new-flow
    case varies it; with `probe_lines`, also the probe floor (encap, varied, plus one read
    of a line picked by the flow from an array of that many 64-byte lines).
    Returns (subjects, the bcc objects to keep until the end)."""
    subjects, keep = [], []
    kinds = [("floor_pass", "pass", XDP_PASS, 0, (False, True), []),
             ("floor_encap", "encap", XDP_TX, ENCAP_V4_LEN, (False, True), [])]
    if probe_lines:
        if probe_lines & (probe_lines - 1):
            raise ValueError(f"probe_lines must be a power of two, got {probe_lines}")
        kinds.append(("floor_probe", "probe", XDP_TX, ENCAP_V4_LEN, (True,),
                      [f"-DFLOOR_PROBE_BITS={probe_lines.bit_length() - 1}"]))
    for entry, name, verdict, grow, varies, cflags in kinds:
        bpf, fd = loader.load_function(FLOORS_FILE, entry, opts.floor_cflags() + cflags)
        keep.append(bpf)
        state = BenchStateMap(bpf[b"bench_state"])
        for vary in varies:
            def prepare(state=state, vary=vary) -> None:
                state.arm(frame, vary)

            def inspect(result, repeat, state=state, vary=vary, grow=grow) -> list[str]:
                problems = frame_problems(result.frame, frame, grow, 4 if grow else None, vary)
                return problems + (state.advanced(repeat) if vary else [])

            what = ("bench prologue, XDP_PASS" if name == "pass" else
                    "bench prologue, adjust_head -20, Ethernet + outer IPv4 with checksum, "
                    "XDP_TX")
            if name == "probe":
                what += f", plus one read of a 64-byte line (of {probe_lines:,}) picked by " \
                        "the flow"
            check = f"verdict {VERDICT_NAMES[verdict]}, " + (
                f"frame + {grow}-byte outer header" if grow else "frame untouched")
            if vary:
                what += "; prologue also writes a new IPv4 source each repetition"
                check += ", bench_state.seq += N"
            both = len(varies) > 1  # a varied twin is told apart by its key and label
            key = f"{name}_vary" if vary and both else name
            label = f"{name} floor" + (" +vary" if vary and both else "")
            subjects.append(Subject(key, label, what, check, fd, frame, verdict, prepare,
                                    inspect))
    return subjects, keep


# Each case: the floor it is divided by, and the ratio it should stay within (None: no target).
TARGETS: dict[str, tuple[str, float | None]] = {
    "non_vip_pass": ("pass", 2.0),
    "new_flow": ("encap_vary", 4.5),
    "established": ("encap", 2.2),
    "established_v6": ("encap", None),
}


# --- setup ---------------------------------------------------------------------------------
def configure(dp: Dataplane, opts: Options) -> None:
    """Fill the maps through the service, as the control plane would: VIPs, backends, rings."""
    dp.write_config(RuntimeConfig(next_hop_mac=NEXT_HOP_MAC, src_mac=LB_MAC))
    service = Balancer(dp)
    for count, vip, backend in ((opts.vips_v4, vip_v4, backend_v4),
                                (opts.vips_v6, vip_v6, backend_v6)):
        for i in range(count):
            key = vip_key(vip(i), VIP_PORT, "tcp")
            service.add_vip(key)
            for j in range(opts.backends):
                service.add_backend(key, ipaddress.ip_address(backend(i, j)))
    bits = opts.sizes().filter_bits
    taken = {filter_slot(ipaddress.ip_address(vip_v4(i)), bits) for i in range(opts.vips_v4)}
    if filter_slot(ipaddress.ip_address(NON_VIP_V4), bits) in taken:
        raise SystemExit(f"{NON_VIP_V4} shares a pre-filter slot with a VIP: pick another")


def host_facts(opts: Options) -> dict:
    """What the numbers depend on besides the code: the host (bench.common.host_facts), the
    pinned CPU and the BPF settings."""
    return common.host_facts(pinned_cpu=opts.cpu, **common.bpf_facts())


# --- running -------------------------------------------------------------------------------
def measure(cases: list[Subject], floors: list[Subject], opts: Options) -> None:
    """Warm-up calls, then `runs` rounds (each case between two calls of its floor), then
    the optional repeat=1 calls."""
    floor_of = {f.key: f for f in floors}
    paired = {TARGETS[c.key][0] for c in cases}
    for s in floors + cases:
        for _ in range(opts.warmup):
            s.run(opts.repeat)
    for r in range(opts.runs):
        log(f"  round {r + 1}/{opts.runs}")
        for f in floors:
            if f.key not in paired:
                f.runs_ns.append(f.run(opts.repeat))
        for c in cases:
            f = floor_of[TARGETS[c.key][0]]
            before = f.run(opts.repeat)
            c.runs_ns.append(c.run(opts.repeat))
            after = f.run(opts.repeat)
            f.runs_ns += [before, after]
            c.pair_ratios.append(2 * c.runs_ns[-1] / (before + after))
    if opts.per_call:
        log(f"  {opts.per_call} repeat=1 calls per figure")
        for s in floors + cases:
            s.run_calls(opts.per_call)


def _fields(s: Subject) -> dict:
    """A subject's own JSON fields: how it was checked and every timed call."""
    out = {"path_check": s.path_check, "frame_bytes": len(s.frame), "valid": s.valid,
           "problems": s.problems, "ns": s.ns, "runs_ns": s.runs_ns,
           "min_ns": min(s.runs_ns, default=None), "max_ns": max(s.runs_ns, default=None),
           "spread_pct": round(spread_pct(s.runs_ns), 1) if s.runs_ns else None}
    if s.per_call_ns:
        out["per_call"] = {"calls": len(s.per_call_ns), "problems": s.per_call_problems,
                           "median_ns": None if s.per_call_problems
                           else statistics.median(s.per_call_ns)}
    return out


def floor_result(s: Subject) -> Result:
    """A floor: its value is ns per packet."""
    return Result(s.key, s.label, s.ns, "ns/packet", s.measured, extra=_fields(s))


def case_result(s: Subject, floor: Subject) -> Result:
    """A case: its value is the paired ratio to its floor, judged against TARGETS."""
    floor_key, target = TARGETS[s.key]
    valid = s.valid and floor.valid
    ratio = statistics.median(s.pair_ratios) if valid else None
    shown = round(ratio, 3) if ratio is not None else None
    return Result(s.key, s.label, shown, f"x the {floor.label}", s.measured, target,
                  judge(ratio, target, valid), extra={
                      **_fields(s), "floor": floor_key, "floor_ns": floor.ns, "ratio": shown,
                      "ratio_runs": [round(r, 3) for r in s.pair_ratios] if valid else [],
                      "ratio_of_medians": round(s.ns / floor.ns, 3) if valid else None,
                      "target_ratio": target})


def build_report(opts: Options, host: dict, cases: list[Subject],
                 floors: list[Subject]) -> dict:
    """Everything measured and everything it depends on, as one JSON-ready dict."""
    sizes = opts.sizes()
    floor_of = {f.key: f for f in floors}
    return {
        "schema": SCHEMA,
        "host": host,
        "method": {
            "tool": "BPF_PROG_TEST_RUN (lb.xdp.testrun.test_run)",
            "unit": "ns per packet: the kernel's mean over the `repeat` repetitions of a call",
            "repeat": opts.repeat, "runs": opts.runs, "warmup_runs": opts.warmup,
            "ns": "median of the timed calls",
            "ratio": "median over rounds of case / mean(floor call before, floor call after)",
            "prologue": "bench.h bench_restore in every program measured, floors included",
            "per_call_calls": opts.per_call,
        },
        "setup": {
            "sizes": {"max_vips": sizes.max_vips, "ring_size": sizes.ring_size,
                      "ring_bytes": sizes.max_vips * sizes.ring_cells * 8,
                      "max_backends": sizes.max_backends,
                      "conn_table_size": sizes.conn_table_size,
                      "conn_table_sets_per_cpu": sizes.conn_table_sets,
                      "conn_table_cpus": sizes.cpus,
                      "new_flow_table_fill": table_fill(opts),
                      "filter_bits": sizes.filter_bits},
            "configured": {"vips_v4": opts.vips_v4, "vips_v6": opts.vips_v6,
                           "backends_per_vip": opts.backends},
            "source": str(opts.source),
            "balancer_cflags": opts.balancer_cflags(),
            "floors_source": str(FLOORS_FILE),
            "floor_cflags": opts.floor_cflags(),
        },
        "floors": common.by_name(floor_result(f) for f in floors),
        "cases": common.by_name(case_result(c, floor_of[TARGETS[c.key][0]]) for c in cases),
    }


# --- output --------------------------------------------------------------------------------
def _ns(v: float | None) -> str:
    return common.number(v, ".0f", none="INVALID")


def _range(values: list, fmt: str) -> str:
    return f"{min(values):{fmt}}-{max(values):{fmt}}" if values else ""


def render(report: dict) -> str:
    """The human table: header facts, one line per figure, the floors, then any problems."""
    h, m, s = report["host"], report["method"], report["setup"]
    sz, cf, mit = s["sizes"], s["configured"], h["mitigations"]
    lines = common.heading(
        "Data-plane benchmark: ns per packet through BPF_PROG_TEST_RUN", h,
        f"  mitigations: SRSO {mit['spec_rstack_overflow']}; "
        f"spectre_v2 {(mit['spectre_v2'] or '').split(';')[0]}",
        f"  repeat {m['repeat']:,} per call; {m['runs']} timed calls per figure "
        f"(+{m['warmup_runs']} warm-up); bench prologue in every program",
        f"  sizes: {sz['max_vips']} VIPs x {sz['ring_size']}-slot rings "
        f"({sz['ring_bytes'] / 1e6:.1f} MB), {sz['max_backends']} backends, connection table "
        f"{sz['conn_table_size']:,} per CPU per family ({sz['conn_table_sets_per_cpu']:,} "
        f"2-way sets per CPU, {sz.get('conn_table_cpus', '?')} CPU slices)",
        f"  configured: {cf['vips_v4']} IPv4 + {cf['vips_v6']} IPv6 VIPs, "
        f"{cf['backends_per_vip']} backends each")
    rows = []
    for c in report["cases"].values():
        floor = report["floors"][c["floor"]]
        rows.append([c["label"], _ns(c["ns"]), _range(c["runs_ns"], "d") if c["valid"] else "",
                     floor["label"], _ns(floor["ns"]), common.number(c["ratio"], ".2f", "x"),
                     _range(c["ratio_runs"], ".2f"),
                     f"<={c['target_ratio']}x" if c["target_ratio"] else "(none)",
                     c["result"]])
    lines.append(common.table(rows, ["figure", "ns/pkt", "min-max", "floor", "floor ns", "ratio",
                                     "min-max", "target", "result"], "lrrlrrrrl"))
    lines += [
        "",
        "ns/pkt: median of the calls; ratio: median over rounds of the case over the mean of",
        "its floor's calls just before and after it (min-max: over the calls / rounds).",
        "",
        "floors (the same prologue, and only what is listed):",
    ]
    lines.append(common.table([[f["label"], _ns(f["ns"]),
                                _range(f["runs_ns"], "d") if f["valid"] else "", f["measured"]]
                               for f in report["floors"].values()],
                              ["floor", "ns/pkt", "min-max", "what it runs"], "lrrl"))
    lines += ["", "what each figure measured, and what every call of it was checked for:"]
    for c in report["cases"].values():
        lines += [f"  {c['label']} ({c['frame_bytes']}-byte frame): {c['measured']}",
                  f"      check: {c['path_check']}"]
    if any("per_call" in c for c in report["cases"].values()):
        lines += ["", f"DIFFERENT METHOD, not comparable with the table: median of "
                  f"{m['per_call_calls']} calls of repeat=1.",
                  "Each packet is timed alone, with a system call and Python between packets:",
                  "caches and TLBs are colder and the timer's own cost is not spread over N."]
        for group in (report["cases"], report["floors"]):
            for f in group.values():
                if "per_call" in f:
                    pc = f["per_call"]
                    lines.append(f"  {f['label']:<23}{_ns(pc['median_ns']):>7} ns"
                                 + "".join(f"  {p}" for p in pc["problems"]))
    bad = [(f["label"], p) for group in (report["cases"], report["floors"])
           for f in group.values() for p in f["problems"]]
    if bad:
        lines += ["", "INVALID figures (a path check failed):"]
        lines += [f"  {label}: {p}" for label, p in bad]
    return "\n".join(lines)


# --- CLI -----------------------------------------------------------------------------------
EXAMPLES = """\
examples:
  python -m bench.dataplane                    # full run: table, bench/results/dataplane-*.json
  make bench                                   # the same, after installing what it needs
  python -m bench.dataplane --runs 9           # more calls per figure on a noisy host
  python -m bench.dataplane --repeat 100000 --runs 3 --json /tmp/quick.json
  python -m bench.dataplane --per-call 2000    # also repeat=1 figures (a different method)
  python -m bench.dataplane --conn-table-size 65536   # how table size moves the new flow
  python -m bench.dataplane --source /tmp/balancer-variant.c --extra-cflags=-DMY_KNOB
  python -m bench.dataplane --print-cflags     # what would be compiled, then exit
"""


def parse_args(argv: list[str] | None = None) -> tuple[Options, argparse.Namespace]:
    p = common.parser("dataplane", EXAMPLES, Options)
    p.add_argument("--extra-cflags", action="append", default=[], metavar="FLAG",
                   help="one more compiler flag for the balancer build (repeatable)")
    p.add_argument("--print-cflags", action="store_true",
                   help="print the sources and compiler flags that would be loaded, and exit")
    p.add_argument("--fail-on-miss", action="store_true",
                   help="exit 2 when a figure misses its target (INVALID always exits 1)")
    a = p.parse_args(argv)
    if min(a.repeat, a.runs, a.vips_v4, a.vips_v6, a.backends) < 1 or a.warmup < 0 \
            or a.per_call < 0:
        p.error("--repeat, --runs, --vips-v4, --vips-v6 and --backends must be >= 1; "
                "--warmup and --per-call >= 0")
    cpu = max(os.sched_getaffinity(0)) if a.cpu is None else (None if a.cpu < 0 else a.cpu)
    opts = common.options_from(Options, a, cpu=cpu, source=a.source.resolve(),
                               extra_cflags=tuple(a.extra_cflags))
    try:
        opts.sizes()
    except ValueError as e:
        p.error(str(e))
    if opts.vips_v4 > opts.max_vips - opts.vips_v6:
        p.error(f"--vips-v4 + --vips-v6 must be <= --max-vips ({opts.max_vips})")
    return opts, a


def main(argv: list[str] | None = None) -> int:
    opts, args = parse_args(argv)
    if args.print_cflags:
        print(f"balancer: {opts.source} (entry {loader.ENTRY})\n  "
              + " ".join(opts.balancer_cflags()))
        print(f"floors:   {FLOORS_FILE} (entries floor_pass, floor_encap)\n  "
              + " ".join([f"-I{loader.SOURCE_DIR}", *opts.floor_cflags()]))
        return 0
    if not common.is_root("dataplane", "bpf(), BPF_PROG_TEST_RUN"):
        return 1
    if opts.cpu is not None:
        os.sched_setaffinity(0, {opts.cpu})
    host = host_facts(opts)
    if host["bpf_stats_enabled"] == "1":
        log("warning: kernel.bpf_stats_enabled=1 adds a clock read around every program run")

    log(f"loading the balancer ({opts.source.name}, -DLB_BENCH) ...")
    program = loader.load(opts.sizes(), bench=True, src_file=opts.source,
                          extra_cflags=list(opts.extra_cflags))
    dp = Dataplane(program)
    keep = []
    try:
        log(f"configuring {opts.vips_v4} IPv4 + {opts.vips_v6} IPv6 VIPs, "
            f"{opts.backends} backends each ...")
        configure(dp, opts)
        cases = balancer_subjects(program, dp, opts)
        log("loading the floors (bench/floors.c) ...")
        floors, keep = floor_subjects(opts, tcp_ack_v4(vip_v4(0)))
        log(f"measuring {len(cases)} cases and {len(floors)} floors, "
            f"{opts.repeat:,} repetitions per call ...")
        measure(cases, floors, opts)
        report = build_report(opts, host, cases, floors)
    finally:
        dp.close()
        program.close()
        for bpf in keep:
            bpf.cleanup()

    common.emit("dataplane", report, render, opts.json_path)
    results = [c["result"] for c in report["cases"].values()]
    if "INVALID" in results or not all(f["valid"] for f in report["floors"].values()):
        return 1
    if args.fail_on_miss and "MISS" in results:
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
