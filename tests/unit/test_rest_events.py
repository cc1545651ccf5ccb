"""Events: each accepted change is one event naming what changed, the revision and who; ring
rebuilds say how many slots they wrote; GET /events reads after a cursor and long-polls; the
ring is bounded."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
from rest_helpers import TOKEN, Rest, check, create_vip, rest_api

from lb.control.events import EventLog


@pytest.fixture
def api(tmp_path) -> Iterator[Rest]:
    with rest_api(tmp_path) as rest:
        yield rest


def _events(api: Rest, since: int = 0, **params) -> dict:
    return check(api.client.get("/events", params={"since": since, **params}), 200)


def test_a_change_is_one_event_with_what_the_revision_and_who(api):
    start = _events(api)["next"]
    vip_id = create_vip(api.client, "10.100.0.1", 80, backends={"10.1.0.1": 1})
    body = _events(api, start)
    changes = [e for e in body["events"] if e["kind"] == "change"]
    assert len(changes) == 2  # the VIP, then its backend
    assert changes[0]["vips_added"] == [vip_id] and changes[1]["vips_changed"] == [vip_id]
    assert [c["who"] for c in changes] == ["testclient", "testclient"]
    # The store's revision the kernel holds after the change (SQLite's stays 0; etcd's grows).
    assert all(isinstance(c["revision"], int) for c in changes)
    rebuilds = [e for e in body["events"] if e["kind"] == "ring_rebuild"]
    assert rebuilds and rebuilds[-1]["ring_slots_written"] > 0 and rebuilds[-1]["cause"] == "change"
    seqs = [e["seq"] for e in body["events"]]
    assert seqs == sorted(seqs) and body["next"] == seqs[-1]
    assert _events(api, body["next"])["events"] == []


def test_a_change_with_the_token_says_so(tmp_path):
    with rest_api(tmp_path, token=TOKEN) as rest:
        check(rest.client.post("/vips", json={"address": "10.100.0.1", "port": 80},
                               headers={"Authorization": f"Bearer {TOKEN}"}), 201)
        change = [e for e in _events(rest)["events"] if e["kind"] == "change"][-1]
        assert change["who"] == "testclient (token)"


def test_a_long_poll_returns_when_an_event_comes(api):
    cursor = _events(api)["next"]
    timer = threading.Timer(0.3, lambda: create_vip(api.client, "10.100.0.2", 80))
    timer.start()
    t0 = time.monotonic()
    body = _events(api, cursor, wait=10)
    timer.join()
    assert 0.2 < time.monotonic() - t0 < 5
    assert body["events"] and body["events"][0]["seq"] == cursor + 1


def test_a_long_poll_without_events_waits_then_returns_none(api):
    cursor = _events(api)["next"]
    t0 = time.monotonic()
    body = _events(api, cursor, wait=0.3)
    assert time.monotonic() - t0 >= 0.3 and body == {"events": [], "next": cursor}


def test_the_event_ring_keeps_the_last_events():
    log = EventLog(capacity=3)
    for i in range(5):
        log.emit("change", n=i)
    events, cursor = log.since(0)
    assert [e["n"] for e in events] == [2, 3, 4] and [e["seq"] for e in events] == [3, 4, 5]
    assert cursor == 5 and log.since(5) == ([], 5)
