"""What is attached to an interface's XDP hook, and whether it is ours (bcc-free: doctor uses it).

The kernel tells an attached program's id (netlink IFLA_XDP_PROG_ID); libbpf's
`bpf_prog_get_fd_by_id` + `bpf_obj_get_info_by_fd` (ctypes on libbpf.so.1) tell its name, tag
and the ids of the maps it uses.

"Ours" means both: the program's name is one lb loads (`xdp_balancer`, or the chain's root
`xdp_lb_root`), AND it uses a map pinned in our pin directory (`lb_config` for the balancer,
`chain` for the root). The name alone is not enough: another copy of lb with other pins, or a
program that merely borrowed the name, is someone else's. The maps alone are not enough
either: a foreign program may share a pinned map (a firewall reading our chain map).
"""

from __future__ import annotations

import ctypes
import os
from dataclasses import dataclass
from pathlib import Path

from pyroute2 import IPRoute

from lb.xdp.types import XdpMode

# Program names lb attaches to an interface (bcc names a program after its function).
BALANCER_NAME = "xdp_balancer"
ROOT_NAME = "xdp_lb_root"
# Maps under the pin directory whose use makes a program ours.
OWN_PINS = ("lb_config", "chain")
# IFLA_XDP_ATTACHED values, by the kernel's number or pyroute2 0.9's name for them.
_ATTACHED = {1: XdpMode.NATIVE, 2: XdpMode.GENERIC, "xdp": XdpMode.NATIVE,
             "xdpgeneric": XdpMode.GENERIC}
_MAX_MAP_IDS = 64


class _ProgInfo(ctypes.Structure):
    """The head of struct bpf_prog_info (UAPI linux/bpf.h), up to `ifindex`; the rest zero.

    struct bpf_prog_info { __u32 type; __u32 id; __u8 tag[8]; __u32 jited_prog_len;
      __u32 xlated_prog_len; __aligned_u64 jited_prog_insns; __aligned_u64 xlated_prog_insns;
      __u64 load_time; __u32 created_by_uid; __u32 nr_map_ids; __aligned_u64 map_ids;
      char name[16]; __u32 ifindex; ... };
    """

    _fields_ = [("type", ctypes.c_uint32), ("id", ctypes.c_uint32),
                ("tag", ctypes.c_uint8 * 8), ("jited_prog_len", ctypes.c_uint32),
                ("xlated_prog_len", ctypes.c_uint32), ("jited_prog_insns", ctypes.c_uint64),
                ("xlated_prog_insns", ctypes.c_uint64), ("load_time", ctypes.c_uint64),
                ("created_by_uid", ctypes.c_uint32), ("nr_map_ids", ctypes.c_uint32),
                ("map_ids", ctypes.c_uint64), ("name", ctypes.c_char * 16),
                ("ifindex", ctypes.c_uint32), ("rest", ctypes.c_uint8 * 148)]


class _MapInfoHead(ctypes.Structure):
    """The head of struct bpf_map_info: type, id (the rest zero)."""

    _fields_ = [("type", ctypes.c_uint32), ("id", ctypes.c_uint32),
                ("rest", ctypes.c_uint8 * 88)]


_libbpf = ctypes.CDLL("libbpf.so.1", use_errno=True)
_libbpf.bpf_prog_get_fd_by_id.argtypes = [ctypes.c_uint32]
_libbpf.bpf_prog_get_fd_by_id.restype = ctypes.c_int
_libbpf.bpf_obj_get.argtypes = [ctypes.c_char_p]
_libbpf.bpf_obj_get.restype = ctypes.c_int
_libbpf.bpf_obj_get_info_by_fd.argtypes = [ctypes.c_int, ctypes.c_void_p,
                                           ctypes.POINTER(ctypes.c_uint32)]
_libbpf.bpf_obj_get_info_by_fd.restype = ctypes.c_int


@dataclass(frozen=True)
class ProgramInfo:
    """A loaded BPF program as the kernel describes it."""

    id: int
    name: str
    tag: str  # hex of the 8-byte tag (a hash of the instructions), as bpftool shows it
    map_ids: tuple[int, ...]


