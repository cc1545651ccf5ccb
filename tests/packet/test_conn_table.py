"""The connection table's sets and the VIP index, through the real program: 2-way LRU eviction,
re-decisions that overwrite a flow's own way, VIPs that share an index slot, and the index
slot the program computes being the one lb.xdp.flowhash names.

Each test starts from empty tables and zero counters, pinned to one CPU (the `rig` fixture),
and restores any VIP or map slot it changes.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import random
import socket
import time

import pytest
from conftest import SIZES, VIPS
from packet_frames import CLIENT4, CLIENT6, eth, tcp, udp, v4, v6
from test_packet_flows import forwarded, send, without_backend

from lb.control.service import vip_key
from lb.xdp.flowhash import conn_table_set, filter_slot, vip_index_slot, words
from lb.xdp.types import VipKey

pytestmark = pytest.mark.root

ip = ipaddress.ip_address

# The CPUs this process may run on, before any test pins it to one.
ALLOWED_CPUS = os.sched_getaffinity(0)

# name -> (VIP address, port, builder of the L3 header, of the L4 header)
FAMILIES = {
    "v4tcp": ("10.0.0.1", 80, v4, tcp),
    "v6tcp": ("fc00::1", 443, v6, tcp),
    "v4udp": ("10.0.0.1", 53, v4, udp),
}


def same_set_ports(vip: str, count: int = 3) -> list[int]:
    """`count` client source ports whose flows to `vip` fall in one connection-table set."""
    address, port, build, l4 = FAMILIES[vip]
    client = ip(CLIENT6 if ":" in address else CLIENT4)
    proto = 6 if l4 is tcp else 17
    by_set: dict[int, list[int]] = {}
    for sport in range(40000, 65536):
        s = conn_table_set(client, ip(address), sport, port, proto, SIZES.conn_table_sets)
        by_set.setdefault(s, []).append(sport)
        if len(by_set[s]) == count:
            return by_set[s]
    raise AssertionError("no set took enough flows")


def frame_for(vip: str, sport: int, flags: str = "PA") -> bytes:
    address, port, build, l4 = FAMILIES[vip]
    if l4 is tcp:
        return bytes(eth() / build(address) / tcp(port, sport, flags=flags))
    return bytes(eth() / build(address) / udp(port, sport))


@pytest.mark.parametrize("vip", ["v4tcp", "v6tcp"])
def test_a_third_flow_in_a_set_evicts_the_least_recently_used_way(rig, vip: str) -> None:
    a, b, c = (frame_for(vip, s) for s in same_set_ports(vip))
    fa = forwarded(rig, a, vip, title="A, first")
    fb = forwarded(rig, b, vip, title="B, first")
    forwarded(rig, a, vip, backend=fa, title="A again: a hit, A is now the set's MRU way")
    assert rig.counters() == {"tx": 3, "ct_miss": 2, "ct_hit": 1}
    fc = forwarded(rig, c, vip, title="C, a third flow in the set: evicts B, the LRU way")
    assert rig.counters() == {"tx": 4, "ct_miss": 3, "ct_hit": 1}
    assert rig.conn_entries() == {rig.flow_of(a): fa, rig.flow_of(c): fc}
    forwarded(rig, a, vip, backend=fa, title="A survived")
    assert rig.counters()["ct_hit"] == 2
    forwarded(rig, b, vip, backend=fb, title="B again: a miss, evicts C (A was used last)")
    assert rig.counters() == {"tx": 6, "ct_miss": 4, "ct_hit": 2}
    assert rig.conn_entries() == {rig.flow_of(a): fa, rig.flow_of(b): fb}


@pytest.mark.parametrize("vip", ["v4tcp", "v6tcp"])
def test_a_syn_overwrites_its_flows_way_and_spares_the_other(rig, vip: str) -> None:
    """A SYN's fresh decision replaces its own way, not the LRU one: no stale copy is left."""
    pa, pb = same_set_ports(vip, 2)
    ack_a, ack_b = frame_for(vip, pa), frame_for(vip, pb)
    old = forwarded(rig, ack_a, vip, title="A")
    fb = forwarded(rig, ack_b, vip, title="B, now the MRU way")
    with without_backend(rig, vip, old):
        new = forwarded(rig, frame_for(vip, pa, flags="S"), vip, title="SYN of A")
        assert new != old
        assert sorted(rig.conn_list(), key=str) == sorted(
            [(rig.flow_of(ack_a), new), (rig.flow_of(ack_b), fb)], key=str)
        forwarded(rig, ack_a, vip, backend=new, title="A after its SYN")
        forwarded(rig, ack_b, vip, backend=fb, title="B untouched")
        assert rig.counters() == {"tx": 5, "ct_miss": 3, "ct_hit": 2}


