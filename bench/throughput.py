"""The throughput benchmark: packets per second the balancer forwards on a live interface,
next to the ceiling of the same interface (an XDP program that sends every frame back
unchanged, `floor_tx` in bench/floors.c), measured in the same run, alternating.

Veth mode (default) builds two namespaces joined by one veth pair::

    gen ns                                     lb ns
    gen0  trafgen sends; xdp_sink  <------->  lb0  xdp_balancer / floor_tx, `queues` RX queues
          (bench/sink.c) counts what           XDP_TX back out lb0, to gen0's MAC
          comes back and drops it

The generator's frames go to a VIP from `flows` sources (addresses and ports). The balancer
encapsulates each one and sends it back out lb0 with XDP_TX (one-arm, next hop = gen0); the
floor sends it back unchanged. XDP_TX on a veth arrives only when the peer has an XDP program
(docs/development.md, "Platform facts"): gen0's is the sink, which counts. Forwarded pps is read
at the receiving end (the sink's counters) and from the balancer's own `tx` counter.

CPUs: a veth runs the receiver's XDP in the NAPI poll scheduled on the CPU that transmitted
the frame, so each generator CPU also runs the balancer (and the sink) for what it sends.
trafgen runs one worker per RX queue, each pinned to its own CPU (`cpu(N):` in its config and
taskset). Threaded NAPI would move the XDP work to a kernel thread pinnable to another CPU,
but on this kernel a veth with threaded NAPI stops polling under trafgen's load (trafgen then
fails with "Flushing TX_RING failed: EAGAIN"), so it is not used. Both programs are measured
the same way, so the ratio is fair, but the generator's own cost per packet is in both sides
and pulls the ratio towards 1: it is a lower bound on how close the balancer comes.

Real-NIC mode (`--interface`) runs the same alternation on a real interface of this host (the
balancer host); `--generate` runs the generator side on another host. See bench/README.md.

Run as root: `python -m bench.throughput --help`.
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import os
import re
import shutil
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bench import common
from bench.common import Result, flag, log
from bench.dataplane import FLOORS_FILE

SINK_FILE = common.BENCH_DIR / "sink.c"
DEFAULT_JSON = common.RESULTS_DIR
SCHEMA = "lb-bench-throughput/1"
# Namespace prefix of the veth topology (lb.lab.veth naming: <prefix><pid>-<seq>-<role>).
NS_PREFIX = "lbtp"
TARGET_RATIO = 0.75

# Counter slots of bench/sink.c.
SINK_ALL, SINK_IPIP, SINK_OTHER = 0, 1, 2


# --- frames and the trafgen configuration (pure) -------------------------------------------
def ipv4_checksum(header: bytes) -> int:
    """The Internet checksum of an IPv4 header whose checksum field is 0."""
    total = sum(struct.unpack(f"!{len(header) // 2}H", header))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def tcp_ack_frame(dst_mac: str, src_mac: str, src: str, dst: str, sport: int,
                  dport: int) -> bytes:
    """Ethernet + IPv4 + TCP ACK, 54 bytes, with a correct IPv4 and TCP checksum."""
    s, d = ipaddress.IPv4Address(src).packed, ipaddress.IPv4Address(dst).packed
    tcp = struct.pack("!HHIIBBHHH", sport, dport, 1, 1, 5 << 4, 0x10, 65535, 0, 0)
    pseudo = s + d + struct.pack("!BBH", 0, socket.IPPROTO_TCP, len(tcp))
    tcp = tcp[:16] + struct.pack("!H", ipv4_checksum(pseudo + tcp)) + tcp[18:]
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), 0, 0x4000, 64,
                     socket.IPPROTO_TCP, 0, s, d)
    ip = ip[:10] + struct.pack("!H", ipv4_checksum(ip)) + ip[12:]
    eth = bytes.fromhex(dst_mac.replace(":", "")) + bytes.fromhex(src_mac.replace(":", ""))
    return eth + b"\x08\x00" + ip + tcp


def flow_sources(n: int, network: str = "198.18.0.0/15",
                 first_port: int = 1024) -> list[tuple[str, int]]:
    """`n` distinct (source address, source port) pairs: addresses run through `network`
    (benchmarking range by default), ports through 1024..65535, so both vary per flow."""
    net = ipaddress.IPv4Network(network)
    if n < 1 or n > net.num_addresses - 2:
        raise ValueError(f"flows must be 1..{net.num_addresses - 2}, got {n}")
    ports = 65536 - first_port
    return [(str(net.network_address + 1 + i), first_port + (i * 7919) % ports)
            for i in range(n)]


def trafgen_config(frames: Sequence[bytes], cpu: int | None = None) -> str:
    """A trafgen configuration sending `frames` in turn (round robin), every byte static,
    so trafgen computes nothing per packet; with `cpu`, only the worker on that CPU sends
    them (trafgen's `cpu(N):` prefix)."""
    prefix = "" if cpu is None else f"cpu({cpu}): "
    lines = [f"/* {len(frames)} frames, generated by bench.throughput */"]
    for frame in frames:
        lines.append(prefix + "{ " + ", ".join(f"0x{b:02x}" for b in frame) + " }")
    return "\n".join(lines) + "\n"


# --- judging and rates (pure) --------------------------------------------------------------
def judge(ratio: float | None, target: float = TARGET_RATIO) -> str:
    """PASS when balancer/floor >= target, MISS below, INVALID without a ratio."""
    if ratio is None:
        return "INVALID"
    return "PASS" if ratio >= target else "MISS"


def rate(before: int, after: int, seconds: float) -> float:
    """Events per second between two readings of a monotonic counter."""
    if seconds <= 0:
        raise ValueError("seconds must be > 0")
    return (after - before) / seconds


def paired_ratios(sequence: Sequence[tuple[str, float]]) -> list[float]:
    """For windows measured in the order floor, balancer, floor, balancer, ..., floor:
    each balancer window over the mean of the floor windows right before and after it."""
    out = []
    for i, (kind, pps) in enumerate(sequence):
        if kind != "balancer" or i == 0 or i + 1 >= len(sequence):
            continue
        (k0, before), (k1, after) = sequence[i - 1], sequence[i + 1]
        if k0 == k1 == "floor" and before + after > 0:
            out.append(2 * pps / (before + after))
    return out


def parse_ethtool_stats(text: str) -> dict[str, int]:
    """`ethtool -S` output as {name: value} (integer values only)."""
    out = {}
    for m in re.finditer(r"^\s*([\w.\-]+):\s*(\d+)\s*$", text, re.MULTILINE):
        out[m.group(1)] = int(m.group(2))
    return out


def queue_packets(stats: dict[str, int]) -> dict[int, int]:
    """Frames XDP saw per RX queue, from a veth's (or NIC's) `ethtool -S`."""
    return {int(m.group(1)): v for k, v in stats.items()
            if (m := re.fullmatch(r"rx_queue_(\d+)_xdp_packets", k))}


# --- options -------------------------------------------------------------------------------
NIC = "real NICs"


def _addresses(text: str) -> tuple[str, ...]:
    return tuple(a for a in text.split(",") if a)


@dataclass(frozen=True)
class Options:
    """Everything a run depends on; CLI flags map one-to-one onto these fields.

    duration: seconds per measured window; rounds: balancer windows per queue count (each
    between two floor windows); warmup: seconds of traffic before the first window.
    queues: RX queue counts of the balancer's veth to measure (veth mode).
    flows: distinct (source address, port) pairs trafgen cycles through.
    backends: backend addresses of the VIP (they need not exist: frames go to the next hop).
    interface...: real-NIC mode (this host runs the balancer on `interface`).
    """

    duration: float = flag(5.0, "seconds per measured window")
    rounds: int = flag(3, "balancer windows per row, each between floor windows")
    warmup: float = flag(1.0, "seconds of traffic before the first window")
    queues: tuple[int, ...] = flag((1, 2), "RX queue counts of the balancer veth, "
                                           "comma-separated")
    flows: int = flag(4096, "distinct source (address, port) pairs")
    vip: str = flag("10.100.0.1", "VIP address")
    vip_port: int = flag(80, "VIP TCP port")
    backends: tuple[str, ...] = flag(tuple(f"10.200.0.{i}" for i in range(1, 11)),
                                     "backend addresses of the VIP, comma-separated",
                                     type=_addresses)
    gen_cpus: tuple[int, ...] | None = flag(None, "CPUs trafgen runs on, one worker each "
                                                  "(default: one per RX queue, highest CPUs "
                                                  "first)", type=common.int_list)
    interface: str | None = flag(None, "real-NIC mode: the interface to run on", group=NIC)
    peer_mac: str | None = flag(None, "balancer host: next-hop MAC of forwarded frames (the "
                                      "generator host's interface)", group=NIC)
    src_mac: str | None = flag(None, "source MAC of frames sent (default: the interface's)",
                               group=NIC)
    generate: bool = flag(False, "generator host: run trafgen on --interface to --dst-mac",
                          group=NIC)
    dst_mac: str | None = flag(None, "generator host: the balancer's interface MAC",
                               group=NIC)
    json_path: Path | None = DEFAULT_JSON


# --- programs and counters ------------------------------------------------------------------
class Programs:
    """The balancer (production build), the XDP_TX floor and the sink, loaded once."""

    def __init__(self, opts: Options, next_hop_mac: str, src_mac: str) -> None:
        from lb.control.service import Balancer, vip_key
        from lb.xdp import loader
        from lb.xdp.config import RuntimeConfig
        from lb.xdp.maps import Dataplane

        self.loader = loader
        self.balancer = loader.load()
        self.dp = Dataplane(self.balancer)
        self.dp.write_config(RuntimeConfig(next_hop_mac=next_hop_mac, src_mac=src_mac))
        service = Balancer(self.dp)
        key = vip_key(opts.vip, opts.vip_port, "tcp")
        service.add_vip(key)
        service.set_backends(key, {ipaddress.ip_address(b): 1 for b in opts.backends})
        self.floor_bpf, self.floor_fd = loader.load_function(FLOORS_FILE, "floor_tx",
                                                             ["-DLB_BENCH"])
        self.sink_bpf, self.sink_fd = loader.load_function(SINK_FILE, "xdp_sink")

    def fd(self, kind: str) -> int:
        return self.balancer.fd if kind == "balancer" else self.floor_fd

    def sink(self) -> dict[str, int]:
        table = self.sink_bpf[b"sink_counters"]
        return {name: sum(table[table.Key(slot)])
                for name, slot in (("all", SINK_ALL), ("ipip", SINK_IPIP),
                                   ("other", SINK_OTHER))}

    def close(self) -> None:
        self.dp.close()
        self.balancer.close()
        for bpf in (self.floor_bpf, self.sink_bpf):
            with contextlib.suppress(Exception):
                bpf.cleanup()


def _ethtool(ifname: str, netns: str | None) -> dict[str, int]:
    cmd = ["ethtool", "-S", ifname]
    if netns:
        cmd = ["ip", "netns", "exec", netns, *cmd]
    out = subprocess.run(cmd, capture_output=True, text=True)
    return parse_ethtool_stats(out.stdout) if out.returncode == 0 else {}


def _link_stats(ifname: str, netns: str | None) -> dict[str, int]:
    from pyroute2 import IPRoute

    from lb.netns import in_netns

    ctx = in_netns(netns) if netns else contextlib.nullcontext()
    with ctx, IPRoute() as ipr:
        link = ipr.link("get", index=ipr.link_lookup(ifname=ifname)[0])[0]
    s = link.get_attr("IFLA_STATS64")
    return {k: s[k] for k in ("rx_packets", "tx_packets", "rx_dropped", "tx_dropped")}


@dataclass
class Window:
    """One measured window: which program, how long, and the rates seen."""

    kind: str
    seconds: float
    sink_pps: float | None
    balancer_tx_pps: float | None
    offered_pps: float
    xdp_tx_pps: float
    per_queue_pps: dict[int, float] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


def measure_window(kind: str, progs: Programs, ifname: str, netns: str | None,
                   gen_if: str | None, gen_netns: str | None, seconds: float) -> Window:
    """Read every counter, wait `seconds`, read again; rates over the true elapsed time."""
    def snap():
        return (progs.sink() if gen_if else None, progs.dp.counters(),
                _ethtool(ifname, netns),
                _link_stats(gen_if, gen_netns) if gen_if else _link_stats(ifname, netns))
    sink0, c0, e0, l0 = snap()
    t0 = time.monotonic()
    time.sleep(seconds)
    sink1, c1, e1, l1 = snap()
    el = time.monotonic() - t0
    xdp_tx0 = sum(v for k, v in e0.items() if k.endswith("xdp_tx"))
    xdp_tx1 = sum(v for k, v in e1.items() if k.endswith("xdp_tx"))
    q0, q1 = queue_packets(e0), queue_packets(e1)
    w = Window(kind, el,
               rate(sink0["all"], sink1["all"], el) if gen_if else None,
               rate(c0["tx"], c1["tx"], el) if kind == "balancer" else None,
               rate(l0["tx_packets"], l1["tx_packets"], el) if gen_if
               else rate(l0["rx_packets"], l1["rx_packets"], el),
               rate(xdp_tx0, xdp_tx1, el),
               {q: rate(q0.get(q, 0), q1[q], el) for q in sorted(q1)})
    if gen_if:
        want, other = ("ipip", "other") if kind == "balancer" else ("other", "ipip")
        if sink1[other] != sink0[other]:
            w.problems.append(f"the sink saw {sink1[other] - sink0[other]:,} frames of the "
                              f"wrong kind ({other}) during a {kind} window")
    if kind == "balancer":
        dropped = sum(c1[k] - c0[k] for k in c1 if k.startswith("drop") or k == "pass")
        if dropped:
            w.problems.append(f"the balancer passed or dropped {dropped:,} frames")
    return w


# --- veth topology --------------------------------------------------------------------------
class VethPair:
    """Namespaces gen and lb, one veth pair gen0 <-> lb0 with `queues` queues on each end.

    Context manager; on exit trafgen is stopped (by its pid), XDP detached, both namespaces
    deleted (and with them the veths). Leftovers of dead runs: lb.lab.namespaces.remove_leftovers.
    """

    _seq = 0

    def __init__(self, queues: int) -> None:
        VethPair._seq += 1
        base = f"{NS_PREFIX}{os.getpid()}-{VethPair._seq}"
        self.gen_ns, self.lb_ns = f"{base}-gen", f"{base}-lb"
        self.queues = queues
        self.gen_if, self.lb_if = "gen0", "lb0"
        self.gen_mac = self.lb_mac = ""
        self._made: list[str] = []
        self._attached: list[tuple[str, int]] = []
        self.trafgen: subprocess.Popen | None = None

    def __enter__(self) -> VethPair:
        from pyroute2 import IPRoute
        from pyroute2 import netns as pnetns

        from lb.netns import NETNS_DIR, in_netns

        try:
            for ns in (self.gen_ns, self.lb_ns):
                pnetns.create(ns)
                self._made.append(ns)
                with in_netns(ns):  # no IPv6 chatter (RS, MLD) for the sink to count
                    for key in ("all", "default"):
                        Path(f"/proc/sys/net/ipv6/conf/{key}/disable_ipv6").write_text("1\n")
            with in_netns(self.gen_ns), IPRoute() as ipr:
                fd = os.open(NETNS_DIR / self.lb_ns, os.O_RDONLY)
                try:
                    ipr.link("add", ifname=self.gen_if, kind="veth",
                             num_rx_queues=self.queues, num_tx_queues=self.queues,
                             peer={"ifname": self.lb_if, "net_ns_fd": fd,
                                   "num_rx_queues": self.queues,
                                   "num_tx_queues": self.queues})
                finally:
                    os.close(fd)
                idx = ipr.link_lookup(ifname=self.gen_if)[0]
                ipr.link("set", index=idx, state="up")
                self.gen_mac = ipr.link("get", index=idx)[0].get_attr("IFLA_ADDRESS")
            with in_netns(self.lb_ns), IPRoute() as ipr:
                idx = ipr.link_lookup(ifname=self.lb_if)[0]
                ipr.link("set", index=idx, state="up")
                self.lb_mac = ipr.link("get", index=idx)[0].get_attr("IFLA_ADDRESS")
            # A multi-queue qdisc: trafgen's frames take the qdisc path (-q), where the
            # flow hash picks the TX queue, and so the peer's RX queue.
            subprocess.run(["tc", "-n", self.gen_ns, "qdisc", "replace", "dev", self.gen_if,
                            "root", "mq" if self.queues > 1 else "pfifo_fast"], check=True)
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def attach(self, which: str, fd: int) -> None:
        from lb.netns import in_netns
        from lb.xdp import loader

        ns, ifname = (self.gen_ns, self.gen_if) if which == "gen" else (self.lb_ns, self.lb_if)
        with in_netns(ns):
            idx = socket.if_nametoindex(ifname)
            loader.attach(fd, idx)  # replaces what is there, atomically
        if (ns, idx) not in self._attached:
            self._attached.append((ns, idx))

    def start_trafgen(self, config: Path, cpus: Sequence[int]) -> None:
        self.trafgen = start_trafgen(self.gen_if, config, cpus, self.gen_ns)

    def close(self) -> None:
        from pyroute2 import netns as pnetns

        from lb.netns import in_netns
        from lb.xdp import loader

        stop_trafgen(self.trafgen)
        self.trafgen = None
        for ns, idx in reversed(self._attached):
            with contextlib.suppress(Exception), in_netns(ns):
                loader.detach(idx)
        self._attached.clear()
        for ns in reversed(self._made):
            with contextlib.suppress(FileNotFoundError):
                pnetns.remove(ns)
        self._made.clear()


def trafgen_command(ifname: str, config: Path, cpus: Sequence[int],
                    netns: str | None = None) -> list[str]:
    """trafgen with one worker per CPU in `cpus` (pinned by taskset and by the config's
    `cpu(N):` prefixes), the qdisc path (-q), no IRQ or socket-memory tuning (-Q,
    --no-sock-mem: it touches nothing outside its own socket)."""
    cmd = ["taskset", "-c", ",".join(map(str, cpus))]
    if netns:
        cmd += ["ip", "netns", "exec", netns]
    return cmd + ["trafgen", "-o", ifname, "-i", str(config), "-P", str(max(cpus) + 1),
                  "-q", "-Q", "--no-sock-mem", "-C"]


def start_trafgen(ifname: str, config: Path, cpus: Sequence[int],
                  netns: str | None = None) -> subprocess.Popen:
    if shutil.which("trafgen") is None:
        raise SystemExit("trafgen is not installed (Debian: apt-get install netsniff-ng)")
    proc = subprocess.Popen(trafgen_command(ifname, config, cpus, netns),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    time.sleep(0.3)
    if proc.poll() is not None:
        raise SystemExit(f"trafgen exited at once: {proc.stderr.read().strip()}")
    return proc


def stop_trafgen(proc: subprocess.Popen | None) -> None:
    """Stop trafgen and its workers (its own process group, by the group leader's pid)."""
    if proc is None or proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, 2)  # SIGINT: trafgen's own clean exit
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, 9)
        proc.wait()


