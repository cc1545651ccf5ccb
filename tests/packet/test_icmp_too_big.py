"""Packets to a VIP that would exceed the MTU once encapsulated are answered with ICMP "too
big" (IPv4 "fragmentation needed", ICMPv6 "packet too big"), built field by field as the
RFCs say; the checksums are verified here from the bytes, independently of the program.
Sources that must not get ICMP errors get none, and the replies are rate limited."""

from __future__ import annotations

import ipaddress
import re
import struct
import time
from pathlib import Path

import pytest
from packet_frames import CLIENT4, CLIENT6, CLIENT_MAC, LB_MAC, eth, tcp, udp, v4, v6
from scapy.layers.inet import ICMP, IP
from scapy.layers.inet6 import ICMPv6PacketTooBig, IPv6
from scapy.layers.l2 import Dot1Q, Ether
from scapy.packet import Raw

from lb.xdp.consts import XDP_DROP, XDP_TX

pytestmark = pytest.mark.root

DF = "DF"
CONSTS = (Path(__file__).resolve().parents[2] / "lb" / "xdp" / "lb_consts.h").read_text()
RATE = int(re.search(r"#define LB_ICMP_RATE (\d+)", CONSTS).group(1))
BURST = int(re.search(r"#define LB_ICMP_BURST (\d+)", CONSTS).group(1))
QUOTE_V6 = 1232  # RFC 4443 2.4(c): the reply within 1280 bytes (40 + 8 + 1232)
DROPPED = {"drop": 1, "drop_too_big": 1, "ct_miss": 1}


def ones_complement_sum(data: bytes) -> int:
    """The Internet checksum's sum of 16-bit words, folded (0xffff over a valid message)."""
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xffff) + (total >> 16)
    return total


def big(layers, total: int, vlan: int | None = None) -> bytes:
    """`layers` (an IP packet) with payload grown to an IP length of `total` bytes."""
    return bytes(eth(vlan) / layers / Raw(b"x" * (total - len(layers))))


def ip_bytes(frame: bytes, l2_len: int = 14) -> bytes:
    return frame[l2_len:]


def reply_of(rig, frame: bytes, vlan: int | None, ethertype: int,
             ip_len: int) -> tuple[Ether, bytes, int]:
    """Run `frame`; check that it came back (XDP_TX) to the sender, on its VLAN, as an IP
    packet of `ip_len` bytes. Returns (the frame parsed, its IP bytes, its L2 length)."""
    l2_len = 18 if vlan is not None else 14
    result = rig.run(frame)
    assert result.verdict == XDP_TX, result.verdict_name
    out = Ether(result.frame)
    assert (out.dst, out.src) == (CLIENT_MAC, LB_MAC), "the reply goes back to the sender"
    if vlan is None:
        assert out.type == ethertype and Dot1Q not in out
    else:
        assert out[Dot1Q].vlan == vlan and out[Dot1Q].type == ethertype
    assert len(result.frame) == l2_len + ip_len
    return out, result.frame[l2_len:], l2_len


def check_v4_reply(rig, frame: bytes, vip: str, mtu: int, vlan: int | None = None) -> None:
    out, raw_ip, l2_len = reply_of(rig, frame, vlan, 0x0800, 20 + 8 + 28)
    ip = out[IP]
    assert (ip.src, ip.dst, ip.proto, ip.ttl, ip.len, ip.ihl) == (vip, CLIENT4, 1, 64, 56, 5)
    assert ip.frag == 0 and ip.flags == "DF" and ip.id == 0  # atomic datagram, RFC 6864
    assert ones_complement_sum(raw_ip[:20]) == 0xffff, "bad IPv4 header checksum"
    icmp = out[ICMP]
    assert (icmp.type, icmp.code, icmp.nexthopmtu) == (3, 4, mtu)
    assert raw_ip[24:28] == struct.pack("!HH", 0, mtu)  # unused, next-hop MTU (RFC 1191)
    assert ones_complement_sum(raw_ip[20:]) == 0xffff, "bad ICMP checksum"
    assert raw_ip[28:] == ip_bytes(frame, l2_len)[:28], "the quote is not the packet's head"
    assert rig.counters() == {"icmp_too_big": 1, "ct_miss": 1}


