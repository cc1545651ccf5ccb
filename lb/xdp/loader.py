"""Compile, load, attach and detach the balancer program: the only module that imports bcc.

Lifecycle: `load()` compiles lb/xdp/balancer.c with the sizes' -D flags, checks
every map's C layout against lb.xdp.structs, and returns a `Program`. `attach()`
puts it on an interface (native mode unless generic is asked for) and reports the
mode in effect; an attached program keeps running after this process exits.
`detach()` takes it off. With a pin directory, maps live in bpffs and a later
`load()` with the same directory reuses them: the live state survives restarts.
"""

from __future__ import annotations

import ctypes
import errno
import os
from dataclasses import dataclass, field
from pathlib import Path

from bcc import BPF
from pyroute2 import IPRoute

from lb.xdp import xdpinfo
from lb.xdp.config import Sizes, host_possible_cpus
from lb.xdp.libbpf import LIBBPF as _libbpf
from lb.xdp.structs import BENCH_MAP_LAYOUTS, MAP_LAYOUTS, check_layouts
from lb.xdp.types import XdpMode

SOURCE_DIR = Path(__file__).resolve().parent
PROGRAM_FILE = SOURCE_DIR / "balancer.c"
ROOT_FILE = SOURCE_DIR / "root.c"
ENTRY = "xdp_balancer"
BPFFS = Path("/sys/fs/bpf")
# Maps that hold only counters: when a new build changes their layout (a counter added),
# their pins are renewed instead of refusing the load, so such an upgrade stays hitless.
COUNTER_MAPS = ("counters", "vip_stats", "backend_stats")

# enum bpf_attach_type's BPF_XDP: the expected attach type every program is loaded with, as
# libbpf loads SEC("xdp"). The kernel lets programs tail-call each other (a chain, chain.h)
# only if they agree on it, so this is what lets libbpf-loaded programs share a chain.
BPF_XDP = 37
# XDP_FLAGS_* of the kernel UAPI (if_link.h).
_XDP_FLAGS_SKB_MODE = 1 << 1
_XDP_FLAGS_DRV_MODE = 1 << 2
_XDP_FLAGS_UPDATE_IF_NOEXIST = 1 << 0
_XDP_FLAGS_REPLACE = 1 << 4
# IFLA_XDP_ATTACHED, as the kernel's number or as pyroute2 0.9's name for it.
_ATTACHED = {1: "native", 2: "generic", "xdp": "native", "xdpgeneric": "generic"}


class LoadError(RuntimeError):
    """The program did not compile, load or verify; the message says which and why."""


class PinnedMapMismatch(LoadError):
    """A map pinned by an earlier load has other sizes than this load declares."""


class AttachError(RuntimeError):
    """The kernel refused to attach or detach (keeps the netlink errno in .errno)."""

    def __init__(self, message: str, errno: int | None = None) -> None:
        super().__init__(message)
        self.errno = errno


def compile_flags(sizes: Sizes, pin_dir: str | Path | None = None, bench: bool = False,
                  extra: list[str] | None = None) -> list[str]:
    """Every compiler flag a load uses (what `lb` prints for --print-cflags)."""
    flags = [f"-I{SOURCE_DIR}", *sizes.cflags()]
    if pin_dir is not None:
        flags.append(f'-DLB_PIN_DIR="{Path(pin_dir)}"')
    if bench:
        flags.append("-DLB_BENCH")
    return flags + list(extra or [])


@dataclass
class Program:
    """A loaded balancer program: its bcc handle, program fd, sizes and pin directory."""

    bpf: BPF
    fd: int
    sizes: Sizes
    pin_dir: Path | None
    cflags: list[str] = field(default_factory=list)
    renewed: list[str] = field(default_factory=list)  # counter maps made anew (COUNTER_MAPS)

    def table(self, name: str):
        """The bcc table object of map `name`."""
        return self.bpf[name.encode()]

    def close(self) -> None:
        """Release this process's handles (an attached program keeps running)."""
        self.bpf.cleanup()


def _compiled_types(bpf: BPF, names) -> dict:
    out = {}
    for name in names:
        try:
            t = bpf[name.encode()]
        except KeyError:
            continue
        out[name] = (t.Key, getattr(t, "sLeaf", t.Leaf))
    return out


