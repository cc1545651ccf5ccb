"""Settled ring slots: non-SYN TCP packets of a slot no live flow holds go to its backend
without reading the connection table (one in CT_SAMPLE_MASK + 1 still does); a ring change
unsettles the slots it rewrites; a flow that names another backend for its slot keeps the
slot unsettled (and itself on its backend) until it has been idle through `limit` settles.

Settling is what lb/xdp/_ringio.c does over the mmapped maps (Dataplane.settle), called here
through Balancer.settle, as the daemon's ticker calls it.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator

import pytest
from conftest import SIZES
from packet_frames import eth, tcp, udp, v4, v6
from test_packet_flows import forwarded, without_backend

from lb.control.service import Balancer
from lb.xdp.consts import CT_SAMPLE_MASK, VipFlag
from lb.xdp.flowhash import flow_hash
from lb.xdp.maps import SettleVip
from lb.xdp.structs import CtEntryV4

pytestmark = pytest.mark.root

ip = ipaddress.ip_address
SAMPLE = CT_SAMPLE_MASK + 1
# Settles a flow may stay idle through and still hold its slot, in these tests.
LIMIT = 2


def settle(rig) -> tuple[int, int]:
    """One settle, as the daemon's ticker runs it, but with no grace after a ring change."""
    return rig.balancer.settle(LIMIT, grace_s=0)


@pytest.fixture
def settled(rig) -> Iterator[None]:
    """Every TCP VIP's ring settled (the tables are empty: nothing holds a slot); every
    VIP's ring unsettled again afterwards, as the other tests expect."""
    rig.balancer.unsettle()
    settle(rig)
    try:
        yield
    finally:
        rig.balancer.unsettle()


def slot_of(rig, name: str, frame: bytes) -> int:
    """The ring slot of a frame's flow in the named VIP's ring (Python hash mirror)."""
    f = rig.flow_of(frame)
    state = rig.balancer.vips[rig.vips[name]]
    return flow_hash(f.src, f.dst, f.sport, f.dport, f.proto, int(state.flags)) % SIZES.ring_size


def test_rings_start_unsettled_and_settle_only_for_tcp(rig) -> None:
    rig.balancer.unsettle()
    assert len(rig.dp.unsettled_slots(rig.vip_num("v4tcp"))) == SIZES.ring_size
    settled, held = settle(rig)
    try:
        assert settled == 5 * SIZES.ring_size and held == 0  # 5 TCP VIPs, full rings
        for name in ("v4tcp", "v6tcp", "v4all", "v4exact", "v6nosport"):
            assert rig.dp.unsettled_slots(rig.vip_num(name)) == [], name
        for name in ("v4udp", "v6udp", "v4noct"):  # UDP VIPs are never settled
            assert len(rig.dp.unsettled_slots(rig.vip_num(name))) == SIZES.ring_size, name
        assert settle(rig) == (0, 0), "the balancer saw something left to settle"
        tcp = [SettleVip(key, s.num, int(s.flags), settle=True)
               for key, s in rig.balancer.vips.items()]
        assert rig.dp.settle(tcp, LIMIT)[0] == 0, "a second scan settled something"
    finally:
        rig.balancer.unsettle()


@pytest.mark.parametrize("vip, frame", [
    ("v4tcp", lambda: bytes(eth() / v4() / tcp())),
    ("v6tcp", lambda: bytes(eth() / v6() / tcp(443))),
    ("v6nosport", lambda: bytes(eth() / v6("fc00::3") / tcp(80))),
])
def test_settled_slot_skips_the_table_but_for_one_packet_in_the_sample(rig, settled, vip,
                                                                       frame) -> None:
    ack = frame()
    backend = rig.ring_choice(vip, rig.flow_of(ack))
    for _ in range(SAMPLE - 1):
        forwarded(rig, ack, vip, backend=backend, title="settled")
    assert rig.counters() == {"tx": SAMPLE - 1, "ct_settled": SAMPLE - 1}
    assert rig.conn_entries() == {}, "a settled packet wrote the table"
    forwarded(rig, ack, vip, backend=backend, title="the sampled packet")
    assert rig.counters() == {"tx": SAMPLE, "ct_settled": SAMPLE - 1, "ct_miss": 1}
    assert rig.conn_entries() == {rig.flow_of(ack): backend}, "the sample remembers the flow"
    for _ in range(SAMPLE):
        forwarded(rig, ack, vip, backend=backend)
    assert rig.counters() == {"tx": 2 * SAMPLE, "ct_settled": 2 * SAMPLE - 2, "ct_miss": 1,
                              "ct_hit": 1}
    assert rig.dp.backend_stats(backend) == (2 * SAMPLE, 2 * SAMPLE * len(ack))