def check_v6_reply(rig, frame: bytes, vip: str, mtu: int, vlan: int | None = None) -> None:
    assert 40 + 8 + QUOTE_V6 == 1280
    out, raw_ip, l2_len = reply_of(rig, frame, vlan, 0x86DD, 40 + 8 + QUOTE_V6)
    ip6 = out[IPv6]
    assert (ip6.src, ip6.dst, ip6.nh, ip6.hlim, ip6.plen) == (vip, CLIENT6, 58, 64, 1240)
    assert (ip6.tc, ip6.fl) == (0, 0)
    ptb = out[ICMPv6PacketTooBig]
    assert (ptb.type, ptb.code, ptb.mtu) == (2, 0, mtu)
    pseudo = (ipaddress.ip_address(vip).packed + ipaddress.ip_address(CLIENT6).packed
              + struct.pack("!IxxxB", 1240, 58))
    assert ones_complement_sum(pseudo + raw_ip[40:]) == 0xffff, "bad ICMPv6 checksum"
    assert raw_ip[48:] == ip_bytes(frame, l2_len)[:QUOTE_V6], "the quote is not the packet's head"
    assert rig.counters() == {"icmp_too_big": 1, "ct_miss": 1}


def test_ipv4_with_df_gets_fragmentation_needed_with_what_fits(rig):
    # v4tcp's backends are IPv4: 20 bytes of outer header, so 1480 fits in an MTU of 1500.
    check_v4_reply(rig, big(v4(flags=DF) / tcp(), 1481), "10.0.0.1", 1480)


def test_ipv4_to_ipv6_backends_is_told_the_smaller_size(rig):
    # v4udp's backends are IPv6: 40 bytes of outer header.
    check_v4_reply(rig, big(v4(flags=DF) / udp(), 1461), "10.0.0.1", 1460)


def test_the_configured_mtu_is_what_the_reply_reports(rig):
    with rig.configured(mtu=1400):
        check_v4_reply(rig, big(v4(flags=DF) / tcp(), 1381), "10.0.0.1", 1380)


def test_a_vlan_tagged_packet_is_answered_on_its_vlan(rig):
    check_v4_reply(rig, big(v4(flags=DF) / tcp(), 1481, vlan=42), "10.0.0.1", 1480, vlan=42)


def test_ethernet_trailer_is_not_quoted(rig):
    frame = big(v4(flags=DF) / tcp(), 1481) + b"\xee" * 6
    check_v4_reply(rig, frame, "10.0.0.1", 1480)


def test_ipv4_without_df_is_dropped_and_counted(rig):
    result = rig.run(big(v4() / tcp(), 1481))
    assert result.verdict == XDP_DROP
    assert rig.counters() == DROPPED


@pytest.mark.parametrize("source", ["224.0.0.5", "239.1.2.3", "255.255.255.255", "240.0.0.1",
                                    "127.0.0.1", "0.0.0.0"])
def test_ipv4_sources_that_must_not_get_icmp_errors_get_none(rig, source):
    result = rig.run(big(v4(src=source, flags=DF) / tcp(), 1481))
    assert result.verdict == XDP_DROP
    assert rig.counters() == DROPPED


@pytest.mark.parametrize("source", ["ff02::1", "ff0e::1", "::", "::1"])
def test_ipv6_sources_that_must_not_get_icmp_errors_get_none(rig, source):
    result = rig.run(big(v6(src=source) / tcp(443), 1461))
    assert result.verdict == XDP_DROP
    assert rig.counters() == DROPPED


def test_a_frame_sent_to_a_group_mac_gets_no_reply(rig):
    frame = bytearray(big(v4(flags=DF) / tcp(), 1481))
    frame[0:6] = b"\xff" * 6  # broadcast: the reply would come from a group address
    assert rig.run(bytes(frame)).verdict == XDP_DROP
    assert rig.counters() == DROPPED


@pytest.mark.parametrize("layers", [v4(flags=DF) / tcp(), v6() / tcp(443)], ids=["v4", "v6"])
@pytest.mark.parametrize("mac", [b"\xff" * 6, b"\x01\x00\x5e\x00\x00\x05", b"\x33\x33\0\0\0\1"],
                         ids=["broadcast", "v4-multicast", "v6-multicast"])
