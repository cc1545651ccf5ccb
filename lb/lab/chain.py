"""Lab helpers for sharing an interface: the example firewall (firewall.c) for a chain slot,
and other projects' compiled XDP objects (xdp-tools' xdp-filter) loaded through libbpf."""

from __future__ import annotations

import ctypes
import ipaddress
import os
import struct
from pathlib import Path
from typing import Any

from lb.xdp import chain, loader

FIREWALL_SOURCE = Path(__file__).resolve().parent / "firewall.c"
FIREWALL_NAME = "xdp_firewall"


def load_firewall(pin_dir: Path, blocked: ipaddress.IPv4Address) -> tuple[Any, int]:
    """Compile the example firewall on the chain pinned under `pin_dir`, dropping IPv4 packets
    from `blocked`; returns (bcc handle, program fd). Put it in slot 0 with `chain.set_slot`."""
    as_be32 = struct.unpack("=I", blocked.packed)[0]  # the bytes as the packet has them
    return loader.load_function(FIREWALL_SOURCE, FIREWALL_NAME,
                                [f'-DLB_CHAIN_PIN="{chain.pin_path(pin_dir)}"',
                                 f"-DBLOCKED_SRC={as_be32:#x}"])


class ElfProgram:
    """An XDP program from a compiled ELF object (clang -target bpf, e.g. xdp-tools'
    xdp-filter objects), loaded through libbpf (ctypes): `fd` of its first program until
    `close()`. Maps the object pins by name (under /sys/fs/bpf) are reused if pinned already,
    and the pins this load made are removed on close."""

    def __init__(self, path: Path) -> None:
        lib = _libbpf()
        self._lib = lib
        self._obj = lib.bpf_object__open_file(str(path).encode(), None)
        if not self._obj:
            raise OSError(ctypes.get_errno(), f"bpf_object__open_file {path}")
        self._new_pins = [p for p in self._pin_paths() if not p.exists()]
        err = lib.bpf_object__load(self._obj)
        if err:
            self.close()
            raise OSError(-err, f"bpf_object__load {path}: {os.strerror(-err)}")
        prog = lib.bpf_object__next_program(self._obj, None)
        self.name = lib.bpf_program__name(prog).decode()
        self.fd = lib.bpf_program__fd(prog)

    def _pin_paths(self) -> list[Path]:
        paths, m = [], self._lib.bpf_object__next_map(self._obj, None)
        while m:
            pin = self._lib.bpf_map__pin_path(m)
            if pin:
                paths.append(Path(pin.decode()))
            m = self._lib.bpf_object__next_map(self._obj, m)
        return paths

    def close(self) -> None:
        if self._obj:
            self._lib.bpf_object__close(self._obj)
            self._obj = None
            for pin in self._new_pins:
                pin.unlink(missing_ok=True)

    def __enter__(self) -> ElfProgram:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _libbpf() -> ctypes.CDLL:
    lib = ctypes.CDLL("libbpf.so.1", use_errno=True)
    lib.bpf_object__open_file.restype = ctypes.c_void_p
    lib.bpf_object__open_file.argtypes = [ctypes.c_char_p, ctypes.c_void_p]
    lib.bpf_object__load.argtypes = [ctypes.c_void_p]
    lib.bpf_object__next_program.restype = ctypes.c_void_p
    lib.bpf_object__next_program.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
    lib.bpf_program__name.restype = ctypes.c_char_p
    lib.bpf_program__name.argtypes = [ctypes.c_void_p]
    lib.bpf_program__fd.argtypes = [ctypes.c_void_p]
    lib.bpf_object__close.argtypes = [ctypes.c_void_p]
    lib.bpf_object__next_map.restype = ctypes.c_void_p
    lib.bpf_object__next_map.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
    lib.bpf_map__pin_path.restype = ctypes.c_char_p
    lib.bpf_map__pin_path.argtypes = [ctypes.c_void_p]
    return lib
