"""Tests for bench.controlplane: the statistics, slot counts and documents its figures rest on
(no root, no daemon, no timed assertions)."""

import pytest

from bench import controlplane as bc
from bench.common import host_facts
from lb.control.maglev import build_ring

SMALL_RING = 1009  # a prime: rings of a few backends build in well under a millisecond


def test_the_minimum_is_the_removed_backends_slots_or_the_added_backends_share():
    old = [1, 2, 3, 1, 2, 3, 1]
    removed = [2, 3, 3, 3, 2, 3, 2]  # backend 1 out: its 3 slots must change, 1 more did
    assert bc.minimum_slots(old, removed, 1, added=False) == 3
    assert bc.slots_rewritten(old, removed) == 4
    added = [1, 4, 3, 1, 4, 3, 1]  # backend 4 in: it took 2 slots, nothing else moved
    assert bc.minimum_slots(old, added, 4, added=True) == 2
    assert bc.slots_rewritten(old, added) == 2


def test_a_maglev_change_never_rewrites_fewer_slots_than_the_minimum():
    keys = list(range(10))

    def ring(members):
        r = build_ring([(bc.backend_address(k), 1) for k in members], SMALL_RING)
        return [members[m] for m in r]

    old = ring(keys)
    new = ring(keys[:4] + keys[5:])  # backend 4 out
    minimum = bc.minimum_slots(old, new, 4, added=False)
    assert minimum == old.count(4) > 0
    assert 4 not in new
    assert bc.slots_rewritten(old, new) >= minimum


def test_diff_figures_report_one_ratio_per_size_and_kind_at_least_one():
    diffs = bc.diff_figures([10], samples=3, ring_size=SMALL_RING)
    assert set(diffs) == {"remove_10", "add_10"}
    for d in diffs.values():
        assert d["changes"] == 3
        assert d["ratio"] >= 1.0
        assert d["ratio_max"] >= d["ratio"]


def test_the_fanout_document_puts_the_shared_backend_in_every_vip_or_in_none():
    with_doc = bc.fanout_document(vips=8, per_vip=5, pool=10, with_shared=True)
    without = bc.fanout_document(vips=8, per_vip=5, pool=10, with_shared=False)
    assert len(with_doc["vips"]) == len(without["vips"]) == 8
    for w, wo in zip(with_doc["vips"], without["vips"], strict=True):
        have = [b["address"] for b in w["backends"]]
        assert len(have) == len(set(have)) == 5
        assert have[0] == bc.SHARED_BACKEND
        assert [b["address"] for b in wo["backends"]] == have[1:]
        assert w["address"] == wo["address"]
    others = {b["address"] for v in without["vips"] for b in v["backends"]}
    assert len(others) == 10  # the pool is used evenly, wrapping around
    with pytest.raises(ValueError):
        bc.fanout_document(vips=1, per_vip=12, pool=10, with_shared=True)


def test_a_result_is_met_only_below_its_target():
    assert bc.verdict(14.9, 15.0) == "met"
    assert bc.verdict(15.0, 15.0) == "missed"
    assert bc.verdict(3.0, None) == "-"
    assert bc.verdict(None, 15.0) == "n/a"


def test_the_table_shows_every_figure_with_its_target_without_a_daemon():
    opts = bc.Options(build_sizes=(10, 1000), build_runs=1, diff_sizes=(10,),
                      diff_samples=2, ring_size=SMALL_RING, live=False)
    builds = bc.time_builds(opts.build_sizes, opts.build_runs, opts.ring_size)
    diffs = bc.diff_figures(opts.diff_sizes, opts.diff_samples, opts.ring_size)
    report = bc.build_report(opts, host_facts(), builds, diffs, None)
    assert report["schema"] == bc.SCHEMA
    assert report["figures"]["build_1000"]["target"] == bc.TARGET_BUILD_1000_MS
    assert report["figures"]["build_10"]["result"] == "-"
    text = bc.render(report)
    assert "ring build, 1000 backends" in text and "< 5 ms" in text
    assert "slots written / minimum, remove 1 of 10" in text


def test_bad_options_are_refused_before_anything_runs():
    with pytest.raises(SystemExit):
        bc.parse_args(["--changes", "0"])
    with pytest.raises(SystemExit):
        bc.parse_args(["--build-sizes", "10,x"])
    opts, _ = bc.parse_args(["--no-live", "--build-sizes", "10,100", "--no-json"])
    assert opts.build_sizes == (10, 100) and not opts.live and opts.json_path is None