def write_trafgen_config(opts: Options, dst_mac: str, src_mac: str,
                         cpus: Sequence[int]) -> Path:
    """One config: the flows split over the workers (worker i sends flows i, i+k, ...)."""
    frames = [tcp_ack_frame(dst_mac, src_mac, s, opts.vip, p, opts.vip_port)
              for s, p in flow_sources(opts.flows)]
    parts = [trafgen_config(frames[i::len(cpus)], cpu) for i, cpu in enumerate(cpus)]
    fd, path = tempfile.mkstemp(prefix="lb-trafgen-", suffix=".cfg")
    with os.fdopen(fd, "w") as f:
        f.write("".join(parts))
    return Path(path)


# --- running --------------------------------------------------------------------------------
def alternate(progs: Programs, attach: Callable[[int], None], opts: Options,
              window: Callable[[str], Window]) -> list[Window]:
    """floor, balancer, floor, ..., floor: `rounds` balancer windows, each between floors."""
    out = []
    order = ["floor"] + ["balancer", "floor"] * opts.rounds
    for kind in order:
        attach(progs.fd(kind))
        time.sleep(0.2)  # let frames of the previous program drain
        w = window(kind)
        log(f"    {kind:<8} {w.sink_pps or w.xdp_tx_pps:>12,.0f} pps")
        out.append(w)
    return out


