"""REST limits: one client cannot stall the API. A document that cannot fit is refused before
a row is written or a ring built; a body over api_max_body_bytes answers 413 unread; a
connection that never finishes its request head is closed after api_header_timeout_s, and
beyond api_max_connections the oldest such connection makes room."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest
import uvicorn
from fastapi import FastAPI
from rest_helpers import MAX_BACKENDS, MAX_VIPS, Rest, assert_problem, rest_api

from lb.daemon import _guarded


@pytest.fixture
def rest(tmp_path) -> Iterator[Rest]:
    with rest_api(tmp_path) as r:
        yield r


@pytest.mark.parametrize("document", [
    {"vips": [{"address": "10.100.1.1", "port": 1000 + i} for i in range(MAX_VIPS * 50)]},
    {"vips": [{"address": "10.100.1.1", "port": 80,
               "backends": [{"address": f"10.2.{i // 250}.{i % 250 + 1}"}
                            for i in range(MAX_BACKENDS * 50)]}]},
], ids=["vips", "backends"])
def test_a_document_that_cannot_fit_is_refused_before_any_row_is_written(
        rest: Rest, document: dict, monkeypatch) -> None:
    before = rest.state()

    def no_rows():
        raise AssertionError("a transaction was opened for a document that cannot fit")

    monkeypatch.setattr(rest.controller.store, "transaction", no_rows)
    monkeypatch.setattr(rest.controller.balancer, "reconcile",
                        lambda *a, **k: pytest.fail("rings were built"))
    response = rest.client.put("/config", json=document)
    assert response.status_code == 507, response.text
    assert "max_" in assert_problem(response)["detail"]
    monkeypatch.undo()
    assert rest.state() == before


def test_a_body_over_the_limit_answers_413_and_changes_nothing(tmp_path) -> None:
    with rest_api(tmp_path, max_body_bytes=64 * 1024) as rest:
        before = rest.state()
        document = {"vips": [{"address": "10.100.1.1", "port": 1000 + i}
                             for i in range(3000)]}
        response = rest.client.put("/config", json=document)
        assert response.status_code == 413, response.text
        assert_problem(response)
        assert rest.state() == before


def test_a_connection_that_never_finishes_its_request_head_is_closed() -> None:
    app = FastAPI()

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, http=_guarded(0.5, 4), log_level="error"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        while not server.started:
            time.sleep(0.01)
        slow = socket.create_connection(("127.0.0.1", port))
        slow.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # and never the blank line
        slow.settimeout(5)
        started = time.monotonic()
        assert slow.recv(100) == b""  # closed by the server
        assert 0.3 < time.monotonic() - started < 3
        # A whole request, kept alive past the head timeout, is served.
        fast = socket.create_connection(("127.0.0.1", port))
        fast.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        fast.settimeout(5)
        assert fast.recv(1000).startswith(b"HTTP/1.1 200")
        time.sleep(0.8)
        fast.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert fast.recv(1000).startswith(b"HTTP/1.1 200")
        # Beyond 4 connections, the oldest still sending its head makes room.
        waiting = [socket.create_connection(("127.0.0.1", port)) for _ in range(4)]
        for w in waiting:
            w.sendall(b"GET /healthz HTTP/1.1\r\n")
            w.settimeout(5)
        time.sleep(0.1)
        assert waiting[0].recv(100) == b""  # four + fast: the oldest waiting one went
        fast.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert fast.recv(1000).startswith(b"HTTP/1.1 200")
        for s in (slow, fast, *waiting):
            s.close()
    finally:
        server.should_exit = True
        thread.join(timeout=10)
