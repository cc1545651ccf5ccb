"""C/Python struct layouts: the mirrors in lb.xdp.structs match what bcc compiled, and the
check that says so (check_layouts) fails when a mirror drifts."""

from __future__ import annotations

import ctypes
from ctypes import c_uint8 as u8
from ctypes import c_uint16 as u16
from ctypes import c_uint32 as u32

import pytest

from lb.xdp.structs import MAP_LAYOUTS, Backend, LayoutMismatch, check_layouts

pytestmark = pytest.mark.root


def compiled_types(program) -> dict:
    """Map name -> the (key, value) ctypes types bcc generated from the C structs.

    For per-CPU maps bcc's Leaf is an array over CPUs; sLeaf is the element."""
    out = {}
    for name in MAP_LAYOUTS:
        table = program.table(name)
        out[name] = (table.Key, getattr(table, "sLeaf", table.Leaf))
    return out


class VipMetaSwapped(ctypes.Structure):
    """struct vip_meta with its two fields in the wrong order (same size)."""

    _fields_ = [("flags", u32), ("vip_num", u32)]


class BackendShort(ctypes.Structure):
    """struct backend without its flags word."""

    _fields_ = [("addr", u32 * 4)]


class VipKeyV4NoPad(ctypes.Structure):
    """struct vip_key_v4 with the explicit pad byte forgotten: ctypes pads silently to the
    same size, so only the field comparison can catch it."""

    _fields_ = [("addr", u32), ("port", u16), ("proto", u8)]


def test_every_mirror_matches_the_compiled_struct(loaded_rig) -> None:
    check_layouts(compiled_types(loaded_rig.program), MAP_LAYOUTS)


@pytest.mark.parametrize("name, role, mirror, expect", [
    ("vips_v4", "value", VipMetaSwapped, "vips_v4 value: fields"),
    ("backends", "value", BackendShort, "backends value: size 16 in Python, 20 in C"),
    ("vips_v4", "key", VipKeyV4NoPad, "vips_v4 key: fields"),
    ("vip_stats", "key", ctypes.c_uint64, "vip_stats key: size 8 in Python, 4 in C"),
])
def test_a_drifted_mirror_is_refused(loaded_rig, name, role, mirror, expect) -> None:
    layouts = dict(MAP_LAYOUTS)
    key, value = layouts[name]
    layouts[name] = (mirror, value) if role == "key" else (key, mirror)
    with pytest.raises(LayoutMismatch, match=expect):
        check_layouts(compiled_types(loaded_rig.program), layouts)


def test_a_map_missing_from_the_program_is_refused(loaded_rig) -> None:
    layouts = {**MAP_LAYOUTS, "no_such_map": (u32, Backend)}
    compiled = compiled_types(loaded_rig.program)
    with pytest.raises(LayoutMismatch, match="no_such_map: map not found"):
        check_layouts(compiled, layouts)