def load(sizes: Sizes | None = None, pin_dir: str | Path | None = None, bench: bool = False,
         src_file: Path = PROGRAM_FILE, entry: str = ENTRY,
         extra_cflags: list[str] | None = None) -> Program:
    """Compile and load the program (about 2-3 s); maps are pinned under `pin_dir` if given.

    Raises LoadError on a compile/verifier failure and LayoutMismatch if a C struct
    and its Python mirror differ.
    """
    sizes = sizes or Sizes()
    if sizes.cpus < host_possible_cpus():
        raise LoadError(f"Sizes.cpus is {sizes.cpus}, but this host has {host_possible_cpus()} "
                        "possible CPUs: every CPU needs its slice of the connection table")
    if pin_dir is not None:
        pin_dir = Path(pin_dir)
        if not os.path.ismount(BPFFS):
            raise LoadError(f"{BPFFS} is not mounted: mount -t bpf bpf {BPFFS}")
        pin_dir.mkdir(parents=True, exist_ok=True)
    renewed = renew_counter_pins(pin_dir) if pin_dir is not None else []
    cflags = compile_flags(sizes, pin_dir, bench, extra_cflags)
    try:
        try:
            bpf = BPF(src_file=str(src_file).encode(), cflags=cflags)
            fn = bpf.load_func(entry.encode(), BPF.XDP, attach_type=BPF_XDP)
        except Exception as e:  # bcc raises bare Exception with the compiler's output
            raise LoadError(f"cannot load {src_file.name}:{entry}: {e}") from e
        layouts = dict(MAP_LAYOUTS)
        if bench:
            layouts.update(BENCH_MAP_LAYOUTS)
        try:
            if src_file == PROGRAM_FILE:
                check_layouts(_compiled_types(bpf, layouts), layouts)
            if pin_dir is not None:
                check_pinned(bpf, layouts, pin_dir)
        except Exception:
            bpf.cleanup()
            raise
    except Exception:
        if renewed:
            finish_renewal(pin_dir, renewed, loaded=False)
        raise
    if renewed:
        finish_renewal(pin_dir, renewed, loaded=True)
    return Program(bpf=bpf, fd=fn.fd, sizes=sizes, pin_dir=pin_dir, cflags=cflags,
                   renewed=renewed)


def renew_counter_pins(pin_dir: Path) -> list[str]:
    """Move aside (to <name>_prev: bpffs names take no dots) each pin of COUNTER_MAPS whose
    key or value size is not this build's, so that the load makes the map anew (its counts
    start from zero; a program still attached keeps counting into the old map until it is
    replaced). Returns the names moved; `finish_renewal` drops or restores them once the
    load succeeded or failed."""
    renewed = []
    for name in COUNTER_MAPS:
        path = pin_dir / name
        if not path.exists():
            continue
        fd = _libbpf.bpf_obj_get(str(path).encode())
        if fd < 0:
            continue  # not a map we can read: check_pinned reports it after the load
        try:
            info = map_info(fd)
            key, value = MAP_LAYOUTS[name]
            if (info.key_size, info.value_size) != (ctypes.sizeof(key), ctypes.sizeof(value)):
                _move_pin(fd, path, path.with_name(f"{name}_prev"))
                renewed.append(name)
        except OSError as e:
            raise LoadError(f"cannot renew pinned map {path}: {e}") from e
        finally:
            os.close(fd)
    return renewed


def _move_pin(fd: int, src: Path, dst: Path) -> None:
    """Pin `fd` (the object pinned at `src`) at `dst` instead (bpffs has no rename)."""
    dst.unlink(missing_ok=True)
    if _libbpf.bpf_obj_pin(fd, str(dst).encode()) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"bpf_obj_pin {dst}: {os.strerror(err)}")
    src.unlink()


def finish_renewal(pin_dir: Path, renewed: list[str], loaded: bool) -> None:
    """After a load: drop the pins renew_counter_pins moved aside (`loaded`), or put them
    back in place of whatever the failed load pinned, so the directory is as it was."""
    for name in renewed:
        old = pin_dir / f"{name}_prev"
        if loaded:
            old.unlink(missing_ok=True)
            continue
        fd = _libbpf.bpf_obj_get(str(old).encode())
        if fd < 0:
            continue
        try:
            (pin_dir / name).unlink(missing_ok=True)
            _move_pin(fd, old, pin_dir / name)
        finally:
            os.close(fd)


