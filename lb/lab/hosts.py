"""The lab's hosts: one namespace each and its link to the router (backends: their HTTP servers)."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from lb.lab.servers import BackendHTTPServer


@dataclass(eq=False)
class Host:
    """One namespace of the lab and its link to the router (compared by identity).

    `ifname`/`ifindex`/`mac` are this side's interface (inside `netns`); `router_*` are the
    router's side of the same veth pair (inside the router's namespace).
    """

    role: str
    netns: str
    v4: ipaddress.IPv4Address
    v6: ipaddress.IPv6Address
    router_v4: ipaddress.IPv4Address
    router_v6: ipaddress.IPv6Address
    router_ifname: str
    prefixlen_v4: int = 24
    prefixlen_v6: int = 64
    ifname: str = "eth0"
    ifindex: int = 0
    mac: str = ""
    router_ifindex: int = 0
    router_mac: str = ""


@dataclass(eq=False)
class Backend(Host):
    """A backend namespace (xdp_decap on its interface) and the HTTP servers it runs."""

    index: int = 0
    servers: list[BackendHTTPServer] = field(default_factory=list)

    @property
    def name(self) -> str:
        """How the backend introduces itself in HTTP responses (`backend0`, ...)."""
        return self.role
