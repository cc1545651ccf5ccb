"""The data plane's value types, free of bcc: address, protocol, VIP key, flow, XDP mode.

Every layer shares these (the model, the controller, the REST layer, the map access), so
they live apart from `loader` (the only module that imports bcc) and `maps`.
"""

from __future__ import annotations

import enum
import ipaddress
import socket
from dataclasses import dataclass

# An IP address of either family, as the data plane keys it.
Address = ipaddress.IPv4Address | ipaddress.IPv6Address

# The L4 protocols a VIP can name, by their API name: IP protocol numbers.
PROTOCOLS = {"tcp": socket.IPPROTO_TCP, "udp": socket.IPPROTO_UDP}


class XdpMode(enum.StrEnum):
    """How an XDP program runs on an interface: in the driver, or generic (after the skb)."""

    NATIVE = "native"
    GENERIC = "generic"


@dataclass(frozen=True)
class VipKey:
    """A VIP as the data plane keys it: address, port (0 = all ports), IP protocol number."""

    address: Address
    port: int
    proto: int

    @property
    def is_v6(self) -> bool:
        return self.address.version == 6


@dataclass(frozen=True)
class Flow:
    """A connection-table key read back from the kernel."""

    src: Address
    dst: Address
    sport: int
    dport: int
    proto: int
