"""`lb run` never clobbers someone else's XDP program; replacing its own is an expected-fd swap."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from lb import doctor
from lb.control.coexist import EXIT_FOREIGN
from lb.lab.daemon import DaemonError, LabDaemon
from lb.lab.veth import VethLab
from lb.netns import in_netns
from lb.xdp import loader, xdpinfo
from lb.xdp.types import XdpMode


def _attach(lab: VethLab, fd: int) -> int:
    with in_netns(lab.balancer.netns):
        loader.attach(fd, lab.balancer.ifindex)
        return _attached(lab).id


def _attached(lab: VethLab) -> xdpinfo.AttachedProgram:
    with in_netns(lab.balancer.netns):
        found = xdpinfo.attached_program(lab.balancer.ifindex)
    assert found is not None, "nothing attached to the balancer's veth"
    return found


def test_lb_run_refuses_a_foreign_program_names_it_and_leaves_it_attached(
        bare_balancer: VethLab, foreign: Callable[[], int]) -> None:
    lab = bare_balancer
    theirs = _attach(lab, foreign())
    daemon = LabDaemon(lab)
    try:
        with pytest.raises(DaemonError) as refused:
            daemon.start(timeout=60)
        assert daemon.process is not None and daemon.process.returncode == EXIT_FOREIGN
        message = str(refused.value)
        for words in (f"id {theirs}", "'xdp_pass'", "native mode", "--replace-foreign",
                      "left it attached", "chain_slot"):
            assert words in message, message
        assert not daemon.pin_dir.exists(), "it loaded the program before refusing"
    finally:
        daemon.close()
    assert _attached(lab).id == theirs, "the foreign program was replaced"


def test_replace_foreign_takes_the_interface_over(bare_balancer: VethLab,
                                                  foreign: Callable[[], int]) -> None:
    lab = bare_balancer
    theirs = _attach(lab, foreign())
    with LabDaemon(lab, env={"LB_REPLACE_FOREIGN": "1"}) as daemon:
        now = _attached(lab)
        assert now.id != theirs and now.name == xdpinfo.BALANCER_NAME
        assert now.mode == XdpMode.NATIVE
        assert xdpinfo.is_ours(now.program, xdpinfo.own_map_ids(daemon.pin_dir))


def test_a_restart_replaces_our_own_program_without_the_flag(bare_balancer: VethLab) -> None:
    lab = bare_balancer
    with LabDaemon(lab) as daemon:
        first = _attached(lab)
        assert first.name == xdpinfo.BALANCER_NAME
        ready = daemon.restart()
        second = _attached(lab)
        assert ready["ready"] and second.id != first.id
        assert xdpinfo.is_ours(second.program, xdpinfo.own_map_ids(daemon.pin_dir))


def test_replace_swaps_only_the_expected_program(bare_balancer: VethLab,
                                                 foreign: Callable[[], int]) -> None:
    """loader.replace is a compare-and-swap: a program attached meanwhile is not replaced."""
    lab = bare_balancer
    a, b, c = foreign(), foreign(), foreign()
    index = lab.balancer.ifindex
    with in_netns(lab.balancer.netns):
        assert loader.replace(a, index, XdpMode.NATIVE, None) == XdpMode.NATIVE
        a_id = _attached(lab).id
        with pytest.raises(loader.AttachRaced):
            loader.replace(b, index, XdpMode.NATIVE, None)  # "only if empty": it is not
        assert _attached(lab).id == a_id
        loader.replace(b, index, XdpMode.NATIVE, a_id)  # ours: swapped atomically
        b_id = _attached(lab).id
        assert b_id != a_id
        with pytest.raises(loader.AttachRaced):
            loader.replace(c, index, XdpMode.NATIVE, a_id)  # b came meanwhile: not ours to swap
        assert _attached(lab).id == b_id


def test_doctor_names_the_attached_program_and_whose_it_is(
        bare_balancer: VethLab, foreign: Callable[[], int]) -> None:
    lab = bare_balancer
    theirs = _attach(lab, foreign())
    finding = doctor.check_attached(lab.balancer.ifname, lab.balancer.netns)
    assert finding.status == doctor.Status.WARN
    assert f"program id {theirs}" in finding.detail and "'xdp_pass'" in finding.detail
    assert "not lb's" in finding.detail and "--replace-foreign" in finding.fix
    with in_netns(lab.balancer.netns):
        loader.detach(lab.balancer.ifindex)
    with LabDaemon(lab) as daemon:
        finding = doctor.check_attached(lab.balancer.ifname, lab.balancer.netns, daemon.pin_dir)
        assert finding.status == doctor.Status.OK, finding
        assert "'xdp_balancer'" in finding.detail and "lb's (uses" in finding.detail