@dataclass(frozen=True)
class AttachedProgram:
    """The program on an interface's XDP hook, and in which mode."""

    program: ProgramInfo
    mode: XdpMode | None  # None: a mode lb does not use (offload)

    @property
    def id(self) -> int:
        return self.program.id

    @property
    def name(self) -> str:
        return self.program.name

    def describe(self) -> str:
        """`id 42, name 'xdp_filter', native mode` (what messages print)."""
        mode = self.mode.value if self.mode else "offload"
        return f"id {self.id}, name {self.name!r}, {mode} mode"


def _os_error(what: str) -> OSError:
    err = ctypes.get_errno()
    return OSError(err, f"{what}: {os.strerror(err)}")


def prog_fd_by_id(prog_id: int) -> int:
    """A new fd of program `prog_id` (the caller closes it); OSError(ENOENT) if it is gone."""
    fd = _libbpf.bpf_prog_get_fd_by_id(prog_id)
    if fd < 0:
        raise _os_error(f"bpf_prog_get_fd_by_id({prog_id})")
    return fd


def program_info_fd(fd: int) -> ProgramInfo:
    """Name, tag and map ids of the program behind `fd`."""
    ids = (ctypes.c_uint32 * _MAX_MAP_IDS)()
    info = _ProgInfo()
    info.nr_map_ids = _MAX_MAP_IDS
    info.map_ids = ctypes.addressof(ids)
    size = ctypes.c_uint32(ctypes.sizeof(info))
    if _libbpf.bpf_obj_get_info_by_fd(fd, ctypes.byref(info), ctypes.byref(size)) != 0:
        raise _os_error("bpf_obj_get_info_by_fd")
    return ProgramInfo(id=info.id, name=info.name.decode(errors="replace"),
                       tag=bytes(info.tag).hex(),
                       map_ids=tuple(ids[i] for i in range(min(info.nr_map_ids, _MAX_MAP_IDS))))


def program_info(prog_id: int) -> ProgramInfo:
    """Name, tag and map ids of program `prog_id` (ids are global: no namespace needed)."""
    fd = prog_fd_by_id(prog_id)
    try:
        return program_info_fd(fd)
    finally:
        os.close(fd)


def attached_id(ifindex: int) -> tuple[int, XdpMode | None] | None:
    """(program id, mode) on `ifindex` in this thread's netns, or None when nothing is."""
    with IPRoute() as ipr:
        link = ipr.link("get", index=ifindex)[0]
    xdp = link.get_attr("IFLA_XDP")
    if xdp is None:
        return None
    attached = xdp.get_attr("IFLA_XDP_ATTACHED")
    prog_id = xdp.get_attr("IFLA_XDP_PROG_ID")
    if not attached or not prog_id:
        return None
    return prog_id, _ATTACHED.get(attached)


def attached_program(ifindex: int) -> AttachedProgram | None:
    """What is on `ifindex`'s XDP hook (this thread's netns), or None."""
    found = attached_id(ifindex)
    if found is None:
        return None
    prog_id, mode = found
    try:
        return AttachedProgram(program_info(prog_id), mode)
    except OSError:  # replaced or detached between the two questions: ask once more
        again = attached_id(ifindex)
        return AttachedProgram(program_info(again[0]), again[1]) if again else None


def pinned_map_id(path: Path) -> int | None:
    """The id of the map pinned at `path`, or None if there is none (or it is no map)."""
    fd = _libbpf.bpf_obj_get(str(path).encode())
    if fd < 0:
        return None
    try:
        info = _MapInfoHead()
        size = ctypes.c_uint32(ctypes.sizeof(info))
        if _libbpf.bpf_obj_get_info_by_fd(fd, ctypes.byref(info), ctypes.byref(size)) != 0:
            return None
        return info.id
    finally:
        os.close(fd)


def own_map_ids(pin_dir: Path) -> set[int]:
    """Ids of the maps pinned under `pin_dir` that make a program ours (see OWN_PINS)."""
    ids = {pinned_map_id(pin_dir / name) for name in OWN_PINS}
    return {i for i in ids if i is not None}


def is_ours(program: ProgramInfo, own_ids: set[int]) -> bool:
    """Whether `program` is lb's from the pin directory whose `own_map_ids` are `own_ids`."""
    return program.name in (BALANCER_NAME, ROOT_NAME) and bool(set(program.map_ids) & own_ids)
