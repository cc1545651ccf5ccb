"""The C headers and their Python mirrors agree: counter slots, flags, sizes, the hash seed,
map and struct registries; and every define, struct and map has its comment line (no root)."""

from __future__ import annotations

import ctypes
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from lb.xdp import consts, flowhash
from lb.xdp.config import Sizes, host_possible_cpus
from lb.xdp.consts import COUNTER_SLOTS, BackendFlag, Counter, VipFlag
from lb.xdp.structs import BENCH_MAP_LAYOUTS, MAP_LAYOUTS

XDP = Path(__file__).resolve().parents[2] / "lb" / "xdp"
CONSTS, STRUCTS, MAPS = (XDP / n for n in ("lb_consts.h", "lb_structs.h", "lb_maps.h"))


def value(expr: str) -> int:
    """A define's value: an integer literal or (1 << n), as lb_consts.h writes them."""
    expr = expr.strip()
    if m := re.fullmatch(r"\(\s*1\s*<<\s*(\d+)\s*\)", expr):
        return 1 << int(m.group(1))
    return int(expr, 0)


def defines(prefix: str) -> dict[str, int]:
    """`#define <prefix>NAME value` lines of lb_consts.h, as NAME -> value."""
    pattern = re.compile(rf"^#define\s+{prefix}(\w+)\s+(.+?)\s*$", re.M)
    return {name: value(v) for name, v in pattern.findall(CONSTS.read_text())}


def test_counter_slots_match_the_header() -> None:
    c = defines("CNT_")
    cnt_max = c.pop("MAX")
    assert c == {m.name: m.value for m in Counter}
    assert cnt_max == COUNTER_SLOTS == len(Counter)
    assert sorted(c.values()) == list(range(cnt_max)), "slots are not 0..CNT_MAX-1"


@pytest.mark.parametrize("prefix, enum", [("F_VIP_", VipFlag), ("F_BACKEND_", BackendFlag)])
def test_flags_match_the_header(prefix: str, enum) -> None:
    assert defines(prefix) == {m.name: m.value for m in enum}


def test_slot_and_table_constants_match_the_header() -> None:
    header = defines("LB_SLOT_")
    text = CONSTS.read_text()
    for name in ("SAMPLE_MASK", "TIME_SHIFT", "WAYS"):
        header[name] = value(re.search(rf"^#define LB_CT_{name} (\S+)$", text, re.M).group(1))
    assert header == {"BACKEND": consts.SLOT_BACKEND, "SETTLED": consts.SLOT_SETTLED,
                      "SAMPLE_MASK": consts.CT_SAMPLE_MASK, "TIME_SHIFT": consts.CT_TIME_SHIFT,
                      "WAYS": consts.CT_WAYS}
    assert consts.SLOT_BACKEND & consts.SLOT_SETTLED == 0


def test_sizes_come_from_one_place() -> None:
    """Every #ifndef default but the seed is passed by Sizes.cflags(), and the defaults
    written in the header are Sizes()' own (so reading either tells the truth); a size the
    header has no default for (it #errors without it: the host's CPU count) is passed too."""
    text = CONSTS.read_text()
    defaults = dict(re.findall(r"^#ifndef (\w+)\n#define \1 (\S+)$", text, re.M))
    required = re.findall(r"^#ifndef (\w+)\n#error ", text, re.M)
    seed = value(defaults.pop("LB_HASH_SEED"))
    assert seed == flowhash.HASH_SEED
    passed = dict(flag[2:].split("=", 1) for flag in Sizes().cflags())
    assert required == ["LB_CT_CPUS"] and int(passed.pop("LB_CT_CPUS")) == Sizes().cpus
    assert {k: value(v) for k, v in defaults.items()} == {k: int(v) for k, v in passed.items()}


