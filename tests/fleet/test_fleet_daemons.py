"""Three real `lb run` daemons sharing one etcd: a change through one host is in every kernel,
and their rings stay identical through slow start and health changes.

Topology: one veth lab with three balancers behind the router's ECMP route (VethLab
n_balancers=3), each balancer its own daemon with `--store etcd://.../<prefix>`; three
backends serve HTTP on port CHECK_PORT for the TCP health checks; a fourth backend
namespace is the etcd host (the daemons live in their balancers' namespaces and reach it
through the router). Needs root and etcd. Cleanup: the daemons (SIGTERM, pins and state
removed), etcd (killed by pid, data removed), the lab's namespaces.
"""

from __future__ import annotations

import itertools
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from lb.client import ApiError, Client
from lb.lab.daemon import LabDaemon, fresh_lab
from lb.lab.etcd import EtcdCluster
from lb.lab.veth import VethLab
from lb.lab.waits import wait_until

pytestmark = pytest.mark.root

LAB_PREFIX = "lbf"
CHECK_PORT = 8080
_fleets = itertools.count()


@pytest.fixture(scope="module")
def whole_lab() -> Iterator[VethLab]:
    with fresh_lab(LAB_PREFIX, n_backends=4, rx_queues=1, n_balancers=3) as lab:
        for backend in lab.backends[:3]:
            lab.start_backend_server(backend, CHECK_PORT)
        yield lab


@pytest.fixture(scope="module")
def lab_etcd(whole_lab: VethLab) -> Iterator[EtcdCluster]:
    host = whole_lab.backends[3]
    with EtcdCluster(1, netns=host.netns, host=str(host.v4)) as cluster:
        yield cluster


@pytest.fixture
def fleet_lab(whole_lab: VethLab) -> VethLab:
    """The lab as the tests see it: backends 0-2 (the fourth is the etcd host)."""
    return whole_lab


@pytest.fixture
def fleet(fleet_lab, lab_etcd) -> Iterator[list[LabDaemon]]:
    """Per test: three daemons on a fresh etcd prefix of this test's own."""
    url = lab_etcd.store_url(f"fleet{next(_fleets)}")
    daemons: list[LabDaemon] = []
    try:
        for j, balancer in enumerate(fleet_lab.balancers):
            d = LabDaemon(fleet_lab, balancer=balancer,
                          extra_args=["--store", url, "--host-name", f"lb{j}",
                                      "--fleet-lease-ttl-s", "4"])
            daemons.append(d)
            d.start()
        yield daemons
    finally:
        for d in daemons:
            d.close()
        # The next test's daemons have other pin dirs and would rightly refuse these
        # programs as foreign.
        fleet_lab.detach_balancers()


def _ids(api: Client) -> list[int]:
    return [v["id"] for v in api.list_vips()]


def _agreed(daemons: list[LabDaemon], hosts: int = 3) -> bool:
    views = [d.api.fleet() for d in daemons]
    return all(v["agreed"] and len(v["hosts"]) == hosts for v in views)


def _digests(daemons: list[LabDaemon], vip_id: int) -> list[str | None]:
    """Each host's own digest of the VIP's ring, as it holds it now."""
    out = []
    for d in daemons:
        view = d.api.fleet()
        me = next(h for h in view["hosts"] if h["name"] == view["host"])
        out.append(me["rings"].get(str(vip_id)))
    return out


def _mid_step() -> None:
    """Sleep into the quiet part of a slow-start step (weights move at whole seconds and
    are applied by x.01 s), so that three reads see the same step."""
    frac = time.time() % 1.0
    time.sleep((0.25 - frac) % 1.0)


def test_a_change_through_one_host_is_in_every_kernel_with_the_same_ring(fleet, fleet_lab):
    a, b, c = (d.api for d in fleet)
    vip = a.create_vip("10.100.0.1", 80)
    for i, backend in enumerate(fleet_lab.backends[:3]):
        a.add_backend(vip["id"], str(backend.v4), weight=i + 1)
    assert wait_until(lambda: _ids(b) == _ids(c) == [vip["id"]], timeout=10)
    assert wait_until(lambda: len(b.list_backends(vip["id"])) == 3
                      and len(c.list_backends(vip["id"])) == 3, timeout=10)
    assert wait_until(lambda: _agreed(fleet), timeout=15), [d.api.fleet() for d in fleet]
    digests = _digests(fleet, vip["id"])
    assert digests[0] is not None and len(set(digests)) == 1
    # Every host's kernel has every backend in the ring, at the weight committed through a.
    for api in (b, c):
        rows = {r["address"]: r for r in api.list_backends(vip["id"])}
        assert {a_: (r["in_ring"], r["effective_weight"]) for a_, r in rows.items()} == {
            str(be.v4): (True, i + 1) for i, be in enumerate(fleet_lab.backends[:3])}
    # A change through c, then removal through b: each lands everywhere.
    c.remove_backend(vip["id"], str(fleet_lab.backends[0].v4))
    assert wait_until(lambda: all(len(d.api.list_backends(vip["id"])) == 2 for d in fleet),
                      timeout=10)
    assert wait_until(lambda: _agreed(fleet), timeout=15)
    b.delete_vip(vip["id"])
    assert wait_until(lambda: all(_ids(d.api) == [] for d in fleet), timeout=10)