def summarize(windows: list[Window], sink: bool) -> dict:
    """Medians of each program's windows and the paired ratio balancer/floor."""
    def med(kind: str, attr: str) -> float | None:
        vals = [getattr(w, attr) for w in windows if w.kind == kind]
        vals = [v for v in vals if v is not None]
        return statistics.median(vals) if vals else None

    key = "sink_pps" if sink else "xdp_tx_pps"
    ratios = paired_ratios([(w.kind, getattr(w, key)) for w in windows])
    problems = [p for w in windows for p in w.problems]
    ratio = statistics.median(ratios) if ratios and not problems else None
    return {
        "floor_pps": med("floor", key), "balancer_pps": med("balancer", key),
        "balancer_counter_pps": med("balancer", "balancer_tx_pps"),
        "floor_xdp_tx_pps": med("floor", "xdp_tx_pps"),
        "balancer_xdp_tx_pps": med("balancer", "xdp_tx_pps"),
        "offered_pps": {"floor": med("floor", "offered_pps"),
                        "balancer": med("balancer", "offered_pps")},
        "ratio": round(ratio, 3) if ratio is not None else None,
        "ratio_runs": [round(r, 3) for r in ratios],
        "target_ratio": TARGET_RATIO, "problems": sorted(set(problems)),
        "windows": [w.__dict__ for w in windows],
    }


