"""`lb detach`: the program stays attached after the daemon stops, until detached on purpose."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from lb.lab.daemon import LabDaemon
from lb.lab.namespaces import kernel_xdp_mode
from lb.lab.veth import VethLab

ROOT = Path(__file__).resolve().parents[2]


def test_program_outlives_the_daemon_until_lb_detach_unpins_it() -> None:
    with VethLab(n_backends=1, rx_queues=1, prefix="lbdd") as lab, LabDaemon(lab) as daemon:
        netns, ifname = lab.balancer.netns, lab.balancer.ifname
        assert kernel_xdp_mode(netns, ifname) == "xdp"
        assert daemon.stop() == 0
        assert kernel_xdp_mode(netns, ifname) == "xdp", "stopping must not detach"
        assert any(daemon.pin_dir.iterdir())

        result = subprocess.run([sys.executable, "-m", "lb", "detach", "--netns", netns,
                                 "--interface", ifname, "--pin-dir", str(daemon.pin_dir),
                                 "--unpin"], cwd=ROOT, capture_output=True, text=True,
                                timeout=60)
        assert result.returncode == 0, result.stdout + result.stderr
        assert kernel_xdp_mode(netns, ifname) is None
        assert not daemon.pin_dir.exists()
