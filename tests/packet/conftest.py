"""The packet-test rig: the real balancer program, loaded once, fed frames by BPF_PROG_TEST_RUN.

Scope: session. `loaded_rig` compiles and loads lb/xdp/balancer.c once (about 3 s) with
Sizes(max_vips=8, conn_table_size=4096), writes BASE_CONFIG and configures the VIPs
of `VIPS` through lb.control.service.Balancer, the same path the API takes.
Dependencies: root (bpf()), bcc (Debian's python3-bpfcc) and kernel headers. No
interface, namespace or pin directory: frames only go through BPF_PROG_TEST_RUN,
so nothing is attached and nothing outlives the session.
Isolation: `rig` (function scope) hands each test the session's program after
clearing the counters, the per-VIP and per-backend stats and both connection
tables and writing BASE_CONFIG again: each test starts from zero, so any counter
it reads is its own. It also pins the test to one CPU (restored afterwards): the
connection tables are per CPU, and BPF_PROG_TEST_RUN runs on the caller's CPU.
A test that changes VIPs or the config restores them itself (`Rig.configured`).
Cleanup: the ring mapping is closed, then program.close() releases the maps.
"""

from __future__ import annotations

import contextlib
import dataclasses
import ipaddress
import os
from collections.abc import Iterator

import pytest
from packet_frames import LB_MAC
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Dot1Q, Ether
from scapy.utils import checksum, hexdump

from lb.xdp.config import RuntimeConfig, Sizes
from lb.xdp.consts import VERDICT_NAMES, VipFlag
from lb.xdp.flowhash import encap_src_bits, flow_hash, outer_source

ip = ipaddress.ip_address

SIZES = Sizes(max_vips=8, conn_table_size=4096)

# Encapsulated frames go from the balancer's own MAC (LB_MAC) to this next hop.
NEXT_HOP_MAC = "0a:0b:0c:0d:0e:0f"

BASE_CONFIG = RuntimeConfig(next_hop_mac=NEXT_HOP_MAC, src_mac=LB_MAC, mtu=1500, ttl=64,
                            udp_timeout_s=30.0)

# name -> (address, port, protocol, flags, backends). Eight VIPs: Sizes.max_vips.
# Between them they cover every outer/inner family pair, TCP and UDP on both
# families, port 0 next to an exact port, and both VIP flags.
VIPS: dict[str, tuple[str, int, str, int, list[str]]] = {
    "v4tcp": ("10.0.0.1", 80, "tcp", 0, ["10.1.0.1", "10.1.0.2", "10.1.0.3"]),
    "v4udp": ("10.0.0.1", 53, "udp", 0, ["fc01::1", "fc01::2"]),
    "v6tcp": ("fc00::1", 443, "tcp", 0, ["fc01::1", "fc01::2", "fc01::3"]),
    "v6udp": ("fc00::1", 53, "udp", 0, ["10.1.0.1", "10.1.0.2"]),
    "v4all": ("10.0.0.2", 0, "tcp", 0, ["10.1.0.4"]),
    "v4exact": ("10.0.0.2", 8080, "tcp", 0, ["10.1.0.5"]),
    "v6nosport": ("fc00::3", 80, "tcp", VipFlag.HASH_NO_SRC_PORT,
                  ["fc01::1", "fc01::2", "fc01::3"]),
    "v4noct": ("10.0.0.4", 53, "udp", VipFlag.NO_CONN_TABLE,
               ["10.1.0.1", "10.1.0.2", "10.1.0.3"]),
}

ETH_P_8021Q = 0x8100
# Enough of a frame's bytes to see every header of it.
HEXDUMP_BYTES = 160


def side_by_side(left: str, right: str, titles: tuple[str, str] = ("input", "output"),
                 width: int = 76) -> str:
    """Two texts in two columns, for a person comparing an input and an output frame."""
    a, b = left.splitlines(), right.splitlines()
    rows = [f"{titles[0]:<{width}} | {titles[1]}", f"{'-' * width}-+-{'-' * width}"]
    for i in range(max(len(a), len(b))):
        la = a[i] if i < len(a) else ""
        lb = b[i] if i < len(b) else ""
        rows.append(f"{la[:width]:<{width}} | {lb}")
    return "\n".join(rows)


