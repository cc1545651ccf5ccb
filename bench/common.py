"""What every benchmark shares: the result type, host facts, the report's table, the JSON file,
the command-line scaffolding and the one percentile().

A benchmark is a module `bench.<name>` with an `Options` dataclass whose fields are its flags
(declared with `flag()`), a `build_report()` that returns a JSON-ready dict holding `host_facts()`
and its figures as `Result.as_dict()`, a `render(report)` built on `heading()` and `table()`,
and a `main()` that ends with `emit()`: print the table, write the JSON.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import math
import os
import platform
import signal
import subprocess
import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from lb.table import table as _table
from lb.xdp.config import host_possible_cpus

BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent
# The default --json: a directory, where each run writes <name>-<UTC timestamp>.json.
RESULTS_DIR = BENCH_DIR / "results"

T = TypeVar("T")


def log(msg: str) -> None:
    """Progress for the person watching, on stderr (stdout carries only the report)."""
    print(msg, file=sys.stderr, flush=True)


# --- the result type ---------------------------------------------------------------------------
@dataclasses.dataclass
class Result:
    """One figure a benchmark reports.

    name: its key (unique within the report); label: how the table names it; value: the number,
    in `unit` (None when it was not measured or a check of it failed); measured: what the number
    is a measurement of; target / result: the bound the value is judged against and the verdict
    ("" when there is none); extra: the benchmark's own fields, written beside these.
    """

    name: str
    label: str
    value: float | None
    unit: str
    measured: str = ""
    target: float | None = None
    result: str = ""
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """The JSON form: label, value, unit, measured, target, result, then the extra fields
        (the same six keys in every benchmark, so one script can compare any of them)."""
        return {"label": self.label, "value": self.value, "unit": self.unit,
                "measured": self.measured, "target": self.target, "result": self.result,
                **self.extra}


def by_name(results: Iterable[Result]) -> dict[str, dict[str, Any]]:
    """Results as the JSON's {name: result} object, in the order given."""
    return {r.name: r.as_dict() for r in results}


# --- statistics --------------------------------------------------------------------------------
def percentile(values: Sequence[float], pct: float) -> float:
    """The pct-th percentile of `values`, pct in 0..100 (50 is the median, 99 the p99), linearly
    interpolated between the two nearest ranks (numpy's default); raises ValueError on no
    values or a pct outside 0..100."""
    if not values:
        raise ValueError("percentile of no values")
    if not 0 <= pct <= 100:
        raise ValueError(f"pct must be 0..100, got {pct}")
    ordered = sorted(values)
    at = (len(ordered) - 1) * pct / 100
    lo, hi = math.floor(at), math.ceil(at)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (at - lo)


# --- host facts --------------------------------------------------------------------------------
def _read(path: str) -> str | None:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return None


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(REPO_DIR), *args], capture_output=True,
                             text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo ("unknown" without one)."""
    for line in (_read("/proc/cpuinfo") or "").splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown"


def host_facts(pinned_cpu: int | None = None, **extra: object) -> dict[str, Any]:
    """What the numbers depend on besides the code: kernel, CPU model and count, the CPU the
    process is pinned to (None: not pinned), the date (UTC), the git commit (and whether the
    tree had changes), the command line; then `extra`."""
    status = _git("status", "--porcelain", "--untracked-files=no")
    return {
        "kernel": platform.release(),
        "cpu_model": cpu_model(),
        "cpus": os.cpu_count(),
        "pinned_cpu": pinned_cpu,
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "git_commit": _git("rev-parse", "HEAD"),
        "git_dirty": None if status is None else bool(status),
        "command": list(getattr(sys, "orig_argv", sys.argv)),
        **extra,
    }


def bpf_facts() -> dict[str, Any]:
    """The host settings a BPF program's speed depends on: possible CPUs, the JIT, run-time
    stats (a clock read around every run when on), and the mitigations that tax every call
    from BPF into the kernel (helpers, non-inlined map lookups)."""
    vuln = "/sys/devices/system/cpu/vulnerabilities/"
    return {
        "cpus_possible": host_possible_cpus(),
        "bpf_jit_enable": _read("/proc/sys/net/core/bpf_jit_enable"),
        "bpf_stats_enabled": _read("/proc/sys/kernel/bpf_stats_enabled"),
        "mitigations": {"spec_rstack_overflow": _read(vuln + "spec_rstack_overflow"),
                        "spectre_v2": _read(vuln + "spectre_v2")},
    }


# --- the report's text -------------------------------------------------------------------------
def host_line(host: dict[str, Any]) -> str:
    """One line of host facts under a report's title."""
    pinned = host.get("pinned_cpu")
    where = "not pinned" if pinned is None else f"pinned to CPU {pinned}"
    return f"  kernel {host['kernel']}, CPU {host['cpu_model']} x {host['cpus']}, {where}, " \
           f"{host['date']}"


def heading(title: str, host: dict[str, Any], *facts: str) -> list[str]:
    """A report's first lines: its title, the host, then `facts` (indented by the caller's
    text: pass them as they should print), then a blank line."""
    return [title, host_line(host), *facts, ""]


def table(rows: Sequence[Sequence[object]], header: Sequence[str], align: str) -> str:
    """The report's table (lb.table: columns under a header, `align` l or r per column)."""
    return _table(rows, header, align)


