"""Settled ring slots end to end: the daemon (run with --settle-interval-s and
--tcp-idle-timeout-s short, see conftest) settles a new VIP's ring, a live keep-alive TCP
connection's packets then skip the connection table, and when its backend is taken out by
REST the connection keeps that backend, through many settles and past the idle timeout,
because it keeps sending."""

from __future__ import annotations

import re
import time

from api_helpers import RING_SIZE, SETTLE_INTERVAL_S, TCP_IDLE_TIMEOUT_S, check, create_vip

from lb.lab.daemon import LabDaemon
from lb.lab.veth import VethLab
from lb.lab.waits import wait_until


def settled_total(api) -> float:
    """lb_ring_slots_settled_total from /metrics."""
    text = api.get("/metrics").text
    return float(re.search(r"^lb_ring_slots_settled_total (\S+)$", text, re.M).group(1))


def ct_counters(api) -> dict[str, int]:
    return check(api.get("/stats"), 200)["conn_table"]


def test_a_live_connection_keeps_its_backend_on_a_settled_ring(api, lb_api, daemon: LabDaemon,
                                                               api_lab: VethLab) -> None:
    lab = api_lab
    vip = lab.vips_v4()[0]  # the lab's HTTP servers answer on it, port 80
    by_name = {b.name: b for b in lab.backends}
    before = settled_total(api)
    vip_id = create_vip(lb_api, vip, 80, "tcp", backends={b.v4: 1 for b in lab.backends})
    # The grace after a change (1 s) and then the next settle settle the whole new ring (the
    # `api` fixture emptied the configuration: no other VIP has slots to settle).
    assert wait_until(lambda: settled_total(api) >= before + RING_SIZE, timeout=10), \
        "the new VIP's ring was not settled"

    conn = lab.http_connection(vip, 80)
    try:
        def get() -> str:
            conn.request("GET", "/")
            return conn.getresponse().read().decode().strip()

        serving = get()
        skipped = ct_counters(api)["settled"]
        answers = [get() for _ in range(20)]
        assert set(answers) == {serving}
        assert ct_counters(api)["settled"] > skipped, "no packet skipped the table"

        # Out goes its backend: the connection's slot is unsettled and its packets read the
        # table, which holds that backend; being live, the flow keeps the slot held.
        check(api.delete(f"/vips/{vip_id}/backends/{by_name[serving].v4}"), 204)
        settles = settled_total(api)
        deadline = time.monotonic() + TCP_IDLE_TIMEOUT_S + 4 * SETTLE_INTERVAL_S
        while time.monotonic() < deadline:
            assert get() == serving, "the live connection changed backend"
            time.sleep(SETTLE_INTERVAL_S / 2)
        assert settled_total(api) > settles, "no settle ran while the connection was live"
    finally:
        conn.close()
    # New connections avoid the removed backend.
    fresh = {lab.http_get(vip, 80).strip() for _ in range(10)}
    assert serving not in fresh and fresh <= set(by_name)
