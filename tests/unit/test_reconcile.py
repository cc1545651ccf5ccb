"""Balancer.reconcile and Balancer.adopt: the kernel is made to hold a target, writing only
what differs, and a restarted daemon takes over the maps without moving any flow."""

from __future__ import annotations

import ipaddress

import pytest
from fakes import RecordingDataplane

from lb.control.errors import CapacityError
from lb.control.service import Balancer, VipTarget, vip_key
from lb.xdp.config import Sizes
from lb.xdp.consts import VipFlag

ip = ipaddress.ip_address
SIZES = Sizes(max_vips=3, max_backends=5, ring_size=13)  # 4 usable backend slots
K1, K2, K3, K4 = (vip_key("10.0.0.1", 80, "tcp"), vip_key("10.0.0.1", 443, "tcp"),
                  vip_key("2001:db8::1", 53, "udp"), vip_key("10.0.0.4", 80, "tcp"))
B = [ip(f"10.1.0.{i}") for i in range(10)]
B6 = [ip(f"2001:db8::{i:x}") for i in range(10)]


def target(flags: int = 0, **backends: int) -> VipTarget:
    """A VipTarget; backends by name: b1=2 is B[1] with weight 2, v3 is B6[3]."""
    def addr(name: str):
        return (B6 if name[0] == "v" else B)[int(name[1:])]
    return VipTarget(VipFlag(flags), {addr(n): w for n, w in backends.items()})


@pytest.fixture
def dp():
    return RecordingDataplane(SIZES)


@pytest.fixture
def lb(dp):
    return Balancer(dp)


def ring_of(lb: Balancer, key) -> list:
    """The VIP's ring as backend addresses (None for an empty slot)."""
    by_index = {lb.backend_index(a): a for a in lb._backend_index}
    return [by_index.get(i) for i in lb.dp.read_ring(lb.vips[key].num)]


def test_reconcile_from_empty_adds_every_vip_with_its_backends(lb, dp):
    report = lb.reconcile({K1: target(b1=1, b2=2), K3: target(VipFlag.NO_CONN_TABLE, v1=1)})
    assert (report.vips_added, report.vips_removed, report.vips_changed) == (2, 0, 0)
    assert report.ring_slots_written == 2 * SIZES.ring_size
    assert set(dp.vip_entries) == {K1, K3}
    assert dp.vip_entries[K3][1] == int(VipFlag.NO_CONN_TABLE)
    assert set(ring_of(lb, K1)) == {B[1], B[2]} and set(ring_of(lb, K3)) == {B6[1]}
    assert dp.markers == {K1.address, K3.address}
    assert set(dp.filter_addresses) == {K1.address, K3.address}


def test_the_same_target_twice_writes_nothing(lb, dp):
    t = {K1: target(b1=1, b2=2), K2: target(b2=1), K3: target(v1=3)}
    lb.reconcile(t)
    before = dp.snapshot()
    report = lb.reconcile(t)
    assert report.model_dump() == {"vips_added": 0, "vips_removed": 0, "vips_changed": 0,
                                   "ring_slots_written": 0}
    assert dp.snapshot() == before


def test_reconcile_removes_changes_and_adds(lb, dp):
    lb.reconcile({K1: target(b1=1, b2=1), K2: target(b3=1)})
    b3 = lb.backend_index(B[3])
    report = lb.reconcile({K1: target(VipFlag.HASH_NO_SRC_PORT, b1=1, b2=3),
                           K3: target(v1=1)})
    assert (report.vips_added, report.vips_removed, report.vips_changed) == (1, 1, 1)
    assert set(dp.vip_entries) == {K1, K3}
    assert dp.vip_entries[K1][1] == int(VipFlag.HASH_NO_SRC_PORT)
    assert all(b3 not in dp.read_ring(s.num) for s in lb.vips.values())
    ring = ring_of(lb, K1)
    assert ring.count(B[2]) > ring.count(B[1])  # weight 3 against 1
    assert dp.markers == {K1.address, K3.address}


def test_a_weight_change_rewrites_only_some_slots(lb):
    lb.reconcile({K1: target(b1=1, b2=1, b3=1)})
    report = lb.reconcile({K1: target(b1=1, b2=1, b3=2)})
    assert report.vips_changed == 1
    assert 0 < report.ring_slots_written < SIZES.ring_size


def test_a_vip_with_no_backends_has_an_empty_ring(lb, dp):
    lb.reconcile({K1: target(b1=1)})
    lb.reconcile({K1: target()})
    assert set(dp.read_ring(lb.vips[K1].num)) == {0}