def test_syn_and_udp_read_the_table_on_a_settled_ring(rig, settled) -> None:
    syn = bytes(eth() / v4() / tcp(flags="S", payload=b""))
    query = bytes(eth() / v4() / udp())
    forwarded(rig, syn, "v4tcp", title="SYN")
    forwarded(rig, query, "v4udp", title="UDP")
    forwarded(rig, query, "v4udp", title="UDP again")
    assert rig.counters() == {"tx": 3, "ct_miss": 2, "ct_hit": 1}
    assert set(rig.conn_entries()) == {rig.flow_of(syn), rig.flow_of(query)}


def test_a_ring_change_unsettles_exactly_the_slots_it_rewrites(rig, settled) -> None:
    num = rig.vip_num("v4tcp")
    before = rig.dp.read_ring(num)
    removed = before[0]
    with without_backend(rig, "v4tcp", removed):
        after = rig.dp.read_ring(num)
        rewritten = [s for s in range(SIZES.ring_size) if before[s] != after[s]]
        assert rewritten
        assert rig.dp.unsettled_slots(num) == rewritten
        assert rig.dp.unsettled_slots(rig.vip_num("v6tcp")) == [], "another VIP unsettled"
        # Put back, the backend's slots are rewritten again: still (or again) unsettled.
    assert rig.dp.read_ring(num) == before
    assert rig.dp.unsettled_slots(num) == rewritten


def test_settle_leaves_a_vip_alone_for_a_grace_after_a_change(rig, settled) -> None:
    num = rig.vip_num("v4tcp")
    with without_backend(rig, "v4tcp", rig.dp.read_ring(num)[0]):
        unsettled = rig.dp.unsettled_slots(num)
        assert unsettled
        rig.balancer.settle(LIMIT, grace_s=60)
        assert rig.dp.unsettled_slots(num) == unsettled, "settled within the grace"
        settle(rig)
        assert rig.dp.unsettled_slots(num) == [], "nothing holds these slots"


@pytest.mark.parametrize("vip, frame", [
    ("v4tcp", lambda **kw: bytes(eth() / v4() / tcp(**kw))),
    ("v6tcp", lambda **kw: bytes(eth() / v6() / tcp(443, **kw))),
    ("v6nosport", lambda **kw: bytes(eth() / v6("fc00::3") / tcp(80, **kw))),
])
def test_a_live_flow_holds_its_slot_until_idle_then_follows_it(rig, settled, vip,
                                                               frame) -> None:
    """The flow keeps its backend across a change on a settled ring; settles leave its slot
    (only its slot) unsettled while it is live, and settle it once it has been idle through
    LIMIT of them; then all its packets follow the slot's new backend, the sampled ones too
    (which rewrite its way)."""
    ack, syn = frame(), frame(flags="S", payload=b"")
    num = rig.vip_num(vip)
    old = forwarded(rig, syn, vip, title="SYN: remembered")
    forwarded(rig, ack, vip, backend=old, title="settled: sent without the table")
    assert rig.counters()["ct_settled"] == 1
    slot = slot_of(rig, vip, ack)
    with without_backend(rig, vip, old):
        assert slot in rig.dp.unsettled_slots(num)
        new = rig.dp.read_ring(num)[slot]
        assert new not in (0, old)
        for _ in range(2):  # a packet between settles: held however many settles pass
            forwarded(rig, ack, vip, backend=old, title="live: the table's backend")
            for _ in range(LIMIT):
                assert settle(rig)[1] == 1 and rig.dp.unsettled_slots(num) == [slot], \
                    "the live flow's slot alone is held"
        forwarded(rig, ack, vip, backend=old, title="held: still the table's backend")
        for _ in range(LIMIT):
            assert settle(rig)[1] == 1
        assert settle(rig) == (1, 0), "idle through LIMIT settles: its slot settles"
        assert rig.dp.unsettled_slots(num) == []
        assert rig.conn_entries()[rig.flow_of(ack)] == old
        before = rig.counters()
        for _ in range(2 * SAMPLE):
            forwarded(rig, ack, vip, backend=new, title="settled again: the slot's backend")
        after = rig.counters()
        assert after["ct_settled"] - before["ct_settled"] == 2 * SAMPLE - 2
        assert after["ct_miss"] - before["ct_miss"] >= 1, "the sample did not re-decide"
        assert rig.conn_entries()[rig.flow_of(ack)] == new, "the way still names the old one"


