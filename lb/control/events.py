"""The event stream: one structured record per accepted change, health transition, ring
rebuild, start and reconcile, logged as JSON and kept in a bounded ring for GET /events.

Each event is a dict: `seq` (1, 2, ... in this process: the cursor), `time` (Unix seconds),
`kind` (start, reconcile, change, health, ring_rebuild) and the kind's fields
(docs/api.md#events). `who` names the origin of a change: the API peer's address, with
"(token)" when the request carried the bearer token; "daemon" for the daemon's own work.
"""

from __future__ import annotations

import collections
import contextvars
import json
import logging
import threading
import time
from typing import Any

log = logging.getLogger("lb.events")

# Who the change being made comes from (set by the REST layer per request).
ACTOR: contextvars.ContextVar[str] = contextvars.ContextVar("lb_actor", default="daemon")


class EventLog:
    """The last `capacity` events, in order, with a cursor to read those after a point."""

    def __init__(self, capacity: int = 1024) -> None:
        self._events: collections.deque[dict[str, Any]] = collections.deque(maxlen=capacity)
        self._seq = 0
        self._changed = threading.Condition()

    def emit(self, kind: str, **fields: Any) -> dict[str, Any]:
        """Record one event (logged as one JSON line) and wake readers waiting for it."""
        with self._changed:
            self._seq += 1
            event = {"seq": self._seq, "time": round(time.time(), 3), "kind": kind, **fields}
            self._events.append(event)
            self._changed.notify_all()
        log.info("event %s", json.dumps(event, separators=(",", ":"), default=str))
        return event

    def since(self, cursor: int, wait_s: float = 0.0) -> tuple[list[dict[str, Any]], int]:
        """The events after `cursor` (seq), waiting up to `wait_s` seconds for one if none;
        returns them and the cursor to ask with next. Events older than the ring are gone:
        the first one returned then has a seq above cursor + 1."""
        deadline = time.monotonic() + max(0.0, wait_s)
        with self._changed:
            while self._seq <= cursor:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._changed.wait(left)
            out = [e for e in self._events if e["seq"] > cursor]
            return out, max(cursor, self._seq) if out or self._seq > cursor else cursor
