"""Tests for bench.common: the one percentile, the result type, where JSON goes, what the host
facts record, and flags made from Options fields (no root)."""

import dataclasses
import datetime as dt
import json
from pathlib import Path

import pytest

from bench import common


def test_percentile_interpolates_between_ranks_like_numpy():
    values = list(range(1, 101))  # 1..100, given shuffled below
    shuffled = values[::2] + values[1::2]
    assert common.percentile(shuffled, 50) == pytest.approx(50.5)
    assert common.percentile(shuffled, 99) == pytest.approx(99.01)
    assert common.percentile(shuffled, 0) == 1
    assert common.percentile(shuffled, 100) == 100
    assert common.percentile([7.0], 99) == 7.0


def test_percentile_of_nothing_or_out_of_range_is_an_error():
    with pytest.raises(ValueError):
        common.percentile([], 50)
    with pytest.raises(ValueError):
        common.percentile([1.0], 101)


def test_every_benchmark_uses_the_one_percentile():
    from bench import controlplane, health

    ms = [float(v) for v in range(1, 101)]
    assert controlplane.summary_ms([v / 1e3 for v in ms])["p99_ms"] == \
        round(common.percentile(ms, 99), 3)
    schedule = [{"starts": [0.0, 1.0, 2.0 + k / 1000]} for k in range(100)]
    jitter = health.spread(schedule, 1.0, 7.0)["jitter_ms"]
    assert jitter["p99"] == pytest.approx(common.percentile([0.0] * 100 + list(range(100)), 99))


def test_a_result_writes_the_same_six_keys_then_its_own():
    r = common.Result("cpu", "daemon CPU", 3.2, "% of one core", "utime + stime", 15.0, "met",
                      {"p99": 4.0})
    assert r.as_dict() == {"label": "daemon CPU", "value": 3.2, "unit": "% of one core",
                           "measured": "utime + stime", "target": 15.0, "result": "met",
                           "p99": 4.0}
    assert list(common.by_name([r])) == ["cpu"]


def test_json_goes_to_a_timestamped_file_in_a_directory_or_to_the_file_named(tmp_path):
    now = dt.datetime(2026, 12, 2, 16, 5, 9, tzinfo=dt.UTC)
    assert common.json_file(common.RESULTS_DIR, "dataplane", now) == \
        common.RESULTS_DIR / "dataplane-20261202T160509Z.json"
    assert common.json_file(tmp_path, "health", now) == tmp_path / "health-20261202T160509Z.json"
    assert common.json_file(tmp_path / "x.json", "health") == tmp_path / "x.json"
    out = common.write_json({"schema": "s"}, tmp_path / "sub" / "r.json", "t")
    written = json.loads(out.read_text())
    assert written["schema"] == "s" and written["host"]["kernel"]  # host facts added
    host = {**common.host_facts(), "date": now.isoformat()}
    out = common.write_json({"host": host}, tmp_path, "t")
    assert out == tmp_path / "t-20261202T160509Z.json", "named by the run's date"


def test_host_facts_record_kernel_cpu_date_commit_and_command():
    host = common.host_facts(pinned_cpu=1, extra_fact="x")
    assert {"kernel", "cpu_model", "cpus", "date", "git_commit", "command"} <= set(host)
    assert host["pinned_cpu"] == 1 and host["extra_fact"] == "x"
    assert host["command"], "the command line"
    assert "not pinned" in common.host_line(common.host_facts())
    assert "pinned to CPU 1" in common.host_line(host)


@dataclasses.dataclass(frozen=True)
class _Options:
    runs: int = common.flag(5, "timed calls")
    sizes: tuple[int, ...] = common.flag((10, 100), "counts")
    live: bool = common.flag(True, "skip the daemon")
    quick: bool = common.flag(False, "fewer calls")
    cpu: int | None = common.flag(None, "CPU", type=int, group="pinning")
    fixed: str = "not a flag"
    json_path: Path | None = common.RESULTS_DIR


def test_flags_are_made_from_the_options_fields_and_map_back_onto_them():
    p = common.parser("x", "examples:\n  python -m bench.x", _Options)
    opts = common.options_from(_Options, p.parse_args([]))
    assert opts == _Options()
    opts = common.options_from(_Options, p.parse_args(
        ["--runs", "9", "--sizes", "1,2,3", "--no-live", "--quick", "--cpu", "0",
         "--json", "/tmp/o.json"]))
    assert (opts.runs, opts.sizes, opts.live, opts.quick, opts.cpu) == (9, (1, 2, 3), False,
                                                                      True, 0)
    assert opts.json_path == Path("/tmp/o.json")
    assert common.options_from(_Options, p.parse_args(["--no-json"]), runs=1) == \
        _Options(runs=1, json_path=None)
    with pytest.raises(SystemExit):
        p.parse_args(["--sizes", "1,x"])
    with pytest.raises(SystemExit):
        p.parse_args(["--fixed", "y"])
    text = p.format_help()
    assert "(default 10,100)" in text and "pinning:" in text
    assert text.rstrip().endswith("python -m bench.x")
    assert __doc__.splitlines()[0] in text, "described by its module's docstring"