def test_cpus_default_to_the_hosts_possible_cpus(tmp_path: Path) -> None:
    """The connection table gets a slice for every CPU id the kernel can hand out."""
    possible = tmp_path / "possible"
    for text, cpus in (("0\n", 1), ("0-1\n", 2), ("0-3,8-11\n", 12)):
        possible.write_text(text)
        assert host_possible_cpus(possible) == cpus
    assert Sizes().cpus == host_possible_cpus() >= 1
    assert Sizes(cpus=4, conn_table_size=1024).conn_table_entries == 4 * 512
    with pytest.raises(ValueError, match="cpus"):
        Sizes(cpus=0)


MAP_DECL = re.compile(r'^(?:LB_MAP|LB_MAP_FLAGS|BPF_TABLE|BPF_F_TABLE)\("\w+",\s*([^,]+),\s*'
                      r'([^,]+),\s*(\w+),', re.M)


SCALARS = {"__u32": ctypes.c_uint32, "__u64": ctypes.c_uint64}


def mirror_name(c_struct: str) -> str:
    """The name the Python mirror of a C struct has: foo_bar -> FooBar."""
    return "".join(p.capitalize() for p in c_struct.split("_"))


def mirrors(mirror, c_type: str) -> bool:
    """Whether `mirror` is the registry's type for the C key/value type `c_type`."""
    c_type = c_type.strip()
    if c_type.startswith("struct "):
        return mirror.__name__ == mirror_name(c_type.split()[1])
    return mirror is SCALARS[c_type]


def test_every_map_is_in_the_layout_registry_with_its_own_structs() -> None:
    declared = {name: (k, v) for k, v, name in MAP_DECL.findall(MAPS.read_text())}
    assert set(declared) == set(MAP_LAYOUTS)
    for name, (key, val) in declared.items():
        mirror_key, mirror_value = MAP_LAYOUTS[name]
        assert mirrors(mirror_key, key), f"{name} key: {mirror_key.__name__} for {key}"
        assert mirrors(mirror_value, val), f"{name} value: {mirror_value.__name__} for {val}"
    assert "BPF_ARRAY(bench_state" in (XDP / "bench.h").read_text()
    assert set(BENCH_MAP_LAYOUTS) == {"bench_state"}


def struct_fields(text: str) -> dict[str, list[str]]:
    """struct name -> its field names in order, from a header's struct definitions."""
    out = {}
    for name, body in re.findall(r"^struct (\w+) \{\n(.*?)^\}[^;\n]*;", text, re.M | re.S):
        out[name] = re.findall(r"^\s*(?:__\w+|struct \w+)\s+(\w+)(?:\[[^\]]*\])?;", body, re.M)
    return out


def nested(mirror) -> list:
    """A mirror and every struct mirror inside it (fields, arrays of structs), depth first."""
    out = [mirror]
    for _, t, *_ in mirror._fields_:
        while issubclass(t, ctypes.Array):
            t = t._type_
        if issubclass(t, ctypes.Structure):
            out += nested(t)
    return out


def test_mirrors_have_the_c_field_names_in_order() -> None:
    by_name = {n.__name__: n for pair in MAP_LAYOUTS.values() for m in pair
               if issubclass(m, ctypes.Structure) for n in nested(m)}
    c_structs = struct_fields(STRUCTS.read_text())
    assert {mirror_name(n) for n in c_structs} == set(by_name), "a struct and its mirror"
    for c_name, fields in c_structs.items():
        mirror = by_name.get(mirror_name(c_name))
        assert mirror is not None, f"struct {c_name} has no mirror in MAP_LAYOUTS"
        assert [f[0] for f in mirror._fields_] == fields, c_name


DECLARATION = re.compile(r"^(?:#define\s+(\w+)|struct\s+\w+\s*\{|(?:LB_MAP\w*|BPF_\w+)\()")


def is_comment(line: str) -> bool:
    s = line.strip()
    return s.startswith(("/*", "*", "//")) or s.endswith("*/")


def undocumented(path: Path) -> list[str]:
    """Defines, structs and maps without a comment line right above them (for a default,
    above its own #ifndef guard)."""
    lines = path.read_text().splitlines()
    missing = []
    for i, line in enumerate(lines):
        m = DECLARATION.match(line)
        if not m:
            continue
        above = i - 1
        if m.group(1) and above >= 0 and lines[above].strip() == f"#ifndef {m.group(1)}":
            above -= 1
        if above < 0 or not is_comment(lines[above]):
            missing.append(f"{path.name}:{i + 1}: {line.strip()}")
    return missing


