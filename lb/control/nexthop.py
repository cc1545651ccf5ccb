"""Follow the next hop: keep the running program's next-hop MAC the gateway's current MAC.

The next-hop MAC is resolved once at start; a router replaced or failed over (VRRP moves the
address and announces the new MAC with a gratuitous ARP / unsolicited NA) would otherwise
black-hole every encapsulated packet until a restart. `NextHopWatcher` listens to netlink's
neighbour and route groups on the egress interface, re-resolves the default gateway's MAC
(pyroute2, lb.control.netinfo) after each burst of events (and every `poll_s`, in case an
event was lost), and
when it differs calls `apply(new_mac)`: the daemon writes it into `lb_config`, so the program
uses it from the next packet. Each change is logged (`event=next_hop_changed old=.. new=..`)
and counted (`lb_next_hop_changes`).

`decide()` is the pure part: what a resolution means for the MAC in use.
"""

from __future__ import annotations

import logging
import select
import socket
import threading
from collections.abc import Callable

from prometheus_client import Counter
from pyroute2.netlink import rtnl

from lb.control import netinfo
from lb.control.metrics import registry

log = logging.getLogger("lb.nexthop")

NEXT_HOP_CHANGES = Counter("lb_next_hop_changes", "Next-hop MAC changes written into the "
                           "running program (the gateway's MAC or the route changed)",
                           registry=registry)
# Netlink groups whose messages may move the next hop.
GROUPS = rtnl.RTMGRP_NEIGH | rtnl.RTMGRP_IPV4_ROUTE | rtnl.RTMGRP_IPV6_ROUTE
_NETLINK_ROUTE = 0


def decide(current_mac: str, resolved: netinfo.NextHop | None) -> str | None:
    """The MAC to write now, or None to keep `current_mac`: it is still right, or the gateway
    cannot be resolved at the moment (keeping the last good MAC loses nothing more)."""
    if resolved is None or resolved.mac.lower() == current_mac.lower():
        return None
    return resolved.mac.lower()


class NextHopWatcher:
    """A thread that follows the default gateway's MAC on `ifindex` (this thread's netns when
    started) and calls `apply(new_mac)` when it changes; `close()` stops it.

    resolve: how the gateway is found (default: netinfo.next_hop with a short probe wait).
    """

    def __init__(self, ifindex: int, current_mac: str, apply: Callable[[str], None],
                 poll_s: float = 1.0,
                 resolve: Callable[[int], netinfo.NextHop] | None = None) -> None:
        self.ifindex, self.current = ifindex, current_mac.lower()
        self.apply, self.poll_s = apply, poll_s
        self.resolve = resolve or (lambda index: netinfo.next_hop(index, timeout=0.5))
        self.changes = 0
        self._stop = threading.Event()
        # A plain netlink socket subscribed to the groups: only its readiness matters (each
        # burst triggers one resolution through pyroute2), so its messages are not parsed.
        self._events = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, _NETLINK_ROUTE)
        self._events.bind((0, GROUPS))
        self._events.setblocking(False)
        self._thread = threading.Thread(target=self._run, name="next-hop", daemon=True)

    def start(self) -> NextHopWatcher:
        self._thread.start()
        return self

    def check(self) -> str | None:
        """Resolve once and apply a change; returns the new MAC, or None if unchanged."""
        try:
            resolved = self.resolve(self.ifindex)
        except netinfo.NetInfoError as e:
            log.warning("event=next_hop_unresolved ifindex=%d keeping=%s reason=%s",
                        self.ifindex, self.current, e)
            resolved = None
        new = decide(self.current, resolved)
        if new is None:
            return None
        self.apply(new)
        log.info("event=next_hop_changed old=%s new=%s gateway=%s ifindex=%d", self.current,
                 new, resolved.gateway if resolved else "?", self.ifindex)
        self.current = new
        self.changes += 1
        NEXT_HOP_CHANGES.inc()
        return new

    def _drain(self) -> None:
        try:
            while self._events.recv(65536):
                pass
        except BlockingIOError:
            pass
        except OSError as e:  # ENOBUFS: events were lost; the resolution below covers them
            log.debug("next-hop events: %s", e)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                readable = select.select([self._events], [], [], self.poll_s)[0]
                if self._stop.is_set():
                    return
                if readable:
                    self._drain()
                self.check()
            except Exception:  # noqa: BLE001 - a watcher that dies silently is worse
                log.exception("event=next_hop_watch_error ifindex=%d", self.ifindex)
                self._stop.wait(self.poll_s)

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=2 * self.poll_s + 1)
        self._events.close()
