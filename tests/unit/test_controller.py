"""The controller: a change is in the database and in the kernel, or in neither.

A real Store on a temporary file and a real Balancer; only the kernel's maps are faked
(tests/unit/fakes.py), including a kernel whose ring writes fail on demand.
"""

from __future__ import annotations

import ipaddress

import pytest
from fakes import FailingDataplane

from lb.control.controller import Controller
from lb.control.errors import AlreadyExists, CapacityError, NotFound
from lb.control.model import BackendSpec, ConfigDocument, VipSpec
from lb.control.service import Balancer
from lb.control.store import Store
from lb.xdp.config import Sizes

ip = ipaddress.ip_address
SIZES = Sizes(max_vips=3, max_backends=6, ring_size=13)  # 5 usable backend slots


@pytest.fixture
def path(tmp_path):
    return tmp_path / "state.db"


@pytest.fixture
def dp():
    return FailingDataplane(SIZES)


@pytest.fixture
def ctl(path, dp):
    store = Store(path)
    controller = Controller(store, Balancer(dp))
    controller.reconcile()
    yield controller
    store.close()


def committed(path) -> dict:
    """What a restarted daemon would read: the database opened afresh."""
    store = Store(path)
    try:
        return store.load()
    finally:
        store.close()


def vip(address: str = "10.0.0.1", port: int = 80, **kw) -> VipSpec:
    return VipSpec(address=address, port=port, **kw)


def backend(address: str, weight: int = 1) -> BackendSpec:
    return BackendSpec(address=address, weight=weight)


def ring_addresses(ctl: Controller, vip_id: int) -> set:
    """The backend addresses a VIP's ring names in the kernel."""
    b = ctl.balancer
    by_index = {index: a for a in b._backend_index if (index := b.backend_index(a))}
    num = b.vips[ctl.get_vip(vip_id).key].num
    return {by_index[i] for i in ctl.balancer.dp.read_ring(num) if i}


def document(*vips: dict) -> ConfigDocument:
    return ConfigDocument.model_validate({"vips": list(vips)})


# --- changes reach the database and the kernel -------------------------------------------
def test_create_vip_is_committed_and_in_the_kernel(ctl, dp, path):
    created = ctl.create_vip(vip(flags=["no_conn_table"]))
    assert committed(path) == {created.id: created}
    assert ctl.list_vips() == [created]
    assert dp.vip_entries[created.key][1] != 0
    assert dp.markers == {created.address}


def test_delete_vip_removes_it_everywhere(ctl, dp, path):
    a = ctl.create_vip(vip())
    b = ctl.create_vip(vip("10.0.0.2"))
    ctl.add_backend(a.id, backend("10.1.0.1"))
    ctl.delete_vip(a.id)
    assert list(committed(path)) == [b.id]
    assert set(dp.vip_entries) == {b.key}
    assert dp.markers == {b.address}
    with pytest.raises(NotFound):
        ctl.get_vip(a.id)


def test_backends_added_weighted_and_removed(ctl, path):
    v = ctl.create_vip(vip())
    ctl.add_backend(v.id, backend("10.1.0.1"))
    ctl.add_backend(v.id, backend("2001:db8::10", 2))
    assert ring_addresses(ctl, v.id) == {ip("10.1.0.1"), ip("2001:db8::10")}
    ctl.set_weight(v.id, ip("10.1.0.1"), 7)
    assert [(b.address, b.weight) for b in committed(path)[v.id].backends] == [
        (ip("10.1.0.1"), 7), (ip("2001:db8::10"), 2)]
    ctl.remove_backend(v.id, ip("10.1.0.1"))
    assert committed(path)[v.id].backends == [backend("2001:db8::10", 2)]
    assert ring_addresses(ctl, v.id) == {ip("2001:db8::10")}
    assert committed(path) == {v.id: ctl.get_vip(v.id)}


def test_set_flags_is_normalised_and_committed(ctl, dp, path):
    v = ctl.create_vip(vip())
    new = ctl.set_flags(v.id, ["no_conn_table", "hash_no_src_port", "no_conn_table"])
    assert new.flags == ["hash_no_src_port", "no_conn_table"]
    assert committed(path)[v.id].flags == new.flags
    assert dp.vip_entries[v.key][1] == int(new.flag_bits)


