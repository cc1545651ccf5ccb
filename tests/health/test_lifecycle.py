"""Health as observed state (rebuilt on restart, never persisted), probes shared by VIPs, slow
start, and the metrics that report all of it."""

from __future__ import annotations

import time

from health_helpers import (
    DOWN_DEADLINE,
    MARGIN,
    UP_DEADLINE,
    Servers,
    answers,
    backends,
    fast_check,
    metrics,
    put_config,
    ring_slots,
    sample,
    vip_doc,
    wait_for,
    wait_states,
)

from lb.client import Client
from lb.lab.daemon import LabDaemon
from lb.lab.veth import VethLab
from lb.lab.waits import settle

# The slow-start ramp is re-applied by the daemon every 0.5 s (Controller._tick).
RAMP_TICK = 0.5


def test_health_is_not_persisted_and_is_rebuilt_from_unknown_after_restart(
        api: Client, lab: VethLab, servers: Servers, daemon: LabDaemon) -> None:
    port = 8111
    vip = lab.vips_v4()[0]
    # Slow checks: after a start, no backend can have a verdict for 2 s (rise 3 x 1 s), time
    # enough to see every backend unknown.
    slow = fast_check(interval_s=1.0, rise=3, fall=2)
    servers.start(lab.backends[1], port)
    servers.start(lab.backends[2], port)  # backend0 has no server: down
    (vip_id,) = put_config(api, vip_doc(vip, port, lab.backends, check=slow))
    dead, alive = str(lab.backends[0].v4), [str(b.v4) for b in lab.backends[1:]]
    wanted = {dead: "down", **dict.fromkeys(alive, "up")}
    assert wait_states(api, vip_id, wanted, 3 * 1.0 + 0.2 + MARGIN) is not None
    assert not backends(api, vip_id)[dead]["in_ring"]
    config = api.get_config()

    restarted_at = time.time()
    daemon.restart()
    after = backends(api, vip_id)
    for address in alive:
        # Until its first verdict a backend is unknown, and counts as up (the documented rule).
        assert after[address]["state"] == "unknown", after[address]
        assert after[address]["in_ring"] and after[address]["health"]["last_check"] is None
    assert after[dead]["state"] in ("unknown", "down"), after[dead]
    assert after[dead]["in_ring"] == (after[dead]["state"] == "unknown")
    assert api.get_config() == config  # desired state, checks included, persisted

    assert wait_states(api, vip_id, wanted, 3 * 1.0 + 0.2 + MARGIN) is not None
    for b in backends(api, vip_id).values():
        # Rebuilt: one transition (from unknown) since the restart, none remembered.
        assert b["health"]["transitions"] == 1 and b["health"]["since"] >= restarted_at, b
    assert set(answers(lab, vip, port, n=15)) == {"backend1", "backend2"}


def test_a_vip_sharing_a_probe_takes_its_verdict_at_once(
        api: Client, lab: VethLab, servers: Servers) -> None:
    port, other_port = 8112, 8113
    shared = fast_check(port=port)  # both VIPs probe backend0:8112 the same way: one probe
    servers.start(lab.backends[1], port)
    dead = str(lab.backends[0].v4)
    (first,) = put_config(api, vip_doc(lab.vips_v4()[1], port, lab.backends[:2], check=shared))
    assert wait_states(api, first, {dead: "down"}, DOWN_DEADLINE) is not None

    second = api.create_vip(str(lab.vips_v4()[2]), other_port, check=shared)["id"]
    api.add_backend(second, str(lab.backends[1].v4))
    api.add_backend(second, dead)  # the last change
    seen = backends(api, second)
    assert seen[dead]["state"] == "down" and not seen[dead]["in_ring"], seen[dead]
    assert ring_slots(api, second)[dead] == 0