def check_pinned(bpf: BPF, names, pin_dir: Path) -> None:
    """Raise PinnedMapMismatch if a reused pinned map differs from this compile's declaration.

    bcc reuses a pinned map whatever its sizes; a ring sized for other Sizes (or a connection
    table made for another CPU count, or by a build that declared another map type) would be
    indexed out of step with the program, so a mismatch must stop the load.
    """
    problems = []
    for name in names:
        try:
            t = bpf[name.encode()]
        except KeyError:
            continue
        info = map_info(t.get_fd())
        want = (t.ttype, t.flags, t.max_entries, ctypes.sizeof(t.Key),
                ctypes.sizeof(getattr(t, "sLeaf", t.Leaf)))
        have = (info.type, info.map_flags, info.max_entries, info.key_size, info.value_size)
        if want != have:
            problems.append(f"{name}: pinned (type, flags, entries, key, value) = {have}, "
                            f"this build needs {want}")
    if problems:
        raise PinnedMapMismatch(
            f"maps pinned under {pin_dir} were made with other sizes:\n  " + "\n  ".join(problems)
            + f"\nLoad with the sizes they were made with, or remove {pin_dir} (losing the live "
            "connection table).")


def load_function(src_file: Path, entry: str, cflags: list[str] | None = None) -> tuple[BPF, int]:
    """Compile a small helper program (e.g. decap.c, bench floors); returns (bpf, fd)."""
    try:
        bpf = BPF(src_file=str(src_file).encode(), cflags=[f"-I{SOURCE_DIR}", *(cflags or [])])
        return bpf, bpf.load_func(entry.encode(), BPF.XDP, attach_type=BPF_XDP).fd
    except Exception as e:
        raise LoadError(f"cannot load {src_file.name}:{entry}: {e}") from e


def load_root(pin_dir: str | Path) -> tuple[BPF, int]:
    """Compile and load the chain's root (root.c) on the chain pinned under `pin_dir` (made
    if missing); returns (bcc handle, program fd). Attach it in place of the balancer."""
    return load_function(ROOT_FILE, xdpinfo.ROOT_NAME,
                         [f'-DLB_CHAIN_PIN="{Path(pin_dir) / "chain"}"'])


def chain_cflags(slot: int) -> list[str]:
    """Compiler flags that make the balancer slot `slot` of the chain pinned in its pin_dir."""
    return [f"-DLB_CHAIN_SLOT={slot}"]


def attach(prog_fd: int, ifindex: int, mode: XdpMode = XdpMode.NATIVE) -> XdpMode:
    """Attach (or atomically replace) the XDP program on `ifindex` in this thread's netns.

    Native mode is asked of the driver; generic only when `mode` says so — there is
    no silent fallback. Returns the mode the kernel reports in effect.
    """
    flags = _XDP_FLAGS_DRV_MODE if mode == XdpMode.NATIVE else _XDP_FLAGS_SKB_MODE
    with IPRoute() as ipr:
        try:
            ipr.link("set", index=ifindex,
                     xdp={"attrs": [("IFLA_XDP_FD", prog_fd), ("IFLA_XDP_FLAGS", flags)]})
        except Exception as e:
            code = getattr(e, "code", None)
            raise AttachError(f"cannot attach XDP ({mode.value}) to ifindex {ifindex}: {e}",
                              code) from e
    effective = attached_mode(ifindex)
    if effective is None:
        raise AttachError(f"XDP program not attached to ifindex {ifindex} after attach")
    return effective


class AttachRaced(AttachError):
    """The interface's program is not the one the attach expected: someone attached or
    detached meanwhile. Nothing was replaced."""


