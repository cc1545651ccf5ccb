"""Flow simulation: the balancer program's verdict on a built packet, without touching live maps.

How it stays read-only: BPF_PROG_TEST_RUN of the loaded program itself would write what a
real packet writes (counters, VIP and backend stats, the connection table, the ICMP budget),
into the maps the attached program uses. So the simulator runs a second instance of the same
program (the same source, compiled with the same flags but no pin directory, so its maps are
its own), and before each run copies into it, from the live maps, exactly the entries the
flow's packet reads: the runtime config, the VIP hash maps (VIPs and address markers), the
flow's VIP index and pre-filter slots, its ring slot, its connection-table set on the CPU the
run executes on, and the backends those name. Its writes land in its own maps. The live maps
are only read. The second instance has a 7-slot ring and a 64-entry connection table (the
copied slot and set are put where its own hashing looks for them), so it costs little memory.

The one difference from a real packet: a real non-SYN TCP packet of a settled slot reads the
connection table anyway once in LB_CT_SAMPLE_MASK + 1 packets (a per-CPU tick); a simulated
one never does (its tick starts at zero).
"""

from __future__ import annotations

import ctypes
import dataclasses
import os
import socket
import threading
import time
from dataclasses import dataclass

from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Ether

from lb.xdp import loader
from lb.xdp.conntable import CT_FAMILIES
from lb.xdp.consts import CT_TIME_SHIFT, SLOT_BACKEND, SLOT_SETTLED, Counter
from lb.xdp.flowhash import filter_slot, flow_hash, vip_index_slot
from lb.xdp.mapkeys import flow_key, vip_key
from lb.xdp.maps import Dataplane
from lb.xdp.testrun import test_run
from lb.xdp.types import Flow, VipKey

_U32 = ctypes.c_uint32
# The second instance's ring (a prime) and connection table (the smallest allowed).
_SIM_RING_SIZE = 7
_SIM_CT_SIZE = 64
# The inner protocols of IP-in-IP (IPv4, IPv6).
_IPPROTO_IPIP, _IPPROTO_IPV6 = 4, 41
# clockid_t of CLOCK_MONOTONIC_COARSE (Linux; the time module does not name it).
_CLOCK_MONOTONIC_COARSE = 6


@dataclass(frozen=True)
class CtWay:
    """A connection-table way holding the flow on one CPU: set, way, backend index,
    idle_settles, and (UDP) seconds since its last packet (None: TCP ways carry no time)."""

    cpu: int
    set: int
    way: int
    backend: int
    idle_settles: int
    age_s: float | None


@dataclass(frozen=True)
class CpuVerdict:
    """What the program did with the packet had it arrived on `cpu`: verdict, the counter
    slots it raised (the reasons), and the frame it left, parsed (outer header, if any)."""

    cpu: int
    verdict: str
    reasons: list[str]
    frame_len: int
    outer: dict[str, object] | None


@dataclass(frozen=True)
class Simulation:
    """The kernel's view of one flow: the VIP found (None: none), its number and flags, the
    flow hash and ring slot with the slot's raw value, the connection-table ways holding the
    flow, and the verdict per CPU."""

    vip: VipKey | None
    vip_num: int | None
    vip_flags: int
    flow_hash: int
    ring_slot: int | None
    slot_backend: int | None
    slot_settled: bool
    ways: list[CtWay]
    verdicts: list[CpuVerdict]


def build_frame(flow: Flow, syn: bool, payload: int = 0) -> bytes:
    """An Ethernet frame of `flow` (TCP with SYN alone, or ACK; or UDP), full checksums."""
    ip = (IPv6(src=str(flow.src), dst=str(flow.dst), hlim=64) if flow.src.version == 6 else
          IP(src=str(flow.src), dst=str(flow.dst), ttl=64))
    if flow.proto == socket.IPPROTO_TCP:
        l4 = TCP(sport=flow.sport, dport=flow.dport, flags="S" if syn else "A")
    else:
        l4 = UDP(sport=flow.sport, dport=flow.dport)
    return bytes(Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / ip / l4
                 / (b"\0" * payload))


