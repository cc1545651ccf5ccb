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

from lb.client import Client
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
    """Per test: a raw HTTP client to the daemon (these tests check the HTTP contract: exact
    statuses and bodies), whose desired state is emptied before and after.

    A test that restarts or kills the daemon leaves it running again (LabDaemon.restart).
    """
    if daemon.process is None or daemon.process.poll() is not None:
        daemon.start()
    daemon.api.put_config({"vips": []})
    yield daemon.client
    if daemon.process is None or daemon.process.poll() is not None:
        daemon.start()
    daemon.api.put_config({"vips": []})


@pytest.fixture
def lb_api(api: httpx.Client, daemon: LabDaemon) -> Client:
    """Per test: the daemon's lb.client Client, for set-up whose statuses are not under test
    (after `api`, so the desired state starts empty)."""
    return daemon.api
