"""Detection: a backend whose server stops leaves the ring within fall x interval + timeout and
comes back within rise x interval; HTTP checks judge the status; a flapping backend changes
the ring no more often than rise and fall allow; a hanging backend delays nobody else.

Servers are real (lb.lab.servers.BackendHTTPServer in the backend namespaces), checks are the
daemon's own, and every verdict is checked against traffic from the lab's client through the VIP.
"""

from __future__ import annotations

import time

from health_helpers import (
    DOWN_DEADLINE,
    FALL,
    INTERVAL,
    MARGIN,
    RISE,
    TIMEOUT,
    UP_DEADLINE,
    Servers,
    answers,
    backends,
    fast_check,
    log_event,
    put_config,
    ring_slots,
    vip_doc,
    wait_for,
    wait_states,
)

from lb.client import Client
from lb.lab.daemon import LabDaemon
from lb.lab.veth import VethLab


def test_stopped_server_leaves_the_ring_in_time_and_comes_back(
        api: Client, lab: VethLab, servers: Servers, daemon: LabDaemon) -> None:
    port = 8101
    vip = lab.vips_v4()[0]
    running = servers.start_all(port)
    (vip_id,) = put_config(api, vip_doc(vip, port, lab.backends, check=fast_check()))
    addrs = [str(b.v4) for b in lab.backends]
    assert wait_states(api, vip_id, dict.fromkeys(addrs, "up"), UP_DEADLINE) is not None
    assert set(answers(lab, vip, port)) == {"backend0", "backend1", "backend2"}

    victim = addrs[1]
    servers.stop(running[1])
    down_s = wait_for(lambda: not backends(api, vip_id)[victim]["in_ring"], DOWN_DEADLINE)
    print(f"\ndetection: out of the ring {down_s:.3f} s after its server stopped "
          f"(deadline {DOWN_DEADLINE:.2f} s = fall {FALL} x interval {INTERVAL} + timeout "
          f"{TIMEOUT} + margin {MARGIN})" if down_s is not None else "\ndetection: never")
    assert down_s is not None and down_s <= DOWN_DEADLINE, down_s
    seen = backends(api, vip_id)[victim]
    assert seen["state"] == "down" and seen["effective_weight"] == 0
    assert seen["health"]["last_check"]["ok"] is False
    assert "refused" in seen["health"]["last_check"]["reason"].lower(), seen["health"]
    slots = ring_slots(api, vip_id)
    assert slots[victim] == 0 and all(slots[a] > 0 for a in addrs if a != victim), slots
    # New flows go to the remaining backends, and every one is answered.
    assert set(answers(lab, vip, port)) == {"backend0", "backend2"}
    assert log_event(daemon.log_path.read_text(), event="down", backend=victim)

    servers.start(lab.backends[1], port)
    up_s = wait_for(lambda: backends(api, vip_id)[victim]["in_ring"], UP_DEADLINE)
    print(f"recovery: back in the ring {up_s:.3f} s after its server returned (deadline "
          f"{UP_DEADLINE:.2f} s = rise {RISE} x interval {INTERVAL} + margin {MARGIN})"
          if up_s is not None else "recovery: never")
    assert up_s is not None and up_s <= UP_DEADLINE, up_s
    assert backends(api, vip_id)[victim]["state"] == "up"
    assert ring_slots(api, vip_id)[victim] > 0
    assert "backend1" in answers(lab, vip, port)
    assert log_event(daemon.log_path.read_text(), event="up", backend=victim)


def test_http_check_marks_a_backend_answering_500_down(
        api: Client, lab: VethLab, servers: Servers) -> None:
    port = 8102
    vip = lab.vips_v4()[1]
    running = servers.start_all(port)
    check_doc = fast_check(type="http", http_path="/health", http_status=200)
    (vip_id,) = put_config(api, vip_doc(vip, port, lab.backends, check=check_doc))
    addrs = [str(b.v4) for b in lab.backends]
    assert wait_states(api, vip_id, dict.fromkeys(addrs, "up"), UP_DEADLINE) is not None

    running[2].set_status(500)  # still accepts connections: a TCP check would say up
    down_s = wait_for(lambda: backends(api, vip_id)[addrs[2]]["state"] == "down",
                      DOWN_DEADLINE)
    print(f"\nHTTP 500: down after {down_s} s (deadline {DOWN_DEADLINE:.2f} s)")
    assert down_s is not None and down_s <= DOWN_DEADLINE, down_s
    seen = backends(api, vip_id)[addrs[2]]
    assert not seen["in_ring"]
    assert seen["health"]["last_check"]["reason"] == "HTTP 500, expected 200"
    assert seen["health"]["in_state_s"] >= 0
    assert (seen["check"]["type"], seen["check"]["http_path"], seen["check"]["port"]) == \
        ("http", "/health", port)
    # Every new flow reaches a backend that answers 200 (a 500 would count as LabError).
    assert set(answers(lab, vip, port)) == {"backend0", "backend1"}

    running[2].set_status(200)
    assert wait_states(api, vip_id, {addrs[2]: "up"}, UP_DEADLINE) is not None


