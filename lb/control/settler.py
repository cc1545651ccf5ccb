"""Settling ring slots on a timer: the plan and the apply under the change lock, the scan not.

A settle marks the ring slots no live flow disagrees with as settled (their non-SYN packets
then skip the connection table; see Balancer.settle_plan). The scan of the connection table is
the long part, so it runs without the lock: a ring written meanwhile is left as it is.
"""

from __future__ import annotations

import logging
import threading
import time

from lb.control import metrics
from lb.control.service import Balancer
from lb.control.settings import settle_limit

# Settles are the controller's events: its log says what they did.
log = logging.getLogger("lb.controller")


class Settler:
    """Settles `balancer`'s ring slots every `interval_s` on a thread of its own once started
    (0: never), until `stopping` is set; a flow idle through the settle limit (the TCP idle
    timeout in settles, lb.control.settings.settle_limit) stops holding its slot."""

    def __init__(self, balancer: Balancer, lock: threading.RLock, interval_s: float,
                 tcp_idle_timeout_s: float, stopping: threading.Event) -> None:
        self.balancer = balancer
        self.lock = lock
        self.interval_s = interval_s
        self.limit = settle_limit(interval_s, tcp_idle_timeout_s)
        self._stopping = stopping
        self._thread: threading.Thread | None = None

    def settle(self) -> tuple[int, int]:
        """Settle the ring slots that can be (Balancer.settle_plan / settle_apply under the
        change lock; the scan of the connection table, the long part, without it). Returns
        (slots settled, slots held by live flows)."""
        with self.lock:
            plan = self.balancer.settle_plan()
        if not plan:
            return 0, 0
        t0 = time.monotonic()
        scan = self.balancer.dp.scan(plan, self.limit)
        t1 = time.monotonic()
        with self.lock:
            settled, held = self.balancer.settle_apply(scan)
        metrics.RING_SLOTS_SETTLED.inc(settled)
        if settled:
            log.info("event=slots_settled settled=%d held_by_live_flows=%d scan_ms=%.1f "
                     "settle_ms=%.1f", settled, held, (t1 - t0) * 1e3,
                     (time.monotonic() - t1) * 1e3)
        return settled, held

    def start(self) -> None:
        """Settle every interval_s on a thread of its own until `stopping` is set; nothing
        when the interval is 0."""
        if not self.interval_s:
            return
        self._thread = threading.Thread(target=self._loop, name="lb-settle", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stopping.wait(self.interval_s):
            try:
                self.settle()
            except Exception:  # a failed settle leaves slots unsettled: safe, retried next time
                log.exception("event=settle_failed")
