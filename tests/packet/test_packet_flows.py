"""Packet sequences: what the connection table remembers, ring changes, UDP expiry, VIP flags,
port 0, empty VIPs, rings the backends map cannot answer (drop_internal), and the Python hash
mirror against the program over many flows.

Each test starts from empty tables and zero counters (the `rig` fixture) and restores
any VIP or config it changes, through the same Balancer the session configured.
"""

from __future__ import annotations

import array
import contextlib
import ipaddress
import random
import time

import pytest
from conftest import SIZES
from packet_frames import eth, tcp, udp, v4, v6

pytestmark = pytest.mark.root

ip = ipaddress.ip_address


def send(rig, frame: bytes, verdict: str = "TX", title: str = ""):
    """Run `frame`, assert the verdict, return the result (frames printed on failure)."""
    result = rig.run(frame)
    with rig.explaining(title or "send", frame, result):
        assert result.verdict_name == verdict, "verdict"
    return result


def forwarded(rig, frame: bytes, vip: str, backend: int | None = None, title: str = "") -> int:
    """Run `frame`, assert it was sent to the backend expected; returns that backend."""
    result = send(rig, frame, title=title)
    with rig.explaining(title or f"to {vip}", frame, result):
        return rig.check_forwarded(frame, result.frame, vip, backend)


@contextlib.contextmanager
def without_backend(rig, vip: str, index: int):
    """Take backend `index` out of a VIP's ring (Balancer.remove_backend), put it back after."""
    key = rig.vips[vip]
    address = rig.backend_address(index)
    rig.balancer.remove_backend(key, address)
    try:
        assert index not in set(rig.dp.read_ring(rig.vip_num(vip))), "ring still names it"
        yield
    finally:
        rig.balancer.add_backend(key, address)


FLOWS = {
    "v4tcp": lambda: bytes(eth() / v4() / tcp()),
    "v4udp": lambda: bytes(eth() / v4() / udp()),
    "v6tcp": lambda: bytes(eth() / v6() / tcp(443)),
    "v6udp": lambda: bytes(eth() / v6() / udp()),
}


@pytest.mark.parametrize("vip", FLOWS)
def test_second_packet_of_a_flow_hits_the_connection_table(rig, vip: str) -> None:
    frame = FLOWS[vip]()
    first = forwarded(rig, frame, vip, title="first packet")
    assert rig.counters() == {"tx": 1, "ct_miss": 1}
    assert rig.conn_entries() == {rig.flow_of(frame): first}
    assert forwarded(rig, frame, vip, backend=first, title="second packet") == first
    assert rig.counters() == {"tx": 2, "ct_miss": 1, "ct_hit": 1}
    assert rig.dp.vip_stats(rig.vip_num(vip)) == (2, 2 * len(frame))
    assert rig.dp.backend_stats(first) == (2, 2 * len(frame))


@pytest.mark.parametrize("vip, port", [("v4tcp", 80), ("v6tcp", 443)])
def test_a_non_syn_tcp_packet_missing_the_table_counts_as_lost_state(rig, vip: str,
                                                                     port: int) -> None:
    """ct_miss_nonsyn (global and the VIP's) moves for a non-SYN TCP miss only: not for a
    SYN, a hit, or UDP."""
    build = v4 if vip == "v4tcp" else v6
    num = rig.vip_num(vip)
    syn = bytes(eth() / build() / tcp(port, sport=41000, flags="S", payload=b""))
    forwarded(rig, syn, vip, title="SYN: a miss, no state lost")
    forwarded(rig, bytes(eth() / build() / tcp(port, sport=41000)), vip, title="hit")
    assert (rig.lost_state(), rig.dp.vip_ct_miss_nonsyn(num)) == (0, 0)
    ack = bytes(eth() / build() / tcp(port, sport=41001))
    forwarded(rig, ack, vip, title="an ACK of a flow the table does not hold")
    assert rig.counters() == {"tx": 3, "ct_miss": 2, "ct_hit": 1}
    assert (rig.lost_state(), rig.dp.vip_ct_miss_nonsyn(num)) == (1, 1)
    udp_vip = "v4udp" if vip == "v4tcp" else "v6udp"
    forwarded(rig, bytes(eth() / build() / udp()), udp_vip, title="UDP miss")
    assert rig.lost_state() == 1
    assert rig.dp.vip_ct_miss_nonsyn(rig.vip_num(udp_vip)) == 0


