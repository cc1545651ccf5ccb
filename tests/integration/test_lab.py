"""The lab itself: it cleans up after itself, its decap counters match the C, and the loader's
attach/detach report the truth on real veths."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest
from pyroute2 import IPRoute
from pyroute2 import netns as pyroute2_netns

from lb.lab.decap import DECAP_SOURCE, DecapSlot
from lb.lab.errors import LabError
from lb.lab.namespaces import kernel_xdp_mode, remove_leftovers
from lb.lab.veth import VethLab
from lb.lab.waits import wait_until
from lb.netns import in_netns
from lb.xdp import loader
from lb.xdp.libbpf import LIBBPF
from lb.xdp.types import XdpMode

PREFIX = "lbt"


def _root_links() -> set[str]:
    with IPRoute() as ipr:
        return {link.get_attr("IFLA_IFNAME") for link in ipr.get_links()}


def test_decap_counter_slots_match_the_c_defines() -> None:
    defines = dict(re.findall(r"#define DECAP_(\w+) (\d+)", DECAP_SOURCE.read_text()))
    c_slots = {name: int(defines[key]) for key, name in {
        "4IN4": "V4_IN_V4", "6IN4": "V6_IN_V4", "4IN6": "V4_IN_V6", "6IN6": "V6_IN_V6",
        "PASS": "PASS", "DROP_MALFORMED": "DROP_MALFORMED"}.items()}
    assert c_slots == {s.name: s.value for s in DecapSlot}
    assert int(defines["SLOTS"]) == len(DecapSlot)


def _xdp_program_id(netns: str, ifindex: int) -> int:
    with in_netns(netns), IPRoute() as ipr:
        return ipr.link("get", index=ifindex)[0].get_attr("IFLA_XDP").get_attr("IFLA_XDP_PROG_ID")


def _program_exists(prog_id: int) -> bool:
    fd = LIBBPF.bpf_prog_get_fd_by_id(prog_id)
    if fd < 0:
        return False
    os.close(fd)
    return True


def test_lab_leaves_no_namespace_interface_or_program_behind() -> None:
    """Even with a client's keep-alive connection still open when the lab closes (its socket
    keeps the client's namespace referenced): the namespace names go, no interface ever
    appears in the root namespace, and the XDP programs the lab attached are freed, so no veth
    carrying them survives anywhere."""
    links_before = _root_links()
    with VethLab(n_backends=1, rx_queues=1, prefix=PREFIX) as lab:
        names = lab.namespaces
        assert set(names) <= set(pyroute2_netns.listnetns())
        backend = lab.backends[0]
        program_ids = [_xdp_program_id(backend.netns, backend.ifindex),
                       _xdp_program_id(lab.router_netns, lab.balancer.router_ifindex)]
        # No balancer in this lab: the client talks to the backend's own address, routed.
        lab.start_http_servers([backend.v4])
        conn = lab.http_connection(backend.v4, 80)
        conn.request("GET", "/")
        assert conn.getresponse().read() == b"backend0\n"
        assert all(_program_exists(i) for i in program_ids)
    try:
        assert not set(names) & set(pyroute2_netns.listnetns())
        assert lab.remaining_namespaces() == []
        assert _root_links() == links_before
        assert wait_until(lambda: not any(_program_exists(i) for i in program_ids), timeout=5), \
            f"XDP programs {program_ids} still exist: some lab veth is still alive"
    finally:
        conn.close()


def test_lab_cleans_up_when_setup_fails_halfway(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(self: VethLab) -> None:
        raise RuntimeError("injected failure while configuring the router")

    monkeypatch.setattr(VethLab, "_configure_router", broken)
    lab = VethLab(n_backends=2, prefix=PREFIX)
    with pytest.raises(RuntimeError, match="injected"), lab:
        pass
    assert not [n for n in pyroute2_netns.listnetns() if n.startswith(lab.name + "-")]


def test_remove_leftovers_deletes_namespaces_of_dead_runs_only(lab: VethLab) -> None:
    leftover = f"{PREFIX}{_dead_pid()}-0-router"
    pyroute2_netns.create(leftover)
    try:
        assert remove_leftovers(PREFIX) == [leftover]
        assert leftover not in pyroute2_netns.listnetns()
        # The running session's lab (this pid) is untouched.
        assert set(lab.namespaces) <= set(pyroute2_netns.listnetns())
    finally:
        if leftover in pyroute2_netns.listnetns():
            pyroute2_netns.remove(leftover)


def _dead_pid() -> int:
    """The pid of a process that has already exited."""
    proc = subprocess.Popen(["true"])
    proc.wait()
    pid = proc.pid
    while Path(f"/proc/{pid}").exists():  # reused already: pick another
        pid += 1
    return pid


def test_loader_reports_native_mode_after_attach(lab: VethLab, dataplane, program) -> None:
    """lb.xdp.loader.attach on the balancer's veth (replacing the same program atomically)
    returns NATIVE, and attached_mode agrees with the kernel (what `ip -d link` shows)."""
    with in_netns(lab.balancer.netns):
        assert loader.attach(program.fd, lab.balancer.ifindex) == XdpMode.NATIVE
        assert loader.attached_mode(lab.balancer.ifindex) == XdpMode.NATIVE
    assert kernel_xdp_mode(lab.balancer.netns, lab.balancer.ifname) == "xdp"


def test_loader_detach_removes_the_program(lab: VethLab, program) -> None:
    """On a scratch veth pair in the router's namespace: attach natively, loader.detach, gone."""
    with in_netns(lab.router_netns), IPRoute() as ipr:
        ipr.link("add", ifname="scratch0", kind="veth", peer={"ifname": "scratch1"})
        try:
            index = ipr.link_lookup(ifname="scratch0")[0]
            assert loader.attach(program.fd, index) == XdpMode.NATIVE
            assert kernel_xdp_mode(lab.router_netns, "scratch0") == "xdp"
            loader.detach(index)
            assert kernel_xdp_mode(lab.router_netns, "scratch0") is None, \
                "the program is still attached after loader.detach"
        finally:
            ipr.link("del", ifname="scratch0")


def test_lab_refuses_a_namespace_that_already_exists() -> None:
    lab = VethLab(n_backends=1, prefix=PREFIX)
    squatter = lab.router_netns
    pyroute2_netns.create(squatter)
    try:
        with pytest.raises(LabError, match="already exists"), lab:
            pass
        assert squatter in pyroute2_netns.listnetns(), "the lab deleted a namespace not its own"
    finally:
        pyroute2_netns.remove(squatter)
