"""Tests for bench.chain's report: what its reader sees for valid and invalid figures (no root)."""

from __future__ import annotations

from bench import chain as bc


def _fig(ns: float | None, extra: float | None) -> dict:
    return {"valid": ns is not None, "problems": [] if ns else ["last verdict PASS"], "ns": ns,
            "runs_ns": [], "extra_ns": extra, "extra_runs_ns": []}


def test_the_table_shows_each_arrangement_and_its_extra_cost_or_invalid() -> None:
    report = {"host": {"cpu_model": "Test CPU", "cpus": 2, "kernel": "6.18"}, "repeat": 1000,
              "runs": 3, "results": {"established": {"alone": _fig(80.0, 0.0),
                                                     "root": _fig(83.0, 3.0),
                                                     "firewall": _fig(None, None)}}}
    out = bc.render(report)
    assert "established   root              83.0      +3.0" in out
    assert "INVALID" in out.splitlines()[4]
    assert "Test CPU, 2 CPUs, kernel 6.18" in out


def test_the_arrangements_measured_are_alone_root_and_firewall() -> None:
    assert bc.ARRANGEMENTS == ("alone", "root", "firewall")
    assert bc.CHAIN_SLOT == 1
