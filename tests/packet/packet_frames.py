"""scapy builders for the packet tests' input frames: client -> balancer, TCP/UDP over IPv4/IPv6."""

from __future__ import annotations

from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Dot1Q, Ether
from scapy.packet import Raw

CLIENT_MAC, LB_MAC = "02:aa:aa:aa:aa:01", "02:11:22:33:44:55"
CLIENT4, CLIENT6 = "192.0.2.10", "2001:db8::10"


def eth(vlan: int | None = None, prio: int = 0):
    """Client -> balancer Ethernet header, 802.1Q-tagged when `vlan` is given."""
    e = Ether(src=CLIENT_MAC, dst=LB_MAC)
    return e / Dot1Q(vlan=vlan, prio=prio) if vlan is not None else e


def v4(dst: str = "10.0.0.1", src: str = CLIENT4, **kw):
    return IP(src=src, dst=dst, **kw)


def v6(dst: str = "fc00::1", src: str = CLIENT6, **kw):
    return IPv6(src=src, dst=dst, **kw)


def tcp(dport: int = 80, sport: int = 40000, flags: str = "PA",
        payload: bytes = b"GET / HTTP/1.1"):
    """A TCP segment; the default flags (PSH+ACK) make it part of an established flow."""
    return TCP(sport=sport, dport=dport, flags=flags, seq=1000, ack=2000) / Raw(payload)


def udp(dport: int = 53, sport: int = 40001, payload: bytes = b"query"):
    return UDP(sport=sport, dport=dport) / Raw(payload)
