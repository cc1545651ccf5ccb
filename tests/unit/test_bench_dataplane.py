"""Tests for bench.dataplane: the judging and reporting its table's reader relies on (no root)."""

from pathlib import Path

import pytest

from bench import dataplane as bd


def test_counters_must_match_exactly_or_the_figure_says_why():
    n = 1_000_000
    assert bd.counter_problems({"tx": n, "ct_hit": n}, {"tx": n, "ct_hit": n, "pass": 0}) == []
    problems = bd.counter_problems({"tx": n, "ct_hit": n},
                                   {"tx": n, "ct_hit": n - 1, "ct_miss": 1})
    assert problems == ["ct_hit = 999,999, expected 1,000,000", "ct_miss = 1, expected 0"]


def test_an_encapsulated_frame_must_carry_the_input_packet_unchanged():
    frame = bd.tcp_ack_v4(bd.vip_v4(0))
    outer = b"\xee" * 14 + bytes([0x45, 0, 0, 0, 0, 0, 0, 0, 64, 4]) + b"\0" * 10
    good = outer + frame[14:]
    assert bd.frame_problems(good, frame, 20, outer_proto=4) == []
    assert bd.frame_problems(good, frame, 20, outer_proto=41) == ["outer protocol 4, expected 41"]
    assert bd.frame_problems(good[:-1], frame, 20) == ["frame left is 73 bytes, expected 74"]
    bad = bytearray(good)
    bad[-1] ^= 1
    assert bd.frame_problems(bytes(bad), frame, 20) == ["the inner packet is not the input's"]


def test_a_passed_frame_must_be_untouched_except_the_source_the_prologue_varies():
    frame = bd.tcp_ack_v4(bd.NON_VIP_V4)
    assert bd.frame_problems(frame, frame, 0) == []
    varied = bytearray(frame)
    varied[bd.IPV4_SRC_OFFSET:bd.IPV4_SRC_OFFSET + 4] = (7).to_bytes(4, "big")
    assert bd.frame_problems(bytes(varied), frame, 0, varied=True) == []
    assert bd.frame_problems(bytes(varied), frame, 0) != []
    rewritten_mac = b"\0" + frame[1:]
    assert bd.frame_problems(rewritten_mac, frame, 0) != []


@pytest.mark.parametrize("ratio, target, valid, result", [
    (2.19, 2.2, True, "PASS"), (2.2, 2.2, True, "PASS"), (2.21, 2.2, True, "MISS"),
    (1.5, None, True, "-"), (1.0, 2.2, False, "INVALID"), (None, 2.2, True, "INVALID"),
])
def test_targets_are_judged_on_the_ratio_and_never_for_an_invalid_figure(ratio, target, valid,
                                                                         result):
    assert bd.judge(ratio, target, valid) == result


def test_every_case_has_a_floor_the_benchmark_measures():
    floors = {"pass", "pass_vary", "encap", "encap_vary"}
    assert {f for f, _ in bd.TARGETS.values()} <= floors
    assert bd.TARGETS["established"] == ("encap", 2.2)
    assert bd.TARGETS["new_flow"] == ("encap_vary", 4.5)
    assert bd.TARGETS["non_vip_pass"] == ("pass", 2.0)


def _subject(key: str, runs: list[int], problems: list[str] = (), ratios=()) -> bd.Subject:
    s = bd.Subject(key, key.replace("_", " "), f"what {key} measured", "check", -1, b"\0" * 54,
                   2, prepare=lambda: None, inspect=lambda result, repeat: [])
    s.runs_ns, s.problems, s.pair_ratios = list(runs), list(problems), list(ratios)
    return s


def _report(established_problems=()):
    opts = bd.Options(cpu=1, json_path=None)
    floors = [_subject("pass", [35, 36, 37]), _subject("pass_vary", [38, 39, 40]),
              _subject("encap", [54, 55, 56]), _subject("encap_vary", [56, 57, 58])]
    cases = [_subject("non_vip_pass", [40, 41, 42], ratios=[1.1, 1.2, 1.15]),
             _subject("new_flow", [800, 810, 820], ratios=[14.0, 14.5, 15.0]),
             _subject("established", [140, 141, 142], list(established_problems),
                      ratios=[2.5, 2.6, 2.55]),
             _subject("established_v6", [150, 151, 152], ratios=[2.7, 2.8, 2.75])]
    host = bd.host_facts(opts)
    return bd.build_report(opts, host, cases, floors)


def test_the_report_records_what_was_measured_next_to_each_number():
    report = _report()
    assert {"kernel", "cpu_model", "cpus", "date", "pinned_cpu"} <= set(report["host"])
    assert report["method"]["repeat"] == 1_000_000
    est = report["cases"]["established"]
    assert est["ns"] == 141 and est["floor_ns"] == 55 and est["ratio"] == 2.55
    assert est["measured"] and est["path_check"] and est["result"] == "MISS"
    assert report["cases"]["non_vip_pass"]["result"] == "PASS"
    assert report["cases"]["established_v6"]["result"] == "-"


def test_a_figure_that_failed_its_path_check_is_printed_invalid_not_as_a_number():
    report = _report(established_problems=["ct_hit = 0, expected 1,000,000"])
    est = report["cases"]["established"]
    assert est["ns"] is None and est["ratio"] is None and est["result"] == "INVALID"
    text = bd.render(report)
    row = next(line for line in text.splitlines() if line.lstrip().startswith("established "))
    assert "INVALID" in row and "141" not in row
    assert "ct_hit = 0, expected 1,000,000" in text
    assert report["host"]["kernel"] in text and f"x {report['host']['cpus']}" in text


def test_cli_defaults_and_flags_map_onto_options():
    opts, args = bd.parse_args([])
    assert (opts.repeat, opts.runs) == (1_000_000, 5)
    assert opts.conn_table_size == bd.Sizes().conn_table_size, "the production default"
    assert opts.json_path == bd.DEFAULT_JSON and opts.cpu is not None
    opts, _ = bd.parse_args(["--cpu", "-1", "--no-json", "--runs", "9",
                             "--extra-cflags=-DX", "--source", "x.c"])
    assert opts.cpu is None and opts.json_path is None and opts.runs == 9
    assert opts.extra_cflags == ("-DX",) and opts.source == Path("x.c").resolve()
    assert "-DX" in opts.balancer_cflags() and "-DLB_BENCH" in opts.balancer_cflags()
    with pytest.raises(SystemExit):
        bd.parse_args(["--runs", "0"])


def test_help_ends_with_examples(capsys):
    with pytest.raises(SystemExit):
        bd.parse_args(["--help"])
    out = capsys.readouterr().out
    assert out.rstrip().splitlines()[-1].lstrip().startswith("python -m bench.dataplane")
    assert "examples:" in out
