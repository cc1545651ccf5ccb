"""Fixtures of the API tests: a real `lb run` daemon (uvicorn on 127.0.0.1) on a veth lab.

Needs root. Costs, once per session: the lab (about 2 s) and the daemon's start (compile and
load, 3-5 s). Every test starts from an empty desired state (`api` fixture: PUT /config with no
VIPs) and clean counters are not needed: tests compare counters before and after.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from api_helpers import SETTLE_INTERVAL_S, TCP_IDLE_TIMEOUT_S

from lb.lab.daemon import LabDaemon, checked_daemon, fresh_lab
from lb.lab.veth import VethLab

# Namespace prefix of every lab these tests build (leftovers of dead runs are removed first).
LAB_PREFIX = "lba"


@pytest.fixture(scope="session")
def api_lab() -> Iterator[VethLab]:
    """Session: client, router, balancer and 3 backends (HTTP servers on the first VIPs).

    Cleanup: namespaces deleted, then checked gone.
    """
    with fresh_lab(LAB_PREFIX, n_backends=3, rx_queues=2) as the_lab:
        the_lab.start_http_servers([*the_lab.vips_v4()[:2], *the_lab.vips_v6()[:1]])
        yield the_lab


@pytest.fixture(scope="session")
def daemon(api_lab: VethLab) -> Iterator[LabDaemon]:
    """Session: `lb run` on the lab's balancer veth, API on a free 127.0.0.1 port, settling
    ring slots every SETTLE_INTERVAL_S.

    Cleanup: SIGTERM, pinned maps and state directory removed; checked gone.
    """
    yield from checked_daemon(api_lab, ["--settle-interval-s", str(SETTLE_INTERVAL_S),
                                        "--tcp-idle-timeout-s", str(TCP_IDLE_TIMEOUT_S)])


@pytest.fixture
def api(daemon: LabDaemon) -> Iterator[httpx.Client]:
    """Per test: an HTTP client to the daemon, whose desired state is emptied before and after.

    A test that restarts or kills the daemon leaves it running again (LabDaemon.restart).
    """
    if daemon.process is None or daemon.process.poll() is not None:
        daemon.start()
    r = daemon.client.put("/config", json={"vips": []})
    assert r.status_code == 200, r.text
    yield daemon.client
    if daemon.process is None or daemon.process.poll() is not None:
        daemon.start()
    daemon.client.put("/config", json={"vips": []})
