"""Fixtures of the sharing tests (issue 17): a veth lab and small foreign XDP programs.

Needs root (tests/conftest.py marks this directory `root`). Costs, once per session: the lab
(about 2 s). `foreign` compiles a two-line XDP_PASS program per use (about 0.5 s).
Cleanup: every program a test attached is detached by the lab on close; `foreign` releases its
bcc handles; the lab's namespaces are deleted and checked gone.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from lb.lab.daemon import fresh_lab
from lb.lab.veth import DECAP_SOURCE, VethLab
from lb.netns import in_netns
from lb.xdp import loader

# Namespace prefix of every lab these tests build (leftovers of dead runs are removed first).
LAB_PREFIX = "lbs"


@pytest.fixture(scope="session")
def lab() -> Iterator[VethLab]:
    """Session: client, router, balancer and 2 backends, one RX queue on the balancer.

    Cleanup: XDP detached, namespaces deleted, checked gone.
    """
    with fresh_lab(LAB_PREFIX, n_backends=2, rx_queues=1) as the_lab:
        yield the_lab


@pytest.fixture
def foreign() -> Iterator[Callable[[], int]]:
    """Per test: `foreign()` loads a fresh copy of someone else's program (lab's `xdp_pass`,
    its name is `xdp_pass`) and returns its fd. Cleanup: the bcc handles are released."""
    handles = []

    def make() -> int:
        bpf, fd = loader.load_function(DECAP_SOURCE, "xdp_pass")
        handles.append(bpf)
        return fd

    yield make
    for bpf in handles:
        bpf.cleanup()


@pytest.fixture
def bare_balancer(lab: VethLab) -> Iterator[VethLab]:
    """Per test: the balancer's veth with no XDP program, before and after the test."""
    with in_netns(lab.balancer.netns):
        loader.detach(lab.balancer.ifindex)
    yield lab
    with in_netns(lab.balancer.netns):
        loader.detach(lab.balancer.ifindex)