def test_a_target_over_max_vips_raises_and_changes_nothing(lb, dp):
    lb.reconcile({K1: target(b1=1), K2: target(b2=1)})
    before = dp.snapshot()
    with pytest.raises(CapacityError, match="VIPs"):
        lb.reconcile({K1: target(b3=1), K2: target(b2=1), K3: target(v1=1),
                      K4: target(b1=1)})
    assert dp.snapshot() == before
    assert set(lb.vips) == {K1, K2}


def test_a_target_over_max_backends_raises_and_changes_nothing(lb, dp):
    lb.reconcile({K1: target(b1=1), K2: target(b2=1)})
    before = dp.snapshot()
    with pytest.raises(CapacityError, match="backends"):
        lb.reconcile({K1: target(b1=1, b3=1, b4=1), K2: target(b2=1, b5=1), K3: target()})
    assert dp.snapshot() == before
    assert set(lb.vips) == {K1, K2}


def test_swapping_vips_at_full_vip_capacity_fits(lb, dp):
    lb.reconcile({K1: target(b1=1), K2: target(b1=1), K3: target(v1=1)})
    report = lb.reconcile({K1: target(b1=1), K2: target(b1=1), K4: target(b2=1)})
    assert (report.vips_added, report.vips_removed) == (1, 1)
    assert set(dp.vip_entries) == {K1, K2, K4}


def test_a_scoped_reconcile_touches_only_the_scoped_vips(lb, dp):
    lb.reconcile({K1: target(b1=1), K2: target(b2=1), K3: target(v1=1)})
    untouched = {k: (dp.vip_entries[k], dp.read_ring(lb.vips[k].num)) for k in (K2, K3)}
    # The target names other VIPs differently (and leaves K3 out): out of scope, ignored.
    report = lb.reconcile({K1: target(b1=1, b3=1), K2: target(b4=1)}, scope={K1})
    assert (report.vips_added, report.vips_removed, report.vips_changed) == (0, 0, 1)
    assert set(ring_of(lb, K1)) == {B[1], B[3]}
    assert {k: (dp.vip_entries[k], dp.read_ring(lb.vips[k].num)) for k in (K2, K3)} == untouched


def test_a_scoped_reconcile_adds_and_removes_only_within_its_scope(lb, dp):
    lb.reconcile({K1: target(b1=1), K2: target(b2=1)})
    lb.reconcile({K3: target(v1=1)}, scope={K3, K1})
    assert set(dp.vip_entries) == {K2, K3}
    lb.reconcile({}, scope={K4})  # an absent VIP out of the target: nothing to do
    assert set(dp.vip_entries) == {K2, K3}


def test_swapping_every_backend_at_full_capacity_recycles_and_purges(lb, dp):
    lb.reconcile({K1: target(b1=1, b2=1), K2: target(b3=1, b4=1)})  # all 4 slots taken
    old = {a: lb.backend_index(a) for a in B[1:5]}
    dp.conn.update({("flow", i): i for i in old.values()})
    report = lb.reconcile({K1: target(b5=1, b6=1), K2: target(b7=1, b8=1)})
    assert report.vips_changed == 2
    assert set(ring_of(lb, K1)) == {B[5], B[6]} and set(ring_of(lb, K2)) == {B[7], B[8]}
    assert {lb.backend_index(a) for a in B[5:9]} == set(old.values())
    assert dp.backends == {lb.backend_index(a): a for a in B[5:9]}
    assert dp.conn == {}  # no flow is left pointing at a slot that now means another backend


@pytest.mark.parametrize("k2_after", [{"b2": 1}, {"b2": 1, "b3": 1}])
def test_one_vip_shrinking_makes_room_for_another_growing(lb, dp, k2_after):
    lb.reconcile({K1: target(b1=1), K2: target(b2=1, b3=1, b4=1)})  # full
    before = dp.snapshot()
    report = lb.reconcile({K1: target(b5=1, b6=1), K2: target(**k2_after)})
    assert set(ring_of(lb, K1)) == {B[5], B[6]}
    assert set(ring_of(lb, K2)) == {B[int(n[1:])] for n in k2_after}
    assert report.vips_changed == 2
    assert dp.snapshot() != before


def test_a_removed_backend_keeps_its_slot_and_flows_until_recycled(lb, dp):
    lb.reconcile({K1: target(b1=1, b2=1)})
    gone = lb.backend_index(B[2])
    dp.conn[("flow",)] = gone
    lb.reconcile({K1: target(b1=1)})
    assert dp.backends[gone] == B[2] and dp.conn == {("flow",): gone}
    lb.reconcile({K1: target(b1=1, b2=1)})
    assert lb.backend_index(B[2]) == gone


