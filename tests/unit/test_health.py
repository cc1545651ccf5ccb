"""Health checks: the rise/fall state machine, each probe type against real local sockets, and
the monitor's independence from slow backends (no root: everything on 127.0.0.1)."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from lb.control.health import Health, Monitor, ProbeKey, State
from lb.control.model import CheckSpec
from lb.control.probes import probe

LOCAL = ipaddress.ip_address("127.0.0.1")


def test_rise_and_fall_are_separate_and_consecutive() -> None:
    spec = CheckSpec(rise=2, fall=3)
    h = Health()
    assert h.record(True, "ok", spec) is None and h.state == State.UNKNOWN
    assert h.record(True, "ok", spec) == State.UP
    assert h.record(False, "x", spec) is None
    assert h.record(False, "x", spec) is None
    assert h.record(True, "ok", spec) is None      # a success resets the failure run
    assert [h.record(False, "x", spec) for _ in range(3)] == [None, None, State.DOWN]
    assert h.transitions == 2
    assert (h.last_ok, h.last_reason) == (False, "x")


def test_unknown_goes_down_after_fall_failures() -> None:
    h = Health()
    spec = CheckSpec(rise=5, fall=2)
    assert [h.record(False, "refused", spec) for _ in range(2)] == [None, State.DOWN]


def test_flapping_never_changes_state_when_rise_and_fall_exceed_one() -> None:
    h = Health()
    spec = CheckSpec(rise=2, fall=2)
    changes = [h.record(i % 2 == 0, "flap", spec) for i in range(100)]
    assert changes == [None] * 100 and h.state == State.UNKNOWN


def _listener() -> socket.socket:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(64)
    return s


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Handler(BaseHTTPRequestHandler):
    status = 200
    body = b"all good"

    def do_GET(self) -> None:  # noqa: N802
        self.send_response(self.server.status)  # type: ignore[attr-defined]
        self.end_headers()
        self.wfile.write(self.server.body)  # type: ignore[attr-defined]

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def http_server() -> Iterator[ThreadingHTTPServer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.status, server.body = 200, b"all good"  # type: ignore[attr-defined]
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    yield server
    server.shutdown()
    server.server_close()


def _probe(port: int, **spec: object) -> tuple[bool, str]:
    return asyncio.run(probe(LOCAL, port, CheckSpec(**spec)))


def test_tcp_probe_connects_or_reports_refusal() -> None:
    with _listener() as s:
        assert _probe(s.getsockname()[1]) == (True, "connected")
    ok, reason = _probe(_closed_port())
    assert not ok and "refused" in reason.lower()


def test_http_probe_checks_status_and_body(http_server: ThreadingHTTPServer) -> None:
    port = http_server.server_address[1]
    assert _probe(port, type="http") == (True, "HTTP 200")
    assert _probe(port, type="http", http_body="good")[0]
    ok, reason = _probe(port, type="http", http_body="missing")
    assert not ok and "missing" in reason
    http_server.status = 500  # type: ignore[attr-defined]
    ok, reason = _probe(port, type="http")
    assert not ok and reason == "HTTP 500, expected 200"


def test_probe_of_a_silent_server_times_out() -> None:
    with _listener() as s:  # accepts (backlog) but never answers
        t = time.monotonic()
        ok, reason = _probe(s.getsockname()[1], type="http", timeout_s=0.3)
        assert not ok and reason.startswith("timeout")
        assert time.monotonic() - t < 2


def test_udp_probe_needs_a_reply() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as echo:
        echo.bind(("127.0.0.1", 0))
        port = echo.getsockname()[1]

        def serve() -> None:
            data, addr = echo.recvfrom(100)
            echo.sendto(b"pong:" + data, addr)

        t = threading.Thread(target=serve, daemon=True)
        t.start()
        assert _probe(port, type="udp", udp_payload="ping", udp_expect="pong:ping")[0]
        t.join(2)
    ok, _ = _probe(_closed_port(), type="udp", timeout_s=0.3)
    assert not ok


def _wait(predicate, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


def test_monitor_reports_up_down_and_a_hanging_backend_delays_no_other() -> None:
    events: list[tuple[list, State]] = []
    monitor = Monitor(lambda targets, state, health: events.append((targets, state)))
    spec = CheckSpec(type="http", interval_s=0.1, timeout_s=2.0, rise=1, fall=1)
    silent = _listener()  # accepts, never answers: each check takes the full 2 s timeout
    good = _listener()
    good_port = good.getsockname()[1]
    try:
        monitor.sync({
            (1, LOCAL): ProbeKey(LOCAL, silent.getsockname()[1], spec),
            (2, LOCAL): ProbeKey(LOCAL, good_port, CheckSpec(interval_s=0.1, rise=1, fall=1)),
            (3, LOCAL): ProbeKey(LOCAL, good_port, CheckSpec(interval_s=0.1, rise=1, fall=1)),
        })
        # VIPs 2 and 3 check the same backend the same way: one probe reports both.
        assert _wait(lambda: ([(2, LOCAL), (3, LOCAL)], State.UP) in events, 1.5), events
        good.close()
        assert _wait(lambda: ([(2, LOCAL), (3, LOCAL)], State.DOWN) in events, 1.5), events
        # Detected while every check of the silent backend was still waiting on its timeout.
        assert monitor.health((1, LOCAL)).last_ok is None
        assert monitor.health((2, LOCAL)).state == State.DOWN
    finally:
        monitor.close()
        silent.close()
        good.close()