def row(mode: str, queues: int | None, summary: dict, **fields: object) -> dict:
    """One row of the report: the paired ratio balancer/floor of one mode and queue count,
    judged against TARGET_RATIO, with `fields` and the summary's figures beside it."""
    ratio = summary["ratio"]
    return Result(f"{mode}_{queues}", f"{mode}, {queues} queue(s)", ratio, "x the floor's pps",
                  "forwarded pps of the balancer over the XDP_TX floor's, windows paired",
                  TARGET_RATIO, judge(ratio),
                  {"mode": mode, "queues": queues, **fields, **summary}).as_dict()


def run_veth(opts: Options) -> list[dict]:
    from lb.lab.namespaces import remove_leftovers

    remove_leftovers(NS_PREFIX)
    cpus = sorted(os.sched_getaffinity(0))
    results = []
    for q in opts.queues:
        gen_cpus = list(opts.gen_cpus or cpus[-q:] if q <= len(cpus) else cpus)
        log(f"queues {q}: building gen/lb namespaces, trafgen on CPU {gen_cpus} ...")
        with VethPair(q) as pair:
            progs = Programs(opts, next_hop_mac=pair.gen_mac, src_mac=pair.lb_mac)
            config = write_trafgen_config(opts, pair.lb_mac, pair.gen_mac, gen_cpus)
            try:
                pair.attach("gen", progs.sink_fd)
                pair.attach("lb", progs.floor_fd)
                pair.start_trafgen(config, gen_cpus)
                time.sleep(opts.warmup)
                windows = alternate(
                    progs, lambda fd: pair.attach("lb", fd), opts,
                    lambda kind, progs=progs, pair=pair: measure_window(
                        kind, progs, pair.lb_if, pair.lb_ns, pair.gen_if, pair.gen_ns,
                        opts.duration))
                if pair.trafgen.poll() is not None:
                    raise SystemExit("trafgen stopped during the run: "
                                     + pair.trafgen.stderr.read().strip())
            finally:
                pair.close()
                progs.close()
                config.unlink()
        results.append(row("veth", q, summarize(windows, sink=True),
                           generator_cpus=gen_cpus, flows=opts.flows))
    return results