@pytest.mark.parametrize("header", [CONSTS, STRUCTS, MAPS], ids=lambda p: p.name)
def test_every_declaration_has_a_comment_line_above(header: Path) -> None:
    missing = undocumented(header)
    assert not missing, "no comment line right above:\n  " + "\n  ".join(missing)


def test_the_comment_check_sees_a_missing_comment(tmp_path: Path) -> None:
    h = tmp_path / "x.h"
    h.write_text("/* ok */\n#define A 1\n#define B 2\n/* ok */\n#ifndef C\n#define C 3\n#endif\n"
                 "#ifndef D\n#define D 4\n#endif\nstruct s {\n\t__u32 a;\n};\n")
    assert undocumented(h) == ["x.h:3: #define B 2", "x.h:9: #define D 4", "x.h:11: struct s {"]


@pytest.mark.parametrize("size", [1000, 32, 3 << 10, 1 << 27])
def test_conn_table_size_must_be_a_power_of_two_in_range(size: int) -> None:
    with pytest.raises(ValueError, match="power of two"):
        Sizes(conn_table_size=size)


def test_conn_table_and_vip_index_geometry() -> None:
    from lb.xdp import consts
    from lb.xdp.structs import CtSetV4, CtSetV6

    text = CONSTS.read_text()
    assert f"#define LB_CT_WAYS {consts.CT_WAYS}" in text
    assert f"#define LB_CT_TIME_SHIFT {consts.CT_TIME_SHIFT}" in text
    assert ctypes.sizeof(CtSetV4) == 64, "an IPv4 set is one cache line"
    assert ctypes.sizeof(CtSetV6) % 8 == 0
    assert Sizes(conn_table_size=4096).conn_table_sets == 2048
    assert Sizes(max_vips=512).vip_index_bits == 12 and Sizes(max_vips=8).vip_index_bits == 6


# The data plane's other sources: they use lb_consts.h's defines and lb_maps.h's maps, and
# declare none of their own (bench.h, the benchmark prologue bench/floors.c includes alone,
# keeps its own; _ringio.c is the control plane's extension; chain.h is the contract other
# programs include alone, and root.c uses it as they do).
OTHERS = sorted(p for p in XDP.glob("*.[ch]")
                if p.name not in ("lb_consts.h", "lb_maps.h", "bench.h", "_ringio.c",
                                  "chain.h", "root.c"))


@pytest.mark.parametrize("source", OTHERS, ids=lambda p: p.name)
def test_defines_and_maps_live_in_their_own_headers(source: Path) -> None:
    stray = [line for line in source.read_text().splitlines()
             if re.match(r"\s*#\s*define\b|(?:LB_MAP\w*|BPF_\w+)\(", line)]
    assert not stray, f"{source.name} declares its own:\n  " + "\n  ".join(stray)


@pytest.mark.parametrize("flag, why", [
    ("-DLB_RING_CELL_SLOTS=6", "whole number of 8-byte words"),
    ("-DLB_CT_SIZE=1000", "power of two"),
    ("-DLB_MAX_BACKENDS=40000", "LB_SLOT_BACKEND"),
])
def test_sizes_assumed_fixed_refuse_other_values(tmp_path: Path, flag: str, why: str) -> None:
    """The header's _Static_asserts stop a build whose sizes the code cannot work with."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("no C compiler")
    src = tmp_path / "probe.c"
    src.write_text('#include <linux/types.h>\n#include "lb_consts.h"\n')
    ok = subprocess.run([cc, "-fsyntax-only", f"-I{XDP}", "-DLB_CT_CPUS=1", str(src)],
                        capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    bad = subprocess.run([cc, "-fsyntax-only", f"-I{XDP}", "-DLB_CT_CPUS=1", flag, str(src)],
                         capture_output=True, text=True)
    assert bad.returncode != 0 and why in bad.stderr, bad.stderr
