"""The backends' xdp_decap (lb/lab/decap.c), frame by frame through BPF_PROG_TEST_RUN: what a
backend's kernel receives after it, for each kind of frame that can arrive."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import ARP, Ether
from scapy.utils import hexdump

from lb.lab.decap import DECAP_SOURCE, DecapSlot
from lb.xdp import loader
from lb.xdp.consts import XDP_DROP, XDP_PASS
from lb.xdp.testrun import test_run

MACS = dict(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
INNER4 = IP(src="10.0.1.2", dst="10.100.0.1", ttl=63) / TCP(sport=40000, dport=80) / b"hello"
INNER6 = IPv6(src="fd00:0:1::2", dst="fd00:100::1", hlim=63) / UDP(sport=40000, dport=53) / b"hi"
OUTER4 = dict(src="172.16.1.2", dst="10.1.0.2", ttl=63)
OUTER6 = dict(src="fd00:ec::1:2", dst="fd00:1::2", hlim=63)


@dataclass(frozen=True)
class Case:
    """A frame arriving at a backend, the verdict and frame expected out, the slot counted."""

    description: str
    frame: bytes
    verdict: int
    expected: bytes | None  # None: the frame leaves unchanged
    slot: DecapSlot


CASES = [
    Case("IPv4 in IPv4: outer header gone, ethertype IPv4",
         bytes(Ether(**MACS) / IP(**OUTER4, proto=4) / INNER4), XDP_PASS,
         bytes(Ether(**MACS, type=0x0800) / INNER4), DecapSlot.V4_IN_V4),
    Case("IPv6 in IPv4: outer header gone, ethertype IPv6",
         bytes(Ether(**MACS) / IP(**OUTER4, proto=41) / INNER6), XDP_PASS,
         bytes(Ether(**MACS, type=0x86DD) / INNER6), DecapSlot.V6_IN_V4),
    Case("IPv4 in IPv6: outer header gone, ethertype IPv4",
         bytes(Ether(**MACS) / IPv6(**OUTER6, nh=4) / INNER4), XDP_PASS,
         bytes(Ether(**MACS, type=0x0800) / INNER4), DecapSlot.V4_IN_V6),
    Case("IPv6 in IPv6: outer header gone, ethertype IPv6",
         bytes(Ether(**MACS) / IPv6(**OUTER6, nh=41) / INNER6), XDP_PASS,
         bytes(Ether(**MACS, type=0x86DD) / INNER6), DecapSlot.V6_IN_V6),
    Case("IPv4 in IPv4 with outer options: all 24 outer bytes go",
         bytes(Ether(**MACS) / IP(**OUTER4, proto=4, options=b"\x01\x01\x01\x00") / INNER4),
         XDP_PASS, bytes(Ether(**MACS, type=0x0800) / INNER4), DecapSlot.V4_IN_V4),
    Case("plain TCP (a health check, a direct connection): untouched",
         bytes(Ether(**MACS) / INNER4), XDP_PASS, None, DecapSlot.PASS),
    Case("ARP: untouched", bytes(Ether(**MACS) / ARP(pdst="10.1.0.2")), XDP_PASS, None,
         DecapSlot.PASS),
    Case("IPv4 fragment with protocol 4: untouched (the kernel reassembles or drops it)",
         bytes(Ether(**MACS) / IP(**OUTER4, proto=4, flags="MF") / INNER4), XDP_PASS, None,
         DecapSlot.PASS),
    Case("protocol 4 but an IPv6 packet inside: dropped",
         bytes(Ether(**MACS) / IP(**OUTER4, proto=4) / INNER6), XDP_DROP, None,
         DecapSlot.DROP_MALFORMED),
    Case("next header 41 and nothing inside: dropped",
         bytes(Ether(**MACS) / IPv6(**OUTER6, nh=41)), XDP_DROP, None,
         DecapSlot.DROP_MALFORMED),
]


@pytest.fixture(scope="module")
def decap():
    """Module: xdp_decap compiled and loaded (not attached). Deps: none. Cleanup: released."""
    bpf, fd = loader.load_function(DECAP_SOURCE, "xdp_decap")
    yield bpf, fd
    bpf.cleanup()


def _counts(bpf) -> dict[DecapSlot, int]:
    table = bpf[b"decap_counters"]
    key = table.Key()
    key.mac[:] = bytes.fromhex(MACS["dst"].replace(":", ""))
    per_cpu = table.get(key)
    return {slot: sum(cpu.packets[slot] for cpu in per_cpu or ()) for slot in DecapSlot}


@pytest.mark.parametrize("case", CASES, ids=[f"{n:02d}" for n in range(1, len(CASES) + 1)])
def test_backend_receives_the_inner_packet_of_what_the_balancer_sent(decap, case: Case) -> None:
    bpf, fd = decap
    before = _counts(bpf)
    result = test_run(fd, case.frame)
    expected = case.frame if case.expected is None else case.expected
    report = (f"{case.description}\nverdict {result.verdict_name}\n--- expected ---\n"
              f"{hexdump(expected, dump=True)}\n--- got ---\n{hexdump(result.frame, dump=True)}")
    assert result.verdict == case.verdict, report
    if case.verdict == XDP_PASS:
        assert result.frame == expected, report
    after = _counts(bpf)
    assert {s: after[s] - before[s] for s in DecapSlot} == {
        s: int(s == case.slot) for s in DecapSlot}, report
