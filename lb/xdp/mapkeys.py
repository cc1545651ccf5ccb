"""Map keys and values from Python values and back: address words, VIP keys, flows.

Shared by lb.xdp.maps and its parts (lb.xdp.rings, lb.xdp.conntable); addresses are the
raw words the program loads (lb.xdp.flowhash.words), ports in network byte order.
"""

from __future__ import annotations

import ctypes
import ipaddress
import socket

from lb.xdp.flowhash import words
from lb.xdp.structs import FlowV4, FlowV6, VipKeyV4, VipKeyV6
from lb.xdp.types import Address, Flow, VipKey

_U32 = ctypes.c_uint32


def words_array(addr: Address) -> ctypes.Array:
    """An address as a u32[4] of the words the program loads (IPv4: the first word)."""
    return (_U32 * 4)(*words(addr))


def vip_key(vip: VipKey, port: int | None = None, proto: int | None = None
            ) -> VipKeyV4 | VipKeyV6:
    """The vips_v4/vips_v6 key of a VIP (with another port or protocol, if given)."""
    port = vip.port if port is None else port
    proto = vip.proto if proto is None else proto
    nport = socket.htons(port)
    if vip.is_v6:
        return VipKeyV6(addr=words_array(vip.address), port=nport, proto=proto)
    return VipKeyV4(addr=words(vip.address)[0], port=nport, proto=proto)


def addr_from_words(ws, v6: bool) -> Address:
    """The address of 1 (IPv4) or 4 (IPv6) words as the program loads them."""
    n = 4 if v6 else 1
    raw = b"".join(int(ws[i]).to_bytes(4, "little") for i in range(n))
    return ipaddress.ip_address(raw)


def flow_key(flow: Flow) -> FlowV4 | FlowV6:
    """The struct flow_v4/flow_v6 of a flow (padding zero), as the program builds it."""
    ports = dict(sport=socket.htons(flow.sport), dport=socket.htons(flow.dport),
                 proto=flow.proto)
    if flow.src.version == 6:
        return FlowV6(src=words_array(flow.src), dst=words_array(flow.dst), **ports)
    return FlowV4(src=words(flow.src)[0], dst=words(flow.dst)[0], **ports)