def run_nic(opts: Options) -> list[dict]:
    """This host is the balancer: alternate balancer / floor on `interface`; the receiving
    end is the generator host (its interface's rx counters, printed by --generate)."""
    from lb.xdp import loader

    ifname = opts.interface
    src_mac = opts.src_mac or Path(f"/sys/class/net/{ifname}/address").read_text().strip()
    progs = Programs(opts, next_hop_mac=opts.peer_mac, src_mac=src_mac)
    idx = socket.if_nametoindex(ifname)
    try:
        windows = alternate(progs, lambda fd: loader.attach(fd, idx), opts,
                            lambda kind: measure_window(kind, progs, ifname, None, None,
                                                        None, opts.duration))
    finally:
        with contextlib.suppress(Exception):
            loader.detach(idx)
        progs.close()
    queues = len(queue_packets(_ethtool(ifname, None))) or None
    return [row("nic", queues, summarize(windows, sink=False), interface=ifname, flows=None,
                note="pps from the NIC's xdp_tx counters (ethtool -S) and the balancer's tx "
                     "counter; the receiving end is the generator host's rx counter")]


def run_generate(opts: Options) -> int:
    """The generator host: trafgen to the balancer's MAC; prints its interface's rx pps
    (what comes back: the receiving end) every `duration` seconds until Ctrl-C."""
    ifname = opts.interface
    src_mac = opts.src_mac or Path(f"/sys/class/net/{ifname}/address").read_text().strip()
    cpus = list(opts.gen_cpus or sorted(os.sched_getaffinity(0)))
    config = write_trafgen_config(opts, opts.dst_mac, src_mac, cpus)
    proc = start_trafgen(ifname, config, cpus)
    log(f"trafgen on {ifname}, CPUs {cpus}, {opts.flows} flows to {opts.vip}:{opts.vip_port}; "
        "Ctrl-C stops")
    try:
        while proc.poll() is None:
            a, t0 = _link_stats(ifname, None), time.monotonic()
            time.sleep(opts.duration)
            b, el = _link_stats(ifname, None), time.monotonic() - t0
            sent = rate(a["tx_packets"], b["tx_packets"], el)
            received = rate(a["rx_packets"], b["rx_packets"], el)
            print(f"{time.strftime('%H:%M:%S')}  sent {sent:>12,.0f} pps  "
                  f"received {received:>12,.0f} pps", flush=True)
    except KeyboardInterrupt:
        pass
    finally:
        stop_trafgen(proc)
        config.unlink()
    return 0