def test_backend_order_survives_a_restart(ctl, dp, path):
    v = ctl.create_vip(vip())
    for i in range(1, 5):
        ctl.add_backend(v.id, backend(f"10.1.0.{i}"))
    ctl.remove_backend(v.id, ip("10.1.0.1"))
    ctl.remove_backend(v.id, ip("10.1.0.2"))
    restarted = Controller(Store(path), Balancer.adopt(dp))
    assert restarted.reconcile().ring_slots_written == 0
    restarted.add_backend(v.id, backend("10.1.0.5"))
    expected = [ip("10.1.0.3"), ip("10.1.0.4"), ip("10.1.0.5")]
    assert [b.address for b in restarted.get_vip(v.id).backends] == expected
    assert [b.address for b in committed(path)[v.id].backends] == expected
    restarted.store.close()


def test_a_restart_adopts_the_kernel_state_without_writing_a_slot(ctl, dp, path):
    ctl.replace(document(
        {"address": "10.0.0.1", "port": 80, "backends": [{"address": "10.1.0.1"},
                                                          {"address": "10.1.0.2", "weight": 3}]},
        {"address": "2001:db8::1", "port": 443, "backends": [{"address": "2001:db8::10"}]}))
    before = dp.snapshot()
    restarted = Controller(Store(path), Balancer.adopt(dp))
    report = restarted.reconcile()
    assert report.model_dump() == {"vips_added": 0, "vips_removed": 0, "vips_changed": 0,
                                   "ring_slots_written": 0}
    assert dp.snapshot() == before
    assert restarted.export() == ctl.export()
    restarted.store.close()


# --- replace (PUT /config) ---------------------------------------------------------------
def test_replace_keeps_ids_of_matched_vips_and_gives_new_ones_new_ids(ctl, dp, path):
    a = ctl.create_vip(vip())
    b = ctl.create_vip(vip("10.0.0.2"))
    ctl.add_backend(a.id, backend("10.1.0.1"))
    doc = document(
        {"address": "10.0.0.3", "port": 53, "protocol": "udp",
         "backends": [{"address": "10.1.0.3"}]},
        {"address": "10.0.0.1", "port": 80, "flags": ["no_conn_table"],
         "backends": [{"address": "10.1.0.1", "weight": 2}, {"address": "10.1.0.2"}]})
    report = ctl.replace(doc)
    assert (report.vips_added, report.vips_removed, report.vips_changed) == (1, 1, 1)
    vips = committed(path)
    assert a.id in vips and b.id not in vips
    new_id = next(i for i in vips if i != a.id)
    assert new_id > b.id  # ids are never reused
    assert vips[a.id].flags == ["no_conn_table"]
    assert [(x.address, x.weight) for x in vips[a.id].backends] == [
        (ip("10.1.0.1"), 2), (ip("10.1.0.2"), 1)]
    assert set(dp.vip_entries) == {v.key for v in vips.values()}
    assert {v.key: v for v in ctl.list_vips()} == {v.key: v for v in vips.values()}
    assert ctl.export() == doc.model_copy(update={"vips": sorted(
        doc.vips, key=lambda v: [x.key for x in ctl.list_vips()].index(v.key))})


def test_replace_with_the_same_document_changes_nothing(ctl, dp, path):
    doc = document(
        {"address": "10.0.0.1", "port": 80, "backends": [{"address": "10.1.0.1"},
                                                          {"address": "2001:db8::10"}]},
        {"address": "2001:db8::1", "port": 0, "backends": [{"address": "2001:db8::10"}]})
    ctl.replace(doc)
    before, kernel = committed(path), dp.snapshot()
    report = ctl.replace(doc)
    assert report.model_dump() == {"vips_added": 0, "vips_removed": 0, "vips_changed": 0,
                                   "ring_slots_written": 0}
    assert committed(path) == before
    assert dp.snapshot() == kernel


def test_replace_with_an_empty_document_removes_everything(ctl, dp, path):
    ctl.create_vip(vip())
    ctl.create_vip(vip("2001:db8::1"))
    assert ctl.replace(ConfigDocument()).vips_removed == 2
    assert committed(path) == {} and dp.vip_entries == {} and dp.markers == set()


# --- rejected changes change nothing ------------------------------------------------------
@pytest.fixture
def populated(ctl):
    v4 = ctl.create_vip(vip())
    v6 = ctl.create_vip(vip("2001:db8::1", 443))
    ctl.add_backend(v4.id, backend("10.1.0.1"))
    ctl.add_backend(v4.id, backend("10.1.0.2", 2))
    ctl.add_backend(v6.id, backend("2001:db8::10"))
    return v4, v6


