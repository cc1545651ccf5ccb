"""Frames on a lab's wire: AF_PACKET sockets, a sniffer that waits for frames, noise left out."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable
from typing import Any

from lb.lab.errors import LabError
from lb.netns import in_netns


def is_noise(frame: Any) -> bool:
    """True for frames every new namespace emits on its own: ARP, IPv6 ND/RS/RA, MLD."""
    from scapy.layers.inet6 import ICMPv6ND_NA, ICMPv6ND_NS, ICMPv6ND_RA, ICMPv6ND_RS, IPv6
    from scapy.layers.l2 import ARP

    if frame.haslayer(ARP):
        return True
    if frame.haslayer(IPv6):
        ip6 = frame[IPv6]
        if ip6.nh in (0, 58) and (ip6.dst.startswith("ff02:") or frame.haslayer(ICMPv6ND_NS)
                                  or frame.haslayer(ICMPv6ND_NA) or frame.haslayer(ICMPv6ND_RS)
                                  or frame.haslayer(ICMPv6ND_RA)):
            return True
    return False


def packet_socket(ifname: str) -> socket.socket:
    """An AF_PACKET socket on `ifname` (calling thread's namespace), both directions."""
    eth_p_all = 0x0003
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(eth_p_all))
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        s.bind((ifname, eth_p_all))
    except OSError:
        s.close()
        raise
    return s


class Capture:
    """Frames on one interface of one namespace, both directions, noise (`is_noise`) left out.

    Use as a context manager: on entry the sniffer runs (its start is awaited, never slept
    for); `wait(n)` blocks until n frames matched `lfilter`; on exit it stops and the socket is
    closed. Each frame is a scapy Ether with `.direction` "out" (sent by this interface) or "in".
    """

    def __init__(self, netns: str, ifname: str,
                 lfilter: Callable[[Any], bool] | None = None) -> None:
        self.netns, self.ifname = netns, ifname
        self.lfilter = lfilter
        self.frames: list[Any] = []
        self._changed = threading.Condition()
        self._sniffer: Any = None
        self._sock: Any = None

    def _keep(self, frame: Any) -> bool:
        return not is_noise(frame) and (self.lfilter is None or bool(self.lfilter(frame)))

    def _add(self, frame: Any) -> None:
        with self._changed:
            self.frames.append(frame)
            self._changed.notify_all()

    def __enter__(self) -> Capture:
        # scapy costs about half a second to import: only packet-level users pay for it.
        from scapy.layers.l2 import Ether
        from scapy.sendrecv import AsyncSniffer
        from scapy.supersocket import SimpleSocket

        class _DirectionalSocket(SimpleSocket):
            def recv(self, x: int = 65535, **kwargs: Any) -> Any:
                data, addr = self.ins.recvfrom(x)
                frame = Ether(data)
                way = "out" if addr[2] == socket.PACKET_OUTGOING else "in"
                # scapy's own `direction` is an int it leaves unset here: ours names the way.
                frame.direction = way  # type: ignore[assignment]
                return frame

        with in_netns(self.netns):
            self._sock = _DirectionalSocket(packet_socket(self.ifname), Ether)
        started = threading.Event()
        self._sniffer = AsyncSniffer(opened_socket=self._sock, store=False, prn=self._add,
                                     lfilter=self._keep, started_callback=started.set)
        self._sniffer.start()
        if not started.wait(timeout=5):
            self.__exit__(None, None, None)
            raise LabError(f"sniffer on {self.netns}/{self.ifname} did not start")
        return self

    def wait(self, count: int, timeout: float = 3.0) -> list[Any]:
        """Block until `count` frames matched (or `timeout` seconds); returns all so far."""
        with self._changed:
            self._changed.wait_for(lambda: len(self.frames) >= count, timeout=timeout)
            return list(self.frames)

    def __exit__(self, *exc: object) -> None:
        if self._sniffer is not None and self._sniffer.running:
            self._sniffer.stop()
        if self._sock is not None:
            self._sock.close()