def test_a_frame_from_a_group_source_mac_gets_no_reply(rig, layers, mac):
    frame = bytearray(big(layers, 1481 if layers.version == 4 else 1461))
    frame[6:12] = mac  # the reply would go to a group address
    assert rig.run(bytes(frame)).verdict == XDP_DROP
    assert rig.counters() == DROPPED


def test_trailing_bytes_are_not_counted_against_the_mtu(rig):
    # 1480 + 20 fits the MTU of 1500; the 100 bytes after the IP packet are not sent.
    frame = big(v4(flags=DF) / tcp(), 1480) + b"\xee" * 100
    result = rig.run(frame)
    assert result.verdict == XDP_TX
    assert rig.counters() == {"tx": 1, "ct_miss": 1}
    assert len(result.frame) == 14 + 20 + 1480, "the trailer was sent on"


def test_what_is_sent_fits_the_mtu_whatever_trails_the_ip_packet(rig):
    # The case: 1,380 + 20 bytes fit an MTU of 1,400; with 100 trailing bytes sent
    # along, the L3 packet leaving would have been 1,500 bytes.
    with rig.configured(mtu=1400):
        frame = big(v4(flags=DF) / tcp(), 1380) + b"\xee" * 100
        result = rig.run(frame)
        assert result.verdict == XDP_TX
        assert len(result.frame) - 14 == 1400, "the L3 packet sent exceeds the MTU"


def test_no_ipv6_reply_names_an_mtu_under_1280(rig):
    # 1300 - 40 = 1260: IPv6 sources ignore it (RFC 8201), so it is dropped, not answered.
    with rig.configured(mtu=1300):
        assert rig.run(big(v6() / tcp(443), 1300)).verdict == XDP_DROP
        assert rig.counters() == DROPPED


@pytest.mark.parametrize(("layers", "vip", "mtu"), [
    (v6() / tcp(443), "fc00::1", 1460),                   # IPv6 backends: 40 bytes
    (v6() / udp(), "fc00::1", 1480),                      # IPv4 backends: 20 bytes
], ids=["6in6", "6in4"])
def test_ipv6_gets_packet_too_big_with_what_fits(rig, layers, vip, mtu):
    check_v6_reply(rig, big(layers, mtu + 1), vip, mtu)


def test_a_vlan_tagged_ipv6_packet_is_answered_on_its_vlan(rig):
    check_v6_reply(rig, big(v6() / tcp(443), 1461, vlan=7), "fc00::1", 1460, vlan=7)


def test_nothing_is_sent_to_a_backend_for_a_packet_answered(rig):
    rig.run(big(v4(flags=DF) / tcp(), 1481))
    rig.run(big(v6() / tcp(443), 1461))
    assert rig.dp.vip_stats(rig.vip_num("v4tcp"))[0] == 0
    assert rig.dp.vip_stats(rig.vip_num("v6tcp"))[0] == 0
    assert rig.counters().get("tx", 0) == 0 and rig.counters()["icmp_too_big"] == 2


def test_a_packet_that_fits_is_still_forwarded(rig):
    result = rig.run(big(v4(flags=DF) / tcp(), 1480))
    assert result.verdict == XDP_TX
    assert IP in Ether(result.frame) and Ether(result.frame)[IP].proto == 4  # IP-in-IP
    assert rig.counters() == {"tx": 1, "ct_miss": 1}


def test_replies_are_rate_limited_per_cpu(rig):
    """A burst of BURST replies, then RATE per second; the excess is dropped and counted.
    (The rig runs every frame on one CPU, so one budget applies.)"""
    frame = big(v4(flags=DF) / tcp(), 1481)
    sent = BURST + 400
    start = time.monotonic()
    verdicts = [rig.run(frame).verdict for _ in range(sent)]
    elapsed = time.monotonic() - start
    replies = verdicts.count(XDP_TX)
    counters = rig.counters()
    assert counters["icmp_too_big"] == replies
    assert counters["drop_icmp_rate_limited"] == verdicts.count(XDP_DROP) == sent - replies
    assert BURST <= replies <= BURST + RATE * elapsed + 1, (replies, elapsed)
    assert sent - replies > 0, f"{sent} frames in {elapsed:.3f} s were all answered"
    # Once the budget has refilled, replies flow again.
    time.sleep(BURST / RATE)
    assert rig.run(frame).verdict == XDP_TX
