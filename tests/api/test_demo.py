"""`make demo` keeps working: the demo configures over REST and tells its whole story."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from pyroute2 import netns as pyroute2_netns

from lb.lab.daemon import PIN_PREFIX
from lb.xdp.loader import BPFFS

ROOT = Path(__file__).resolve().parents[2]


def test_demo_runs_end_to_end_and_leaves_nothing_behind() -> None:
    demo = subprocess.Popen([sys.executable, "-m", "lb.lab.demo", "--requests", "60",
                             "--prefix", "lbdt"], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        out, err = demo.communicate(timeout=180)
    finally:
        demo.kill()
    assert demo.returncode == 0, out + err
    assert "POST /vips {'address': '10.100.0.1', 'port': 80, 'protocol': 'tcp'}" in out
    assert "DELETE /vips/1/backends/" in out
    assert "established flow kept its backend, new flows avoided it: yes" in out
    assert "(none left)" in out
    assert not [n for n in pyroute2_netns.listnetns() if n.startswith("lbdt")]
    # The demo's daemon pinned its maps under lb-lab-<demo pid>-<port>: gone.
    assert not list(BPFFS.glob(f"{PIN_PREFIX}{demo.pid}-*"))
