"""The data-plane benchmark still takes the path each figure claims (validity, never timing)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.root

ROOT = Path(__file__).resolve().parents[2]


def test_every_benchmark_figure_takes_its_intended_path(tmp_path):
    out = tmp_path / "dataplane.json"
    run = subprocess.run(
        [sys.executable, "-m", "bench.dataplane", "--repeat", "2000", "--runs", "1",
         "--conn-table-size", "65536", "--json", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, f"benchmark exited {run.returncode}:\n{run.stdout}\n{run.stderr}"
    assert "INVALID" not in run.stdout
    report = json.loads(out.read_text())
    assert report["cases"], "no figures in the report"


def test_every_scaling_figure_takes_its_intended_path(tmp_path):
    out = tmp_path / "scaling.json"
    run = subprocess.run(
        [sys.executable, "-m", "bench.scaling", "--repeat", "2000", "--repeat-new", "1000",
         "--runs", "1", "--flows", "1,1000", "--vips", "1", "--backends", "10",
         "--conn-table-size", "65536", "--no-memory", "--json", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, f"benchmark exited {run.returncode}:\n{run.stdout}\n{run.stderr}"
    assert "INVALID" not in run.stdout
    report = json.loads(out.read_text())
    cases = {(r["flows"], r["case"]): r for r in report["rows"]}
    assert set(cases) == {(1, "new"), (1, "established"), (1000, "new"),
                          (1000, "established"), (1000, "cycling"),
                          (1, "established_settled"), (1000, "established_settled"),
                          (1000, "cycling_settled")}
    # Valid: every call's counters showed the intended path (the settled cases: all but the
    # sampled packets counted as ct_settled, the sampled ones as table hits).
    assert all(r["valid"] and r["ns"] > 0 for r in cases.values())
    cycling = cases[(1000, "cycling")]
    assert cycling["floor"] == "probe" and cycling["repeat"] == 1000  # every flow once
    assert cycling["floor_ns"] > 0 and cycling["hit_share"] >= 0.85
    settled = cases[(1000, "cycling_settled")]
    assert settled["floor"] == "encap_vary" and settled["repeat"] == 1000
    (t,) = report["targets"]["established_vs_one_flow"]
    assert t["result"] in ("PASS", "MISS") and t["probe_floor_ns"] == cycling["floor_ns"]
    assert t["cycling_ns"] == settled["ns"] and t["table_cycling_ns"] == cycling["ns"]
    assert t["cycling_over_floor"] == settled["ratio_to_floor"]