def dump_frame(frame: bytes) -> str:
    """scapy's decoding of a frame followed by its hexdump."""
    if not frame:
        return "(empty)"
    decoded = Ether(frame).show2(dump=True)
    shown = hexdump(frame[:HEXDUMP_BYTES], dump=True)
    if len(frame) > HEXDUMP_BYTES:
        shown += f"\n... {len(frame) - HEXDUMP_BYTES} more bytes"
    return f"{decoded}\n{shown}"


@dataclasses.dataclass(frozen=True)
class Flow:
    """What the program hashes: the 5-tuple of an input frame's IP packet."""

    src: ipaddress.IPv4Address | ipaddress.IPv6Address
    dst: ipaddress.IPv4Address | ipaddress.IPv6Address
    sport: int
    dport: int
    proto: int


@dataclasses.dataclass(frozen=True)
class Inner:
    """Where an input frame's IP packet is and what the outer header copies from it."""

    l2_len: int
    length: int
    tos: int
    flow: Flow


def inner_of(frame: bytes) -> Inner:
    """Parse an input frame (optionally 802.1Q-tagged) the way a test expects the program to."""
    eth = Ether(frame)
    l2_len = 18 if eth.type == ETH_P_8021Q else 14
    l3 = eth[Dot1Q].payload if eth.type == ETH_P_8021Q else eth.payload
    if isinstance(l3, IP):
        length, tos, proto = l3.len, l3.tos, l3.proto
    else:
        assert isinstance(l3, IPv6), f"not an IP frame: {l3!r}"
        length, tos, proto = 40 + l3.plen, l3.tc, l3.nh
    l4 = l3.payload
    assert isinstance(l4, TCP | UDP), f"not TCP/UDP: {l4!r}"
    flow = Flow(ip(l3.src), ip(l3.dst), l4.sport, l4.dport, proto)
    return Inner(l2_len, length, tos, flow)


