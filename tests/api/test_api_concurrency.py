"""Concurrent requests are serialised: every acknowledged change is in the state, none is lost
or half-applied, and the rings in the kernel are exactly the rings of that state."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import httpx
from api_helpers import check, create_vip, predict, route_flows

from lb.lab.daemon import LabDaemon
from lb.lab.veth import VethLab

THREADS = 16


def test_concurrent_creates_of_one_vip_make_exactly_one(api, daemon: LabDaemon) -> None:
    def create(_: int) -> int:
        with httpx.Client(base_url=daemon.url, timeout=30) as client:
            return client.post("/vips", json={"address": "10.100.0.11", "port": 80}).status_code

    with ThreadPoolExecutor(THREADS) as pool:
        statuses = sorted(pool.map(create, range(THREADS)))
    assert statuses == [201] + [409] * (THREADS - 1)
    assert len(check(api.get("/vips"), 200)) == 1


def test_concurrent_backend_changes_all_land_and_the_kernel_matches(
        api, lb_api, daemon: LabDaemon, api_lab: VethLab) -> None:
    """16 threads add 48 backends over 4 VIPs (two threads per VIP at least) and reweight the
    ones already there, all at once. The state is exactly what was acknowledged; traffic
    follows it; a restart finds every ring already right (zero slots written)."""
    lab = api_lab
    vip, port = lab.vips_v4()[1], 7600
    seed = {b.v4: 1 for b in lab.backends}
    vip_ids = [create_vip(lb_api, vip, port + i, "udp", ["no_conn_table"], seed) for i in range(4)]
    adds = [(vip_ids[i % 4], f"10.10.{i % 4}.{i // 4 + 1}", 1 + i % 5) for i in range(48)]
    reweights = [(vip_id, str(b.v4), 2 + n) for n, b in enumerate(lab.backends)
                 for vip_id in vip_ids]
    jobs = [("add", *a) for a in adds] + [("weight", *r) for r in reweights]
    # Interleave: adds and reweights of every VIP mixed.
    jobs = jobs[::2] + jobs[1::2]

    def run(job: tuple[str, int, str, int]) -> tuple[tuple[str, int, str, int], int]:
        kind, vip_id, address, weight = job
        with httpx.Client(base_url=daemon.url, timeout=60) as client:
            if kind == "add":
                r = client.post(f"/vips/{vip_id}/backends",
                                json={"address": address, "weight": weight})
            else:
                r = client.patch(f"/vips/{vip_id}/backends/{address}", json={"weight": weight})
        return job, r.status_code

    with ThreadPoolExecutor(THREADS) as pool:
        results = list(pool.map(run, jobs))
    failed = [(job, status) for job, status in results if status not in (200, 201)]
    assert not failed, failed

    expected = {vip_id: {str(b.v4): 1 for b in lab.backends} for vip_id in vip_ids}
    for _kind, vip_id, address, weight in jobs:
        expected[vip_id][address] = weight
    for vip_id in vip_ids:
        got = check(api.get(f"/vips/{vip_id}/backends"), 200)
        assert {b["address"]: b["weight"] for b in got} == expected[vip_id]
        assert len(got) == len(expected[vip_id]), "a backend is listed twice"

    # Flows to a lab backend (only those exist) reach the backend the state names.
    sports = range(25000, 25300)
    routed = route_flows(lab, vip, port, [s for s in sports if predict(
        expected[vip_ids[0]], lab.client.v4, vip, s, port, "udp").startswith("10.1.")])
    assert routed == {s: predict(expected[vip_ids[0]], lab.client.v4, vip, s, port, "udp")
                      for s in routed}

    ready = daemon.restart()
    assert ready["startup"] == {"adopted_vips": 4, "vips_added": 0, "vips_removed": 0,
                                "vips_changed": 0, "ring_slots_written": 0}
    for vip_id in vip_ids:
        got = check(api.get(f"/vips/{vip_id}/backends"), 200)
        assert {b["address"]: b["weight"] for b in got} == expected[vip_id]
