"""REST: answers come from one consistent snapshot: a VIP deleted or replaced by a concurrent
change never turns `GET /vips` or a committed `POST /vips` into a 404."""

from __future__ import annotations

import sys
import threading
import warnings
from collections.abc import Iterator

import pytest
from rest_helpers import Rest, rest_api

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", "Using `httpx` with `starlette.testclient`")
    from fastapi.testclient import TestClient

ROUNDS = 150


@pytest.fixture
def rest(tmp_path) -> Iterator[Rest]:
    with rest_api(tmp_path) as r:
        yield r


@pytest.fixture
def often() -> Iterator[None]:
    """Switch threads as often as the interpreter can: races show in a few rounds."""
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        yield
    finally:
        sys.setswitchinterval(interval)


def _hammer(rest: Rest, *loops) -> list[str]:
    """Run each loop(client) in its own thread until all end; returns what they saw wrong."""
    wrong: list[str] = []

    def run(loop) -> None:
        client = TestClient(rest.app)  # one client (and event-loop portal) per thread
        try:
            loop(client, wrong)
        except Exception as e:  # noqa: BLE001 - a thread's failure is reported, not lost
            wrong.append(repr(e))

    threads = [threading.Thread(target=run, args=(loop,)) for loop in loops]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    return wrong


def test_listing_while_vips_are_deleted_never_answers_404(rest: Rest, often) -> None:
    def churn(client, wrong) -> None:
        for _ in range(ROUNDS):
            for port in (80, 81, 82):
                r = client.post("/vips", json={"address": "10.100.0.1", "port": port})
                if r.status_code != 201:
                    wrong.append(f"POST {r.status_code} {r.text}")
                    return
            for v in client.get("/vips").json():
                client.delete(f"/vips/{v['id']}")

    def lister(client, wrong) -> None:
        for _ in range(ROUNDS * 4):
            r = client.get("/vips")
            if r.status_code != 200:
                wrong.append(f"GET /vips {r.status_code} {r.text}")

    assert _hammer(rest, churn, lister, lister) == []


def test_a_committed_post_answers_201_though_a_put_config_removed_it(rest: Rest,
                                                                      often) -> None:
    def replacer(client, wrong) -> None:
        for _ in range(ROUNDS * 2):
            r = client.put("/config", json={"vips": []})
            if r.status_code != 200:
                wrong.append(f"PUT /config {r.status_code} {r.text}")

    def creator(client, wrong) -> None:
        for _ in range(ROUNDS):
            r = client.post("/vips", json={"address": "10.100.0.2", "port": 443})
            if r.status_code not in (201, 409):
                wrong.append(f"POST /vips {r.status_code} {r.text}")

    assert _hammer(rest, replacer, creator) == []
