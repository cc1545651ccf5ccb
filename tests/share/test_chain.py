"""Run with others: a firewall in the chain's slot 0, the balancer in slot 1 (chain.h)."""

from __future__ import annotations

import ipaddress
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether

from lb import doctor
from lb.control.coexist import EXIT_FOREIGN
from lb.lab.chain import ElfProgram, load_firewall
from lb.lab.daemon import DaemonError, LabDaemon
from lb.lab.veth import VethLab
from lb.netns import in_netns
from lb.xdp import chain, xdpinfo

BLOCKED = ipaddress.IPv4Address("10.0.1.99")
VIP_PORT = 5353
LOCAL_PORT = 7777  # a socket of the balancer host's own kernel


@pytest.fixture
def chained(bare_balancer: VethLab) -> Iterator[tuple[LabDaemon, int]]:
    """Per test: `lb run --chain-slot 1` with the example firewall (blocking BLOCKED) in slot
    0, and one UDP VIP on backend0; yields (daemon, firewall's program id). Cleanup: daemon
    stopped, pins removed (with the chain), programs detached."""
    lab = bare_balancer
    with LabDaemon(lab, env={"LB_CHAIN_SLOT": "1"}) as daemon:
        bpf, fd = load_firewall(daemon.pin_dir, BLOCKED)
        try:
            chain.set_slot(daemon.pin_dir, 0, fd)
            r = daemon.client.put("/config", json={"vips": [
                {"address": str(lab.vips_v4()[0]), "port": VIP_PORT, "protocol": "udp",
                 "backends": [{"address": str(lab.backends[0].v4)}]}]})
            assert r.status_code == 200, r.text
            yield daemon, xdpinfo.program_info_fd(fd).id
        finally:
            bpf.cleanup()


def _frames(lab: VethLab, src: ipaddress.IPv4Address, dst: ipaddress.IPv4Address, port: int,
            n: int) -> list[bytes]:
    ether = Ether(src=lab.client.mac, dst=lab.client.router_mac)
    return [bytes(ether / IP(src=str(src), dst=str(dst)) / UDP(sport=41000 + i, dport=port)
                  / b"chain") for i in range(n)]


def _local_socket(lab: VethLab) -> socket.socket:
    with in_netns(lab.balancer.netns):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((str(lab.balancer.v4), LOCAL_PORT))
    s.settimeout(0.2)
    return s


def _received(s: socket.socket) -> int:
    n = 0
    while True:
        try:
            s.recv(2048)
            n += 1
        except TimeoutError:
            return n


def _decapsulated_after(lab: VethLab, before: int, want: int, timeout: float = 2.0) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and lab.decapsulated(lab.backends[0]) - before < want:
        time.sleep(0.02)
    time.sleep(0.2)  # and nothing more arrives
    return lab.decapsulated(lab.backends[0]) - before


def test_the_chain_runs_the_root_then_the_firewall_then_the_balancer(chained) -> None:
    daemon, firewall_id = chained
    lab = daemon.lab
    with in_netns(lab.balancer.netns):
        attached = xdpinfo.attached_program(lab.balancer.ifindex)
    assert attached is not None and attached.name == xdpinfo.ROOT_NAME
    assert xdpinfo.is_ours(attached.program, xdpinfo.own_map_ids(daemon.pin_dir))
    slots = chain.slots(daemon.pin_dir)
    assert set(slots) == {0, 1} and slots[0] == firewall_id
    assert xdpinfo.program_info(slots[1]).name == xdpinfo.BALANCER_NAME
    assert daemon.client.get("/readyz").json()["ready"]
    finding = doctor.check_attached(lab.balancer.ifname, lab.balancer.netns, daemon.pin_dir)
    assert "'xdp_lb_root'" in finding.detail and "lb's" in finding.detail
    assert "0: 'xdp_firewall'" in finding.detail and "1: 'xdp_balancer'" in finding.detail


def test_vip_traffic_is_balanced_and_other_traffic_reaches_the_kernel(chained) -> None:
    daemon, _ = chained
    lab = daemon.lab
    vip = lab.vips_v4()[0]
    local = _local_socket(lab)
    try:
        before = lab.decapsulated(lab.backends[0])
        lab.send_frames(_frames(lab, lab.client.v4, vip, VIP_PORT, 20))
        assert _decapsulated_after(lab, before, 20) == 20, "VIP traffic was not balanced"
        lab.send_frames(_frames(lab, lab.client.v4, lab.balancer.v4, LOCAL_PORT, 10))
        assert _received(local) == 10, "non-VIP traffic did not reach the kernel"
    finally:
        local.close()