def describe_outer(frame: bytes) -> dict[str, object] | None:
    """The outer header of an encapsulated frame (None if it is not IP-in-IP)."""
    eth = Ether(frame)
    ip = eth.payload
    if isinstance(ip, IP) and ip.proto in (_IPPROTO_IPIP, _IPPROTO_IPV6):
        return {"family": "ipv4", "src": ip.src, "dst": ip.dst, "ttl": ip.ttl,
                "mac_src": eth.src, "mac_dst": eth.dst}
    if isinstance(ip, IPv6) and ip.nh in (_IPPROTO_IPIP, _IPPROTO_IPV6):
        return {"family": "ipv6", "src": ip.src, "dst": ip.dst, "ttl": ip.hlim,
                "mac_src": eth.src, "mac_dst": eth.dst}
    return None


class Simulator:
    """Runs flows through a private instance of the live program (see the module docstring).

    The instance is compiled on first use (about 2 s) and kept; runs are serialised.
    """

    def __init__(self, live: Dataplane) -> None:
        self.live = live
        self._program: loader.Program | None = None
        self._lock = threading.Lock()

    def close(self) -> None:
        if self._program is not None:
            self._program.close()
            self._program = None

    def prepare(self) -> None:
        """Compile and load the private instance now if not yet done (about 2 s)."""
        with self._lock:
            self._instance()

    def _instance(self) -> loader.Program:
        if self._program is None:
            live = self.live.program
            sizes = dataclasses.replace(live.sizes, ring_size=_SIM_RING_SIZE,
                                        conn_table_size=_SIM_CT_SIZE)
            # The live build's extra flags (a chain slot) stay out: the copy is no chain member.
            self._program = loader.load(sizes)
        return self._program

    # --- reads of the live maps ------------------------------------------------------
    def find_vip(self, flow: Flow) -> tuple[VipKey | None, int | None, int]:
        """The VIP the program finds for a flow (exact port, then port 0): key, number, flags."""
        table = self.live.program.table("vips_v6" if flow.dst.version == 6 else "vips_v4")
        for port in (flow.dport, 0):
            key = VipKey(flow.dst, port, flow.proto)
            meta = table.get(vip_key(key))
            if meta is not None:
                return key, meta.vip_num, meta.flags
        return None, None, 0

    def conn_ways(self, flow: Flow) -> list[CtWay]:
        """The flow's ways in the live connection table, on every CPU."""
        v6 = flow.src.version == 6
        set_type = CT_FAMILIES[v6][1]
        sets = self.live.sizes.conn_table_sets
        set_num = flow_hash(flow.src, flow.dst, flow.sport, flow.dport, flow.proto) & (sets - 1)
        want = bytes(flow_key(flow))
        now = _coarse_ns() >> CT_TIME_SHIFT
        out = []
        for cpu in range(self.live.sizes.cpus):
            s = set_type.from_buffer_copy(self.live.conn_set(v6, cpu, set_num))
            for w, entry in enumerate(s.way):
                if entry.state.backend and bytes(entry.flow) == want:
                    age = (((now - entry.state.atime) & 0xFFFFFFFF) << CT_TIME_SHIFT) / 1e9 \
                        if flow.proto == socket.IPPROTO_UDP else None
                    out.append(CtWay(cpu, set_num, w, entry.state.backend,
                                     entry.state.idle_settles, age))
        return out

    # --- the run ----------------------------------------------------------------------
    def simulate(self, flow: Flow, syn: bool) -> Simulation:
        """The live maps' answer for `flow`, and the program's verdict on one packet of it
        (a TCP SYN if `syn`) on every CPU this process may run on."""
        vip, num, flags = self.find_vip(flow)
        h = flow_hash(flow.src, flow.dst, flow.sport, flow.dport, flow.proto, flags)
        pos = raw = None
        if num is not None:
            pos = h % self.live.sizes.ring_size
            raw = self.live.ring_slot_raw(num, pos)
        frame = build_frame(flow, syn)
        with self._lock:
            prog = self._instance()
            self._seed_common(prog, flow, num, h, raw)
            verdicts = []
            for cpu in sorted(os.sched_getaffinity(0)):
                verdicts.append(self._run_on(prog, cpu, flow, frame))
        return Simulation(vip, num, flags, h, pos,
                          None if raw is None else raw & SLOT_BACKEND,
                          bool(raw is not None and raw & SLOT_SETTLED),
                          self.conn_ways(flow), verdicts)

    def _seed_common(self, prog: loader.Program, flow: Flow, num: int | None, ring_hash: int,
                     raw: int | None) -> None:
        """Copy into the instance what the flow's packet reads, but its connection-table set."""
        live = self.live.program
        v6 = flow.dst.version == 6
        zero = _U32(0)
        prog.table("lb_config")[zero] = live.table("lb_config")[zero]
        for name in ("vips_v4", "vips_v6"):
            dst = prog.table(name)
            dst.clear()
            for k, v in live.table(name).items():
                dst[k] = v
        bits = self.live.sizes.vip_index_bits
        index = "vip_index_v6" if v6 else "vip_index_v4"
        for port in (flow.dport, 0):
            key = _U32(vip_index_slot(flow.dst, port, flow.proto, bits))
            prog.table(index)[key] = live.table(index)[key]
        fkey = _U32(filter_slot(flow.dst, self.live.sizes.filter_bits))
        prog.table("vip_filter")[fkey] = live.table("vip_filter")[fkey]
        if num is not None and raw is not None:
            sim_pos = ring_hash % _SIM_RING_SIZE
            cells = prog.table("rings")
            cell = cells.Leaf()
            cell.backend[sim_pos % 4] = raw
            cells[_U32(num * prog.sizes.ring_cells + sim_pos // 4)] = cell
            self._copy_backend(prog, raw & SLOT_BACKEND)

    def _copy_backend(self, prog: loader.Program, index: int) -> None:
        if 0 < index < self.live.sizes.max_backends:
            prog.table("backends")[_U32(index)] = self.live.program.table("backends")[_U32(index)]

    def _run_on(self, prog: loader.Program, cpu: int, flow: Flow, frame: bytes) -> CpuVerdict:
        """Seed CPU `cpu`'s set of the flow, run the packet there, read what it counted."""
        v6 = flow.src.version == 6
        name, set_type, *_ = CT_FAMILIES[v6]
        set_hash = flow_hash(flow.src, flow.dst, flow.sport, flow.dport, flow.proto)
        live_sets = self.live.sizes.conn_table_sets
        raw = self.live.conn_set(v6, cpu, set_hash & (live_sets - 1))
        s = set_type.from_buffer_copy(raw)
        for entry in s.way:
            self._copy_backend(prog, entry.state.backend)
        sim_sets = prog.sizes.conn_table_sets
        table = prog.table(name)
        table[_U32(cpu * sim_sets + (set_hash & (sim_sets - 1)))] = \
            table.Leaf.from_buffer_copy(raw)
        counters = prog.table("counters")
        before = list(counters[_U32(0)][cpu].n)
        saved = os.sched_getaffinity(0)
        os.sched_setaffinity(0, {cpu})
        try:
            result = test_run(prog.fd, frame)
        finally:
            os.sched_setaffinity(0, saved)
        after = list(counters[_U32(0)][cpu].n)
        reasons = [c.name.lower() for c in Counter if after[c] > before[c]]
        return CpuVerdict(cpu, result.verdict_name.lower(), reasons, len(result.frame),
                          describe_outer(result.frame))


def _coarse_ns() -> int:
    """CLOCK_MONOTONIC_COARSE in ns: the connection table's clock."""
    return time.clock_gettime_ns(_CLOCK_MONOTONIC_COARSE)