class Rig:
    """The loaded program, its maps, the Balancer that configured them and the VIPs by name."""

    def __init__(self, program, dataplane, balancer, vips) -> None:
        from lb.xdp import testrun

        self._test_run = testrun.test_run
        self.program = program
        self.dp = dataplane
        self.balancer = balancer
        self.vips = vips
        self.config = BASE_CONFIG

    # --- running frames -------------------------------------------------------------
    def run(self, frame: bytes):
        """One BPF_PROG_TEST_RUN of the program on `frame` (a TestRunResult)."""
        return self._test_run(self.program.fd, frame)

    def counters(self) -> dict[str, int]:
        """The global counters that are not zero (tests start from all zero), but for
        ct_miss_nonsyn (a non-SYN TCP miss: also a ct_miss), read by `lost_state`."""
        return {k: v for k, v in self.dp.counters().items() if v and k != "ct_miss_nonsyn"}

    def lost_state(self) -> int:
        """The global ct_miss_nonsyn: non-SYN TCP packets that missed the table."""
        return self.dp.counters()["ct_miss_nonsyn"]

    def reset(self) -> None:
        """Zero counters and stats, empty the connection tables, refill the ICMP reply
        budget, write BASE_CONFIG."""
        self.dp.clear_stats()
        self.dp.clear_conn_table()
        self.program.table("icmp_budget").clear()  # a full ICMP reply budget
        self.set_config(BASE_CONFIG)

    def set_config(self, cfg: RuntimeConfig) -> None:
        self.dp.write_config(cfg)
        self.config = cfg

    @contextlib.contextmanager
    def configured(self, **changes) -> Iterator[RuntimeConfig]:
        """Run with BASE_CONFIG changed by `changes`; BASE_CONFIG is back afterwards."""
        cfg = dataclasses.replace(BASE_CONFIG, **changes)
        self.set_config(cfg)
        try:
            yield cfg
        finally:
            self.set_config(BASE_CONFIG)

    # --- what the control plane says ------------------------------------------------
    def vip_num(self, name: str) -> int:
        return self.balancer.vips[self.vips[name]].num

    def backend_address(self, index: int):
        """The address the control plane gave backend slot `index` (Balancer.backend_index)."""
        for address in self.all_backends():
            if self.balancer.backend_index(address) == index:
                return address
        raise AssertionError(f"backend index {index} names no backend the control plane knows")

    def all_backends(self) -> list:
        return sorted({ip(b) for *_, backends in VIPS.values() for b in backends},
                      key=lambda a: (a.version, a))

    def flow_of(self, frame: bytes) -> Flow:
        """The 5-tuple of an input frame."""
        return inner_of(frame).flow

    def conn_entries(self) -> dict[Flow, int]:
        """Both connection tables as flow -> backend index (over every CPU)."""
        return dict(self.conn_list())

    def conn_list(self) -> list[tuple[Flow, int]]:
        """Every live way of both tables on every CPU, as (flow, backend index): a flow
        planted with `plant` is there once per CPU, one the program inserted once."""
        return [(Flow(f.src, f.dst, f.sport, f.dport, f.proto), index)
                for f, index in self.dp.conn_table()]

    def plant(self, flow: Flow, index: int) -> None:
        """Write a connection-table entry sending `flow` to backend slot `index`."""
        from lb.xdp.types import Flow as MapFlow

        self.dp.set_conn_entry(MapFlow(flow.src, flow.dst, flow.sport, flow.dport, flow.proto),
                               index)

    def ring_choice(self, name: str, flow: Flow) -> int:
        """The backend index the VIP's ring names for `flow`, computed from the Python mirror."""
        state = self.balancer.vips[self.vips[name]]
        h = flow_hash(flow.src, flow.dst, flow.sport, flow.dport, flow.proto, int(state.flags))
        return self.dp.read_ring(state.num)[h % SIZES.ring_size]

    def stats_totals(self) -> tuple[tuple[int, int], tuple[int, int]]:
        """(packets, bytes) summed over every VIP, and over every backend slot in use."""
        vip = [self.dp.vip_stats(n) for n in range(SIZES.max_vips)]
        be = [self.dp.backend_stats(self.balancer.backend_index(a)) for a in self.all_backends()]
        return ((sum(p for p, _ in vip), sum(b for _, b in vip)),
                (sum(p for p, _ in be), sum(b for _, b in be)))

    # --- checking an encapsulated frame ---------------------------------------------
    def check_forwarded(self, frame: bytes, out: bytes, vip: str,
                        backend: int | None = None) -> int:
        """Assert `out` is `frame` encapsulated toward the right backend; returns its index.

        The backend is `backend` if given (a connection-table test pins it), else the
        slot of the VIP's ring that lb.xdp.flowhash.flow_hash names. Checks: L2 header
        (next hop, own MAC, VLAN tag kept), every outer header field, and that what
        follows the outer header is the input's IP packet byte for byte, and nothing more
        (Ethernet padding or other bytes after the IP packet are not sent on).
        """
        cfg = self.config
        inner = inner_of(frame)
        f = inner.flow
        index = self.ring_choice(vip, f) if backend is None else backend
        assert index != 0, f"the ring of {vip} has no backend for {f}"
        daddr = self.backend_address(index)
        assert self.dp.backend(index) == daddr, "backends map disagrees with the control plane"
        v6_outer = daddr.version == 6
        overhead = 40 if v6_outer else 20
        l2 = inner.l2_len
        assert len(out) == l2 + overhead + inner.length, \
            "frame is not the IP packet under the outer header"

        eth = Ether(out)
        assert eth.dst == NEXT_HOP_MAC and eth.src == LB_MAC, "Ethernet addresses"
        ethertype = 0x86DD if v6_outer else 0x0800
        if l2 == 18:
            assert eth.type == ETH_P_8021Q, "VLAN tag lost"
            assert out[14:16] == frame[14:16], "VLAN TCI changed"
            assert int.from_bytes(out[16:18], "big") == ethertype, "ethertype under the tag"
        else:
            assert eth.type == ethertype, "ethertype"

        inner_proto = 4 if f.src.version == 4 else 41
        if v6_outer:
            o = IPv6(out[l2:])
            prefix = cfg.encap_v6
            assert (o.version, o.tc, o.plen, o.nh, o.hlim) == (
                6, inner.tos, inner.length, inner_proto, cfg.ttl), "outer IPv6 fields"
            assert o.fl == encap_src_bits(f.src, f.sport) & 0xFFFFF, "flow label"
        else:
            o = IP(out[l2:])
            prefix = cfg.encap_v4
            assert (o.version, o.ihl, o.tos, o.len, o.id, o.flags, o.frag, o.ttl, o.proto) == (
                4, 5, inner.tos, inner.length + 20, 0, 0, 0, cfg.ttl, inner_proto), \
                "outer IPv4 fields"
            header = out[l2:l2 + 20]
            assert o.chksum == checksum(header[:10] + b"\0\0" + header[12:]), "IPv4 checksum"
        src = ip(o.src)
        assert src == outer_source(prefix, f.src, f.sport), "outer source"
        assert src in prefix, "outer source outside the encap prefix"
        assert ip(o.dst) == daddr, f"outer destination: ring says backend {index}"
        assert out[l2 + overhead:] == frame[l2:l2 + inner.length], "inner packet not byte-identical"
        return index

    # --- reporting --------------------------------------------------------------------
    @contextlib.contextmanager
    def explaining(self, title: str, frame: bytes, result) -> Iterator[None]:
        """Re-raise an assertion with both frames printed side by side."""
        try:
            yield
        except AssertionError as e:
            verdict = VERDICT_NAMES.get(result.verdict, result.verdict)
            raise AssertionError(
                f"{title}\n{e}\nverdict {verdict}, counters {self.counters()}\n"
                + side_by_side(dump_frame(frame), dump_frame(result.frame),
                               ("input", f"output ({verdict})"))) from None


