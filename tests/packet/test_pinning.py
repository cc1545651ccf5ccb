"""Pinned maps: a reload with the same pin directory finds the live state; other sizes fail."""

from __future__ import annotations

import ctypes
import dataclasses
import ipaddress
import os
import shutil
import uuid
from pathlib import Path

import pytest
from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Ether

from lb.control.service import Balancer, vip_key
from lb.xdp import loader
from lb.xdp.config import RuntimeConfig, Sizes
from lb.xdp.consts import XDP_TX
from lb.xdp.libbpf import LIBBPF
from lb.xdp.maps import Dataplane
from lb.xdp.structs import LbCounters
from lb.xdp.testrun import test_run

pytestmark = pytest.mark.root

SIZES = Sizes(max_vips=4, max_backends=64, conn_table_size=1024)
VIP = "10.100.7.1"
BACKEND = ipaddress.ip_address("10.0.7.10")
# enum bpf_map_type (UAPI).
BPF_MAP_TYPE_PERCPU_ARRAY = 6


@pytest.fixture
def pin_dir():
    """A fresh pin directory under bpffs for one test; removed (with every pin) afterwards."""
    path = Path(f"/sys/fs/bpf/lb-test-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def frame(flags: str) -> bytes:
    return bytes(Ether(dst="02:00:00:00:00:01") / IP(src="192.0.2.7", dst=VIP)
                 / TCP(sport=40000, dport=80, flags=flags))


def first_load_with_a_flow(pin_dir: Path):
    """A load pinned at `pin_dir` with VIP -> BACKEND and one flow in the connection table,
    then closed (the pins stay). Returns (its Balancer, the VIP key, the VIP's ring)."""
    first = loader.load(SIZES, pin_dir=pin_dir)
    dp1 = Dataplane(first)
    try:
        dp1.write_config(RuntimeConfig(next_hop_mac="02:00:00:00:00:02",
                                       src_mac="02:00:00:00:00:01"))
        balancer = Balancer(dp1)
        key = vip_key(VIP, 80, "tcp")
        balancer.add_vip(key)
        balancer.add_backend(key, BACKEND)
        assert test_run(first.fd, frame("S")).verdict == XDP_TX
        return balancer, key, dp1.read_ring(balancer.vips[key].num)
    finally:
        dp1.close()
        first.close()


def test_second_load_with_same_pin_dir_keeps_vips_rings_and_flows(pin_dir, one_cpu):
    balancer, key, ring_before = first_load_with_a_flow(pin_dir)

    second = loader.load(SIZES, pin_dir=pin_dir)
    dp2 = Dataplane(second)
    try:
        assert key in dp2.vips()
        assert dp2.read_ring(balancer.vips[key].num) == ring_before
        assert [b for _, b in dp2.conn_table()] == [balancer.backend_index(BACKEND)]
        hits_before = dp2.counters()["ct_hit"]
        result = test_run(second.fd, frame("A"))
        assert result.verdict == XDP_TX
        assert dp2.counters()["ct_hit"] == hits_before + 1
        assert Ether(result.frame)[IP].dst == str(BACKEND)
    finally:
        dp2.close()
        second.close()


def test_load_with_other_sizes_than_the_pinned_maps_is_refused(pin_dir):
    loader.load(SIZES, pin_dir=pin_dir).close()
    bigger = Sizes(max_vips=8, max_backends=64, conn_table_size=1024)
    with pytest.raises(loader.PinnedMapMismatch, match="rings"):
        loader.load(bigger, pin_dir=pin_dir)


def test_pinned_connection_table_made_for_another_cpu_count_is_refused(pin_dir):
    """Each CPU owns a slice of the table: a table pinned with slices for another CPU count
    would put CPUs in each other's slices (or past the end), so the load stops."""
    more = dataclasses.replace(SIZES, cpus=SIZES.cpus + 1)
    loader.load(more, pin_dir=pin_dir).close()
    with pytest.raises(loader.PinnedMapMismatch, match="ct_v4"):
        loader.load(SIZES, pin_dir=pin_dir)


def test_fewer_cpus_than_the_host_has_are_refused():
    if SIZES.cpus < 2:
        pytest.skip("needs a host with 2 or more possible CPUs")
    with pytest.raises(loader.LoadError, match="possible CPUs"):
        loader.load(dataclasses.replace(SIZES, cpus=SIZES.cpus - 1))


def pin_older_counters(pin_dir: Path) -> int:
    """Replace the pinned counters with what an older build pinned: the same per-CPU array,
    one counter slot fewer. Returns that value size."""
    (pin_dir / "counters").unlink()
    old_value = ctypes.sizeof(LbCounters) - 8
    fd = LIBBPF.bpf_map_create(BPF_MAP_TYPE_PERCPU_ARRAY, b"counters", 4, old_value, 1, None)
    assert fd >= 0, os.strerror(ctypes.get_errno())
    try:
        assert LIBBPF.bpf_obj_pin(fd, str(pin_dir / "counters").encode()) == 0
    finally:
        os.close(fd)
    return old_value


def pinned_value_size(path: Path) -> int:
    fd = LIBBPF.bpf_obj_get(str(path).encode())
    assert fd >= 0, os.strerror(ctypes.get_errno())
    try:
        return loader.map_info(fd).value_size
    finally:
        os.close(fd)


def test_counter_maps_of_an_older_layout_are_renewed_and_the_state_kept(pin_dir, one_cpu):
    """An upgrade that adds a counter: the pinned counters map (one slot short) is made
    anew; rings and the connection table are kept, so flows keep their backends."""
    balancer, key, _ = first_load_with_a_flow(pin_dir)
    pin_older_counters(pin_dir)

    second = loader.load(SIZES, pin_dir=pin_dir)
    dp2 = Dataplane(second)
    try:
        assert second.renewed == ["counters"]
        assert loader.map_info(second.table("counters").get_fd()).value_size == \
            ctypes.sizeof(LbCounters)
        assert [b for _, b in dp2.conn_table()] == [balancer.backend_index(BACKEND)]
        assert dp2.counters()["ct_hit"] == 0  # counts start again
        result = test_run(second.fd, frame("A"))
        assert result.verdict == XDP_TX and Ether(result.frame)[IP].dst == str(BACKEND)
        assert dp2.counters()["ct_hit"] == 1
    finally:
        dp2.close()
        second.close()
    # A third load with the layout right renews nothing.
    third = loader.load(SIZES, pin_dir=pin_dir)
    try:
        assert third.renewed == []
    finally:
        third.close()


def test_a_failed_load_puts_the_older_counters_back(pin_dir):
    """A load refused for another reason (other sizes) leaves the pins as they were."""
    loader.load(SIZES, pin_dir=pin_dir).close()
    old_value = pin_older_counters(pin_dir)
    with pytest.raises(loader.PinnedMapMismatch):
        loader.load(dataclasses.replace(SIZES, max_vips=8), pin_dir=pin_dir)
    assert pinned_value_size(pin_dir / "counters") == old_value
    assert not (pin_dir / "counters_prev").exists()
