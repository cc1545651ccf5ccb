"""Python mirrors of lb_consts.h flags and counter slots (a test keeps them equal)."""

from __future__ import annotations

import enum


class VipFlag(enum.IntFlag):
    """F_VIP_* flags of a VIP."""

    HASH_NO_SRC_PORT = 1 << 0
    NO_CONN_TABLE = 1 << 1


class BackendFlag(enum.IntFlag):
    """F_BACKEND_* flags of a backend slot."""

    VALID = 1 << 0
    IPV6 = 1 << 1


class Counter(enum.IntEnum):
    """CNT_* slots of the global counters; names match the C defines without the prefix."""

    PASS = 0
    DROP = 1
    TX = 2
    REDIRECT = 3
    CT_HIT = 4
    CT_MISS = 5
    CT_UDP_EXPIRED = 6
    PASS_NOT_IP = 7
    PASS_L2_TRUNCATED = 8
    PASS_L3_MALFORMED = 9
    PASS_NOT_VIP = 10
    PASS_ICMP = 11
    DROP_FRAGMENT = 12
    DROP_IPV4_OPTIONS = 13
    DROP_IPV6_EXT_HEADER = 14
    DROP_L4_TRUNCATED = 15
    DROP_BAD_LENGTH = 16
    DROP_TTL_EXPIRED = 17
    DROP_NO_BACKEND = 18
    DROP_TOO_BIG = 19
    DROP_ENCAP_FAILED = 20
    ICMP_TOO_BIG = 21
    DROP_ICMP_RATE_LIMITED = 22
    CT_SETTLED = 23
    DROP_INTERNAL = 24
    DROP_L4_MALFORMED = 25
    CT_MISS_NONSYN = 26


COUNTER_SLOTS = len(Counter)

# XDP verdicts (enum xdp_action in the kernel's UAPI).
XDP_ABORTED, XDP_DROP, XDP_PASS, XDP_TX, XDP_REDIRECT = range(5)
VERDICT_NAMES = {XDP_ABORTED: "ABORTED", XDP_DROP: "DROP", XDP_PASS: "PASS", XDP_TX: "TX",
                 XDP_REDIRECT: "REDIRECT"}

# Ways per connection-table set (LB_CT_WAYS).
CT_WAYS = 2
# A way's time stamp is CLOCK_MONOTONIC (coarse) ns >> CT_TIME_SHIFT (LB_CT_TIME_SHIFT).
CT_TIME_SHIFT = 20
# The bits of a ring slot holding its backend index (LB_SLOT_BACKEND).
SLOT_BACKEND = 0x7FFF
# Ring slot bit: settled, its non-SYN TCP packets skip the table (LB_SLOT_SETTLED).
SLOT_SETTLED = 0x8000
# A settled slot's TCP packets read the table one time in CT_SAMPLE_MASK + 1 (LB_CT_SAMPLE_MASK).
CT_SAMPLE_MASK = 15