def test_an_expired_udp_way_is_re_decided_in_place(rig) -> None:
    pa, pb = same_set_ports("v4udp", 2)
    a, b = frame_for("v4udp", pa), frame_for("v4udp", pb)
    with rig.configured(udp_timeout_s=0.2):
        old = forwarded(rig, a, "v4udp", title="A")
        with without_backend(rig, "v4udp", old):
            time.sleep(0.35)
            fb = forwarded(rig, b, "v4udp", title="B, after A idled out (B is MRU)")
            new = forwarded(rig, a, "v4udp", title="A, idle past the timeout")
            assert new != old
            assert rig.counters() == {"tx": 3, "ct_miss": 3, "ct_udp_expired": 1}
            assert sorted(rig.conn_list(), key=str) == sorted(
                [(rig.flow_of(a), new), (rig.flow_of(b), fb)], key=str)


def test_set_conn_entry_plants_on_every_cpu_in_the_programs_set(rig) -> None:
    """A planted flow is a hit (so the control plane's set is the program's), and sits once
    per CPU; a second plant of the same flow replaces it rather than taking the other way."""
    frame = frame_for("v6tcp", 41000)
    flow = rig.flow_of(frame)
    target = rig.balancer.backend_index(ip("fc01::2"))
    rig.plant(flow, rig.balancer.backend_index(ip("fc01::1")))
    rig.plant(flow, target)
    cpus = len(rig.conn_list())
    assert cpus >= 1 and rig.conn_list() == [(flow, target)] * cpus
    forwarded(rig, frame, "v6tcp", backend=target)
    assert rig.counters() == {"tx": 1, "ct_hit": 1}
    assert rig.dp.purge_conn_entries(target) == cpus
    assert rig.conn_list() == []


def test_each_cpu_remembers_a_flow_in_its_own_slice(rig) -> None:
    """A flow's entry is found only on the CPU that made it (each CPU has its own slice of
    the table): on another CPU its first packet is a fresh decision, remembered there too."""
    cpus = sorted(ALLOWED_CPUS)
    if len(cpus) < 2:
        pytest.skip("needs two CPUs this process may run on")
    frame = frame_for("v4tcp", 41001)
    chosen = {}
    for cpu in cpus[:2]:
        os.sched_setaffinity(0, {cpu})
        chosen[cpu] = forwarded(rig, frame, "v4tcp", title=f"first packet on CPU {cpu}")
    assert rig.counters() == {"tx": 2, "ct_miss": 2}
    assert chosen[cpus[0]] == chosen[cpus[1]], "one ring, so one decision on every CPU"
    assert rig.conn_list() == [(rig.flow_of(frame), chosen[cpus[0]])] * 2
    for cpu in cpus[:2]:
        os.sched_setaffinity(0, {cpu})
        forwarded(rig, frame, "v4tcp", backend=chosen[cpu], title=f"again on CPU {cpu}")
    assert rig.counters() == {"tx": 4, "ct_miss": 2, "ct_hit": 2}


# --- the VIP index -------------------------------------------------------------------------
def test_every_configured_vip_is_found_through_the_index(rig) -> None:
    """Each VIP's slot holds it (or is shared); the port-0 VIP and the exact-port VIP on the
    same address each have a slot of their own, so they are answered without the hash map."""
    states = {name: rig.dp.index_slot_state(key) for name, key in rig.vips.items()}
    assert set(states.values()) <= {"own", "shared"}, states
    assert states["v4all"] == states["v4exact"] == "own", states
    port = 22
    frame = bytes(eth() / v4("10.0.0.2") / tcp(port))
    assert rig.dp.index_slot_state(VipKey(ip("10.0.0.2"), port, 6)) in ("empty", "other")
    forwarded(rig, frame, "v4all", title="port 22 to the port-0 VIP, through its index slot")


def colliding_address(vip: str) -> str:
    """An address in the VIP's /24 (or /120) whose (address, port, protocol) takes the same
    index slot as the VIP's."""
    address, port, *_ = FAMILIES[vip]
    proto = 6
    want = vip_index_slot(ip(address), port, proto, SIZES.vip_index_bits)
    for i in range(10, 10_000):
        cand = f"10.0.{i // 250}.{i % 250 + 1}" if "." in address else f"fc00::{i:x}"
        if cand != address and vip_index_slot(ip(cand), port, proto,
                                              SIZES.vip_index_bits) == want:
            return cand
    raise AssertionError("no colliding address")


