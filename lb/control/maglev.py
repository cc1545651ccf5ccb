"""The Maglev ring: which backend owns each of a VIP's M lookup slots (pure: no bcc, no root).

The data plane hashes a flow to a slot and sends it to the backend the ring names there. This
module builds that ring following Eisenbud et al., "Maglev: A Fast and Reliable Software Network
Load Balancer" (NSDI 2016, section 3.4): each backend has a permutation of the slots,
``permutation[j] = (offset + j * skip) % M`` with ``offset = h1(key) % M`` and
``skip = h2(key) % (M - 1) + 1``; backends take turns claiming the next slot of their permutation
that nobody holds yet. M must be prime so that every permutation covers every slot.

Three choices on top of the paper:

* **Exact weights.** Each backend's quota of slots is fixed first, by the largest-remainder
  method: ``floor(M * w / W)`` each, then one more slot to the backends with the largest
  remainders until the quotas sum to M. Every quota is within one slot of ``M * w / W``. A backend
  stops taking turns once it holds its quota. (Katran's variant, where a backend takes ``weight``
  turns per round, is not exact: with 1000 backends of weight 100 at M=65537 a third of them get
  no slot at all.)
* **No backend is dropped.** A backend whose exact share is under one slot (weight below
  ``W / M``) is rounded up to one slot; each such slot is taken back from whichever backend holds
  the most slots at that moment, where one slot matters least. This is why ``ring_size`` must be
  at least the number of backends.
* **Same backends, same ring, on every host.** h1 and h2 are the two 64-bit halves of a
  personalized BLAKE2b digest of the key (never Python's ``hash()``, which is salted per
  process), and turns go in key order, not in the caller's order. Ties in the largest-remainder
  step also go in key order. Changing any of this reshuffles every ring in the fleet, hence the
  version in the personalization string.

The sequential fill loop runs in C (``lb/control/_maglev.c``, built by ``pip install -e .``):
in CPython it takes 40-100 ms at M=65537, in C about 1-3 ms. Hashes, quotas and the checks on
the input stay here, in Python.

Disruption: removing one of N backends moves all of its slots plus a few others; the paper
recommends M >= 100 * N for that and for balance, e.g. M=65537 for up to ~650 backends.
"""

from __future__ import annotations

import array
import functools
import hashlib
import heapq
import ipaddress
from collections.abc import Mapping, Sequence

try:
    from lb.control import _maglev
except ImportError as exc:  # pragma: no cover - only when the package was not built
    raise ImportError(
        "lb.control._maglev (the C fill loop) is not built; run "
        "`.venv/bin/pip install -e .` (needs gcc and python3-dev)"
    ) from exc

__all__ = ["DEFAULT_RING_SIZE", "MAX_RING_SIZE", "build_ring", "ring_diff"]

# The paper's M for production-sized pools: prime, and >= 100x a pool of 650 backends.
DEFAULT_RING_SIZE = 65537
# Ring entries and slot numbers are 32-bit in the C loop and in the BPF maps; 2**32 - 1 marks an
# empty slot while filling. 4294967291 = 2**32 - 5 is the largest prime below it.
MAX_RING_SIZE = 4294967291

# h1 and h2 are the halves of a 128-bit BLAKE2b digest; the personalization string separates
# these hashes from any other BLAKE2b use. Bump it to v2 only on purpose: it reshuffles all rings.
_HASHER = hashlib.blake2b(digest_size=16, person=b"lb.maglev.v1")
_H1_MASK = (1 << 64) - 1
# Miller-Rabin with these bases is exact for every n < 2,152,302,898,747 > MAX_RING_SIZE.
_PRIME_BASES = (2, 3, 5, 7, 11)


def build_ring(
    members: Sequence[tuple[str, int]], ring_size: int = DEFAULT_RING_SIZE
) -> array.array[int]:
    """Build the ring for `members`: (key, weight) pairs, e.g. ``[("10.0.2.10", 1), ...]``.

    Keys are the backends' stable identities (the control plane passes the address in canonical
    form; keys compare as exact strings); weights are positive ints, only their ratios matter.
    `ring_size` is M, a prime with len(members) <= M <= MAX_RING_SIZE.

    Returns ``array('I')`` of exactly `ring_size` entries; ``ring[slot]`` is an index into
    `members`. Backend i holds within one slot of ``M * w_i / W`` slots, and at least one: when
    that rounds to zero, the slot comes from whichever backend holds the most.
    The ring depends only on the set of (key, weight) pairs and M, not on the order of `members`,
    the process or the host. Raises ValueError (TypeError for wrong types) on bad input.
    """
    keys, weights = _check_members(members)
    _check_ring_size(ring_size, len(keys))
    n = len(keys)
    order = sorted(range(n), key=keys.__getitem__)  # turn order: by key
    ranks = [0] * n
    for rank, i in enumerate(order):
        ranks[i] = rank
    offsets = array.array("I", bytes(4 * n))
    skips = array.array("I", bytes(4 * n))
    for i, key in enumerate(keys):
        offsets[i], skips[i] = _permutation(key, ring_size)
    quotas = array.array("I", _quotas(weights, ranks, ring_size))
    ring = array.array("I", [0]) * ring_size  # every slot is set by the fill
    _maglev.fill(array.array("I", order), offsets, skips, quotas, ring)
    return ring