def replace(prog_fd: int, ifindex: int, mode: XdpMode, expected_id: int | None) -> XdpMode:
    """Attach `prog_fd` to `ifindex` in place of program `expected_id`, only if that program is
    still the one attached (`expected_id` None: only if no program is).

    The kernel compares and swaps in one step (XDP_FLAGS_REPLACE with IFLA_XDP_EXPECTED_FD, or
    XDP_FLAGS_UPDATE_IF_NOEXIST), so a program someone attached meanwhile is never replaced:
    AttachRaced is raised instead. Returns the mode the kernel reports in effect.
    """
    flags = _XDP_FLAGS_DRV_MODE if mode == XdpMode.NATIVE else _XDP_FLAGS_SKB_MODE
    attrs = [("IFLA_XDP_FD", prog_fd)]
    old_fd = -1
    if expected_id is None:
        flags |= _XDP_FLAGS_UPDATE_IF_NOEXIST
    else:
        try:
            old_fd = xdpinfo.prog_fd_by_id(expected_id)
        except OSError as e:
            raise AttachRaced(f"program id {expected_id} expected on ifindex {ifindex} is "
                              f"gone: {e}", e.errno) from e
        flags |= _XDP_FLAGS_REPLACE
        attrs.append(("IFLA_XDP_EXPECTED_FD", old_fd))
    attrs.append(("IFLA_XDP_FLAGS", flags))
    try:
        with IPRoute() as ipr:
            ipr.link("set", index=ifindex, xdp={"attrs": attrs})
    except Exception as e:
        code = getattr(e, "code", None)
        if code in (errno.EEXIST, errno.EBUSY):
            now = xdpinfo.attached_id(ifindex)
            want = "no program" if expected_id is None else f"program id {expected_id}"
            found = f"program id {now[0]}" if now else "none"
            raise AttachRaced(f"not attached to ifindex {ifindex}: expected {want}, found "
                              f"{found} ({e})", code) from e
        raise AttachError(f"cannot attach XDP ({mode.value}) to ifindex {ifindex}: {e}",
                          code) from e
    finally:
        if old_fd >= 0:
            os.close(old_fd)
    effective = attached_mode(ifindex)
    if effective is None:
        raise AttachError(f"XDP program not attached to ifindex {ifindex} after attach")
    return effective


def attached_mode(ifindex: int) -> XdpMode | None:
    """The mode of the XDP program on `ifindex` (None when there is none)."""
    with IPRoute() as ipr:
        link = ipr.link("get", index=ifindex)[0]
    xdp = link.get_attr("IFLA_XDP")
    if xdp is None:
        return None
    mode = _ATTACHED.get(xdp.get_attr("IFLA_XDP_ATTACHED"))
    return XdpMode(mode) if mode else None


def detach(ifindex: int, mode: XdpMode | None = None) -> None:
    """Remove the XDP program from `ifindex` (no-op if none is attached)."""
    mode = mode or attached_mode(ifindex)
    if mode is None:
        return
    flags = _XDP_FLAGS_DRV_MODE if mode == XdpMode.NATIVE else _XDP_FLAGS_SKB_MODE
    with IPRoute() as ipr:
        try:
            ipr.link("set", index=ifindex,
                     xdp={"attrs": [("IFLA_XDP_FD", -1), ("IFLA_XDP_FLAGS", flags)]})
        except Exception as e:
            raise AttachError(f"cannot detach XDP from ifindex {ifindex}: {e}",
                              getattr(e, "code", None)) from e


class _MapInfo(ctypes.Structure):
    """The head of struct bpf_map_info (UAPI), enough for sizes."""

    _fields_ = [("type", ctypes.c_uint32), ("id", ctypes.c_uint32),
                ("key_size", ctypes.c_uint32), ("value_size", ctypes.c_uint32),
                ("max_entries", ctypes.c_uint32), ("map_flags", ctypes.c_uint32),
                ("name", ctypes.c_char * 16), ("rest", ctypes.c_uint8 * 64)]


def map_info(map_fd: int) -> _MapInfo:
    """The kernel's description of a map (sizes, flags, name)."""
    info = _MapInfo()
    size = ctypes.c_uint32(ctypes.sizeof(info))
    if _libbpf.bpf_obj_get_info_by_fd(map_fd, ctypes.byref(info), ctypes.byref(size)) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"bpf_obj_get_info_by_fd: {os.strerror(err)}")
    return info
