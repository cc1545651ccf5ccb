"""Whole-array reads and writes in a few system calls (BPF_MAP_{LOOKUP,UPDATE}_BATCH), and
single per-CPU elements as ctypes mirrors: what the connection tables need, through libbpf.

The connection tables are per-CPU arrays of up to millions of sets; walking them key by key
costs one system call per key (about 2.5 us each). A batch call moves thousands of keys.
A per-CPU array's element, as the kernel hands it to user space, is one value per possible
CPU, each rounded up to 8 bytes, back to back.
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Iterator, Sequence

_libbpf = ctypes.CDLL("libbpf.so.1", use_errno=True)
_U32P = ctypes.POINTER(ctypes.c_uint32)
_libbpf.bpf_map_lookup_batch.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p,
                                         ctypes.c_void_p, ctypes.c_void_p, _U32P,
                                         ctypes.c_void_p]
_libbpf.bpf_map_update_batch.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, _U32P,
                                         ctypes.c_void_p]
_libbpf.bpf_map_lookup_elem.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p]
_libbpf.bpf_map_update_elem.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p,
                                        ctypes.c_uint64]
_libbpf.libbpf_num_possible_cpus.restype = ctypes.c_int

# Keys per batch call: bounds the buffers (e.g. 8192 IPv6 sets x 2 CPUs = 1.7 MB).
CHUNK = 8192


class BatchError(OSError):
    """A batch or element call on a map failed (keeps the errno and names the call)."""


def _fail(call: str) -> BatchError:
    err = ctypes.get_errno()
    return BatchError(err, f"{call}: {os.strerror(err)}")


def possible_cpus() -> int:
    """CPUs the kernel keeps a per-CPU value for (what every per-CPU element holds)."""
    n = _libbpf.libbpf_num_possible_cpus()
    if n <= 0:
        raise BatchError(-n, "libbpf_num_possible_cpus failed")
    return n


def percpu_stride(value_size: int, cpus: int) -> int:
    """Bytes of one per-CPU element in user space: every CPU's value, rounded up to 8."""
    return ((value_size + 7) // 8 * 8) * cpus


def lookup_array(fd: int, stride: int, entries: int,
                 chunk: int = CHUNK) -> Iterator[tuple[int, int, memoryview]]:
    """Read a u32-keyed array of `entries` elements of `stride` bytes, in batches.

    Yields (first key, count, values): `values` holds `count` elements for keys
    first..first+count-1, back to back. Raises BatchError.
    """
    token = ctypes.c_uint32(0)
    first = 0
    while first < entries:
        n = min(chunk, entries - first)
        keys = (ctypes.c_uint32 * n)()
        values = ctypes.create_string_buffer(n * stride)
        count = ctypes.c_uint32(n)
        rc = _libbpf.bpf_map_lookup_batch(fd, ctypes.byref(token) if first else None,
                                          ctypes.byref(token), keys, values,
                                          ctypes.byref(count), None)
        err = ctypes.get_errno()
        if rc != 0 and err != 2:  # ENOENT: the last batch
            raise _fail("BPF_MAP_LOOKUP_BATCH")
        if count.value:
            if keys[0] != first:
                raise BatchError(0, f"BPF_MAP_LOOKUP_BATCH gave key {keys[0]}, expected {first}")
            yield first, count.value, memoryview(values.raw)[: count.value * stride]
        first += count.value
        if rc != 0 or count.value == 0:
            return


def update_array(fd: int, keys: Sequence[int], values: bytes | bytearray, stride: int) -> None:
    """Write `values` (len(keys) elements of `stride` bytes) at `keys`, in batches."""
    for at in range(0, len(keys), CHUNK):
        part = keys[at:at + CHUNK]
        ckeys = (ctypes.c_uint32 * len(part))(*part)
        cvalues = ctypes.create_string_buffer(bytes(values[at * stride:(at + len(part)) * stride]),
                                              len(part) * stride)
        count = ctypes.c_uint32(len(part))
        if _libbpf.bpf_map_update_batch(fd, ckeys, cvalues, ctypes.byref(count), None) != 0:
            raise _fail("BPF_MAP_UPDATE_BATCH")


def fill_array(fd: int, entries: int, stride: int) -> None:
    """Zero every element of a u32-keyed array."""
    zeros = bytes(min(CHUNK, entries) * stride)
    for at in range(0, entries, CHUNK):
        n = min(CHUNK, entries - at)
        update_array(fd, range(at, at + n), zeros[: n * stride], stride)


def lookup_elem(fd: int, key: int, value: ctypes.Array | ctypes.Structure) -> None:
    """Read element `key` of a u32-keyed map into `value` (a per-CPU array: one per CPU)."""
    k = ctypes.c_uint32(key)
    if _libbpf.bpf_map_lookup_elem(fd, ctypes.byref(k), ctypes.byref(value)) != 0:
        raise _fail(f"BPF_MAP_LOOKUP_ELEM key {key}")


def update_elem(fd: int, key: int, value: ctypes.Array | ctypes.Structure) -> None:
    """Write element `key` of a u32-keyed map from `value`."""
    k = ctypes.c_uint32(key)
    if _libbpf.bpf_map_update_elem(fd, ctypes.byref(k), ctypes.byref(value), 0) != 0:
        raise _fail(f"BPF_MAP_UPDATE_ELEM key {key}")
