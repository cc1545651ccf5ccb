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
