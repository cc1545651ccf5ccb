"""bench.fleet's report: figures from the measured times, judged against the median target."""

from __future__ import annotations

from bench import fleet


def test_the_report_judges_the_median_and_counts_lost_changes():
    opts = fleet.Options(changes=4)
    raw = {"converge_ms": [10.0, 20.0, 30.0, 400.0], "answer_ms": [5.0, 6.0, 7.0, 8.0],
           "lost": 1}
    report = fleet.build_report(opts, {"kernel": "k", "cpu_model": "c", "cpus": 2,
                                       "pinned_cpu": None, "date": "2026-12-02T00:00:00+00:00"},
                                raw)
    figures = report["figures"]
    assert figures["converge_p50"]["value"] == 25.0
    assert figures["converge_p50"]["result"] == "ok"
    assert figures["converge_max"]["value"] == 400.0
    assert figures["lost"]["value"] == 1
    assert "change -> every host's kernel, median" in fleet.render(report)
    slow = fleet.build_report(opts, report["host"], {**raw, "converge_ms": [150.0, 200.0]})
    assert slow["figures"]["converge_p50"]["result"] == "MISS"