@functools.lru_cache(maxsize=1 << 16)
def _permutation(key: str, ring_size: int) -> tuple[int, int]:
    """(offset, skip) of a member's permutation; cached: a backend in 512 VIPs is hashed once."""
    hasher = _HASHER.copy()  # cheaper than passing `person` per call
    hasher.update(key.encode())
    digest = int.from_bytes(hasher.digest(), "little")
    return (digest & _H1_MASK) % ring_size, (digest >> 64) % (ring_size - 1) + 1  # h1, h2


def ring_diff(old: Sequence[int], new: Sequence[int]) -> list[int]:
    """Return the slot numbers, ascending, where `old` and `new` differ; both have one length.

    Entries are compared as they are: rings from build_ring hold indexes into their own
    `members`, so when the list changed, map both rings to backend ids first.
    """
    if len(old) != len(new):
        raise ValueError(f"rings differ in size: {len(old)} vs {len(new)} slots")
    if old == new:  # a common case, and a fast one for two arrays or two lists
        return []
    return [slot for slot, (a, b) in enumerate(zip(old, new, strict=True)) if a != b]


def _check_members(members: Sequence[tuple[str, int]]) -> tuple[list[str], list[int]]:
    """Split `members` into keys and weights, rejecting empty, duplicate or non-positive input."""
    if not members:
        raise ValueError("no backends: a ring needs at least one member")
    keys: list[str] = []
    weights: list[int] = []
    seen: set[str] = set()
    for key, weight in members:
        if not isinstance(key, str):
            raise TypeError(f"backend key must be a str, got {key!r}")
        if not isinstance(weight, int) or isinstance(weight, bool):
            raise TypeError(f"backend {key!r}: weight must be an int, got {weight!r}")
        if weight <= 0:
            raise ValueError(f"backend {key!r}: weight must be positive, got {weight}")
        if key in seen:
            raise ValueError(f"backend {key!r} appears twice: keys must be unique")
        seen.add(key)
        keys.append(key)
        weights.append(weight)
    return keys, weights


def _check_ring_size(ring_size: int, n_members: int) -> None:
    """Reject a ring size that is not a prime in [n_members, MAX_RING_SIZE]."""
    if not isinstance(ring_size, int) or isinstance(ring_size, bool):
        raise TypeError(f"ring_size must be an int, got {ring_size!r}")
    if ring_size > MAX_RING_SIZE:
        raise ValueError(f"ring_size {ring_size} is above the maximum {MAX_RING_SIZE}")
    if not _is_prime(ring_size):
        raise ValueError(
            f"ring_size {ring_size} is not prime: Maglev permutations cover every slot only "
            f"when it is (e.g. {DEFAULT_RING_SIZE})"
        )
    if ring_size < n_members:
        raise ValueError(
            f"ring_size {ring_size} is smaller than the {n_members} backends: each needs a slot "
            f"(use M >= 100 * backends for even shares)"
        )


def _quotas(weights: list[int], ranks: list[int], m: int) -> list[int]:
    """Slots per member: largest remainder of M * w / W, then at least 1 each; sums to `m`.

    `ranks` (the members' positions in key order) breaks ties, so the result does not depend on
    the order of the members. Needs m >= len(weights).
    """
    total = sum(weights)
    quotas = [m * w // total for w in weights]
    short = m - sum(quotas)  # 0 <= short < len(weights)
    if short:
        by_remainder = sorted(
            range(len(weights)), key=lambda i: (-(m * weights[i] % total), ranks[i])
        )
        for i in by_remainder[:short]:
            quotas[i] += 1
    starved = [i for i, q in enumerate(quotas) if q == 0]
    if starved:
        # Give each starved member one slot, taken from whoever has the most slots then. The
        # donors have sum(q - 1) = m - n + len(starved) >= len(starved) slots to spare.
        donors = [(-q, ranks[i], i) for i, q in enumerate(quotas) if q > 1]
        heapq.heapify(donors)
        for i in starved:
            quotas[i] = 1
            _, rank, donor = heapq.heappop(donors)
            quotas[donor] -= 1
            if quotas[donor] > 1:
                heapq.heappush(donors, (-quotas[donor], rank, donor))
    return quotas


def _is_prime(n: int) -> bool:
    """Exact primality for 0 <= n < 2,152,302,898,747 (deterministic Miller-Rabin)."""
    if n < 2:
        return False
    for p in _PRIME_BASES:
        if n % p == 0:
            return n == p
    d, s = n - 1, 0
    while d % 2 == 0:
        d, s = d // 2, s + 1
    for a in _PRIME_BASES:
        x = pow(a, d, n)
        if x in (1, n - 1):
            continue
        for _ in range(s - 1):
            x = x * x % n
            if x == n - 1:
                break
        else:
            return False
    return True


def ring_digest(slots: Sequence[int],
                addresses: Mapping[int, ipaddress.IPv4Address | ipaddress.IPv6Address]) -> str:
    """A short digest of a ring as the backends' addresses slot by slot: `slots` are backend
    indexes, `addresses` what each index stands for. Indexes differ between hosts, addresses
    do not: equal rings digest equal wherever their backends sit in the backend table."""
    used = sorted({i for i in set(slots) if i in addresses},
                  key=lambda i: addresses[i].packed)
    rank = {i: r + 1 for r, i in enumerate(used)}  # 0: a slot naming no known backend
    h = hashlib.blake2b(digest_size=8)
    for i in used:
        h.update(addresses[i].packed + b"|")
    h.update(array.array("H", [rank.get(i, 0) for i in slots]).tobytes())
    return h.hexdigest()