# --- output ---------------------------------------------------------------------------------
def _pps(v: float | None) -> str:
    return "-" if v is None else f"{v / 1e6:.3f}M"


def render(report: dict) -> str:
    m = report["method"]
    lines = common.heading(
        "Throughput benchmark: packets per second forwarded, balancer vs XDP_TX floor",
        report["host"],
        f"  {m['rounds']} balancer windows of {m['duration_s']} s per row, each between two "
        f"floor windows; {m['flows']} flows to {m['vip']}, {m['backends']} backends",
        f"  CPUs: {m['cpus']}")
    rows = []
    for r in report["rows"]:
        rr = r["ratio_runs"]
        rows.append([r["mode"], r["queues"] or "?",
                     ",".join(map(str, r.get("generator_cpus", []))) or "-",
                     _pps(r["floor_pps"]), _pps(r["balancer_pps"]),
                     _pps(r["balancer_counter_pps"]),
                     f"{r['ratio']:.3f}" if r["ratio"] is not None else "-",
                     f"{min(rr):.3f}-{max(rr):.3f}" if rr else "",
                     f">={r['target_ratio']}", r["result"]])
    lines.append(common.table(rows, ["mode", "queues", "gen CPUs", "floor pps", "balancer pps",
                                     "lb counter", "ratio", "min-max", "target", "result"],
                              "lrrrrrrrrl"))
    lines += ["",
              "floor / balancer pps: median of the windows at the receiving end (veth: the "
              "sink on the peer;",
              "NIC: the interface's xdp_tx counter); lb counter: the balancer's own tx "
              "counter; ratio: median",
              "over rounds of a balancer window over the mean of the floor windows around it."]
    for r in report["rows"]:
        per_q = [w["per_queue_pps"] for w in r["windows"] if w["kind"] == "balancer"]
        if per_q:
            q = {k: statistics.median(d[k] for d in per_q) for k in per_q[0]}
            lines.append(f"  {r['mode']} {r['queues']} queue(s): balancer frames per RX queue "
                         + ", ".join(f"q{k} {_pps(v)}" for k, v in sorted(q.items())))
        for p in r["problems"]:
            lines.append(f"  INVALID ({r['mode']}, {r['queues']} queues): {p}")
    return "\n".join(lines)


