"""The service's bookkeeping: VIP numbers, backend slots, retirement, filter, markers."""

from __future__ import annotations

import ipaddress
from collections import Counter

import pytest
from fakes import RecordingDataplane

from lb.control.errors import AlreadyExists, CapacityError, InvalidInput, NotFound
from lb.control.service import Balancer, vip_key
from lb.xdp.config import Sizes

SIZES = Sizes(max_vips=2, max_backends=4, ring_size=13)
ip = ipaddress.ip_address


@pytest.fixture
def svc():
    return Balancer(RecordingDataplane(SIZES))


def test_ring_names_only_the_vips_backends_in_weight_proportion(svc):
    key = vip_key("10.0.0.1", 80, "tcp")
    svc.add_vip(key)
    svc.add_backend(key, ip("10.1.0.1"), weight=1)
    svc.add_backend(key, ip("10.1.0.2"), weight=2)
    ring = svc.dp.rings[svc.vips[key].num]
    counts = Counter(ring)
    a, b = svc.backend_index(ip("10.1.0.1")), svc.backend_index(ip("10.1.0.2"))
    assert set(counts) == {a, b}
    assert counts[b] in (8, 9) and counts[a] == 13 - counts[b]


def test_vip_address_is_marked_and_unmarked_with_its_last_vip(svc):
    k80, k443 = vip_key("10.0.0.1", 80, "tcp"), vip_key("10.0.0.1", 443, "tcp")
    svc.add_vip(k80)
    svc.add_vip(k443)
    assert svc.dp.markers == {ip("10.0.0.1")}
    svc.remove_vip(k80)
    assert svc.dp.markers == {ip("10.0.0.1")} and svc.dp.filter_addresses == [ip("10.0.0.1")]
    svc.remove_vip(k443)
    assert svc.dp.markers == set() and svc.dp.filter_addresses == []


def test_removed_backend_keeps_its_slot_for_established_flows(svc):
    key = vip_key("10.0.0.1", 80, "tcp")
    svc.add_vip(key)
    svc.add_backend(key, ip("10.1.0.1"))
    svc.add_backend(key, ip("10.1.0.2"))
    gone = svc.backend_index(ip("10.1.0.2"))
    svc.remove_backend(key, ip("10.1.0.2"))
    assert gone not in svc.dp.rings[svc.vips[key].num]
    assert svc.dp.backends[gone] == ip("10.1.0.2")
    svc.add_backend(key, ip("10.1.0.2"))
    assert svc.backend_index(ip("10.1.0.2")) == gone


def test_retired_slot_is_recycled_only_when_full_and_its_flows_are_purged_first(svc):
    key = vip_key("10.0.0.1", 80, "tcp")
    svc.add_vip(key)
    for i in range(1, 4):  # 3 usable slots (index 0 is "none")
        svc.add_backend(key, ip(f"10.1.0.{i}"))
    old = svc.backend_index(ip("10.1.0.1"))
    svc.dp.conn[("flow-a",)] = old
    svc.remove_backend(key, ip("10.1.0.1"))
    assert svc.dp.conn == {("flow-a",): old}
    svc.add_backend(key, ip("10.1.0.9"))
    assert svc.backend_index(ip("10.1.0.9")) == old
    assert svc.dp.conn == {}
    assert svc.dp.backends[old] == ip("10.1.0.9")


def test_limits_and_bad_input_raise_without_changing_state(svc):
    key = vip_key("10.0.0.1", 80, "tcp")
    svc.add_vip(key)
    svc.add_vip(vip_key("10.0.0.2", 80, "tcp"))
    with pytest.raises(CapacityError):
        svc.add_vip(vip_key("10.0.0.3", 80, "tcp"))
    with pytest.raises(AlreadyExists):
        svc.add_vip(key)
    for i in range(1, 4):
        svc.add_backend(key, ip(f"10.1.0.{i}"))
    rings_before = {k: list(v) for k, v in svc.dp.rings.items()}
    with pytest.raises(CapacityError):
        svc.add_backend(key, ip("10.1.0.4"))
    with pytest.raises(InvalidInput, match="weight"):
        svc.set_weight(key, ip("10.1.0.1"), 0)
    with pytest.raises(NotFound):
        svc.remove_backend(key, ip("10.9.9.9"))
    assert svc.dp.rings == rings_before
    assert ip("10.1.0.4") not in svc.vips[key].backends


@pytest.mark.parametrize("args, field", [
    (("10.0.0.300", 80, "tcp"), "address"),
    (("10.0.0.1", 70000, "tcp"), "port"),
    (("10.0.0.1", 80, "sctp"), "protocol"),
])
def test_vip_key_names_the_bad_field(args, field):
    with pytest.raises(InvalidInput, match=field):
        vip_key(*args)
