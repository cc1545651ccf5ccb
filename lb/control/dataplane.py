"""The control plane's port onto the kernel: every member it uses of lb.xdp.maps.Dataplane.

`DataplanePort` names exactly what the Balancer and the Controller call on a data plane, no
more. lb.xdp.maps.Dataplane provides it over a loaded program's maps; the unit tests' fake
(tests/unit/fakes.py) provides it over dicts. tests/unit/test_dataplane_port.py holds all
three to the same signatures, so neither side can gain, lose or change a member alone.
"""

from __future__ import annotations

import array
from collections.abc import Callable, Iterator, Sequence
from typing import Protocol

from lb.xdp.config import Sizes
from lb.xdp.maps import SettleScan, SettleVip
from lb.xdp.types import Address, Flow, VipKey


class DataplanePort(Protocol):
    """What the control plane reads and writes in the data plane's maps.

    Indexes: VIP numbers are 0..max_vips-1 (ring and stats index); backend indexes are
    1..max_backends-1 (0 means "none"); a ring holds exactly `sizes.ring_size` slots.
    """

    sizes: Sizes

    # --- VIPs -----------------------------------------------------------------------
    def set_vip(self, vip: VipKey, vip_num: int, flags: int) -> None:
        """Map a VIP to its number and F_VIP_* flags."""

    def delete_vip(self, vip: VipKey) -> None:
        ...

    def vips(self) -> dict[VipKey, tuple[int, int]]:
        """Every VIP entry: key -> (vip_num, flags)."""

    def set_address_marker(self, address: Address) -> None:
        ...

    def delete_address_marker(self, address: Address) -> None:
        ...

    def write_filter(self, addresses: Sequence[Address], previous: Sequence[Address] = ()) -> int:
        """Make the pre-filter mark exactly `addresses` (was `previous`); returns slots
        written."""

    # --- backends -------------------------------------------------------------------
    def set_backend(self, index: int, address: Address, enabled: bool = True) -> None:
        ...

    def clear_backend(self, index: int) -> None:
        ...

    def backend_slot(self, index: int) -> tuple[Address | None, bool]:
        """(address, enabled) of slot `index`; (None, False) when empty."""

    # --- rings and settling ---------------------------------------------------------
    def read_ring(self, vip_num: int) -> list[int]:
        ...

    def write_ring(self, vip_num: int, ring: Sequence[int],
                   ids: array.array | None = None) -> int:
        """Make a VIP's ring hold `ring` (backend indexes; or member positions into `ids`);
        returns the slots written."""

    def unsettle(self, vip_num: int) -> int:
        ...

    def scan(self, vips: Sequence[SettleVip], limit: int) -> SettleScan:
        ...

    # `= ...`: a default of the implementation's own (Dataplane's accepts every VIP).
    def settle_scanned(self, scan: SettleScan,
                       still: Callable[[SettleVip], bool] = ...) -> tuple[int, dict[int, int]]:
        ...

    def reset_idle_settles(self) -> None:
        ...

    # --- connection table -----------------------------------------------------------
    def purge_conn_entries(self, backend: int) -> int:
        ...

    def conn_table(self) -> Iterator[tuple[Flow, int]]:
        """Every live (flow, backend index) of the connection tables."""

    # --- counters -------------------------------------------------------------------
    def counters(self) -> dict[str, int]:
        """Global counters by lower-case lb.xdp.consts.Counter name."""

    def vip_stats(self, vip_num: int) -> tuple[int, int]:
        """(packets, bytes) sent for a VIP."""

    def vip_ct_miss_nonsyn(self, vip_num: int) -> int:
        """Non-SYN TCP packets of a VIP that missed the connection table."""

    def backend_stats(self, index: int) -> tuple[int, int]:
        """(packets, bytes) sent to a backend."""