@pytest.mark.parametrize("vip, port", [("v4tcp", 80), ("v6tcp", 443)])
def test_established_flow_keeps_its_backend_when_the_ring_changes(rig, vip: str,
                                                                  port: int) -> None:
    """Non-SYN packets follow the table to the old backend; a SYN takes the new ring."""
    build = v4 if vip == "v4tcp" else v6
    ack = bytes(eth() / build() / tcp(port))
    syn = bytes(eth() / build() / tcp(port, flags="S", payload=b""))
    old = forwarded(rig, ack, vip, title="before the change")
    with without_backend(rig, vip, old):
        forwarded(rig, ack, vip, backend=old, title="established, after the change")
        assert rig.counters() == {"tx": 2, "ct_miss": 1, "ct_hit": 1}
        new = forwarded(rig, syn, vip, title="SYN after the change")
        assert new != old
        assert rig.counters() == {"tx": 3, "ct_miss": 2, "ct_hit": 1}
        assert rig.conn_entries() == {rig.flow_of(ack): new}
        forwarded(rig, ack, vip, backend=new, title="after the SYN")


def test_udp_entry_expires_and_takes_a_fresh_decision(rig) -> None:
    """A UDP flow idle past udp_timeout_s re-decides on the current ring; TCP never expires."""
    udp_frame = bytes(eth() / v4() / udp())
    tcp_frame = bytes(eth() / v4() / tcp())
    with rig.configured(udp_timeout_s=0.2):
        old = forwarded(rig, udp_frame, "v4udp", title="UDP, first")
        tcp_backend = forwarded(rig, tcp_frame, "v4tcp", title="TCP, first")
        with without_backend(rig, "v4udp", old):
            forwarded(rig, udp_frame, "v4udp", backend=old, title="UDP, within the timeout")
            assert rig.counters() == {"tx": 3, "ct_miss": 2, "ct_hit": 1}
            time.sleep(0.35)
            new = forwarded(rig, udp_frame, "v4udp", title="UDP, idle past the timeout")
            assert new != old
            assert rig.counters() == {"tx": 4, "ct_miss": 3, "ct_hit": 1, "ct_udp_expired": 1}
            forwarded(rig, tcp_frame, "v4tcp", backend=tcp_backend, title="TCP, as long idle")
            assert rig.counters()["ct_hit"] == 2
            assert rig.conn_entries()[rig.flow_of(udp_frame)] == new


def test_no_conn_table_vip_never_touches_the_table(rig) -> None:
    """F_VIP_NO_CONN_TABLE: no lookup (a planted entry is ignored), no insert, no ct counter."""
    frame = bytes(eth() / v4("10.0.0.4") / udp(53))
    flow = rig.flow_of(frame)
    forwarded(rig, frame, "v4noct", title="unplanted")
    assert rig.conn_entries() == {}
    planted = rig.balancer.backend_index(ip("10.1.0.5"))  # not in v4noct's ring
    rig.plant(flow, planted)
    for _ in range(3):
        assert forwarded(rig, frame, "v4noct", title="planted") != planted
    assert rig.counters() == {"tx": 4}
    assert rig.conn_entries() == {flow: planted}


def test_connection_table_entry_beats_the_ring(rig) -> None:
    """A flow's table entry is followed even to a backend outside the VIP's ring."""
    frame = bytes(eth() / v4() / tcp())
    flow = rig.flow_of(frame)
    other = rig.balancer.backend_index(ip("10.1.0.5"))
    assert other not in set(rig.dp.read_ring(rig.vip_num("v4tcp")))
    rig.plant(flow, other)
    forwarded(rig, frame, "v4tcp", backend=other)
    assert rig.counters() == {"tx": 1, "ct_hit": 1}
    assert rig.dp.backend_stats(other) == (1, len(frame))