# --- CLI ------------------------------------------------------------------------------------
EXAMPLES = """\
examples:
  python -m bench.throughput                      # veth, 1 and 2 RX queues, 3 rounds of 5 s
  python -m bench.throughput --duration 2 --rounds 1 --json /tmp/tp.json   # a quick look
  python -m bench.throughput --queues 2 --flows 65536
  python -m bench.throughput --print-trafgen      # the trafgen config it would send, then exit
  # two hosts (see bench/README.md): on the balancer host
  python -m bench.throughput --interface eth1 --peer-mac 52:54:00:00:00:02 \\
      --vip 10.100.0.1 --backends 10.200.0.1,10.200.0.2
  # and on the generator host
  python -m bench.throughput --generate --interface eth1 --dst-mac 52:54:00:00:00:01 \\
      --vip 10.100.0.1
"""


def parse_args(argv: list[str] | None = None) -> tuple[Options, argparse.Namespace]:
    p = common.parser("throughput", EXAMPLES, Options)
    p.add_argument("--print-trafgen", action="store_true",
                   help="print the trafgen configuration (veth addresses) and exit")
    a = p.parse_args(argv)
    if a.duration <= 0 or a.rounds < 1 or a.flows < 1 or min(a.queues) < 1:
        p.error("--duration > 0, --rounds >= 1, --flows >= 1, --queues >= 1")
    if a.interface and not a.generate and not a.peer_mac:
        p.error("--interface (balancer host) needs --peer-mac")
    if a.generate and not (a.interface and a.dst_mac):
        p.error("--generate needs --interface and --dst-mac")
    opts = common.options_from(Options, a)
    return opts, a


