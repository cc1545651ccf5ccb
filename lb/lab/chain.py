"""Lab helpers for sharing an interface: the example firewall (firewall.c) for a chain slot."""

from __future__ import annotations

import ipaddress
import struct
from pathlib import Path
from typing import Any

from lb.xdp import chain, loader

FIREWALL_SOURCE = Path(__file__).resolve().parent / "firewall.c"
FIREWALL_NAME = "xdp_firewall"


def load_firewall(pin_dir: Path, blocked: ipaddress.IPv4Address) -> tuple[Any, int]:
    """Compile the example firewall on the chain pinned under `pin_dir`, dropping IPv4 packets
    from `blocked`; returns (bcc handle, program fd). Put it in slot 0 with `chain.set_slot`."""
    as_be32 = struct.unpack("=I", blocked.packed)[0]  # the bytes as the packet has them
    return loader.load_function(FIREWALL_SOURCE, FIREWALL_NAME,
                                [f'-DLB_CHAIN_PIN="{chain.pin_path(pin_dir)}"',
                                 f"-DBLOCKED_SRC={as_be32:#x}"])