@pytest.fixture(scope="session")
def loaded_rig() -> Iterator[Rig]:
    """The loaded program with VIPS configured, shared by the session (see the docstring)."""
    if os.geteuid() != 0:
        pytest.skip("packet tests need root (bpf())")
    from lb.control.service import Balancer, vip_key
    from lb.xdp import loader
    from lb.xdp.maps import Dataplane

    program = loader.load(SIZES)
    dataplane = None
    try:
        dataplane = Dataplane(program)
        dataplane.write_config(BASE_CONFIG)
        balancer = Balancer(dataplane)
        vips = {}
        for name, (address, port, proto, flags, backends) in VIPS.items():
            key = vip_key(address, port, proto)
            balancer.add_vip(key, flags)
            for b in backends:
                balancer.add_backend(key, ip(b))
            vips[name] = key
        yield Rig(program, dataplane, balancer, vips)
    finally:
        if dataplane is not None:
            dataplane.close()
        program.close()


@contextlib.contextmanager
def pinned_to_one_cpu() -> Iterator[int]:
    """Run on one CPU (the lowest allowed) until the block ends: BPF_PROG_TEST_RUN runs on
    the caller's CPU and the connection tables are per CPU, so a flow's packets must all be
    run from one CPU to meet their entry (as an RSS queue's do)."""
    allowed = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {min(allowed)})
    try:
        yield min(allowed)
    finally:
        os.sched_setaffinity(0, allowed)


@pytest.fixture
def one_cpu() -> Iterator[int]:
    """Function: the test runs pinned to one CPU (see pinned_to_one_cpu); restored after."""
    with pinned_to_one_cpu() as cpu:
        yield cpu


@pytest.fixture
def rig(loaded_rig: Rig) -> Iterator[Rig]:
    """The session's rig, reset for this test: zero counters and stats, empty connection
    tables, BASE_CONFIG, and the process pinned to one CPU (the connection tables are per
    CPU) until the test ends. Every test that runs frames takes this one, not `loaded_rig`."""
    with pinned_to_one_cpu():
        loaded_rig.reset()
        yield loaded_rig
