"""GET /events and `lb events` on a real daemon: a start and its reconcile, each accepted
change with who made it, a health transition, the ring rebuild it causes."""

from __future__ import annotations

import json

from lb.cli import main
from lb.lab.waits import wait_until

PORT = 9001  # no server listens there: a TCP check on it fails


def _all(api, since: int = 0) -> list[dict]:
    return api.events(since)["events"]


def test_a_restart_is_a_start_and_a_reconcile_event(daemon, lb_api):
    daemon.restart()
    events = _all(daemon.api)
    kinds = [e["kind"] for e in events]
    assert kinds.index("reconcile") < kinds.index("start"), kinds
    start = events[kinds.index("start")]
    assert start["interface"] == daemon.lab.balancer.ifname and start["mode"] == "native"
    reconcile = events[kinds.index("reconcile")]
    assert reconcile["ring_slots_written"] == 0  # a restart writes no ring slot


def test_changes_health_and_rebuilds_are_events(api_lab, lb_api):
    cursor = lb_api.events()["next"]
    vip = lb_api.create_vip(str(api_lab.vips_v4()[0]), PORT, "tcp",
                            check={"type": "tcp", "interval_s": 0.2, "timeout_s": 0.2,
                                   "fall": 1, "rise": 1})
    lb_api.add_backend(vip["id"], str(api_lab.backends[0].v4))

    def downs() -> list[dict]:
        return [e for e in _all(lb_api, cursor) if e["kind"] == "health"
                and e["state"] == "down"]
    wait_until(lambda: bool(downs()), timeout=10)
    events = _all(lb_api, cursor)
    changes = [e for e in events if e["kind"] == "change"]
    assert [c["who"] for c in changes] == ["127.0.0.1", "127.0.0.1"]
    assert changes[0]["vips_added"] == [vip["id"]]
    down = downs()[0]
    assert down["backends"] == [str(api_lab.backends[0].v4)] and down["vips"] == [vip["id"]]
    assert any(e["kind"] == "ring_rebuild" and e["cause"] == "change" for e in events)


def test_lb_events_prints_json_lines(daemon, lb_api, capsys, monkeypatch):
    cursor = lb_api.events()["next"]
    lb_api.create_vip(str(daemon.lab.vips_v4()[0]), PORT, "tcp")
    monkeypatch.setenv("LB_API", daemon.url)
    capsys.readouterr()
    assert main(["events", "--since", str(cursor), "--json"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert lines and lines[0]["kind"] == "change" and lines[0]["seq"] == cursor + 1
    assert main(["events", "--since", str(cursor)]) == 0
    assert " change " in capsys.readouterr().out