def test_entry_naming_an_empty_backend_slot_takes_a_fresh_decision(rig) -> None:
    frame = bytes(eth() / v6() / tcp(443))
    flow = rig.flow_of(frame)
    empty = rig.dp.sizes.max_backends - 1
    assert rig.dp.backend(empty) is None
    rig.plant(flow, empty)
    chosen = forwarded(rig, frame, "v6tcp")
    assert rig.counters() == {"tx": 1, "ct_miss": 1}
    # re-decided in place on this CPU; the other CPUs' planted copies are untouched
    entries = rig.conn_list()
    assert entries.count((flow, chosen)) == 1
    assert set(entries) - {(flow, chosen)} <= {(flow, empty)}


def test_port0_vip_takes_every_port_but_the_exact_one(rig) -> None:
    rng = random.Random(4)
    ports = [1, 79, 80, 8079, 8081, 65535, *rng.sample(range(1, 65536), 30)]
    all_ports = rig.balancer.backend_index(ip("10.1.0.4"))
    exact = rig.balancer.backend_index(ip("10.1.0.5"))
    for port in ports:
        if port == 8080:
            continue
        frame = bytes(eth() / v4("10.0.0.2") / tcp(port))
        assert forwarded(rig, frame, "v4all", title=f"port {port}") == all_ports
    frame = bytes(eth() / v4("10.0.0.2") / tcp(8080))
    assert forwarded(rig, frame, "v4exact", title="port 8080") == exact


def test_no_src_port_vip_sends_a_client_to_one_backend(rig) -> None:
    """F_VIP_HASH_NO_SRC_PORT: 64 source ports of one client, one backend; without the
    flag the same flows spread (so the flag, not luck, keeps them together)."""
    with_flag, without = set(), set()
    for sport in range(20000, 20064):
        frame = bytes(eth() / v6("fc00::3") / tcp(80, sport=sport))
        with_flag.add(forwarded(rig, frame, "v6nosport", title=f"sport {sport}"))
        frame = bytes(eth() / v6() / tcp(443, sport=sport))
        without.add(forwarded(rig, frame, "v6tcp", title=f"sport {sport}, no flag"))
    assert len(with_flag) == 1
    assert len(without) > 1


@pytest.mark.parametrize("vip", ["v4tcp", "v4udp", "v6tcp", "v6udp", "v4all", "v6nosport",
                                 "v4noct"])
def test_ring_choice_matches_the_python_hash_mirror(rig, vip: str) -> None:
    """40 random flows per VIP: the backend the program picks is the one flow_hash names."""
    address, port, proto, *_ = {
        "v4tcp": ("10.0.0.1", 80, "tcp"), "v4udp": ("10.0.0.1", 53, "udp"),
        "v6tcp": ("fc00::1", 443, "tcp"), "v6udp": ("fc00::1", 53, "udp"),
        "v4all": ("10.0.0.2", 0, "tcp"), "v6nosport": ("fc00::3", 80, "tcp"),
        "v4noct": ("10.0.0.4", 53, "udp")}[vip]
    rng = random.Random(vip)
    used = set()
    for _ in range(40):
        if ":" in address:
            src = str(ipaddress.IPv6Address(rng.getrandbits(128)))
            l3 = v6(address, src=src, tc=rng.getrandbits(8))
        else:
            src = str(ipaddress.IPv4Address(rng.getrandbits(32)))
            l3 = v4(address, src=src, tos=rng.getrandbits(8))
        sport = rng.randrange(1, 65536)
        dport = port or rng.randrange(1, 8080)  # v4all: any port but v4exact's
        l4 = tcp(dport, sport) if proto == "tcp" else udp(dport, sport)
        frame = bytes(eth() / l3 / l4)
        used.add(forwarded(rig, frame, vip, title=f"{src}:{sport} -> {address}:{dport}"))
    if len(rig.balancer.vips[rig.vips[vip]].backends) > 1:
        assert len(used) > 1, "every flow went to one backend"


