"""BPF_PROG_TEST_RUN for XDP programs: run a loaded program on a frame in the kernel.

bcc 0.26 has no wrapper; this binds libbpf's bpf_prog_test_run_opts through ctypes.
"""

from __future__ import annotations

import ctypes
import os
from dataclasses import dataclass

from lb.xdp.consts import VERDICT_NAMES
from lb.xdp.libbpf import LIBBPF as _libbpf

# Room for the program to grow the frame (the kernel gives 256 bytes of headroom).
_OUT_SLACK = 512


class _TestRunOpts(ctypes.Structure):
    """struct bpf_test_run_opts (libbpf 1.x, tools/lib/bpf/bpf.h)."""

    _fields_ = [
        ("sz", ctypes.c_size_t),
        ("data_in", ctypes.c_void_p),
        ("data_out", ctypes.c_void_p),
        ("data_size_in", ctypes.c_uint32),
        ("data_size_out", ctypes.c_uint32),
        ("ctx_in", ctypes.c_void_p),
        ("ctx_out", ctypes.c_void_p),
        ("ctx_size_in", ctypes.c_uint32),
        ("ctx_size_out", ctypes.c_uint32),
        ("retval", ctypes.c_uint32),
        ("repeat", ctypes.c_int),
        ("duration", ctypes.c_uint32),
        ("flags", ctypes.c_uint32),
        ("cpu", ctypes.c_uint32),
        ("batch_size", ctypes.c_uint32),
    ]


class TestRunError(OSError):
    """The kernel refused a BPF_PROG_TEST_RUN (keeps the errno)."""


@dataclass(frozen=True)
class TestRunResult:
    """What one BPF_PROG_TEST_RUN returned.

    verdict: the XDP action of the last repetition; frame: the frame it left;
    duration_ns: the kernel's mean time per repetition.
    """

    verdict: int
    frame: bytes
    duration_ns: int

    @property
    def verdict_name(self) -> str:
        return VERDICT_NAMES.get(self.verdict, str(self.verdict))


def test_run(prog_fd: int, frame: bytes, repeat: int = 1) -> TestRunResult:
    """Run the XDP program `prog_fd` on `frame` `repeat` times (>= 1) in the kernel.

    With repeat > 1 every repetition sees the buffer the previous one left
    (head moves included): see bench.h for how benchmarks undo that.
    """
    if repeat < 1:
        raise ValueError(f"repeat must be >= 1, got {repeat}")
    data_in = ctypes.create_string_buffer(bytes(frame), len(frame))
    data_out = ctypes.create_string_buffer(len(frame) + _OUT_SLACK)
    opts = _TestRunOpts(
        sz=ctypes.sizeof(_TestRunOpts),
        data_in=ctypes.addressof(data_in),
        data_size_in=len(frame),
        data_out=ctypes.addressof(data_out),
        data_size_out=len(data_out),
        repeat=repeat,
    )
    if _libbpf.bpf_prog_test_run_opts(prog_fd, ctypes.byref(opts)) != 0:
        err = ctypes.get_errno()
        raise TestRunError(err, f"BPF_PROG_TEST_RUN failed: {os.strerror(err)}")
    return TestRunResult(opts.retval, data_out.raw[: opts.data_size_out], opts.duration)


test_run.__test__ = False  # not a pytest test, despite the name
TestRunResult.__test__ = False
TestRunError.__test__ = False
