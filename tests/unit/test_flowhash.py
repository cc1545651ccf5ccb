"""Properties of lb.xdp.flowhash, the Python mirror of flowhash.h (no root, no bcc).

That the mirror is bit-exact with the C is shown by the packet tests, which predict
the program's backend, outer source, connection-table set and VIP index slot for many
flows and keys with it; here: that it behaves like a hash should, whatever the C does, and
that _ringio.plant (conntable.h's rules) places flows in the sets it names.
"""

from __future__ import annotations

import ctypes
import ipaddress
import random
import socket
import time
from collections import Counter

import pytest

from lb.xdp.config import Sizes
from lb.xdp.consts import CT_TIME_SHIFT, VipFlag
from lb.xdp.flowhash import (
    conn_table_set,
    encap_src_bits,
    filter_slot,
    flow_hash,
    fold,
    outer_source,
    raw_port,
    vip_index_slot,
    words,
)

ip = ipaddress.ip_address
TCP, UDP = 6, 17
RNG = random.Random(1)
# CLOCK_MONOTONIC_COARSE (Linux; Python names it on some builds only): the table's clock.
CLOCK_MONOTONIC_COARSE = getattr(time, "CLOCK_MONOTONIC_COARSE", 6)


def random_v4() -> ipaddress.IPv4Address:
    return ipaddress.IPv4Address(RNG.getrandbits(32))


def random_v6() -> ipaddress.IPv6Address:
    return ipaddress.IPv6Address(RNG.getrandbits(128))


FLOWS = [(random_v4(), ip("10.0.0.1"), RNG.randrange(1, 65536), 80, TCP) for _ in range(200)] + [
    (random_v6(), ip("fc00::1"), RNG.randrange(1, 65536), 443, UDP) for _ in range(200)]


def test_raw_words_are_the_programs_little_endian_loads() -> None:
    assert raw_port(0x1234) == 0x3412
    assert words(ip("10.0.0.1")) == [0x0100000A]
    assert words(ip("fc00::1")) == [0x00FC, 0, 0, 0x01000000]
    assert fold(ip("fc00::1")) == 0x00FC ^ 0x01000000


@pytest.mark.parametrize("flow", FLOWS[:5] + FLOWS[-5:])
def test_same_flow_same_hash_and_32_bits(flow) -> None:
    assert flow_hash(*flow) == flow_hash(*flow)
    assert 0 <= flow_hash(*flow) < 2 ** 32


def test_every_field_of_the_flow_counts() -> None:
    for src, dst, sport, dport, proto in FLOWS:
        h = flow_hash(src, dst, sport, dport, proto)
        assert h != flow_hash(src, dst, sport ^ 1, dport, proto)
        assert h != flow_hash(src, dst, sport, dport + 1, proto)
        assert h != flow_hash(src, dst, sport, dport, UDP if proto == TCP else TCP)
        assert h != flow_hash(src + 1, dst, sport, dport, proto)
        assert h != flow_hash(src, dst + 1, sport, dport, proto)


def test_swapping_ports_or_addresses_changes_the_hash() -> None:
    """Not symmetric: a flow and its reverse direction are two flows."""
    for src, dst, sport, dport, proto in FLOWS:
        if sport == dport:
            continue
        assert flow_hash(src, dst, sport, dport, proto) != flow_hash(src, dst, dport, sport, proto)
        assert flow_hash(src, dst, sport, dport, proto) != flow_hash(dst, src, sport, dport, proto)


def test_every_ipv6_word_counts() -> None:
    base = ip("2001:db8::10")
    hashes = {flow_hash(base, ip("fc00::1"), 1000, 80, TCP)}
    for word in range(4):
        other = ipaddress.IPv6Address(int(base) ^ (1 << (32 * word + word)))
        hashes.add(flow_hash(other, ip("fc00::1"), 1000, 80, TCP))
    assert len(hashes) == 5


def test_ipv6_addresses_differing_by_one_mask_in_two_words_hash_apart() -> None:
    """Every word of an IPv6 address enters the hash: 2001:db8::1 and 2001:db8::1:0:0
    (the same bit flipped in words 2 and 3) used to collide when words 2 and 3 were
    folded by XOR."""
    a, b = ip("2001:db8::1"), ip("2001:db8::1:0:0")
    assert flow_hash(a, ip("fc00::1"), 1000, 80, TCP) != flow_hash(b, ip("fc00::1"), 1000, 80, TCP)