def number(value: float | None, spec: str = ".1f", unit: str = "", none: str = "-") -> str:
    """`value` formatted by `spec` with `unit` after it, or `none` when there is no value."""
    if value is None:
        return none
    return f"{value:{spec}}{unit}"


# --- output ------------------------------------------------------------------------------------
def json_file(path: Path, name: str, now: dt.datetime | None = None) -> Path:
    """Where a run's JSON goes: `path` itself, or when it is a directory (the default
    bench/results, or any existing one) <path>/<name>-<UTC timestamp>.json."""
    if path == RESULTS_DIR or path.is_dir():
        stamp = (now or dt.datetime.now(dt.UTC)).strftime("%Y%m%dT%H%M%SZ")
        return path / f"{name}-{stamp}.json"
    return path


def write_json(report: dict[str, Any], path: Path, name: str) -> Path:
    """Write `report` (which holds its "host" facts, else they are added) as JSON to
    json_file(path, name), the timestamp being the host facts' date; returns the file."""
    if "host" not in report:
        report = {"host": host_facts(), **report}
    out = json_file(path, name, dt.datetime.fromisoformat(report["host"]["date"]))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2, default=str) + "\n")
    return out


def emit(name: str, report: dict[str, Any], render: Callable[[dict[str, Any]], str],
         path: Path | None) -> None:
    """Print the report's table on stdout, then write its JSON (unless `path` is None)."""
    print(render(report))
    if path is not None:
        log(f"wrote {write_json(report, path, name)}")


# --- the command line --------------------------------------------------------------------------
def flag(default: Any, help: str, *, type: Callable[[str], Any] | None = None,
         metavar: str | None = None, group: str | None = None) -> Any:
    """An Options field that is also a flag: --<field-name> with this default and help (which
    gets "(default ...)" appended unless the default is None), in --help's `group` if given.

    The type is `type`, else that of the default (a tuple default takes a comma-separated
    list of ints); a bool field is a switch: --<name> when it defaults to False, --no-<name>
    when it defaults to True (then `help` says what --no-<name> does)."""
    return dataclasses.field(default=default, metadata={"help": help, "type": type,
                                                        "metavar": metavar, "group": group})


def int_list(text: str) -> tuple[int, ...]:
    """A comma-separated list of ints >= 0 (counts, CPU numbers), as a flag's type."""
    try:
        values = tuple(int(v) for v in text.split(",") if v)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a comma-separated list of ints: {text!r}") \
            from None
    if not values or min(values) < 0:
        raise argparse.ArgumentTypeError(f"not a list of ints >= 0: {text!r}")
    return values


def parser(name: str, examples: str, options: type) -> argparse.ArgumentParser:
    """The parser of `python -m bench.<name>`: described by its module docstring, a flag for
    every flag() field of `options`, then --json PATH and --no-json; --help ends with
    `examples`."""
    doc = sys.modules[options.__module__].__doc__ or ""
    p = argparse.ArgumentParser(prog=f"python -m bench.{name}", description=doc.strip(),
                                epilog=examples,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    groups: dict[str, argparse._ArgumentGroup] = {}
    for f in dataclasses.fields(options):
        if "help" not in f.metadata:
            continue
        meta, dashed = f.metadata, f.name.replace("_", "-")
        at = p if meta["group"] is None else \
            groups.setdefault(meta["group"], p.add_argument_group(meta["group"]))
        if isinstance(f.default, bool):
            on = f"--{dashed}" if not f.default else f"--no-{dashed}"
            at.add_argument(on, dest=f.name, action="store_false" if f.default else "store_true",
                            help=meta["help"])
            continue
        kind, default, text = meta["type"], f.default, meta["help"]
        if isinstance(default, tuple):
            kind, default = kind or int_list, ",".join(map(str, default))
        elif kind is None and default is not None:
            kind = type(default)
        if default is not None:
            text += " (default %(default)s)"
        at.add_argument(f"--{dashed}", dest=f.name, type=kind, default=default,
                        metavar=meta["metavar"], help=text)
    p.add_argument("--json", type=Path, default=RESULTS_DIR, metavar="PATH",
                   help="where to write the JSON: a file, or a directory to write "
                        f"{name}-<UTC timestamp>.json in (default: bench/results)")
    p.add_argument("--no-json", action="store_true", help="write no JSON")
    return p


def options_from(options: type[T], args: argparse.Namespace, **fields: Any) -> T:
    """An `options` instance from parsed args: every flag() field, json_path from --json /
    --no-json (None: no JSON), then `fields` (which win)."""
    fields_of: Any = options  # a dataclass type (mypy cannot say so of a TypeVar)
    values: dict[str, Any] = {f.name: getattr(args, f.name)
                              for f in dataclasses.fields(fields_of) if "help" in f.metadata}
    values["json_path"] = None if args.no_json else args.json
    return options(**{**values, **fields})


def is_root(name: str, why: str) -> bool:
    """True when running as root; else says on stderr that bench.<name> needs it, and why."""
    if os.geteuid() == 0:
        return True
    log(f"bench.{name} needs root ({why})")
    return False


def unwind_on_sigterm() -> None:
    """SIGTERM (e.g. from `timeout`) unwinds like Ctrl-C, so labs, daemons and pins go."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
