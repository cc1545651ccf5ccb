"""Data-plane sizes and runtime settings: the one place their values are defined.

`Sizes` become compiler flags (-D...) for lb_consts.h; `RuntimeConfig` is written
into the `lb_config` map and may change while the program runs.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from lb.xdp.consts import SLOT_BACKEND

# The kernel's list of CPUs that can ever be online (e.g. "0-1", "0,2-5").
POSSIBLE_CPUS_FILE = Path("/sys/devices/system/cpu/possible")


def _is_prime(n: int) -> bool:
    if n < 2:
        return False
    i = 2
    while i * i <= n:
        if n % i == 0:
            return False
        i += 1
    return True


def host_possible_cpus(path: Path = POSSIBLE_CPUS_FILE) -> int:
    """CPUs the kernel may ever run on (highest possible CPU number + 1): what
    bpf_get_smp_processor_id() can return, so the connection table needs a slice for each."""
    highest = 0
    for part in path.read_text().strip().split(","):
        highest = max(highest, int(part.rpartition("-")[2]))
    return highest + 1


@dataclass(frozen=True)
class Sizes:
    """Map sizes, fixed for the life of a loaded program (changing one means reloading).

    max_vips: VIPs at once; ring memory is max_vips * ring_size * 2 bytes.
    max_backends: backend slots (index 0 reserved), at most 32768: a ring slot holds the index
        in its low 15 bits (the top bit says the slot is settled, lb.xdp.consts.SLOT_SETTLED).
    ring_size: Maglev ring slots per VIP, a prime well above the backend count.
    conn_table_size: connection-table entries per CPU per address family, a power of two:
        conn_table_size / 2 sets of 2 ways (LRU within a set). Memory per CPU: 32 bytes
        (IPv4) + 52 bytes (IPv6) per entry, so the default takes 22 MB per CPU.
    cpus: CPUs the connection table has a slice for (each CPU uses only its own); default:
        this host's possible CPUs. The loader refuses fewer than the host has.
    filter_bits: the VIP-address pre-filter has 2^filter_bits slots.
    vip_index_bits (derived): each family's VIP index has 2^bits slots, 8 to 16 per VIP.
    """

    max_vips: int = 512
    max_backends: int = 4096
    ring_size: int = 65537
    conn_table_size: int = 262144
    filter_bits: int = 16
    cpus: int = field(default_factory=host_possible_cpus)
    ring_cell_slots: ClassVar[int] = 4

    def __post_init__(self) -> None:
        if not 1 <= self.max_vips <= 65536:
            raise ValueError(f"max_vips must be 1..65536, got {self.max_vips}")
        if not 2 <= self.max_backends <= SLOT_BACKEND + 1:
            raise ValueError(f"max_backends must be 2..{SLOT_BACKEND + 1}, got {self.max_backends}")
        if not _is_prime(self.ring_size):
            raise ValueError(f"ring_size must be prime, got {self.ring_size}")
        n = self.conn_table_size
        if n < 64 or n & (n - 1) or n > 1 << 26:
            raise ValueError(f"conn_table_size must be a power of two, 64..2^26, got {n}")
        if not 8 <= self.filter_bits <= 24:
            raise ValueError(f"filter_bits must be 8..24, got {self.filter_bits}")
        if not 1 <= self.cpus <= 8192:
            raise ValueError(f"cpus must be 1..8192, got {self.cpus}")
        if self.cpus * self.conn_table_sets >= 1 << 32:
            raise ValueError(f"{self.cpus} CPUs x {self.conn_table_sets} sets do not fit "
                             "a u32 array index")

    @property
    def ring_cells(self) -> int:
        """Array elements one VIP's ring occupies."""
        return -(-self.ring_size // self.ring_cell_slots)

    @property
    def conn_table_sets(self) -> int:
        """Sets of each connection table per CPU: conn_table_size / 2 ways."""
        return self.conn_table_size // 2

    @property
    def conn_table_entries(self) -> int:
        """Elements (sets) of each connection-table array: every CPU's slice, CPU-major."""
        return self.cpus * self.conn_table_sets

    @property
    def vip_index_bits(self) -> int:
        """log2 of the VIP index slots per family: at least 8 slots per VIP, at least 64."""
        return max(6, (8 * self.max_vips - 1).bit_length())

    def cflags(self) -> list[str]:
        """The -D flags that size lb_consts.h."""
        return [
            f"-DLB_MAX_VIPS={self.max_vips}",
            f"-DLB_MAX_BACKENDS={self.max_backends}",
            f"-DLB_RING_SIZE={self.ring_size}",
            f"-DLB_RING_CELL_SLOTS={self.ring_cell_slots}",
            f"-DLB_CT_SIZE={self.conn_table_size}",
            f"-DLB_CT_CPUS={self.cpus}",
            f"-DLB_FILTER_BITS={self.filter_bits}",
            f"-DLB_VIP_INDEX_BITS={self.vip_index_bits}",
        ]


def _mac_bytes(mac: str) -> bytes:
    parts = mac.split(":")
    if len(parts) != 6 or not all(len(p) == 2 for p in parts):
        raise ValueError(f"not a MAC address: {mac!r}")
    return bytes(int(p, 16) for p in parts)


@dataclass(frozen=True)
class RuntimeConfig:
    """Settings the program reads per packet from the `lb_config` map.

    next_hop_mac: destination MAC of encapsulated frames (router or backends' L2 peer).
    src_mac: source MAC of encapsulated frames (the egress interface's).
    egress_ifindex: 0 sends with XDP_TX out the receiving interface (one-arm);
        otherwise XDP_REDIRECT to this interface (two-arm).
    mtu: L3 MTU toward backends, bytes; packets bigger once encapsulated are dropped.
    ttl: outer TTL / hop limit.
    encap_source_v4 / encap_source_v6: prefixes for outer source addresses; the host
        bits are filled per flow so receivers' RSS spreads flows (IPv6: prefix >= /96).
    udp_timeout_s: UDP flows idle this long take a fresh ring decision.
    """

    next_hop_mac: str = "00:00:00:00:00:00"
    src_mac: str = "00:00:00:00:00:00"
    egress_ifindex: int = 0
    mtu: int = 1500
    ttl: int = 64
    encap_source_v4: str = "172.16.0.0/16"
    encap_source_v6: str = "fd00:ec::/96"
    udp_timeout_s: float = 30.0

    def __post_init__(self) -> None:
        _mac_bytes(self.next_hop_mac)
        _mac_bytes(self.src_mac)
        if not 68 <= self.mtu <= 65535:
            raise ValueError(f"mtu must be 68..65535, got {self.mtu}")
        if not 1 <= self.ttl <= 255:
            raise ValueError(f"ttl must be 1..255, got {self.ttl}")
        if self.udp_timeout_s <= 0:
            raise ValueError(f"udp_timeout_s must be > 0, got {self.udp_timeout_s}")
        if self.encap_v6.prefixlen < 96:  # also validates both prefixes
            raise ValueError(f"encap_source_v6 must be /96 or longer, got {self.encap_source_v6}")
        _ = self.encap_v4

    @property
    def encap_v4(self) -> ipaddress.IPv4Network:
        return ipaddress.IPv4Network(self.encap_source_v4, strict=False)

    @property
    def encap_v6(self) -> ipaddress.IPv6Network:
        return ipaddress.IPv6Network(self.encap_source_v6, strict=False)

    def mac_bytes(self) -> tuple[bytes, bytes]:
        """(next_hop_mac, src_mac) as 6 bytes each."""
        return _mac_bytes(self.next_hop_mac), _mac_bytes(self.src_mac)