def test_changes_through_two_hosts_at_once_commit_whole_or_answer_409(fleet):
    """Two hosts take changes in the same moments: each either commits or is refused whole
    (409: the other host committed first), and every host ends with the same state."""
    def create(api: Client, first: int) -> list[object]:
        out: list[object] = []
        for i in range(first, first + 12, 2):  # 12 VIPs in all: max_vips is 16
            try:
                api.create_vip(f"10.100.0.{i % 8 + 1}", 1000 + i)
                out.append("ok")
            except ApiError as e:
                out.append(e.status if e.status == 409 else f"{e.status} {e.messages}")
        return out

    with ThreadPoolExecutor(2) as pool:
        results = [r for f in [pool.submit(create, fleet[0].api, 0),
                               pool.submit(create, fleet[1].api, 1)] for r in f.result()]
    assert {r for r in results if r not in ("ok", 409)} == set(), results
    assert wait_until(lambda: _agreed(fleet), timeout=15), [d.api.fleet() for d in fleet]
    assert len(_ids(fleet[0].api)) == results.count("ok") == len(_ids(fleet[2].api))


def test_rings_stay_identical_on_every_host_through_a_slow_start_ramp(fleet, fleet_lab):
    a = fleet[0].api
    vip = a.create_vip("10.100.0.2", 80)
    a.add_backend(vip["id"], str(fleet_lab.backends[0].v4), weight=10)  # at full weight
    a.update_vip(vip["id"], slow_start_s=4)
    assert wait_until(lambda: _agreed(fleet), timeout=15)
    # Through another host: it ramps 1 -> 10 beside backend0's 10, moving the ring each step.
    fleet[1].api.add_backend(vip["id"], str(fleet_lab.backends[1].v4), weight=10)
    seen = set()
    for _ in range(4):  # one sample per step of the 4 s ramp
        _mid_step()
        digests = _digests(fleet, vip["id"])
        assert len(set(digests)) == 1, digests
        seen.add(digests[0])
        time.sleep(0.5)
    assert len(seen) >= 2, "the ramp never moved the ring"


def test_health_flips_change_every_ring_alike_and_one_hosts_blind_spot_changes_none(
        fleet, fleet_lab):
    a = fleet[0].api
    vip = a.create_vip("10.100.0.3", 80, check={"type": "tcp", "port": CHECK_PORT,
                                               "interval_s": 0.2, "timeout_s": 0.2,
                                               "rise": 1, "fall": 2})
    for backend in fleet_lab.backends[:3]:
        a.add_backend(vip["id"], str(backend.v4))

    def in_ring(d: LabDaemon, address: str) -> bool:
        return next(r["in_ring"] for r in d.api.list_backends(vip["id"])
                    if r["address"] == address)

    be0, be1 = (str(b.v4) for b in fleet_lab.backends[:2])
    assert wait_until(lambda: all(in_ring(d, be0) for d in fleet), timeout=15)
    # backend0 goes down for everyone: every host takes it out, rings equal.
    server = fleet_lab.backends[0].servers[0]
    fleet_lab.stop_server(server)
    try:
        assert wait_until(lambda: not any(in_ring(d, be0) for d in fleet), timeout=15)
        assert wait_until(lambda: _agreed(fleet), timeout=15)
    finally:
        fleet_lab.start_backend_server(fleet_lab.backends[0], CHECK_PORT)
    assert wait_until(lambda: all(in_ring(d, be0) for d in fleet), timeout=15)
    # Only balancer2 cannot reach backend1: the fleet's verdict stays up, no ring changes.
    blind = fleet_lab.balancers[2].netns
    subprocess.run(["ip", "-n", blind, "route", "add", "blackhole", f"{be1}/32"], check=True)
    try:
        time.sleep(2.0)  # many check intervals: balancer2 has long said down
        assert all(in_ring(d, be1) for d in fleet)
        assert wait_until(lambda: _agreed(fleet), timeout=15)
        mine = next(h for h in fleet[0].api.fleet()["hosts"] if h["name"] == "lb2")
        assert mine["health"][f"{vip['id']}/{be1}"] == "down"
    finally:
        subprocess.run(["ip", "-n", blind, "route", "del", "blackhole", f"{be1}/32"],
                       check=False)