def test_vip_without_backends_drops(rig) -> None:
    frame = bytes(eth() / v4("10.0.0.2") / tcp(22))
    key = rig.vips["v4all"]
    address = ip("10.1.0.4")
    rig.balancer.remove_backend(key, address)
    try:
        result = send(rig, frame, "DROP", "VIP with no backends")
        with rig.explaining("VIP with no backends", frame, result):
            assert rig.counters() == {"drop": 1, "drop_no_backend": 1}
            assert result.frame == frame
            assert rig.conn_entries() == {}
            assert rig.stats_totals() == ((0, 0), (0, 0))
    finally:
        rig.balancer.add_backend(key, address)
    forwarded(rig, frame, "v4all", title="backend back")


def test_a_vip_whose_backend_is_disabled_says_no_backend(rig) -> None:
    """A disabled backend keeps its slot (and its ring slots): the VIP has no usable backend
    there, which is drop_no_backend, not an internal fault."""
    frame = bytes(eth() / v4("10.0.0.2") / tcp(22))
    address = ip("10.1.0.4")  # v4all's one backend
    assert rig.balancer.set_backend_enabled(address, False)
    try:
        result = send(rig, frame, "DROP", "VIP whose backend is disabled")
        with rig.explaining("VIP whose backend is disabled", frame, result):
            assert rig.counters() == {"drop": 1, "drop_no_backend": 1}
            assert result.frame == frame
            assert rig.conn_entries() == {}
    finally:
        rig.balancer.set_backend_enabled(address, True)
    forwarded(rig, frame, "v4all", title="backend enabled again")


@contextlib.contextmanager
def ring_naming(rig, vip: str, index: int):
    """Make every slot of a VIP's ring name backend `index` (whatever the backends map
    holds there), and put the ring back after."""
    num = rig.vip_num(vip)
    saved = rig.dp.read_ring(num)
    rig.dp.write_ring(num, array.array("I", bytes(4 * SIZES.ring_size)),
                      ids=array.array("H", [index]))
    try:
        yield
    finally:
        rig.dp.write_ring(num, saved)


# A ring slot the backends map cannot answer: the maps disagree, whatever the VIP has.
INTERNAL = {
    "index past the backends map": SIZES.max_backends + 5,
    "empty backend slot": SIZES.max_backends - 1,
}


@pytest.mark.parametrize("case", INTERNAL)
@pytest.mark.parametrize("vip, frame", [
    ("v4tcp", lambda: bytes(eth() / v4() / tcp())),
    ("v6udp", lambda: bytes(eth() / v6() / udp())),
    ("v4noct", lambda: bytes(eth() / v4("10.0.0.4") / udp())),
], ids=["v4tcp", "v6udp", "v4noct"])
def test_a_ring_naming_a_backend_the_map_lacks_is_an_internal_drop(rig, case, vip, frame) -> None:
    """The operator is told drop_internal, never drop_no_backend, for a VIP that has
    backends but whose ring names a slot the backends map does not hold."""
    index = INTERNAL[case]
    assert index not in set(rig.dp.read_ring(rig.vip_num(vip)))
    if index < SIZES.max_backends:
        assert rig.dp.backend_slot(index) == (None, False), "the slot is empty"
    packet = frame()
    with ring_naming(rig, vip, index):
        result = send(rig, packet, "DROP", f"{vip}: ring names {case}")
        with rig.explaining(f"{vip}: ring names {case}", packet, result):
            assert rig.counters() == {"drop": 1, "drop_internal": 1}
            assert result.frame == packet
            assert rig.conn_entries() == {}
            assert rig.stats_totals() == ((0, 0), (0, 0))
    forwarded(rig, packet, vip, title="the ring put back")
