"""What the daemon learns from the kernel's network state: interfaces and the next hop's MAC.

All lookups are netlink (pyroute2) in the calling thread's network namespace.
"""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass

from pyroute2 import IPRoute


class NetInfoError(RuntimeError):
    """An interface, route or neighbour the daemon needs is missing."""


@dataclass(frozen=True)
class Interface:
    """An interface's index, MAC and MTU."""

    name: str
    index: int
    mac: str
    mtu: int


@dataclass(frozen=True)
class NextHop:
    """Where encapsulated frames go: the gateway's address and MAC."""

    gateway: str
    mac: str


def interface(name: str) -> Interface:
    with IPRoute() as ipr:
        found = ipr.link_lookup(ifname=name)
        if not found:
            raise NetInfoError(f"no interface {name!r} in this network namespace")
        link = ipr.link("get", index=found[0])[0]
    return Interface(name, link["index"], link.get_attr("IFLA_ADDRESS"),
                     link.get_attr("IFLA_MTU"))


def _default_gateway(ipr: IPRoute, ifindex: int) -> str:
    for family in (socket.AF_INET, socket.AF_INET6):
        for route in ipr.get_default_routes(family=family):
            if route.get_attr("RTA_OIF") == ifindex and route.get_attr("RTA_GATEWAY"):
                return route.get_attr("RTA_GATEWAY")
    raise NetInfoError(f"no default route through ifindex {ifindex}: set next_hop_mac")


def _neighbour_mac(ipr: IPRoute, gateway: str, ifindex: int) -> str | None:
    family = socket.AF_INET6 if ":" in gateway else socket.AF_INET
    for n in ipr.get_neighbours(family=family, dst=gateway, ifindex=ifindex):
        mac = n.get_attr("NDA_LLADDR")
        if mac and n["state"] not in (0x20, 0x01):  # NUD_FAILED, NUD_INCOMPLETE
            return mac
    return None


def next_hop(ifindex: int, timeout: float = 3.0) -> NextHop:
    """The MAC of the default route's gateway on `ifindex`, resolving it if the neighbour
    table does not have it yet (one datagram to the gateway makes the kernel ask)."""
    with IPRoute() as ipr:
        gateway = _default_gateway(ipr, ifindex)
        mac = _neighbour_mac(ipr, gateway, ifindex)
        if mac is None:
            family = socket.AF_INET6 if ":" in gateway else socket.AF_INET
            with socket.socket(family, socket.SOCK_DGRAM) as s:
                s.sendto(b"", (gateway, 9))  # discard port; only the resolution matters
            deadline = time.monotonic() + timeout
            while mac is None and time.monotonic() < deadline:
                time.sleep(0.05)
                mac = _neighbour_mac(ipr, gateway, ifindex)
        if mac is None:
            raise NetInfoError(f"the gateway {gateway} did not resolve to a MAC within "
                               f"{timeout} s: set next_hop_mac")
    return NextHop(gateway, mac)
