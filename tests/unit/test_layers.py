"""The layers hold: api -> lb.control -> lb.xdp, wiring on top, bcc behind lb.xdp.loader only."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _lint_imports() -> subprocess.CompletedProcess[str]:
    code = "import sys; from importlinter.cli import lint_imports_command; lint_imports_command()"
    return subprocess.run([sys.executable, "-c", code, "--no-cache"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


def test_every_import_contract_in_pyproject_is_kept():
    run = _lint_imports()
    assert run.returncode == 0, run.stdout + run.stderr
    assert "0 broken" in run.stdout, run.stdout


def test_pure_layers_import_without_bcc():
    """The model, the controller and the REST app import with bcc made unimportable."""
    code = ('import sys; sys.modules["bcc"] = None; '
            "import lb.control.model, lb.control.controller, lb.control.store, api.app, "
            "lb.xdp.maps")
    run = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         timeout=60)
    assert run.returncode == 0, run.stderr
