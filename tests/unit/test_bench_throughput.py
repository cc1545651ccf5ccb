"""Tests for bench.throughput's pure parts: frames, the trafgen config, rates and judging."""

import re

import pytest
from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Ether

from bench import throughput as bt


def test_generated_frames_are_valid_tcp_acks_with_correct_checksums():
    frame = bt.tcp_ack_frame("02:00:00:00:00:01", "02:00:00:00:00:02", "198.18.0.7",
                             "10.100.0.1", 4242, 80)
    pkt = Ether(frame)
    assert (pkt.dst, pkt.src) == ("02:00:00:00:00:01", "02:00:00:00:00:02")
    assert (pkt[IP].src, pkt[IP].dst, pkt[TCP].sport, pkt[TCP].dport) == \
        ("198.18.0.7", "10.100.0.1", 4242, 80)
    assert pkt[TCP].flags == "A" and len(frame) == 54
    ip_sum, tcp_sum = pkt[IP].chksum, pkt[TCP].chksum
    del pkt[IP].chksum, pkt[TCP].chksum
    rebuilt = Ether(bytes(pkt))
    assert (rebuilt[IP].chksum, rebuilt[TCP].chksum) == (ip_sum, tcp_sum)


def test_flows_differ_in_source_address_and_port():
    flows = bt.flow_sources(4096)
    assert len(set(flows)) == 4096
    assert len({a for a, _ in flows}) == 4096 and len({p for _, p in flows}) == 4096
    assert all(1024 <= p <= 65535 for _, p in flows)
    with pytest.raises(ValueError):
        bt.flow_sources(0)


def test_trafgen_config_has_one_static_frame_per_flow_on_the_given_cpu():
    frames = [bytes([1, 2, 255]), bytes([0, 16])]
    text = bt.trafgen_config(frames, cpu=1)
    blocks = re.findall(r"^cpu\(1\): \{ (.*) \}$", text, re.MULTILINE)
    assert blocks == ["0x01, 0x02, 0xff", "0x00, 0x10"]
    assert "cpu(" not in bt.trafgen_config(frames)


def test_trafgen_runs_pinned_on_the_qdisc_path_and_touches_no_system_setting():
    cmd = bt.trafgen_command("gen0", "/tmp/x.cfg", [1], "ns")
    assert cmd[:3] == ["taskset", "-c", "1"]
    assert cmd[3:6] == ["ip", "netns", "exec"]
    assert {"-q", "-Q", "--no-sock-mem"} <= set(cmd)
    assert cmd[cmd.index("-P") + 1] == "2"  # workers 0..1; only CPU 1's has frames


def test_ratio_judging_against_the_target():
    assert bt.judge(0.75) == "PASS"
    assert bt.judge(0.7499) == "MISS"
    assert bt.judge(None) == "INVALID"


def test_each_balancer_window_is_divided_by_the_floors_around_it():
    seq = [("floor", 100.0), ("balancer", 80.0), ("floor", 60.0), ("balancer", 40.0),
           ("floor", 40.0)]
    assert bt.paired_ratios(seq) == [pytest.approx(1.0), pytest.approx(0.8)]
    assert bt.paired_ratios([("balancer", 1.0), ("floor", 1.0)]) == []


def test_rates_and_ethtool_parsing():
    assert bt.rate(100, 1100, 2.0) == 500.0
    with pytest.raises(ValueError):
        bt.rate(0, 1, 0)
    stats = bt.parse_ethtool_stats("NIC statistics:\n     peer_ifindex: 2\n"
                                   "     rx_queue_0_xdp_packets: 10\n"
                                   "     rx_queue_1_xdp_packets: 7\n     rx_queue_0_xdp_tx: 9\n")
    assert stats["rx_queue_0_xdp_tx"] == 9
    assert bt.queue_packets(stats) == {0: 10, 1: 7}
