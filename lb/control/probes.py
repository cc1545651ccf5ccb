"""One health check of each kind, bounded by its timeout: TCP connect, HTTP(S) GET, UDP exchange.

`probe()` runs any of them on an asyncio event loop. The Monitor (lb.control.health) runs TCP
checks on its epoll prober instead, starting them with `tcp_connect()`.
"""

from __future__ import annotations

import asyncio
import errno
import os
import socket
import ssl
import struct
from typing import Any

from lb.control.model import Address, CheckSpec

# SO_LINGER on, 0 s: close() resets the connection instead of the FIN exchange, so a check
# leaves no TIME_WAIT socket behind (1000 checks a second would keep 60,000) and costs one
# packet, not four.
_LINGER_RESET = struct.pack("ii", 1, 0)


def tcp_connect(address: Address, port: int) -> tuple[socket.socket, int]:
    """Start a TCP check: a non-blocking connect from a socket that closes with a reset (no
    TIME_WAIT). Returns the socket and connect's errno (EINPROGRESS: wait until writable)."""
    family = socket.AF_INET6 if address.version == 6 else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM | socket.SOCK_NONBLOCK)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
    return sock, sock.connect_ex((str(address), port))


async def _tcp(address: Address, port: int, spec: CheckSpec) -> tuple[bool, str]:
    # One check on an event loop (the Monitor runs TCP checks on _TcpProber instead), waited
    # on with add_writer: loop.sock_connect would first resolve the (numeric) address.
    sock, err = tcp_connect(address, port)
    with sock:
        if err == errno.EINPROGRESS:
            # The timeout is a timer on this future (asyncio.timeout costs more than the check).
            loop = asyncio.get_running_loop()
            writable = loop.create_future()
            loop.add_writer(sock.fileno(), _set_once, writable)
            timer = loop.call_later(spec.timeout_s, _time_out, writable)
            try:
                await writable
            finally:
                timer.cancel()
                loop.remove_writer(sock.fileno())
            err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err:
            raise OSError(err, os.strerror(err))
    return True, "connected"


def _set_once(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _time_out(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_exception(TimeoutError())


async def _http(address: Address, port: int, spec: CheckSpec) -> tuple[bool, str]:
    context = None
    if spec.type == "https":
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    reader, writer = await asyncio.open_connection(str(address), port, ssl=context)
    try:
        host = spec.http_host or (f"[{address}]" if address.version == 6 else str(address))
        writer.write(f"GET {spec.http_path} HTTP/1.0\r\nHost: {host}\r\n"
                     "User-Agent: lb-health\r\nConnection: close\r\n\r\n".encode())
        await writer.drain()
        response = b""
        while len(response) < 65536:  # to EOF (Connection: close), at most 64 KiB
            chunk = await reader.read(65536 - len(response))
            if not chunk:
                break
            response += chunk
    finally:
        writer.close()
    status_line = response.split(b"\r\n", 1)[0].decode(errors="replace")
    parts = status_line.split()
    if len(parts) < 2 or not parts[1].isdigit():
        return False, f"not an HTTP response: {status_line[:60]!r}"
    if int(parts[1]) != spec.http_status:
        return False, f"HTTP {parts[1]}, expected {spec.http_status}"
    if spec.http_body is not None:
        body = response.split(b"\r\n\r\n", 1)[-1].decode(errors="replace")
        if spec.http_body not in body:
            return False, f"HTTP {parts[1]} without {spec.http_body!r} in the body"
    return True, f"HTTP {parts[1]}"


class _UdpProbe(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.reply: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

    def datagram_received(self, data: bytes, addr: Any) -> None:
        if not self.reply.done():
            self.reply.set_result(data)

    def error_received(self, exc: Exception) -> None:
        if not self.reply.done():
            self.reply.set_exception(exc)


async def _udp(address: Address, port: int, spec: CheckSpec) -> tuple[bool, str]:
    loop = asyncio.get_running_loop()
    transport, probe = await loop.create_datagram_endpoint(
        _UdpProbe, remote_addr=(str(address), port))
    try:
        transport.sendto(spec.udp_payload.encode())
        data = await probe.reply
    finally:
        transport.close()
    if spec.udp_expect is not None and spec.udp_expect not in data.decode(errors="replace"):
        return False, f"reply without {spec.udp_expect!r}"
    return True, f"reply of {len(data)} bytes"


_PROBES = {"tcp": _tcp, "http": _http, "https": _http, "udp": _udp}


async def probe(address: Address, port: int, spec: CheckSpec) -> tuple[bool, str]:
    """One check, bounded by spec.timeout_s; (ok, reason)."""
    try:
        if spec.type == "tcp":  # bounds itself, cheaper
            return await _tcp(address, port, spec)
        async with asyncio.timeout(spec.timeout_s):  # no extra task, unlike wait_for
            return await _PROBES[spec.type](address, port, spec)
    except TimeoutError:
        return False, f"timeout after {spec.timeout_s} s"
    except OSError as e:
        return False, os.strerror(e.errno) if e.errno else str(e) or e.__class__.__name__
    except Exception as e:  # noqa: BLE001 (a probe failing is a result, not a crash)
        return False, f"{e.__class__.__name__}: {e}"