def test_no_src_port_flag_ignores_the_source_port_only() -> None:
    flag = VipFlag.HASH_NO_SRC_PORT
    for src, dst, _, dport, proto in FLOWS[::20]:
        with_flag = {flow_hash(src, dst, sport, dport, proto, flag) for sport in range(1, 200)}
        without = {flow_hash(src, dst, sport, dport, proto) for sport in range(1, 200)}
        assert len(with_flag) == 1
        assert len(without) == 199
        assert with_flag == {flow_hash(src, dst, 0, dport, proto)}
        assert flow_hash(src, dst, 1, dport + 1, proto, flag) not in with_flag


def test_no_conn_table_flag_does_not_change_the_hash() -> None:
    for flow in FLOWS[::10]:
        assert flow_hash(*flow, VipFlag.NO_CONN_TABLE) == flow_hash(*flow)


def test_hash_spreads_flows_over_ring_slots() -> None:
    """10,000 flows over 16 buckets of hash % 65537: each within 20% of the mean."""
    rng = random.Random(2)
    buckets = Counter(
        flow_hash(ipaddress.IPv4Address(rng.getrandbits(32)), ip("10.0.0.1"),
                  rng.randrange(1, 65536), 80, TCP) % 65537 % 16
        for _ in range(10_000))
    mean = 10_000 / 16
    assert len(buckets) == 16
    assert all(abs(n - mean) < 0.2 * mean for n in buckets.values()), buckets


@pytest.mark.parametrize("bits", [8, 12, 16, 20, 24])
def test_filter_slot_is_in_range(bits: int) -> None:
    for src, *_ in FLOWS:
        assert 0 <= filter_slot(src, bits) < 2 ** bits


def test_filter_slot_folds_both_halves_of_the_word() -> None:
    """Addresses differing only in the high half of the last word land on other slots."""
    slots = {filter_slot(ip(f"10.0.{c}.1"), 16) for c in range(256)}
    assert len(slots) == 256


@pytest.mark.parametrize("prefix", ["172.16.0.0/16", "198.51.100.0/24", "192.0.2.7/32",
                                    "10.0.0.0/8", "fd00:ec::/96", "fd00:ec::/112",
                                    "fd00:ec::1/128"])
def test_outer_source_stays_inside_the_prefix(prefix: str) -> None:
    net = ipaddress.ip_network(prefix, strict=False)
    sources = set()
    for src, _, sport, *_ in FLOWS:
        out = outer_source(net, src, sport)
        assert out.version == net.version
        assert out in net
        sources.add(out)
    if net.num_addresses == 1:
        assert sources == {net.network_address}
    else:
        assert len(sources) > min(net.num_addresses, len(FLOWS)) // 2, "flows do not spread"


def test_outer_source_depends_on_source_port_and_address() -> None:
    net = ipaddress.ip_network("172.16.0.0/16")
    src = ip("192.0.2.10")
    assert outer_source(net, src, 1000) != outer_source(net, src, 1001)
    assert outer_source(net, src, 1000) != outer_source(net, ip("192.0.2.11"), 1000)
    assert encap_src_bits(src, 1000) == fold(src) ^ (raw_port(1000) << 16 | raw_port(1000))


def test_vip_index_slot_is_in_range_and_every_key_field_counts() -> None:
    bits = Sizes().vip_index_bits
    for addr in [random_v4() for _ in range(100)] + [random_v6() for _ in range(100)]:
        port = RNG.randrange(1, 65536)
        slot = vip_index_slot(addr, port, TCP, bits)
        assert 0 <= slot < 2 ** bits
    # over many keys each field moves the slot (not always: 4096 slots)
    keys = [(random_v4(), RNG.randrange(1, 65536)) for _ in range(200)]
    for change in (lambda a, p, t: (a, p ^ 1, t), lambda a, p, t: (a, p, UDP),
                   lambda a, p, t: (a, 0, t), lambda a, p, t: (a + 256, p, t)):
        moved = sum(vip_index_slot(*change(a, p, TCP), bits) != vip_index_slot(a, p, TCP, bits)
                    for a, p in keys)
        assert moved > 190


def test_vip_index_spreads_a_block_of_vips_over_the_slots() -> None:
    """512 VIPs of one /23 on one port: few share a slot of the default 4096 (the program
    then asks the hash map), about what random placement gives (512^2 / 2 / 4096 = 32)."""
    bits = Sizes().vip_index_bits
    vips = [ip("10.100.0.0") + i for i in range(512)]
    slots = Counter(vip_index_slot(a, 80, TCP, bits) for a in vips)
    assert sum(n for n in slots.values() if n > 1) < 80
    v6 = [ip("2001:db8:100::") + i for i in range(512)]
    slots = Counter(vip_index_slot(a, 443, TCP, bits) for a in v6)
    assert sum(n for n in slots.values() if n > 1) < 80


def test_ipv6_words_in_other_places_do_not_cancel_in_the_index() -> None:
    bits = 16
    a, b = ip("2001:db8::1:0"), ip("2001:db8::1")
    assert vip_index_slot(a, 80, TCP, bits) != vip_index_slot(b, 80, TCP, bits)


