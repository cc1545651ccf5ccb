"""Single map elements read and written as ctypes mirrors (BPF_MAP_{LOOKUP,UPDATE}_ELEM),
through libbpf: what the VIP index's careful slot updates need.
"""

from __future__ import annotations

import ctypes
import os

from lb.xdp.libbpf import LIBBPF as _libbpf


class MapElemError(OSError):
    """An element call on a map failed (keeps the errno and names the call and key)."""


def _fail(call: str) -> MapElemError:
    err = ctypes.get_errno()
    return MapElemError(err, f"{call}: {os.strerror(err)}")


def lookup_elem(fd: int, key: int, value: ctypes.Array | ctypes.Structure) -> None:
    """Read element `key` of a u32-keyed map into `value`."""
    k = ctypes.c_uint32(key)
    if _libbpf.bpf_map_lookup_elem(fd, ctypes.byref(k), ctypes.byref(value)) != 0:
        raise _fail(f"BPF_MAP_LOOKUP_ELEM key {key}")


def update_elem(fd: int, key: int, value: ctypes.Array | ctypes.Structure) -> None:
    """Write element `key` of a u32-keyed map from `value`."""
    k = ctypes.c_uint32(key)
    if _libbpf.bpf_map_update_elem(fd, ctypes.byref(k), ctypes.byref(value), 0) != 0:
        raise _fail(f"BPF_MAP_UPDATE_ELEM key {key}")
