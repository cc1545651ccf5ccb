"""The chain's program array (chain.h): which program runs in which slot (bcc-free).

The array is pinned at <pin_dir>/chain by whichever program declaring it loads first (the
root, the balancer in a slot, or another program following chain.h). Writing a slot is one
map update: the kernel swaps the program atomically, packets in flight finish in the old one.
"""

from __future__ import annotations

import ctypes
import os
from pathlib import Path

# Slots of the chain (LB_CHAIN_SLOTS of chain.h).
SLOTS = 8
PIN_NAME = "chain"

_libbpf = ctypes.CDLL("libbpf.so.1", use_errno=True)
_libbpf.bpf_obj_get.argtypes = [ctypes.c_char_p]
_libbpf.bpf_obj_get.restype = ctypes.c_int
for _fn in (_libbpf.bpf_map_update_elem, _libbpf.bpf_map_lookup_elem,
            _libbpf.bpf_map_delete_elem):
    _fn.restype = ctypes.c_int
_libbpf.bpf_map_update_elem.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p,
                                        ctypes.c_uint64]
_libbpf.bpf_map_lookup_elem.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p]
_libbpf.bpf_map_delete_elem.argtypes = [ctypes.c_int, ctypes.c_void_p]


class ChainError(OSError):
    """The pinned chain is missing, or the kernel refused a slot write (errno kept)."""


def pin_path(pin_dir: Path) -> Path:
    return Path(pin_dir) / PIN_NAME


def _open(pin_dir: Path) -> int:
    path = pin_path(pin_dir)
    fd = _libbpf.bpf_obj_get(str(path).encode())
    if fd < 0:
        err = ctypes.get_errno()
        raise ChainError(err, f"no chain pinned at {path}: {os.strerror(err)}")
    return fd


def _check_slot(slot: int) -> ctypes.c_uint32:
    if not 0 <= slot < SLOTS:
        raise ValueError(f"chain slot must be 0..{SLOTS - 1}, got {slot}")
    return ctypes.c_uint32(slot)


def set_slot(pin_dir: Path, slot: int, prog_fd: int) -> None:
    """Run program `prog_fd` in `slot` (replacing, atomically, whatever ran there)."""
    key, value = _check_slot(slot), ctypes.c_uint32(prog_fd)
    fd = _open(pin_dir)
    try:
        if _libbpf.bpf_map_update_elem(fd, ctypes.byref(key), ctypes.byref(value), 0) != 0:
            err = ctypes.get_errno()
            raise ChainError(err, f"cannot put program fd {prog_fd} in chain slot {slot}: "
                             f"{os.strerror(err)}")
    finally:
        os.close(fd)


def clear_slot(pin_dir: Path, slot: int) -> None:
    """Empty `slot` (no-op if it is empty): the chain skips it."""
    key = _check_slot(slot)
    fd = _open(pin_dir)
    try:
        _libbpf.bpf_map_delete_elem(fd, ctypes.byref(key))
    finally:
        os.close(fd)


def slots(pin_dir: Path) -> dict[int, int]:
    """{slot: program id} of the filled slots."""
    fd = _open(pin_dir)
    out = {}
    try:
        for slot in range(SLOTS):
            key, value = ctypes.c_uint32(slot), ctypes.c_uint32()
            if _libbpf.bpf_map_lookup_elem(fd, ctypes.byref(key), ctypes.byref(value)) == 0:
                out[slot] = value.value
    finally:
        os.close(fd)
    return out
