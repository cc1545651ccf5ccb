"""Python mirror of flowhash.h: flow hash, VIP pre-filter slot, outer source bits.

Words are the raw 32-bit loads the C makes of network-order bytes on a
little-endian host; every function returns exactly what the program computes.
"""

from __future__ import annotations

import ipaddress

from lb.xdp.consts import VipFlag
from lb.xdp.types import Address

HASH_SEED = 0x5EED1B01
_M = 0xFFFFFFFF



def _rol(w: int, s: int) -> int:
    return ((w << s) | (w >> (32 - s))) & _M


def hash_final(a: int, b: int, c: int) -> int:
    """lookup3's final mix of three 32-bit words; returns c."""
    c ^= b; c = (c - _rol(b, 14)) & _M  # noqa: E702
    a ^= c; a = (a - _rol(c, 11)) & _M  # noqa: E702
    b ^= a; b = (b - _rol(a, 25)) & _M  # noqa: E702
    c ^= b; c = (c - _rol(b, 16)) & _M  # noqa: E702
    a ^= c; a = (a - _rol(c, 4)) & _M  # noqa: E702
    b ^= a; b = (b - _rol(a, 14)) & _M  # noqa: E702
    c ^= b; c = (c - _rol(b, 24)) & _M  # noqa: E702
    return c


def hash3(a: int, b: int, c: int, seed: int) -> int:
    """Three words and a seed to 32 bits (lb_hash3)."""
    base = (0xDEADBEEF + seed) & _M
    return hash_final((a + base) & _M, (b + base) & _M, (c + base) & _M)


def words(addr: Address) -> list[int]:
    """An address as the program loads it: 1 or 4 little-endian 32-bit words."""
    raw = addr.packed
    return [int.from_bytes(raw[i:i + 4], "little") for i in range(0, len(raw), 4)]


def raw_port(port: int) -> int:
    """A port as the program loads it (network-order bytes read as a little-endian u16)."""
    return int.from_bytes(port.to_bytes(2, "big"), "little")


def fold(addr: Address) -> int:
    """XOR of an address's words (IPv4: the word itself)."""
    out = 0
    for w in words(addr):
        out ^= w
    return out


def _addr_word(addr: Address) -> int:
    w = words(addr)
    if len(w) == 1:
        return w[0]
    return hash3(w[0], w[1], w[2], HASH_SEED ^ w[3])


def flow_hash(src: Address, dst: Address, sport: int, dport: int, proto: int,
              vip_flags: int = 0) -> int:
    """The 32-bit hash whose value modulo ring_size picks the ring slot."""
    if vip_flags & VipFlag.HASH_NO_SRC_PORT:
        sport = 0
    ports = ((raw_port(sport) << 16) | raw_port(dport)) & _M
    return hash3(_addr_word(src), _addr_word(dst), ports, HASH_SEED ^ proto)


def filter_slot(addr: Address, filter_bits: int) -> int:
    """The vip_filter slot an address marks."""
    f = fold(addr)
    f ^= f >> 16
    return f & ((1 << filter_bits) - 1)


def encap_src_bits(src: Address, sport: int) -> int:
    """Per-flow bits of the outer source address (raw word order)."""
    p = raw_port(sport)
    return fold(src) ^ ((p << 16) | p)


def outer_source(prefix: ipaddress.IPv4Network | ipaddress.IPv6Network, src: Address,
                 sport: int) -> Address:
    """The outer source address the program writes for a flow, given the encap prefix."""
    bits = encap_src_bits(src, sport)
    mask_word = words(prefix.netmask)[-1]
    net_words = words(prefix.network_address)
    net_words[-1] = (net_words[-1] & mask_word) | (bits & ~mask_word & _M)
    raw = b"".join(w.to_bytes(4, "little") for w in net_words)
    return ipaddress.ip_address(raw)


def vip_addr_word(addr: Address) -> int:
    """An address as one word for vip_index_slot: IPv4 its word, IPv6 vip_addr_word_v6."""
    w = words(addr)
    if len(w) == 1:
        return w[0]
    return w[0] ^ _rol(w[1], 8) ^ _rol(w[2], 16) ^ _rol(w[3], 24)


def vip_index_slot(addr: Address, port: int, proto: int, index_bits: int) -> int:
    """The slot of VIP (addr, port, proto) in its family's VIP index of 2^index_bits slots."""
    x = vip_addr_word(addr) ^ ((((raw_port(port) << 8) | proto) * 0x85EBCA6B) & _M)
    return ((x * 0x9E3779B1) & _M) >> (32 - index_bits)


def conn_table_set(src: Address, dst: Address, sport: int, dport: int, proto: int,
                   sets: int) -> int:
    """The connection-table set of a flow: its full 5-tuple hash (whatever the VIP's flags)
    masked by sets - 1 (sets is a power of two)."""
    return flow_hash(src, dst, sport, dport, proto) & (sets - 1)