def test_flows_hold_slots_of_the_vip_the_program_picks(rig, settled) -> None:
    """10.0.0.2 has a port-0 VIP (v4all) and an exact one on 8080 (v4exact): a flow to 8080
    holds a v4exact slot, a flow to another port a v4all slot, never the other way round."""
    exact, any_port = rig.vip_num("v4exact"), rig.vip_num("v4all")
    stranger = rig.balancer.backend_index(ip("10.1.0.1"))  # in neither ring
    to_exact = bytes(eth() / v4("10.0.0.2") / tcp(8080))
    to_other = bytes(eth() / v4("10.0.0.2") / tcp(9999))
    rig.plant(rig.flow_of(to_exact), stranger)
    rig.balancer.unsettle()
    settle(rig)
    assert rig.dp.unsettled_slots(exact) == [slot_of(rig, "v4exact", to_exact)]
    assert rig.dp.unsettled_slots(any_port) == []
    rig.plant(rig.flow_of(to_other), stranger)
    rig.balancer.unsettle()
    settle(rig)
    assert rig.dp.unsettled_slots(exact) == [slot_of(rig, "v4exact", to_exact)]
    assert rig.dp.unsettled_slots(any_port) == [slot_of(rig, "v4all", to_other)]
    for frame, name in ((to_exact, "v4exact"), (to_other, "v4all")):
        forwarded(rig, frame, name, backend=stranger, title="held: the table's backend")


def test_removing_an_exact_port_vip_unsettles_the_port_0_vip(rig, settled) -> None:
    """Flows of a removed exact-port VIP fall to the port-0 VIP of its address: they must
    read the table there (which keeps them on their backend), not a settled slot."""
    key = rig.vips["v4exact"]
    backend = ip("10.1.0.5")
    syn = bytes(eth() / v4("10.0.0.2") / tcp(8080, flags="S", payload=b""))
    ack = bytes(eth() / v4("10.0.0.2") / tcp(8080))
    index = forwarded(rig, syn, "v4exact", title="SYN to the exact port")
    assert rig.dp.unsettled_slots(rig.vip_num("v4all")) == []
    rig.balancer.remove_vip(key)
    try:
        assert len(rig.dp.unsettled_slots(rig.vip_num("v4all"))) == SIZES.ring_size
        assert rig.ring_choice("v4all", rig.flow_of(ack)) != index
        forwarded(rig, ack, "v4all", backend=index, title="now v4all's: still its backend")
    finally:
        rig.balancer.add_vip(key)
        rig.balancer.add_backend(key, backend)


def test_a_flow_that_agrees_with_its_slot_does_not_hold_it(rig, settled) -> None:
    """Live flows remembered on their slot's own backend (most flows) never hold it; one
    remembered on another backend holds exactly its slot."""
    key = rig.vips["v6tcp"]
    state = rig.balancer.vips[key]
    frames = [bytes(eth() / v6() / tcp(443, sport=30000 + i, flags="S", payload=b""))
              for i in range(200)]
    for f in frames:
        forwarded(rig, f, "v6tcp")
    assert len(rig.conn_entries()) > 0.9 * len(frames)  # a few 3-way collisions evict
    vip = [SettleVip(key, state.num, int(state.flags), settle=True)]
    rig.dp.unsettle(state.num)
    assert rig.dp.settle(vip, LIMIT) == (SIZES.ring_size, {state.num: 0})
    assert rig.dp.unsettled_slots(state.num) == []

    odd = frames[0]
    other = next(i for i in set(rig.dp.read_ring(state.num))
                 if i != rig.ring_choice("v6tcp", rig.flow_of(odd)))
    rig.plant(rig.flow_of(odd), other)
    rig.dp.unsettle(state.num)
    assert rig.dp.settle(vip, LIMIT) == (SIZES.ring_size - 1, {state.num: 1})
    assert rig.dp.unsettled_slots(state.num) == [slot_of(rig, "v6tcp", odd)]


