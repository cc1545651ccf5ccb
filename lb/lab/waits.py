"""Waiting without fixed sleeps: poll until a predicate holds, or until a reading stops moving."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


def wait_until(predicate: Callable[[], bool], timeout: float = 3.0,
               interval: float = 0.01) -> bool:
    """Poll `predicate` until it is true or `timeout` seconds pass; returns its last value."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)
    return True


def settle(read: Callable[[], Any], quiet: float = 0.2, timeout: float = 3.0) -> Any:
    """Call `read()` until its value has not changed for `quiet` seconds (at most `timeout`
    seconds); returns that value. For counters fed by packets still in flight."""
    deadline = time.monotonic() + timeout
    last, last_change = read(), time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.02)
        now = read()
        if now != last:
            last, last_change = now, time.monotonic()
        elif time.monotonic() - last_change >= quiet:
            break
    return last