@pytest.mark.parametrize("change, error", [
    (lambda c, v4, v6: c.get_vip(999), NotFound),
    (lambda c, v4, v6: c.delete_vip(999), NotFound),
    (lambda c, v4, v6: c.set_flags(999, []), NotFound),
    (lambda c, v4, v6: c.add_backend(999, backend("10.1.0.9")), NotFound),
    (lambda c, v4, v6: c.set_weight(v4.id, ip("10.1.0.9"), 3), NotFound),
    (lambda c, v4, v6: c.remove_backend(v6.id, ip("10.1.0.1")), NotFound),
    (lambda c, v4, v6: c.create_vip(vip(flags=["no_conn_table"])), AlreadyExists),
    (lambda c, v4, v6: c.add_backend(v4.id, backend("10.1.0.2", 5)), AlreadyExists),
    (lambda c, v4, v6: c.replace(document(*[
        {"address": "10.0.0.1", "port": 80,
         "backends": [{"address": f"10.1.1.{i}"} for i in range(6)]}])), CapacityError),
])
def test_a_rejected_change_leaves_database_and_kernel_unchanged(ctl, dp, path, populated,
                                                                 change, error):
    before, kernel, in_memory = committed(path), dp.snapshot(), ctl.export()
    with pytest.raises(error):
        change(ctl, *populated)
    assert committed(path) == before
    assert dp.snapshot() == kernel
    assert ctl.export() == in_memory


def test_a_vip_over_capacity_is_refused_and_its_id_is_not_consumed(ctl, dp, path, populated):
    third = ctl.create_vip(vip("10.0.0.3"))  # max_vips = 3
    before, kernel = committed(path), dp.snapshot()
    with pytest.raises(CapacityError):
        ctl.create_vip(vip("10.0.0.4"))
    assert committed(path) == before and dp.snapshot() == kernel
    ctl.delete_vip(third.id)
    assert ctl.create_vip(vip("10.0.0.4")).id == third.id + 1


def test_an_ipv6_vip_takes_an_ipv4_backend(ctl, dp, populated):
    # 6in4: the IPv6 VIP's packets go to the IPv4 backend under an IPv4 outer header.
    _, v6 = populated
    ctl.add_backend(v6.id, backend("10.1.0.9"))
    assert [b.address for b in ctl.get_vip(v6.id).backends] == [ip("2001:db8::10"),
                                                                 ip("10.1.0.9")]


# --- a kernel that fails mid-change ------------------------------------------------------
def _replace(c, v4, v6):
    # Four ring writes: 10.0.0.5 is added (a zero ring, then its backends), 10.0.0.1 changes
    # its backend, 2001:db8::1 its weight.
    return c.replace(document(
        {"address": "10.0.0.1", "port": 80, "backends": [{"address": "10.1.0.7"}]},
        {"address": "10.0.0.5", "port": 80, "backends": [{"address": "10.1.0.1"}]},
        {"address": "2001:db8::1", "port": 443,
         "backends": [{"address": "2001:db8::10", "weight": 5}]}))


@pytest.mark.parametrize("change, nth", [
    pytest.param(lambda c, v4, v6: c.create_vip(vip("10.0.0.9")), 1, id="create_vip"),
    pytest.param(lambda c, v4, v6: c.delete_vip(v4.id), 1, id="delete_vip"),
    pytest.param(lambda c, v4, v6: c.add_backend(v4.id, backend("10.1.0.3")), 1,
                 id="add_backend"),
    pytest.param(lambda c, v4, v6: c.set_weight(v4.id, ip("10.1.0.1"), 9), 1, id="set_weight"),
    pytest.param(lambda c, v4, v6: c.remove_backend(v4.id, ip("10.1.0.2")), 1,
                 id="remove_backend"),
    *(pytest.param(_replace, n, id=f"replace-ring{n}") for n in (1, 2, 3, 4)),
])
def test_a_failed_ring_write_rolls_back_database_and_kernel(ctl, dp, path, populated,
                                                             change, nth):
    dp.conn.update({("flow", i): i for i in dp.backends})
    before, kernel, in_memory = committed(path), dp.snapshot(), ctl.export()
    dp.fail_ring_write(nth)
    with pytest.raises(OSError, match="injected"):
        change(ctl, *populated)
    assert committed(path) == before
    assert ctl.export() == in_memory
    after = dp.snapshot()
    # A backend slot written for the failed change may stay, retired and in no ring; every
    # backend that was there keeps its slot, so the connection table stays valid.
    assert after.pop("backends").items() >= kernel.pop("backends").items()
    assert after == kernel
    # The controller still works, and a retry succeeds.
    change(ctl, *populated)


def test_after_a_failed_change_the_next_start_reconciles_nothing(ctl, dp, path, populated):
    v4, _ = populated
    dp.fail_ring_write(1)
    with pytest.raises(OSError):
        ctl.add_backend(v4.id, backend("10.1.0.3"))
    restarted = Controller(Store(path), Balancer.adopt(dp))
    assert restarted.reconcile().ring_slots_written == 0
    restarted.store.close()
