"""A daemon process (`lb run`) on a veth lab's balancer: start, wait until ready, kill, restart.

Used by the demo, the API tests and the control-plane benchmark. The daemon runs as a real
subprocess with a real uvicorn server on 127.0.0.1 (in the root namespace) and its data plane
in the lab's balancer namespace; its database and pinned maps live in directories this object
owns and removes on close, as it removes the process, also when a test fails.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
from pyroute2 import netns as pyroute2_netns

from lb.client import Client, ClientError
from lb.lab.errors import LabError
from lb.lab.hosts import Host
from lb.lab.namespaces import remove_leftovers
from lb.lab.veth import FABRIC_MTU, VethLab
from lb.xdp.loader import BPFFS

# prctl(PR_SET_PDEATHSIG): the daemon gets SIGKILL if the process that started it dies.
_PR_SET_PDEATHSIG = 1
_libc = ctypes.CDLL(None, use_errno=True)
PIN_PREFIX = "lb-lab-"


def _die_with_parent() -> None:
    _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def remove_leftover_pins() -> list[str]:
    """Delete pin directories of lab daemons whose starting process is gone; returns them."""
    removed = []
    for path in BPFFS.glob(f"{PIN_PREFIX}*"):
        pid = path.name[len(PIN_PREFIX):].split("-")[0]
        if pid.isdigit() and not Path(f"/proc/{pid}").exists():
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path.name)
    return removed


@contextlib.contextmanager
def fresh_lab(prefix: str, **kwargs: Any) -> Iterator[VethLab]:
    """A VethLab (`kwargs` as VethLab's) built after removing what dead runs with `prefix`
    left behind (namespaces, lab daemons' pins); on exit, raises LabError if any of its
    namespaces is still there (checked through netlink, not through the lab's own records)."""
    remove_leftovers(prefix)
    remove_leftover_pins()
    with VethLab(prefix=prefix, **kwargs) as lab:
        names = lab.namespaces
        yield lab
    left = set(names) & set(pyroute2_netns.listnetns())
    if left:
        raise LabError(f"lab namespaces left behind: {sorted(left)}")


class DaemonError(RuntimeError):
    """The daemon did not become ready, or exited."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LabDaemon:
    """`lb run` attached to `lab`'s balancer interface, with its own state and pin directories."""

    def __init__(self, lab: VethLab, *, max_vips: int = 16, max_backends: int = 64,
                 conn_table_size: int = 16384, extra_args: list[str] | None = None,
                 env: dict[str, str] | None = None, log_path: Path | None = None,
                 balancer: Host | None = None) -> None:
        self.lab = lab
        self.balancer = balancer or lab.balancer  # which of the lab's balancers it runs on
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.state_dir = Path(tempfile.mkdtemp(prefix="lb-state-"))
        self.pin_dir = BPFFS / f"{PIN_PREFIX}{os.getpid()}-{self.port}"
        self.log_path = log_path or self.state_dir / "daemon.log"
        self.args = [sys.executable, "-m", "lb", "run",
                     "--netns", self.balancer.netns, "--interface", self.balancer.ifname,
                     "--mtu", str(FABRIC_MTU), "--api-port", str(self.port),
                     "--state-dir", str(self.state_dir), "--pin-dir", str(self.pin_dir),
                     "--max-vips", str(max_vips), "--max-backends", str(max_backends),
                     "--conn-table-size", str(conn_table_size), *(extra_args or [])]
        self.env = {**os.environ, **(env or {})}
        self.process: subprocess.Popen[bytes] | None = None
        # `api` for what a caller asks of the daemon; `client`, raw HTTP, for the tests of
        # the HTTP contract itself (exact statuses, malformed bodies).
        self.api = Client(self.url, timeout=30)
        self.client = httpx.Client(base_url=self.url, timeout=30)

    def __enter__(self) -> LabDaemon:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self, timeout: float = 60.0) -> dict[str, Any]:
        """Start the process and wait for /readyz; returns its body."""
        log = open(self.log_path, "ab")  # noqa: SIM115 (the child keeps it)
        try:
            self.process = subprocess.Popen(self.args, stdout=log, stderr=subprocess.STDOUT,
                                            env=self.env, cwd=Path(__file__).parents[2],
                                            preexec_fn=_die_with_parent)
        finally:
            log.close()
        ready = self.wait_ready(timeout)
        if ready.get("interface") == self.balancer.ifname:
            # RSS-like CPUs for the per-CPU conn table
            self.lab.steer_balancer_queues(self.balancer)
        return ready

    def wait_ready(self, timeout: float = 60.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise DaemonError(f"the daemon exited with {self.process.returncode}:\n"
                                  f"{self.log_tail()}")
            try:
                ready = self.api.readyz(timeout=2)
                if ready.get("ready"):
                    return dict(ready)
            except ClientError:
                pass
            time.sleep(0.1)
        raise DaemonError(f"the daemon was not ready within {timeout} s:\n{self.log_tail()}")

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def kill(self) -> None:
        """SIGKILL: the process dies at once; its program stays attached and forwarding."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()

    def stop(self, timeout: float = 10.0) -> int:
        """SIGTERM and wait; returns the exit code."""
        if self.process is None:
            return 0
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode

    def restart(self, kill: bool = False) -> dict[str, Any]:
        """Stop (or SIGKILL) and start again; returns the new /readyz body."""
        self.kill() if kill else self.stop()
        return self.start()

    def close(self) -> None:
        """Stop the process; remove the pinned maps and the state directory."""
        try:
            self.stop()
        finally:
            self.client.close()
            self.api.close()
            shutil.rmtree(self.pin_dir, ignore_errors=True)
            shutil.rmtree(self.state_dir, ignore_errors=True)


def checked_daemon(lab: VethLab, extra_args: list[str] | None = None) -> Iterator[LabDaemon]:
    """A LabDaemon on `lab` (`lb run` with `extra_args` too) for a session fixture; on exit
    (SIGTERM), raises DaemonError if its pinned maps or its state directory are still there."""
    with LabDaemon(lab, extra_args=extra_args) as d:
        pin_dir, state_dir = d.pin_dir, d.state_dir
        yield d
    left = [str(p) for p in (pin_dir, state_dir) if p.exists()]
    if left:
        raise DaemonError(f"left behind by the daemon: {left}")
