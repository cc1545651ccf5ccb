"""Fixtures of the health-check tests: a real `lb run` daemon on a veth lab whose backends run
real servers, started and stopped per test.

Needs root. Costs, once per session: the lab (about 2 s) and the daemon's start (compile and
load, 3-5 s). Every test starts from an empty desired state (`api`) and with no backend server
running (`servers` starts them and stops every one it started, also when the test fails).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from health_helpers import Servers

from lb.client import Client
from lb.lab.daemon import LabDaemon, checked_daemon, fresh_lab
from lb.lab.veth import VethLab

# Namespace prefix of every lab these tests build (leftovers of dead runs are removed first).
LAB_PREFIX = "lbh"


@pytest.fixture(scope="session")
def lab() -> Iterator[VethLab]:
    """Session: client, router, balancer and 3 backends (no server: tests start their own).

    Cleanup: namespaces deleted, then checked gone.
    """
    with fresh_lab(LAB_PREFIX, n_backends=3, rx_queues=2) as the_lab:
        yield the_lab


@pytest.fixture(scope="session")
def daemon(lab: VethLab) -> Iterator[LabDaemon]:
    """Session: `lb run` on the lab's balancer veth, API on a free 127.0.0.1 port; its health
    checks run in the balancer's namespace and reach the backends at their own addresses.

    Cleanup: SIGTERM, pinned maps and state directory removed; checked gone.
    """
    yield from checked_daemon(lab)


@pytest.fixture
def api(daemon: LabDaemon) -> Iterator[Client]:
    """Per test: the daemon's API client (lb.client), its desired state emptied before and
    after (so no check of one test runs into the next). A test that restarts the daemon
    leaves it running again."""
    if daemon.process is None or daemon.process.poll() is not None:
        daemon.start()
    daemon.api.put_config({"vips": []})
    yield daemon.api
    if daemon.process is None or daemon.process.poll() is not None:
        daemon.start()
    daemon.api.put_config({"vips": []})


@pytest.fixture
def servers(lab: VethLab) -> Iterator[Servers]:
    """Per test: start backend servers through it; all are stopped at the end of the test."""
    s = Servers(lab)
    try:
        yield s
    finally:
        s.close()
