"""The Python side of lb/lab/decap.c: where its source is and what its counter slots mean."""

from __future__ import annotations

import enum
from pathlib import Path

DECAP_SOURCE = Path(__file__).resolve().parent / "decap.c"


class DecapSlot(enum.IntEnum):
    """DECAP_* counter slots of lb/lab/decap.c (a test keeps them equal to the C defines)."""

    V4_IN_V4 = 0
    V6_IN_V4 = 1
    V4_IN_V6 = 2
    V6_IN_V6 = 3
    PASS = 4
    DROP_MALFORMED = 5


DECAPSULATED = (DecapSlot.V4_IN_V4, DecapSlot.V6_IN_V4, DecapSlot.V4_IN_V6, DecapSlot.V6_IN_V6)