def test_flapping_backend_changes_the_ring_no_more_than_rise_and_fall_allow(
        api: Client, lab: VethLab, servers: Servers) -> None:
    port = 8103
    vip = lab.vips_v4()[2]
    interval = 0.1
    running = servers.start_all(port)
    check_doc = fast_check(type="http", interval_s=interval, rise=2, fall=2)
    (vip_id,) = put_config(api, vip_doc(vip, port, lab.backends, check=check_doc))
    flapper, addr = running[0], str(lab.backends[0].v4)
    assert wait_states(api, vip_id, {addr: "up"}, UP_DEADLINE) is not None
    slots_before = ring_slots(api, vip_id)
    transitions_before = backends(api, vip_id)[addr]["health"]["transitions"]

    # Success and failure alternate, check by check: never 2 failures (or 2 successes) in a
    # row, so the state and the ring never change.
    flapper.set_status(500, 200)
    requests_before = flapper.requests
    seen_ok, seen_in_ring = set(), set()
    deadline = time.monotonic() + 20 * interval
    while time.monotonic() < deadline:
        b = backends(api, vip_id)[addr]
        seen_ok.add(b["health"]["last_check"]["ok"])
        seen_in_ring.add(b["in_ring"])
        time.sleep(interval / 4)
    checks = flapper.requests - requests_before
    after = backends(api, vip_id)[addr]
    assert checks >= 10, checks
    assert seen_ok == {True, False}, "the checks did not alternate"
    assert seen_in_ring == {True}
    assert after["health"]["transitions"] == transitions_before
    assert ring_slots(api, vip_id) == slots_before

    # Two failures, two successes, over again: each run is exactly enough to change state,
    # so the state changes at most once per 2 checks, never more.
    flapper.set_status(500, 500, 200, 200)
    requests_before = flapper.requests
    time.sleep(24 * interval)
    checks = flapper.requests - requests_before
    changes = backends(api, vip_id)[addr]["health"]["transitions"] - transitions_before
    print(f"\nflapping: {checks} checks in pairs, {changes} state changes")
    assert 2 <= changes <= checks // 2 + 1, (changes, checks)


def test_a_backend_that_never_answers_does_not_delay_another(
        api: Client, lab: VethLab, servers: Servers) -> None:
    port, hung_port = 8104, 8105
    hung_timeout = 3.0  # each check of the silent backend hangs this long
    vip, hung_vip = lab.vips_v4()[3], lab.vips_v4()[4]
    running = servers.start_all(port)
    servers.start_silent(lab.backends[0], hung_port)
    fast = fast_check(type="http")
    slow = fast_check(type="http", timeout_s=hung_timeout)
    vip_id, hung_id = put_config(
        api, vip_doc(vip, port, lab.backends[1:], check=fast),
        vip_doc(hung_vip, hung_port, lab.backends[:1], check=slow))
    addrs = [str(b.v4) for b in lab.backends]
    assert wait_states(api, vip_id, {addrs[1]: "up", addrs[2]: "up"},
                       UP_DEADLINE) is not None

    servers.stop(running[1])
    down_s = wait_for(lambda: not backends(api, vip_id)[addrs[1]]["in_ring"], DOWN_DEADLINE)
    print(f"\nwith a hung check (timeout {hung_timeout} s) running: detection in {down_s} s "
          f"(deadline {DOWN_DEADLINE:.2f} s)")
    assert down_s is not None and down_s <= DOWN_DEADLINE, down_s
    # The silent backend's checks were hanging all along: they end by timing out.
    hung = backends(api, hung_id)[addrs[0]]
    assert hung["health"]["last_check"] is None or not hung["health"]["last_check"]["ok"]
    assert wait_for(lambda: (backends(api, hung_id)[addrs[0]]["health"]["last_check"] or {})
                    .get("reason") == f"timeout after {hung_timeout} s",
                    hung_timeout + MARGIN) is not None
    assert api.get_vip(hung_id)["check"]["timeout_s"] == hung_timeout
