"""Fixtures of the integration tests: the real balancer program, attached natively in a veth lab.

Needs root (bpf(), namespaces). Costs, once per session: the balancer's compile + load (2-4 s)
and the lab (about 2 s, the decap program's compile included). Every test then gets clean
counters and an empty connection table, and configures its own VIPs with `make_vip`, which
removes them again afterwards.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterator

import pytest

from lb.control.service import Balancer, VipState, vip_key
from lb.lab.daemon import fresh_lab
from lb.lab.namespaces import kernel_xdp_mode
from lb.lab.veth import VethLab
from lb.xdp import loader
from lb.xdp.config import Sizes
from lb.xdp.maps import Dataplane
from lb.xdp.types import VipKey, XdpMode

# Namespace prefix of every lab these tests build (leftovers of dead runs are removed first).
LAB_PREFIX = "lbt"

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


@pytest.fixture(scope="session")
def program() -> Iterator[loader.Program]:
    """Session: the balancer compiled and loaded once, with small maps.

    Deps: none. Cleanup: releases bcc's handles (the lab detaches the program).
    """
    prog = loader.load(Sizes(max_vips=8, conn_table_size=16384))
    yield prog
    prog.close()


@pytest.fixture(scope="session")
def lab() -> Iterator[VethLab]:
    """Session: client, router, balancer and 3 backends; the balancer's veth has 2 RX queues.

    Deps: none (leftover namespaces of dead runs with the same prefix are removed first).
    Cleanup: servers stopped, XDP detached, namespaces (and so veths) deleted; then checks that
    none of them is left.
    """
    with fresh_lab(LAB_PREFIX, n_backends=3, rx_queues=2) as the_lab:
        yield the_lab


@pytest.fixture(scope="session")
def dataplane(lab: VethLab, program: loader.Program) -> Iterator[Dataplane]:
    """Session: the program attached natively to the balancer's veth, configured for the lab
    (one-arm XDP_TX to the router's MAC).

    Deps: lab, program. Cleanup: the ring mapping is dropped (the lab detaches the program).
    """
    mode = lab.attach_balancer(program.fd)
    assert mode == XdpMode.NATIVE, f"balancer attached in {mode} mode, not native"
    assert kernel_xdp_mode(lab.balancer.netns, lab.balancer.ifname) == "xdp"
    dp = Dataplane(program)
    dp.write_config(lab.runtime_config())
    yield dp
    dp.close()


@pytest.fixture(scope="session")
def balancer(dataplane: Dataplane) -> Balancer:
    """Session: the service every test configures VIPs through. Deps: dataplane."""
    return Balancer(dataplane)


@pytest.fixture(scope="session")
def http_vips(lab: VethLab) -> tuple[Address, Address]:
    """Session: HTTP servers on port 80 of the first IPv4 and IPv6 VIP on every backend; each
    answers with its backend's name. Deps: lab. Cleanup: the lab stops them."""
    vips = (lab.vips_v4()[0], lab.vips_v6()[0])
    lab.start_http_servers(vips, port=80)
    return vips


@pytest.fixture(autouse=True)
def _clean_slate(request: pytest.FixtureRequest) -> None:
    """Function, autouse: tests that use the data plane start with zeroed counters, an empty
    connection table and zeroed decap counters."""
    if "dataplane" not in request.fixturenames:
        return
    dp: Dataplane = request.getfixturevalue("dataplane")
    the_lab: VethLab = request.getfixturevalue("lab")
    dp.clear_stats()
    dp.clear_conn_table()
    the_lab.clear_decap_counts()


MakeVip = Callable[..., tuple[VipKey, VipState]]


@pytest.fixture
def make_vip(balancer: Balancer) -> Iterator[MakeVip]:
    """Function: `make_vip(address, port, protocol, {backend_address: weight})` adds a VIP and
    its backends through the service. Deps: balancer. Cleanup: removes every VIP it added."""
    added: list[VipKey] = []

    def make(address: Address, port: int, protocol: str,
             backends: dict[Address, int]) -> tuple[VipKey, VipState]:
        key = vip_key(str(address), port, protocol)
        state = balancer.add_vip(key)
        added.append(key)
        for backend, weight in backends.items():
            balancer.add_backend(key, backend, weight)
        return key, state

    yield make
    for key in added:
        if key in balancer.vips:
            balancer.remove_vip(key)