def test_conn_table_set_ignores_the_vip_flags_and_stays_in_range() -> None:
    sets = Sizes().conn_table_sets
    spread = Counter(conn_table_set(*f, sets) >> 10 for f in FLOWS)
    assert all(0 <= conn_table_set(*f, sets) < sets for f in FLOWS)
    assert len(spread) > 90  # 400 flows over 128 groups of sets
    src, dst, sport, dport, proto = FLOWS[0]
    assert conn_table_set(src, dst, sport, dport, proto, sets) == \
        flow_hash(src, dst, sport, dport, proto) & (sets - 1)


def _flow_bytes(src, dst, sport: int, dport: int, proto: int) -> bytes:
    from lb.xdp.structs import FlowV4

    return bytes(FlowV4(src=words(src)[0], dst=words(dst)[0], sport=socket.htons(sport),
                        dport=socket.htons(dport), proto=proto))


def test_plant_follows_the_tables_rules_in_the_mirrors_set() -> None:
    """_ringio.plant (conntable.h's rules, the program's own) puts a flow in the set the
    mirror names on every CPU: its own way again, else an empty one, else the LRU one; the
    planted way is the MRU one; a UDP way is stamped with the table's clock, a TCP way 0."""
    from lb.xdp import _ringio
    from lb.xdp.structs import CtSetV4

    sets, cpus = 16, 2
    table = bytearray(ctypes.sizeof(CtSetV4) * sets * cpus)
    src, dst = ip("192.0.2.1"), ip("10.0.0.1")
    by_set: dict[int, list[int]] = {}
    for sport in range(40000, 41000):
        by_set.setdefault(conn_table_set(src, dst, sport, 80, TCP, sets), []).append(sport)
    s, (a, b, c, *_) = next((s, p) for s, p in by_set.items() if len(p) >= 3)

    def plant(sport: int, backend: int, proto: int = TCP) -> None:
        _ringio.plant(table, False, _flow_bytes(src, dst, sport, 80, proto), backend, sets,
                      cpus)

    def ways(cpu: int) -> tuple[dict[int, int], int]:
        st = CtSetV4.from_buffer_copy(table, (cpu * sets + s) * ctypes.sizeof(CtSetV4))
        return ({socket.ntohs(w.flow.sport): w.state.backend for w in st.way
                 if w.state.backend}, socket.ntohs(st.way[st.mru].flow.sport))

    plant(a, 1)
    plant(b, 2)
    plant(a, 3)  # its own way again, now the MRU one
    assert all(ways(cpu) == ({a: 3, b: 2}, a) for cpu in range(cpus))
    plant(c, 4)  # evicts b, the least recently used
    assert all(ways(cpu) == ({a: 3, c: 4}, c) for cpu in range(cpus))
    assert sum(1 for i in range(sets * cpus)
               if any(CtSetV4.from_buffer_copy(table, i * ctypes.sizeof(CtSetV4)).way[w]
                      .state.backend for w in range(2))) == cpus  # one set per CPU

    udp = bytearray(ctypes.sizeof(CtSetV4) * sets)
    flow = _flow_bytes(src, dst, a, 53, UDP)
    before = time.clock_gettime_ns(CLOCK_MONOTONIC_COARSE) >> CT_TIME_SHIFT
    _ringio.plant(udp, False, flow, 5, sets, 1)
    after = time.clock_gettime_ns(CLOCK_MONOTONIC_COARSE) >> CT_TIME_SHIFT
    at = conn_table_set(src, dst, a, 53, UDP, sets) * ctypes.sizeof(CtSetV4)
    st = CtSetV4.from_buffer_copy(udp, at)
    way = st.way[st.mru]
    assert bytes(way.flow) == flow and way.state.backend == 5
    assert before <= way.state.atime <= after
    assert all(w.state.atime == 0 for w in CtSetV4.from_buffer_copy(table, 0).way)


@pytest.mark.parametrize("args, error", [
    ((b"short", 1, 16, 1), "struct flow"),
    ((None, 0, 16, 1), "backend"),
    ((None, 1, 12, 1), "power of two"),
    ((None, 1, 16, 4), "smaller"),
])
def test_plant_refuses_what_it_cannot_place(args, error: str) -> None:
    from lb.xdp import _ringio
    from lb.xdp.structs import CtSetV4

    flow, backend, sets, cpus = args
    flow = flow or _flow_bytes(ip("192.0.2.1"), ip("10.0.0.1"), 1, 80, TCP)
    with pytest.raises(ValueError, match=error):
        _ringio.plant(bytearray(ctypes.sizeof(CtSetV4) * 16), False, flow, backend, sets, cpus)
