"""Single-frame packet cases, as a table: input frame, expected verdict, counters and output.

Each case runs once through BPF_PROG_TEST_RUN on the real program (see conftest.py
for the VIPs). For every case: the verdict; the global counters, exactly (every
other counter stays 0, so the pass/drop/tx totals moved by one); per-VIP and
per-backend stats (packets=1, bytes=frame length when sent, nothing otherwise);
and the output frame: encapsulated as check_forwarded describes, or, when the
program refuses a frame, left byte for byte as it came. Cases marked malformed
must never be sent on. A failure prints both frames side by side.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

import pytest
from packet_frames import CLIENT_MAC, LB_MAC, eth, tcp, udp, v4, v6
from scapy.layers.inet import ICMP, TCP, UDP, IPOption_RR
from scapy.layers.inet6 import (
    ICMPv6EchoRequest,
    IPv6ExtHdrDestOpt,
    IPv6ExtHdrFragment,
    IPv6ExtHdrHopByHop,
    IPv6ExtHdrRouting,
)
from scapy.layers.l2 import ARP, Dot1Q, Ether
from scapy.packet import Raw

from lb.xdp.flowhash import filter_slot

pytestmark = pytest.mark.root

NOT_VIP4, NOT_VIP6 = "10.9.9.9", "fc09::9"


def filter_twin(vip: str) -> str:
    """An address that is not a VIP but marks the same vip_filter slot as `vip`.

    The slot is the XOR of the halves of the address's (last) word, so flipping the
    same bit in both halves keeps it. Frames to the twin get past the pre-filter and
    must be turned away by the exact lookup.
    """
    raw = bytearray(ipaddress.ip_address(vip).packed)
    raw[-4] ^= 1
    raw[-2] ^= 1
    twin = ipaddress.ip_address(bytes(raw))
    assert filter_slot(twin, 16) == filter_slot(ipaddress.ip_address(vip), 16)
    return str(twin)


TWIN4, TWIN6 = filter_twin("10.0.0.1"), filter_twin("fc00::1")


def sized(layers, total: int) -> bytes:
    """`layers` (an IP packet over TCP) with payload grown so its IP length is `total`."""
    head = len(layers)
    return bytes(eth() / layers / Raw(b"x" * (total - head)))


def patch(frame: bytes, offset: int, value: bytes) -> bytes:
    """`frame` with the bytes at `offset` replaced (to build what scapy refuses to)."""
    return frame[:offset] + value + frame[offset + len(value):]


def pad_to(frame: bytes, size: int, fill: bytes = b"\xee") -> bytes:
    """Ethernet padding: the trailer a short frame carries up to `size` bytes."""
    return frame + fill * (size - len(frame))


@dataclass(frozen=True)
class Case:
    """One row: what goes in, the verdict and counters expected, and which VIP sends it."""

    id: str
    description: str
    frame: bytes
    verdict: str
    counters: dict[str, int]
    vip: str | None = None        # forwarded cases: the VIP whose ring picks the backend
    malformed: bool = False       # must never be sent on, whatever else is expected


SENT = {"tx": 1, "ct_miss": 1}        # sent after a fresh ring decision, remembered
SENT_NO_CT = {"tx": 1}                # sent by a VIP that bypasses the connection table
# The ring decision (and its table entry) comes before the size check. IPv4 without DF
# (scapy's default) is dropped; with DF, and IPv6, it is answered: test_icmp_too_big.py.
TOO_BIG = {"drop": 1, "drop_too_big": 1, "ct_miss": 1}


def passed(reason: str) -> dict[str, int]:
    return {"pass": 1, reason: 1}


def dropped(reason: str) -> dict[str, int]:
    return {"drop": 1, reason: 1}


CASES = [
    # --- forwarding: every outer/inner family pair, TCP and UDP ----------------------
    Case("v4-tcp-to-v4", "IPv4 VIP -> IPv4 backend (IPv4-in-IPv4), DSCP EF + ECT(1)",
         bytes(eth() / v4(tos=0xB9) / tcp()), "TX", SENT, "v4tcp"),
    Case("v4-tcp-syn-to-v4", "TCP SYN: a fresh decision, remembered",
         bytes(eth() / v4() / tcp(flags="S", payload=b"")), "TX", SENT, "v4tcp"),
    Case("v4-udp-to-v6", "IPv4 VIP -> IPv6 backend (IPv4-in-IPv6, next header 4)",
         bytes(eth() / v4(tos=0x2A) / udp()), "TX", SENT, "v4udp"),
    Case("v6-tcp-to-v6", "IPv6 VIP -> IPv6 backend (IPv6-in-IPv6, next header 41)",
         bytes(eth() / v6(tc=0xB9, fl=0xABCDE) / tcp(dport=443)), "TX", SENT, "v6tcp"),
    Case("v6-udp-to-v4", "IPv6 VIP -> IPv4 backend (IPv6-in-IPv4, protocol 41)",
         bytes(eth() / v6(tc=0x61) / udp()), "TX", SENT, "v6udp"),
    Case("v4-df-set", "IPv4 Don't Fragment is not a fragment: sent",
         bytes(eth() / v4(flags="DF") / tcp()), "TX", SENT, "v4tcp"),
    Case("v4-ttl-1", "TTL 1 to a VIP: we are its destination, sent with inner TTL 1",
         bytes(eth() / v4(ttl=1) / tcp()), "TX", SENT, "v4tcp"),
    Case("v6-hlim-1", "hop limit 1 to a VIP: sent with inner hop limit 1",
         bytes(eth() / v6(hlim=1) / tcp(dport=443)), "TX", SENT, "v6tcp"),
    Case("v4-tcp-padded-60", "60-byte frame with Ethernet padding: outer length from inner",
         pad_to(bytes(eth() / v4() / tcp(payload=b"")), 60), "TX", SENT, "v4tcp"),
    Case("v4-udp-padded-60", "60-byte UDP frame with padding, to an IPv6 backend",
         pad_to(bytes(eth() / v4() / udp(payload=b"hi")), 60), "TX", SENT, "v4udp"),
    Case("v6-udp-trailer", "IPv6 frame with 4 trailing bytes past payload_len",
         pad_to(bytes(eth() / v6() / udp()), 104 + 4), "TX", SENT, "v6udp"),
    # --- 802.1Q ------------------------------------------------------------------
    Case("vlan-v4-tcp", "tagged IPv4 (VLAN 100, PCP 5): sent with the same tag",
         bytes(eth(vlan=100, prio=5) / v4() / tcp()), "TX", SENT, "v4tcp"),
    Case("vlan-v4-udp-to-v6", "tagged IPv4 to an IPv6 backend: tag kept over the IPv6 outer",
         bytes(eth(vlan=7) / v4() / udp()), "TX", SENT, "v4udp"),
    Case("vlan-v6-udp-to-v4", "tagged IPv6 to an IPv4 backend: tag kept",
         bytes(eth(vlan=4094, prio=1) / v6() / udp()), "TX", SENT, "v6udp"),
    Case("vlan-v6-tcp", "tagged IPv6 to an IPv6 backend: tag kept",
         bytes(eth(vlan=1) / v6() / tcp(dport=443)), "TX", SENT, "v6tcp"),
    Case("vlan-not-vip", "tagged IPv4 to a non-VIP: passed unchanged",
         bytes(eth(vlan=100) / v4(dst=NOT_VIP4) / tcp()), "PASS", passed("pass_not_vip")),
    Case("vlan-arp", "tagged ARP: not IP, passed unchanged",
         bytes(eth(vlan=100) / ARP(pdst="10.0.0.1")), "PASS", passed("pass_not_ip")),
    # --- port 0, exact ports, flags ----------------------------------------------
    Case("port0-22", "VIP on port 0 takes TCP port 22", bytes(eth() / v4("10.0.0.2") / tcp(22)),
         "TX", SENT, "v4all"),
    Case("port0-65535", "VIP on port 0 takes TCP port 65535",
         bytes(eth() / v4("10.0.0.2") / tcp(65535)), "TX", SENT, "v4all"),
    Case("port0-exact-wins", "port 8080 has its own VIP: it beats the port-0 VIP",
         bytes(eth() / v4("10.0.0.2") / tcp(8080)), "TX", SENT, "v4exact"),
    Case("port0-other-proto", "port-0 VIP is TCP only: UDP to its address is not a VIP",
         bytes(eth() / v4("10.0.0.2") / udp(8080)), "PASS", passed("pass_not_vip")),
    Case("no-src-port-vip", "F_VIP_HASH_NO_SRC_PORT VIP: hashed without the source port",
         bytes(eth() / v6("fc00::3") / tcp(80, sport=5555)), "TX", SENT, "v6nosport"),
    Case("no-conn-table-vip", "F_VIP_NO_CONN_TABLE VIP: sent, no table outcome counted",
         bytes(eth() / v4("10.0.0.4") / udp(53)), "TX", SENT_NO_CT, "v4noct"),
    # --- MTU -----------------------------------------------------------------------
    Case("mtu-v4-fits", "1480-byte IPv4 + 20-byte IPv4 outer = MTU 1500 exactly: sent",
         sized(v4() / tcp(payload=b""), 1480), "TX", SENT, "v4tcp"),
    Case("mtu-v4-too-big", "1481-byte IPv4 (no DF) + 20-byte outer > MTU 1500: dropped",
         sized(v4() / tcp(payload=b""), 1481), "DROP", TOO_BIG),
    Case("mtu-v4-in-v6-fits", "1460-byte IPv4 + 40-byte IPv6 outer = 1500: sent",
         bytes(eth() / v4() / udp(payload=b"u" * (1460 - 28))), "TX", SENT, "v4udp"),
    Case("mtu-v4-in-v6-too-big", "1461-byte IPv4 (no DF) + 40-byte IPv6 outer: dropped",
         bytes(eth() / v4() / udp(payload=b"u" * (1461 - 28))), "DROP", TOO_BIG),
    Case("mtu-v6-fits", "1460-byte IPv6 + 40-byte IPv6 outer = 1500: sent",
         sized(v6() / tcp(443, payload=b""), 1460), "TX", SENT, "v6tcp"),
    # --- not for a VIP: passed, byte for byte ---------------------------------------
    Case("arp", "ARP: not IP", bytes(eth() / ARP(pdst="10.0.0.1")), "PASS",
         passed("pass_not_ip")),
    Case("lldp", "LLDP ethertype: not IP", bytes(Ether(type=0x88CC) / Raw(b"\x02" * 46)),
         "PASS", passed("pass_not_ip")),
    Case("qinq", "802.1ad outer tag (QinQ): not IP after at most one 802.1Q tag",
         bytes(Ether(type=0x88A8) / Dot1Q(vlan=5) / v4() / tcp()), "PASS", passed("pass_not_ip")),
    Case("v4-not-vip", "IPv4 TCP to a non-VIP address",
         bytes(eth() / v4(NOT_VIP4) / tcp()), "PASS", passed("pass_not_vip")),
    Case("v6-not-vip", "IPv6 UDP to a non-VIP address",
         bytes(eth() / v6(NOT_VIP6) / udp()), "PASS", passed("pass_not_vip")),
    Case("v4-filter-twin", f"IPv4 TCP to {TWIN4}: same pre-filter slot as 10.0.0.1, not a VIP",
         bytes(eth() / v4(TWIN4) / tcp()), "PASS", passed("pass_not_vip")),
    Case("v6-filter-twin", f"IPv6 TCP to {TWIN6}: same pre-filter slot as fc00::1, not a VIP",
         bytes(eth() / v6(TWIN6) / tcp(443)), "PASS", passed("pass_not_vip")),
    Case("v4-vip-other-port", "VIP address, TCP port 81: no such VIP and no port-0 VIP",
         bytes(eth() / v4() / tcp(81)), "PASS", passed("pass_not_vip")),
    Case("v4-vip-other-proto", "VIP address and port, UDP instead of TCP",
         bytes(eth() / v4() / udp(80)), "PASS", passed("pass_not_vip")),
    Case("v6-vip-other-port", "IPv6 VIP address, TCP port 444",
         bytes(eth() / v6() / tcp(444)), "PASS", passed("pass_not_vip")),
    Case("v4-vip-gre", "GRE to a VIP address: not TCP/UDP, the kernel's",
         bytes(eth() / v4(proto=47) / Raw(b"\x00\x00\x08\x00" + b"g" * 20)), "PASS",
         passed("pass_not_vip")),
    Case("v4-icmp-to-vip", "ICMP echo to a VIP address: for the host's stack",
         bytes(eth() / v4() / ICMP()), "PASS", passed("pass_icmp")),
    Case("v6-icmp-to-vip", "ICMPv6 echo to a VIP address: for the host's stack",
         bytes(eth() / v6() / ICMPv6EchoRequest()), "PASS", passed("pass_icmp")),
    # --- L2 malformed: passed (L3 malformed below, to VIP and non-VIP addresses) ------
    Case("l2-truncated-vlan", "802.1Q ethertype and 2 of the tag's 4 bytes",
         bytes(Ether(src=CLIENT_MAC, dst=LB_MAC, type=0x8100)) + b"\x00\x64", "PASS",
         passed("pass_l2_truncated"), malformed=True),
]


# IP headers too short or invalid: the kernel's to judge, passed whatever the address.
# (id, what, frame for a destination, IP family of the destination)
L3_MALFORMED = [
    ("l3-truncated-v4", "IPv4 ethertype, 19 of the header's 20 bytes",
     lambda d: bytes(eth() / v4(d) / tcp())[:14 + 19], 4),
    ("l3-truncated-v6", "IPv6 ethertype, 39 of the header's 40 bytes",
     lambda d: bytes(eth() / v6(d) / tcp(443))[:14 + 39], 6),
    ("l3-v4-ihl-4", "IPv4 IHL 4 (< 5)",
     lambda d: patch(bytes(eth() / v4(d) / tcp()), 14, b"\x44"), 4),
    ("l3-v4-version-6", "IPv4 ethertype, version nibble 6",
     lambda d: patch(bytes(eth() / v4(d) / tcp()), 14, b"\x65"), 4),
    ("l3-v6-version-4", "IPv6 ethertype, version nibble 4",
     lambda d: patch(bytes(eth() / v6(d) / tcp(443)), 14, b"\x40"), 6),
    ("l3-vlan-truncated-v4", "tagged, IPv4 header cut after 10 bytes",
     lambda d: bytes(eth(vlan=3) / v4(d) / tcp())[:18 + 10], 4),
]
for _id, _what, _build, _family in L3_MALFORMED:
    _vip, _other = ("10.0.0.1", NOT_VIP4) if _family == 4 else ("fc00::1", NOT_VIP6)
    CASES += [
        Case(f"{_id}-to-vip", f"{_what}, to a VIP address", _build(_vip), "PASS",
             passed("pass_l3_malformed"), malformed=True),
        Case(f"{_id}-to-non-vip", f"{_what}, to a non-VIP address", _build(_other), "PASS",
             passed("pass_l3_malformed"), malformed=True),
    ]


def _v4_truncated_l4(dst: str, proto: int, n: int) -> bytes:
    hdr = bytes(TCP(dport=80) if proto == 6 else UDP(dport=53))[:n]
    return bytes(eth() / v4(dst, proto=proto) / Raw(hdr))


def _v6_truncated_l4(dst: str, proto: int, n: int) -> bytes:
    hdr = bytes(TCP(dport=443) if proto == 6 else UDP(dport=53))[:n]
    return bytes(eth() / v6(dst, nh=proto) / Raw(hdr))


def _l4_field(frame: bytes, l3_len: int, offset: int, value: bytes) -> bytes:
    """`frame` (untagged) with bytes at `offset` of its L4 header replaced."""
    return patch(frame, 14 + l3_len + offset, value)


def _v4_tot_len(dst: str, tot_len: int) -> bytes:
    return patch(bytes(eth() / v4(dst) / tcp()), 16, tot_len.to_bytes(2, "big"))


def _v6_payload_len(dst: str, plen: int) -> bytes:
    return patch(bytes(eth() / v6(dst) / tcp(443)), 18, plen.to_bytes(2, "big"))


# Refused to a VIP address, passed to any other: (id, what, frame for a destination,
# IP family of the destination, drop reason when it is a VIP address).
REFUSED = [
    ("v4-tcp-truncated", "TCP header of 10 bytes",
     lambda d: _v4_truncated_l4(d, 6, 10), 4, "drop_l4_truncated"),
    ("v4-udp-truncated", "UDP header of 4 bytes",
     lambda d: _v4_truncated_l4(d, 17, 4), 4, "drop_l4_truncated"),
    ("v6-tcp-truncated", "TCP header of 19 bytes",
     lambda d: _v6_truncated_l4(d, 6, 19), 6, "drop_l4_truncated"),
    ("v6-udp-truncated", "UDP header of 7 bytes",
     lambda d: _v6_truncated_l4(d, 17, 7), 6, "drop_l4_truncated"),
    ("v4-tcp-doff-4", "TCP data offset 4 (< 5)",
     lambda d: _l4_field(bytes(eth() / v4(d) / tcp()), 20, 12, b"\x40"), 4, "drop_l4_malformed"),
    ("v4-tcp-doff-past-segment", "TCP data offset 15 (60 bytes) in a 24-byte segment",
     lambda d: _l4_field(bytes(eth() / v4(d) / tcp(payload=b"abcd")), 20, 12, b"\xf0"), 4,
     "drop_l4_malformed"),
    ("v6-tcp-doff-0", "TCP data offset 0",
     lambda d: _l4_field(bytes(eth() / v6(d) / tcp(443)), 40, 12, b"\x00"), 6,
     "drop_l4_malformed"),
    ("v6-tcp-doff-past-segment", "TCP data offset 6 in a 20-byte segment",
     lambda d: _l4_field(bytes(eth() / v6(d) / tcp(443, payload=b"")), 40, 12, b"\x60"), 6,
     "drop_l4_malformed"),
    ("v4-udp-len-7", "UDP length 7 (< 8)",
     lambda d: _l4_field(bytes(eth() / v4(d) / udp()), 20, 4, b"\x00\x07"), 4,
     "drop_l4_malformed"),
    ("v4-udp-len-past-payload", "UDP length 200 in a 13-byte IP payload",
     lambda d: _l4_field(bytes(eth() / v4(d) / udp()), 20, 4, b"\x00\xc8"), 4,
     "drop_l4_malformed"),
    ("v6-udp-len-0", "UDP length 0 (no jumbograms here)",
     lambda d: _l4_field(bytes(eth() / v6(d) / udp()), 40, 4, b"\x00\x00"), 6,
     "drop_l4_malformed"),
    ("v6-udp-len-past-payload", "UDP length one past the IPv6 payload",
     lambda d: _l4_field(bytes(eth() / v6(d) / udp()), 40, 4,
                         (len(bytes(udp())) + 1).to_bytes(2, "big")), 6, "drop_l4_malformed"),
    ("v4-options", "IPv4 with a record-route option (IHL 6)",
     lambda d: bytes(eth() / v4(d, options=[IPOption_RR()]) / tcp()), 4, "drop_ipv4_options"),
    ("v4-first-fragment", "IPv4 first fragment (MF, offset 0)",
     lambda d: bytes(eth() / v4(d, flags="MF") / tcp()), 4, "drop_fragment"),
    ("v4-middle-fragment", "IPv4 middle fragment (MF, offset 185)",
     lambda d: bytes(eth() / v4(d, flags="MF", frag=185, proto=6) / Raw(b"m" * 48)), 4,
     "drop_fragment"),
    ("v4-last-fragment", "IPv4 last fragment (offset 185, no ports in it)",
     lambda d: bytes(eth() / v4(d, frag=185, proto=6) / Raw(b"l" * 48)), 4, "drop_fragment"),
    ("v6-fragment", "IPv6 fragment header, first fragment",
     lambda d: bytes(eth() / v6(d) / IPv6ExtHdrFragment(m=1, id=7) / tcp(443)), 6,
     "drop_fragment"),
    ("v6-hop-by-hop", "IPv6 hop-by-hop options header",
     lambda d: bytes(eth() / v6(d) / IPv6ExtHdrHopByHop() / tcp(443)), 6,
     "drop_ipv6_ext_header"),
    ("v6-routing", "IPv6 routing header",
     lambda d: bytes(eth() / v6(d) / IPv6ExtHdrRouting() / tcp(443)), 6,
     "drop_ipv6_ext_header"),
    ("v6-dest-opts", "IPv6 destination options header",
     lambda d: bytes(eth() / v6(d) / IPv6ExtHdrDestOpt() / udp()), 6, "drop_ipv6_ext_header"),
    ("v6-esp", "IPv6 ESP (next header 50)",
     lambda d: bytes(eth() / v6(d, nh=50) / Raw(b"\x00\x00\x00\x01" * 8)), 6,
     "drop_ipv6_ext_header"),
    ("v4-ttl-0", "IPv4 TTL 0",
     lambda d: bytes(eth() / v4(d, ttl=0) / tcp()), 4, "drop_ttl_expired"),
    ("v6-hlim-0", "IPv6 hop limit 0",
     lambda d: bytes(eth() / v6(d, hlim=0) / tcp(443)), 6, "drop_ttl_expired"),
    ("v4-len-beyond-frame", "IPv4 total length 200, longer than the frame",
     lambda d: _v4_tot_len(d, 200), 4, "drop_bad_length"),
    ("v4-len-below-ihl", "IPv4 total length 19 (< IHL * 4)",
     lambda d: _v4_tot_len(d, 19), 4, "drop_bad_length"),
    ("v6-plen-beyond-frame", "IPv6 payload length 200, longer than the frame",
     lambda d: _v6_payload_len(d, 200), 6, "drop_bad_length"),
    # The TCP header lies in the frame but past the IP packet's end: read from
    # Ethernet padding, it is no header. The documented reason would be a truncated
    # L4 header (the IP packet is too short to hold one).
    ("v4-l4-past-tot-len", "IPv4 total length 20: the TCP header is outside the packet",
     lambda d: _v4_tot_len(d, 20), 4, "drop_l4_truncated"),
    ("v4-l4-partly-past-tot-len", "IPv4 total length 30: 10 of 20 TCP header bytes inside",
     lambda d: _v4_tot_len(d, 30), 4, "drop_l4_truncated"),
    ("v6-l4-past-plen", "IPv6 payload length 0: the TCP header is outside the packet",
     lambda d: _v6_payload_len(d, 0), 6, "drop_l4_truncated"),
]

for _id, _what, _build, _family, _reason in REFUSED:
    _vip, _other = ("10.0.0.1", NOT_VIP4) if _family == 4 else ("fc00::1", NOT_VIP6)
    _twin = TWIN4 if _family == 4 else TWIN6
    CASES += [
        Case(f"{_id}-to-vip", f"{_what}, to a VIP address", _build(_vip), "DROP",
             dropped(_reason), malformed=True),
        Case(f"{_id}-to-non-vip", f"{_what}, to a non-VIP address: passed unchanged",
             _build(_other), "PASS", passed("pass_not_vip"), malformed=True),
        Case(f"{_id}-to-filter-twin",
             f"{_what}, to a non-VIP sharing a VIP's filter slot: passed unchanged",
             _build(_twin), "PASS", passed("pass_not_vip"), malformed=True),
    ]
CASES += [
    Case("v4-icmp-to-non-vip", "ICMP echo to a non-VIP address",
         bytes(eth() / v4(NOT_VIP4) / ICMP()), "PASS", passed("pass_not_vip")),
    Case("v6-icmp-to-non-vip", "ICMPv6 echo to a non-VIP address",
         bytes(eth() / v6(NOT_VIP6) / ICMPv6EchoRequest()), "PASS", passed("pass_not_vip")),
]

NUMBERED = [(f"{i:03d}-{c.id}", c) for i, c in enumerate(CASES, 1)]
assert len({c.id for c in CASES}) == len(CASES), "case ids must be unique"


@pytest.mark.parametrize("case", [c for _, c in NUMBERED], ids=[n for n, _ in NUMBERED])
def test_packet_case(rig, case: Case) -> None:
    result = rig.run(case.frame)
    verdict = result.verdict_name
    title = f"case {case.id}: {case.description}"
    with rig.explaining(title, case.frame, result):
        if case.malformed:
            assert verdict not in ("TX", "REDIRECT"), "a malformed frame was sent on"
        assert verdict == case.verdict, "verdict"
        assert rig.counters() == case.counters, "counters"
        l4 = Ether(case.frame).getlayer(TCP)
        lost = int(case.counters.get("ct_miss", 0) == 1 and l4 is not None and
                   not (l4.flags.S and not l4.flags.A))
        assert rig.lost_state() == lost, "ct_miss_nonsyn: a non-SYN TCP table miss"
        vip_totals, backend_totals = rig.stats_totals()
        if case.vip is not None:
            index = rig.check_forwarded(case.frame, result.frame, case.vip)
            sent = (1, len(case.frame))
            assert rig.dp.vip_stats(rig.vip_num(case.vip)) == sent, "per-VIP stats"
            assert rig.dp.backend_stats(index) == sent, "per-backend stats"
            assert (vip_totals, backend_totals) == (sent, sent), "stats of another VIP/backend"
        else:
            assert result.frame == case.frame, "a frame the program refused was modified"
            assert (vip_totals, backend_totals) == ((0, 0), (0, 0)), \
                "stats count a packet that was not sent"


MALFORMED = [(n, c) for n, c in NUMBERED if c.malformed]


def test_two_arm_mode_redirects_to_the_egress_interface(rig) -> None:
    """egress_ifindex set: XDP_REDIRECT and `redirect` instead of XDP_TX, same frame out."""
    frame = bytes(eth(vlan=9) / v6() / udp())
    with rig.configured(egress_ifindex=1):
        result = rig.run(frame)
        with rig.explaining("two-arm IPv6 UDP", frame, result):
            assert result.verdict_name == "REDIRECT"
            assert rig.counters() == {"redirect": 1, "ct_miss": 1}
            index = rig.check_forwarded(frame, result.frame, "v6udp")
            assert rig.dp.backend_stats(index) == (1, len(frame))
    assert rig.dp.read_config().egress_ifindex == 0, "config not restored"


@pytest.mark.parametrize("case", [c for _, c in MALFORMED], ids=[n for n, _ in MALFORMED])
def test_malformed_is_not_redirected_in_two_arm_mode(rig, case: Case) -> None:
    with rig.configured(egress_ifindex=1):
        result = rig.run(case.frame)
    verdict = result.verdict_name
    with rig.explaining(f"two-arm, case {case.id}: {case.description}", case.frame, result):
        assert verdict not in ("TX", "REDIRECT"), "a malformed frame was sent on"
        assert verdict == case.verdict
        assert rig.counters() == case.counters