def test_slow_start_ramps_the_weight_of_a_backend_that_comes_back(
        api: Client, lab: VethLab, servers: Servers) -> None:
    port, weight, slow_start = 8114, 10, 2.0
    vip = lab.vips_v4()[3]
    running = servers.start_all(port)
    (vip_id,) = put_config(api, vip_doc(vip, port, lab.backends, weight=weight,
                                        check=fast_check(), slow_start_s=slow_start))
    addrs = [str(b.v4) for b in lab.backends]
    full = slow_start + RAMP_TICK + UP_DEADLINE
    # New backends ramp too: wait until every one is at full weight.
    assert wait_for(lambda: all(b["effective_weight"] == weight
                                for b in backends(api, vip_id).values()), full) is not None

    servers.stop(running[0])
    assert wait_states(api, vip_id, {addrs[0]: "down"}, DOWN_DEADLINE) is not None
    servers.start(lab.backends[0], port)
    assert wait_for(lambda: backends(api, vip_id)[addrs[0]]["in_ring"], UP_DEADLINE) is not None
    came_back = time.monotonic()
    ramp: list[tuple[float, int, int]] = []  # (seconds since back, effective weight, slots)
    while time.monotonic() - came_back < slow_start + RAMP_TICK + MARGIN:
        w = backends(api, vip_id)[addrs[0]]["effective_weight"]
        ramp.append((round(time.monotonic() - came_back, 2), w,
                     ring_slots(api, vip_id)[addrs[0]]))
        if w == weight:
            break
        time.sleep(0.05)
    print(f"\nslow start ({slow_start} s, weight {weight}): (s, weight, slots) {ramp}")
    weights = [w for _, w, _ in ramp]
    assert weights[0] < weight / 2, ramp          # comes back light
    assert weights == sorted(weights), ramp       # never goes back down
    assert weights[-1] == weight, ramp            # reaches its weight within the ramp (+ tick)
    assert len({w for w in weights if w < weight}) >= 2, ramp  # in steps, not at once
    slots = [s for _, _, s in ramp]
    assert slots == sorted(slots) and slots[0] < slots[-1], ramp


def test_metrics_report_traffic_health_and_changes(
        api: Client, lab: VethLab, servers: Servers) -> None:
    port = 8115
    vip = lab.vips_v4()[4]
    running = servers.start_all(port)
    before = metrics(api)
    (vip_id,) = put_config(api, vip_doc(vip, port, lab.backends, check=fast_check()))
    addrs = [str(b.v4) for b in lab.backends]
    assert wait_states(api, vip_id, dict.fromkeys(addrs, "up"), UP_DEADLINE) is not None
    assert sum(answers(lab, vip, port, n=12).values()) == 12
    servers.stop(running[0])
    assert wait_states(api, vip_id, {addrs[0]: "down"}, DOWN_DEADLINE) is not None
    after = settle(lambda: sample(metrics(api), "lb_vip_packets"))  # traffic has landed
    assert after > 0
    after = metrics(api)

    for family in ("lb_packets", "lb_drop_reasons", "lb_conn_table", "lb_vip_packets",
                   "lb_backend_packets", "lb_backends", "lb_health_transitions",
                   "lb_ring_rebuilds", "lb_ring_slots_written", "lb_api_requests"):
        assert family in after, f"{family} missing from /metrics"
    name = f"{vip}:{port}/tcp"

    def grew(family: str, **labels: str) -> float:
        return sample(after, family, **labels) - sample(before, family, **labels)

    assert sample(after, "lb_vip_packets", vip=name) >= 12 * 3  # >= 3 packets per GET
    assert grew("lb_packets", verdict="tx") >= 12 * 3
    assert grew("lb_conn_table", result="miss") >= 12 and grew("lb_conn_table", result="hit") > 0
    assert all(sample(after, "lb_backend_packets", backend=a) > 0 for a in addrs[1:])
    assert "drop_no_backend" not in after and any(
        labels.get("reason") == "no_backend" for _, labels, _ in after["lb_drop_reasons"])
    assert grew("lb_health_transitions", state="up") >= 3
    assert grew("lb_health_transitions", state="down") >= 1
    assert sample(after, "lb_backends", state="down") == 1
    assert sample(after, "lb_backends", state="up") == 2
    assert grew("lb_ring_rebuilds") >= 2            # created, then backend0 left
    assert grew("lb_ring_slots_written") >= 65537   # the first ring, at least
    assert grew("lb_api_requests", method="PUT", route="/config", status="200") >= 1
    assert grew("lb_api_requests", method="GET", route="/vips/{vip_id}/backends",
                status="200") >= 2
