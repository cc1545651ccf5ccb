"""HTTP servers on the lab's backends: each answers with its backend's name and a set status."""

from __future__ import annotations

import contextlib
import ipaddress
import itertools
import socket
import socketserver
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class _BackendHandler(BaseHTTPRequestHandler):
    """Answers every GET with the backend's name (body and X-Backend header) and the server's
    next status (200 unless set otherwise); keeps alive."""

    protocol_version = "HTTP/1.1"
    server: BackendHTTPServer

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        body = f"{self.server.backend_name}\n".encode()
        self.send_response(self.server.next_status())
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Backend", self.server.backend_name)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        return


class BackendHTTPServer(ThreadingHTTPServer):
    """An HTTP server inside a backend namespace, bound to a VIP or, with the address `::`, to
    every address there (IPv4 too: the VIPs on lo and the backend's own, which health checks
    probe). `set_status(*codes)` makes it answer with those codes in turn, one per request.
    `close()` also drops open keep-alive connections, so no socket keeps the namespace alive
    after the lab is gone."""

    daemon_threads = True

    def __init__(self, backend_name: str, address: ipaddress.IPv4Address | ipaddress.IPv6Address,
                 port: int) -> None:
        self.address_family = socket.AF_INET6 if address.version == 6 else socket.AF_INET
        self.backend_name = backend_name
        self._statuses = itertools.cycle([200])
        self.requests = 0  # requests answered so far
        self._connections: set[socket.socket] = set()
        self._lock = threading.Lock()
        super().__init__((str(address), port), _BackendHandler)
        self._thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=f"http-{backend_name}-{address}", daemon=True)

    def set_status(self, *codes: int) -> None:
        """Answer the next requests with `codes`, in turn and over again (e.g. 200, 500)."""
        with self._lock:
            self._statuses = itertools.cycle(codes)

    def next_status(self) -> int:
        with self._lock:
            self.requests += 1
            return next(self._statuses)

    def server_bind(self) -> None:
        if self.address_family == socket.AF_INET6 and \
                ipaddress.ip_address(str(self.server_address[0])).is_unspecified:
            self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)  # IPv4 too
        # HTTPServer.server_bind would resolve the VIP's name (DNS inside the lab: slow, useless).
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = str(self.server_address[0]), self.server_address[1]

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A TCP health check connects and resets: the connection's end, not the server's error.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)

    def process_request(self, request: socket.socket | tuple[bytes, socket.socket],
                        client_address: Any) -> None:
        if isinstance(request, socket.socket):  # always, on a TCP server
            with self._lock:
                self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: socket.socket | tuple[bytes, socket.socket]) -> None:
        if isinstance(request, socket.socket):
            with self._lock:
                self._connections.discard(request)
        super().shutdown_request(request)

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self.shutdown()
        self.server_close()
        with self._lock:
            open_connections = list(self._connections)
        for conn in open_connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        self._thread.join(timeout=2)