@contextlib.contextmanager
def vip_num_freed(rig, name: str = "v4noct"):
    """Remove one of the session's VIPs (all max_vips numbers are in use) and add it back."""
    address, port, proto, flags, backends = VIPS[name]
    key = rig.vips[name]
    rig.balancer.remove_vip(key)
    try:
        yield
    finally:
        rig.balancer.add_vip(key, flags)
        for b in backends:
            rig.balancer.add_backend(key, ip(b))


def port_in_slot(vip: str) -> int:
    """A port that is no VIP's on the VIP's own address, whose key takes the VIP's slot."""
    address, port, *_ = FAMILIES[vip]
    want = vip_index_slot(ip(address), port, 6, SIZES.vip_index_bits)
    return next(p for p in range(1, 65536) if p != port and p not in (53, 8080) and
                vip_index_slot(ip(address), p, 6, SIZES.vip_index_bits) == want)


@pytest.mark.parametrize("vip", ["v4tcp", "v6tcp"])
def test_vips_sharing_an_index_slot_fall_back_to_the_hash_map(rig, vip: str) -> None:
    address, port, build, _ = FAMILIES[vip]
    other = colliding_address(vip)
    with vip_num_freed(rig):
        key = vip_key(other, port, "tcp")
        rig.balancer.add_vip(key)
        rig.vips["collider"] = key
        try:
            rig.balancer.add_backend(key, ip("10.1.0.5"))
            assert rig.dp.index_slot_state(rig.vips[vip]) == "shared"
            assert rig.dp.index_slot_state(key) == "shared"
            forwarded(rig, bytes(eth() / build(address) / tcp(port)), vip,
                      title="the first VIP of the shared slot")
            forwarded(rig, bytes(eth() / build(other) / tcp(port)), "collider",
                      title="the second VIP of the shared slot")
            assert rig.counters() == {"tx": 2, "ct_miss": 2}
            # a key of the same slot that is no VIP: the hash map says so, and it passes
            miss = bytes(eth() / build(address) / tcp(port_in_slot(vip)))
            send(rig, miss, "PASS", "a port of the VIP's address that is no VIP")
            assert rig.counters()["pass_not_vip"] == 1
        finally:
            del rig.vips["collider"]
            rig.balancer.remove_vip(key)
        assert rig.dp.index_slot_state(rig.vips[vip]) == "own"
        send(rig, bytes(eth() / build(other) / tcp(port)), "PASS", "the removed VIP")
        forwarded(rig, bytes(eth() / build(address) / tcp(port)), vip,
                  title="the first VIP, its slot its own again")


@pytest.mark.parametrize("family", [4, 6])
def test_the_program_computes_the_index_slot_the_mirror_names(rig, family: int) -> None:
    """For 30 random keys, a slot written at the mirror's position (with v4tcp's VIP number)
    and the address marked in the pre-filter: the program finds the VIP there and forwards
    the packet by v4tcp's ring, so C and Python agree bit for bit. Slots are restored."""
    rng = random.Random(family)
    is_v6 = family == 6
    index = rig.program.table("vip_index_v6" if is_v6 else "vip_index_v4")
    vfilter = rig.program.table("vip_filter")
    num = rig.vip_num("v4tcp")
    tried = 0
    while tried < 30:
        addr = (ipaddress.IPv6Address(rng.getrandbits(128)) if is_v6
                else ipaddress.IPv4Address(rng.getrandbits(32)))
        port, proto = rng.randrange(1, 65536), rng.choice([6, 17])
        slot = index.Key(vip_index_slot(addr, port, proto, SIZES.vip_index_bits))
        fslot = vfilter.Key(filter_slot(addr, SIZES.filter_bits))
        if index[slot].proto or index[slot].shared or vfilter[fslot].value:
            continue  # the slot or filter slot is in use by a configured VIP
        tried += 1
        planted = index.Leaf()
        for i, w in enumerate(words(addr)):
            if is_v6:
                planted.addr[i] = w
            else:
                planted.addr = w
        planted.port, planted.proto = socket.htons(port), proto
        planted.meta.vip_num, planted.meta.flags = num, 0
        index[slot] = planted
        vfilter[fslot] = vfilter.Leaf(1)
        try:
            l3 = v6(str(addr)) if is_v6 else v4(str(addr))
            l4 = tcp(port) if proto == 6 else udp(port)
            forwarded(rig, bytes(eth() / l3 / l4), "v4tcp", title=f"{addr} {port}/{proto}")
        finally:
            index[slot] = index.Leaf()
            vfilter[fslot] = vfilter.Leaf(0)