# --- adopt ------------------------------------------------------------------------------
ADOPT_SIZES = Sizes(max_vips=3, max_backends=8, ring_size=13)
TARGET = {K1: target(b1=1, b2=3, v5=2), K2: target(b2=1), K3: target(VipFlag.NO_CONN_TABLE,
                                                                   v1=1, v2=1)}


def test_adopt_then_the_same_target_writes_no_slot_and_keeps_every_index():
    dp = RecordingDataplane(ADOPT_SIZES)
    first = Balancer(dp)
    first.reconcile(TARGET)
    first.reconcile({**TARGET, K2: target(b2=1, b3=1)})
    first.reconcile(TARGET)  # B[3] is now retired but still holds its slot
    indexes = {a: first.backend_index(a) for a in first._backend_index}
    dp.conn.update({("flow", i): i for i in indexes.values()})
    before = dp.snapshot()

    adopted = Balancer.adopt(dp)
    assert {a: adopted.backend_index(a) for a in indexes} == indexes
    assert {k: s.num for k, s in adopted.vips.items()} == {k: s.num for k, s in first.vips.items()}
    report = adopted.reconcile(TARGET)
    assert report.model_dump() == {"vips_added": 0, "vips_removed": 0, "vips_changed": 0,
                                   "ring_slots_written": 0}
    assert dp.snapshot() == before
    assert {k: s.backends for k, s in adopted.vips.items()} == {
        k: t.backends for k, t in TARGET.items()}


def test_adopt_then_a_changed_target_writes_only_the_differing_slots():
    dp = RecordingDataplane(ADOPT_SIZES)
    Balancer(dp).reconcile(TARGET)
    changed = {**TARGET, K1: target(b1=1, b2=3, v5=1)}
    reference = Balancer(RecordingDataplane(ADOPT_SIZES))
    reference.reconcile(TARGET)
    expected = reference.reconcile(changed).ring_slots_written
    assert expected > 0

    adopted = Balancer.adopt(dp)
    old_ring = dp.read_ring(adopted.vips[K1].num)
    report = adopted.reconcile(changed)
    new_ring = dp.read_ring(adopted.vips[K1].num)
    differing = sum(a != b for a, b in zip(old_ring, new_ring, strict=True))
    assert report.ring_slots_written == expected == differing
    assert report.vips_changed == 1


def test_adopt_takes_new_vip_numbers_and_slots_around_those_in_use():
    dp = RecordingDataplane(ADOPT_SIZES)
    Balancer(dp).reconcile({K1: target(b1=1), K3: target(v1=1)})
    adopted = Balancer.adopt(dp)
    adopted.reconcile({K1: target(b1=1), K3: target(v1=1), K2: target(b1=1, b2=1)})
    nums = [s.num for s in adopted.vips.values()]
    assert len(set(nums)) == 3
    indexes = [adopted.backend_index(a) for a in (B[1], B6[1], B[2])]
    assert len(set(indexes)) == 3


def test_adopt_retires_backends_no_ring_names(dp):
    first = Balancer(dp)
    first.reconcile({K1: target(b1=1, b2=1, b3=1, b4=1)})
    first.reconcile({K1: target(b1=1)})
    dp.conn[("old flow",)] = first.backend_index(B[2])
    adopted = Balancer.adopt(dp)
    # Full pool of which three slots are retired: a new backend recycles one and purges it.
    adopted.reconcile({K1: target(b1=1, b5=1)})
    assert len(dp.backends) == 4
    assert B[5] in dp.backends.values()
    recycled = adopted.backend_index(B[5])
    assert all(v != recycled for v in dp.conn.values())


def test_adopt_of_an_empty_data_plane_is_an_empty_balancer():
    dp = RecordingDataplane(ADOPT_SIZES)
    adopted = Balancer.adopt(dp)
    assert adopted.vips == {}
    assert adopted.reconcile(TARGET).vips_added == 3


def test_vips_with_one_pool_share_one_ring_build_and_each_gets_it_right(lb, monkeypatch):
    from lb.control import maglev, service

    built = []

    def counting_build(members, ring_size):
        built.append(tuple(members))
        return maglev.build_ring(members, ring_size)

    monkeypatch.setattr(service, "build_ring", counting_build)
    lb.reconcile({K1: target(b1=1, b2=2), K2: target(b1=1, b2=2), K4: target(b3=1)})
    assert sorted(built) == sorted({tuple(m) for m in built})  # each pool built once
    assert len(built) == 2
    assert ring_of(lb, K1) == ring_of(lb, K2)
    alone = Balancer(RecordingDataplane(SIZES))
    alone.reconcile({K1: target(b1=1, b2=2)})
    assert ring_of(alone, K1) == ring_of(lb, K1)  # as if built for that VIP alone
    assert set(ring_of(lb, K4)) == {B[3]}
