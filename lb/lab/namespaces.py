"""Namespace plumbing of the lab: sysctls, TX checksum offload, NAPI pollers, leftover namespaces.

Every function acts in the calling thread's network namespace (enter one with lb.netns.in_netns)
unless it takes a namespace name.
"""

from __future__ import annotations

import ctypes
import fcntl
import os
import re
import socket
import struct
import subprocess
from pathlib import Path

from pyroute2 import netns as pyroute2_netns

# ioctl(SIOCETHTOOL) with ETHTOOL_STXCSUM: the legacy "tx checksum on/off" switch (ethtool -K tx).
_SIOCETHTOOL = 0x8946
_ETHTOOL_STXCSUM = 0x17
# struct ifreq is 40 bytes on x86-64: name[16], then a union (here a pointer to the request).
_IFREQ_SIZE = 40


def napi_threads(ifname: str) -> set[int]:
    """PIDs of the kernel's threaded-NAPI pollers of interfaces named `ifname` (any netns)."""
    pids = set()
    for comm in Path("/proc").glob("[0-9]*/comm"):
        try:
            if comm.read_text().startswith(f"napi/{ifname}-"):
                pids.add(int(comm.parent.name))
        except OSError:
            continue
    return pids


def sysctl(key: str, value: int | str) -> None:
    """Write a sysctl (dotted name) of the calling thread's network namespace."""
    Path("/proc/sys", *key.split(".")).write_text(f"{value}\n")


def set_tx_checksum(ifname: str, enabled: bool) -> None:
    """`ethtool -K <ifname> tx on|off` in the calling thread's namespace."""
    request = ctypes.create_string_buffer(struct.pack("II", _ETHTOOL_STXCSUM, int(enabled)))
    ifreq = struct.pack("16sP", ifname.encode(), ctypes.addressof(request))
    ifreq = ifreq.ljust(_IFREQ_SIZE, b"\0")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        fcntl.ioctl(s, _SIOCETHTOOL, ifreq)


def _lab_namespace_re(prefix: str) -> re.Pattern[str]:
    return re.compile(rf"^{re.escape(prefix)}(\d+)-\d+-")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_leftovers(prefix: str, include_live: bool = False) -> list[str]:
    """Delete the namespaces (and so every veth) that labs named with `prefix` left behind.

    By default only namespaces of processes that are gone are deleted, so a lab running in
    parallel (another pid) is left alone; `include_live` deletes those too, this process's
    included. Returns the names deleted.
    """
    pattern = _lab_namespace_re(prefix)
    removed = []
    for name in sorted(pyroute2_netns.listnetns()):
        m = pattern.match(name)
        if not m:
            continue
        if not include_live and _pid_alive(int(m.group(1))):
            continue
        pyroute2_netns.remove(name)
        removed.append(name)
    return removed


def kernel_xdp_mode(netns: str, ifname: str) -> str | None:
    """What iproute2's `ip -d link` says is attached: "xdp" (native), "xdpgeneric", or None.

    An oracle independent of lb.xdp.loader, for tests and the demo.
    """
    out = subprocess.run(["ip", "-n", netns, "-d", "link", "show", "dev", ifname],
                         check=True, capture_output=True, text=True).stdout
    found = re.search(r"\b(xdpgeneric|xdpoffload|xdp)\b", out)
    return found.group(1) if found else None