def test_the_blocked_source_reaches_nothing(chained) -> None:
    daemon, _ = chained
    lab = daemon.lab
    vip = lab.vips_v4()[0]
    local = _local_socket(lab)
    try:
        before = lab.decapsulated(lab.backends[0])
        lab.send_frames(_frames(lab, BLOCKED, vip, VIP_PORT, 20))
        lab.send_frames(_frames(lab, BLOCKED, lab.balancer.v4, LOCAL_PORT, 10))
        assert _decapsulated_after(lab, before, 1, timeout=1.0) == 0, "the VIP got them"
        assert _received(local) == 0, "the kernel got them"
        # the same frames from an allowed source do arrive: the drop was the firewall's
        lab.send_frames(_frames(lab, lab.client.v4, lab.balancer.v4, LOCAL_PORT, 10))
        assert _received(local) == 10
    finally:
        local.close()


def test_a_restart_swaps_only_the_balancers_slot(chained) -> None:
    daemon, firewall_id = chained
    lab = daemon.lab
    with in_netns(lab.balancer.netns):
        root_before = xdpinfo.attached_program(lab.balancer.ifindex)
    balancer_before = chain.slots(daemon.pin_dir)[1]
    assert daemon.restart()["ready"]
    with in_netns(lab.balancer.netns):
        root_after = xdpinfo.attached_program(lab.balancer.ifindex)
    slots = chain.slots(daemon.pin_dir)
    assert root_before is not None and root_after is not None
    assert root_after.id == root_before.id, "the root was replaced"
    assert slots[0] == firewall_id, "the firewall's slot changed"
    assert slots[1] != balancer_before, "the balancer was not replaced"
    before = lab.decapsulated(lab.backends[0])
    lab.send_frames(_frames(lab, lab.client.v4, lab.vips_v4()[0], VIP_PORT, 10))
    assert _decapsulated_after(lab, before, 10) == 10


def test_an_unchained_start_refuses_our_chain_root(chained) -> None:
    """Our root with a firewall in slot 0: a start without chain_slot would cut the firewall
    off, so it is refused (EXIT_FOREIGN) and the chain keeps running."""
    daemon, firewall_id = chained
    daemon.stop()
    del daemon.env["LB_CHAIN_SLOT"]
    try:
        with pytest.raises(DaemonError) as refused:
            daemon.start(timeout=60)
        assert daemon.process is not None and daemon.process.returncode == EXIT_FOREIGN
        assert "chain root" in str(refused.value) and "chain_slot" in str(refused.value)
    finally:
        daemon.env["LB_CHAIN_SLOT"] = "1"
    assert chain.slots(daemon.pin_dir)[0] == firewall_id
    assert daemon.start()["ready"]


XDP_FILTER = sorted(Path("/usr/lib").glob("*/bpf/xdpfilt_alw_ip.o"))


@pytest.mark.skipif(not XDP_FILTER, reason="xdp-tools is not installed (apt-get install "
                    "xdp-tools)")
@pytest.mark.parametrize("slot", [0, 2], ids=["before-the-balancer", "after-the-balancer"])
def test_an_xdp_filter_object_runs_in_a_slot_but_its_pass_ends_the_chain(
        bare_balancer: VethLab, slot: int) -> None:
    """xdp-tools' xdp-filter objects load into a slot (the kernel takes them into the program
    array), but they return XDP_PASS instead of tail-calling: what they pass goes to the
    kernel at once. After the balancer that is right (non-VIP traffic reaches the kernel);
    before it, VIP traffic skips the balancer, so such a program cannot be the firewall in
    front: that one must follow chain.h. (`xdpfilt_alw_ip`: passes what no rule matches; no
    rules are written here, so it passes everything.)"""
    lab = bare_balancer
    vip = lab.vips_v4()[0]
    with LabDaemon(lab, env={"LB_CHAIN_SLOT": "1"}) as daemon, \
            ElfProgram(XDP_FILTER[0]) as xdp_filter:
        chain.set_slot(daemon.pin_dir, slot, xdp_filter.fd)
        assert xdpinfo.program_info(chain.slots(daemon.pin_dir)[slot]).name == xdp_filter.name
        r = daemon.client.put("/config", json={"vips": [
            {"address": str(vip), "port": VIP_PORT, "protocol": "udp",
             "backends": [{"address": str(lab.backends[0].v4)}]}]})
        assert r.status_code == 200, r.text
        local = _local_socket(lab)
        try:
            lab.send_frames(_frames(lab, lab.client.v4, lab.balancer.v4, LOCAL_PORT, 10))
            assert _received(local) == 10, "non-VIP traffic did not reach the kernel"
        finally:
            local.close()
        before = lab.decapsulated(lab.backends[0])
        lab.send_frames(_frames(lab, lab.client.v4, vip, VIP_PORT, 20))
        balanced = _decapsulated_after(lab, before, 20)
        assert balanced == (0 if slot == 0 else 20), f"{balanced} of 20 VIP packets balanced"
