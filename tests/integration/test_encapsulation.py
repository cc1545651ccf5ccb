"""A client's packet to a VIP reaches exactly one backend inside an outer IP header, unchanged.

Watched from the router's side of each backend's link, so the frame is seen as it travels to
the backend, before the backend's xdp_decap strips the outer header.
"""

from __future__ import annotations

import contextlib
import ipaddress

import pytest
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.utils import hexdump

from lb.lab.decap import DecapSlot
from lb.lab.veth import VethLab
from lb.lab.waits import settle, wait_until
from lb.xdp.flowhash import outer_source
from lb.xdp.maps import Dataplane

# Flows sent per case; each has its own source port, so they may reach different backends.
FLOWS = 4
VIP_PORT = 7000

# (VIP family, backend family) -> the decap counter slot the backend uses for it.
SLOTS = {(4, 4): DecapSlot.V4_IN_V4, (6, 4): DecapSlot.V6_IN_V4,
         (4, 6): DecapSlot.V4_IN_V6, (6, 6): DecapSlot.V6_IN_V6}


def _expected_inner(sent) -> bytes:
    """The client's IP packet as it leaves the router toward the balancer: one hop less."""
    raw = bytearray(bytes(sent.payload))
    if raw[0] >> 4 == 4:
        raw[8] -= 1  # TTL
        packet = IP(bytes(raw))
        del packet.chksum
        return bytes(packet)
    raw[7] -= 1  # hop limit
    return bytes(raw)


def _outer(frame) -> tuple[ipaddress.IPv4Address | ipaddress.IPv6Address,
                           ipaddress.IPv4Address | ipaddress.IPv6Address, int, bytes]:
    """(outer source, outer destination, outer protocol, inner packet bytes) of a frame."""
    raw = bytes(frame)[14:]
    if raw[0] >> 4 == 4:
        ihl, total = (raw[0] & 0xF) * 4, int.from_bytes(raw[2:4], "big")
        return (ipaddress.ip_address(raw[12:16]), ipaddress.ip_address(raw[16:20]), raw[9],
                raw[ihl:total])
    payload_len = int.from_bytes(raw[4:6], "big")
    return (ipaddress.ip_address(raw[8:24]), ipaddress.ip_address(raw[24:40]), raw[6],
            raw[40:40 + payload_len])


def _is_ip_in_ip(frame) -> bool:
    outer = frame.payload
    if frame.direction != "out":
        return False
    if isinstance(outer, IP):
        return outer.proto in (4, 41)
    return isinstance(outer, IPv6) and outer.nh in (4, 41)


def _describe(title: str, data: bytes) -> str:
    return f"--- {title} ---\n{hexdump(data, dump=True)}"


