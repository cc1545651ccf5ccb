"""Types of lb/control/_maglev.c, the Maglev ring fill loop in C (lb.control.maglev calls it)."""

import array

def fill(order: array.array[int], offsets: array.array[int], skips: array.array[int],
         quotas: array.array[int], ring: array.array[int]) -> None:
    """Fill `ring` (array('I') of M slots) by Maglev turn-taking; each member stops at its
    quota. Every argument is an array('I'); raises TypeError otherwise."""