def main(argv: list[str] | None = None) -> int:
    opts, args = parse_args(argv)
    if args.print_trafgen:
        frames = [tcp_ack_frame("02:00:00:00:00:01", "02:00:00:00:00:02", s, opts.vip, p,
                                opts.vip_port) for s, p in flow_sources(opts.flows)]
        print(trafgen_config(frames), end="")
        return 0
    if not common.is_root("throughput", "XDP, namespaces"):
        return 1
    if opts.generate:
        return run_generate(opts)
    common.unwind_on_sigterm()
    cpus = sorted(os.sched_getaffinity(0))
    rows = run_nic(opts) if opts.interface else run_veth(opts)
    host = common.host_facts()
    cpu_note = ("veth: the balancer's XDP runs in the NAPI poll on the CPU that sent the frame, "
                "so on each generator CPU (trafgen pinned by taskset and cpu(N): prefixes); "
                "threaded NAPI not used (stalls under trafgen on this kernel)"
                if not opts.interface else f"NIC: RSS and IRQ affinity of {opts.interface} "
                "as configured on the host")
    report = {
        "schema": SCHEMA, "host": host,
        "method": {"duration_s": opts.duration, "rounds": opts.rounds, "warmup_s": opts.warmup,
                   "flows": opts.flows, "vip": f"{opts.vip}:{opts.vip_port}/tcp",
                   "backends": len(opts.backends), "cpus": cpu_note, "allowed_cpus": cpus,
                   "generator": "trafgen (netsniff-ng), static frames, qdisc path",
                   "floor": "bench/floors.c floor_tx: XDP_TX of the frame unchanged",
                   "balancer": "lb/xdp/balancer.c, production build (no -DLB_BENCH)"},
        "rows": rows,
    }
    common.emit("throughput", report, render, opts.json_path)
    results = [r["result"] for r in rows]
    return 1 if "INVALID" in results else 0


if __name__ == "__main__":
    sys.exit(main())