@pytest.mark.parametrize("l4", ["tcp", "udp"])
@pytest.mark.parametrize("backend_family", [4, 6], ids=["over-ipv4", "over-ipv6"])
@pytest.mark.parametrize("vip_family", [4, 6], ids=["ipv4-vip", "ipv6-vip"])
def test_client_packet_reaches_one_backend_encapsulated_and_unchanged(
        lab: VethLab, dataplane: Dataplane, make_vip, vip_family: int, backend_family: int,
        l4: str) -> None:
    """Outer destination = the backend whose link carries it; outer protocol 4 (IPv4 inside)
    or 41 (IPv6 inside); outer source from the encap prefix; inner = what the client sent."""
    vip = (lab.vips_v4() if vip_family == 4 else lab.vips_v6())[1]
    backend_address = {b: (b.v4 if backend_family == 4 else b.v6) for b in lab.backends}
    make_vip(vip, VIP_PORT, l4, {address: 1 for address in backend_address.values()})
    cfg = lab.runtime_config()
    client_address = lab.client.v4 if vip_family == 4 else lab.client.v6

    frames = []
    for i in range(FLOWS):
        sport = 41000 + 100 * vip_family + 10 * backend_family + i
        payload = f"{l4} {vip_family}-in-{backend_family} flow {i}".encode()
        l4_header = (TCP(sport=sport, dport=VIP_PORT, flags="PA", seq=1000 + i) if l4 == "tcp"
                     else UDP(sport=sport, dport=VIP_PORT))
        frames.append(lab.client_frame(vip) / l4_header / payload)
    expected = {frame[l4.upper()].sport: _expected_inner(frame) for frame in frames}

    with contextlib.ExitStack() as stack:
        captures = {b: stack.enter_context(lab.capture("router", b.router_ifname, _is_ip_in_ip))
                    for b in lab.backends}
        lab.send_frames(frames)
        assert wait_until(lambda: sum(len(c.frames) for c in captures.values()) >= FLOWS), (
            f"only {sum(len(c.frames) for c in captures.values())} of {FLOWS} frames reached "
            f"the backends' links; balancer counters: {dataplane.counters()}")
        settle(lambda: sum(len(c.frames) for c in captures.values()), quiet=0.1)

    seen: dict[int, str] = {}
    for backend, capture in captures.items():
        for frame in capture.frames:
            src, dst, proto, inner = _outer(frame)
            inner_l4 = (IP(inner) if vip_family == 4 else IPv6(inner))[l4.upper()]
            sport = inner_l4.sport
            assert sport not in seen, f"flow {sport} reached {seen[sport]} and {backend.name}"
            seen[sport] = backend.name
            assert dst == backend_address[backend], (
                f"frame on {backend.name}'s link is addressed to {dst}, not "
                f"{backend_address[backend]}\n" + _describe("frame", bytes(frame)))
            assert proto == (4 if vip_family == 4 else 41), f"outer protocol {proto}"
            prefix = cfg.encap_v4 if backend_family == 4 else cfg.encap_v6
            assert src == outer_source(prefix, client_address, sport), (
                f"outer source {src}, expected {outer_source(prefix, client_address, sport)}")
            assert inner == expected[sport], (
                "inner packet differs from what the client sent\n"
                + _describe("sent (one hop less)", expected[sport])
                + "\n" + _describe("inner, as received", inner))
    assert sorted(seen) == sorted(expected), f"flows seen: {sorted(seen)}"

    # Each backend decapsulated exactly the frames its link carried, as the right family pair.
    slot = SLOTS[(vip_family, backend_family)]
    carried = {backend: len(capture.frames) for backend, capture in captures.items()}
    assert wait_until(lambda: {b: lab.decap_counts(b)[slot] for b in lab.backends} == carried), (
        f"decapsulated {[lab.decap_counts(b)[slot] for b in lab.backends]}, links carried "
        f"{list(carried.values())}")
    assert dataplane.counters()["tx"] == FLOWS


@pytest.mark.parametrize("vip_family", [4, 6], ids=["ipv4-vip", "ipv6-vip"])
def test_full_size_client_packet_still_reaches_its_backend(
        lab: VethLab, dataplane: Dataplane, make_vip, vip_family: int) -> None:
    """A 1500-byte packet (the client link's MTU) gains a 40-byte IPv6 outer header and still
    fits the backends' links: nothing is dropped as too big, the backend decapsulates it."""
    vip = (lab.vips_v4() if vip_family == 4 else lab.vips_v6())[5]
    make_vip(vip, VIP_PORT, "udp", {b.v6: 1 for b in lab.backends})
    header = 20 if vip_family == 4 else 40
    frame = lab.client_frame(vip) / UDP(sport=42000, dport=VIP_PORT) / (b"x" * (1500 - header - 8))
    assert len(frame) == 14 + 1500
    lab.send_frames([frame])
    slot = DecapSlot.V4_IN_V6 if vip_family == 4 else DecapSlot.V6_IN_V6
    assert wait_until(lambda: sum(lab.decap_counts(b)[slot] for b in lab.backends) == 1), \
        f"not decapsulated anywhere; balancer counters: {dataplane.counters()}"
    assert dataplane.counters()["drop_too_big"] == 0