def test_a_hash_flag_change_unsettles_the_ring_and_flows_keep_their_backend(rig,
                                                                            settled) -> None:
    """HASH_NO_SRC_PORT moves flows to other slots without a ring write: the whole ring must
    read the table again, or a remembered flow would follow a settled slot it never had."""
    key, num = rig.vips["v4tcp"], rig.vip_num("v4tcp")
    syns = [bytes(eth() / v4() / tcp(sport=31000 + i, flags="S", payload=b""))
            for i in range(40)]
    before = {f: rig.ring_choice("v4tcp", rig.flow_of(f)) for f in syns}
    for f in syns:
        forwarded(rig, f, "v4tcp", backend=before[f])
    rig.balancer.set_flags(key, VipFlag.HASH_NO_SRC_PORT)
    try:
        assert len(rig.dp.unsettled_slots(num)) == SIZES.ring_size
        moved = [f for f in syns if rig.ring_choice("v4tcp", rig.flow_of(f)) != before[f]]
        assert moved, "no flow's slot names another backend under the flag"
        for f in moved:
            forwarded(rig, bytes(eth() / v4() / tcp(sport=rig.flow_of(f).sport)), "v4tcp",
                      backend=before[f], title="remembered flow, after the flag change")
    finally:
        rig.balancer.set_flags(key, 0)


def test_adopting_the_maps_unsettles_every_ring(rig, settled) -> None:
    """After a restart nothing says which slots are free (maps pinned by a version without
    settling have no unsettled bits at all): the adopting Balancer unsettles every ring."""
    tcp_vips = ("v4tcp", "v6tcp", "v4all", "v4exact", "v6nosport")
    assert all(rig.dp.unsettled_slots(rig.vip_num(n)) == [] for n in tcp_vips)
    Balancer.adopt(rig.dp)
    for name in tcp_vips:
        assert len(rig.dp.unsettled_slots(rig.vip_num(name))) == SIZES.ring_size, name


def test_a_ring_written_between_scan_and_apply_is_left_unsettled(rig, settled) -> None:
    """The daemon scans the table without the change lock: a VIP whose ring a change wrote
    meanwhile is not settled from that scan (it compared flows with the old slots)."""
    rig.balancer.unsettle()
    num = rig.vip_num("v4tcp")
    plan = rig.balancer.settle_plan(grace_s=0)
    scan = rig.dp.scan(plan, LIMIT)
    with without_backend(rig, "v4tcp", rig.dp.read_ring(num)[0]):
        settled_now, held = rig.balancer.settle_apply(scan)
        assert settled_now == 4 * SIZES.ring_size and held == 0  # the other 4 TCP VIPs
        assert len(rig.dp.unsettled_slots(num)) == SIZES.ring_size
        assert rig.dp.unsettled_slots(rig.vip_num("v6tcp")) == []


def test_idle_counts_restart_from_zero_when_the_maps_are_adopted(rig, settled) -> None:
    """idle_settles counts in units of one run's settle interval: a restart zeroes them."""
    ack = bytes(eth() / v4() / tcp())
    stranger = rig.balancer.backend_index(ip("10.1.0.5"))  # not in v4tcp's ring
    rig.plant(rig.flow_of(ack), stranger)
    rig.balancer.unsettle()
    for _ in range(LIMIT):
        assert settle(rig)[1] == 1

    def counts() -> set[int]:
        return {CtEntryV4.from_buffer_copy(raw).state.idle_settles
                for _set, _cpu, _way, raw in rig.dp._ct_live(False, stranger)}

    assert counts() == {LIMIT}
    assert settle(rig) == (1, 0), "idle through LIMIT settles"
    Balancer.adopt(rig.dp)
    assert counts() == {0}
