"""A real etcd cluster on loopback for the lab and the tests: 1 or 3 members, stopped and removed.

Each member is Debian's `etcd` (etcd-server 3.4) with its own data directory under a
temporary folder and free loopback ports. `EtcdCluster` is a context manager: leaving it
kills the members it started (by pid) and removes their data, even when a test failed.
Members can be stopped and started again one by one, for failure tests.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

ETCD = "etcd"


class EtcdLabError(RuntimeError):
    """etcd is not installed, or a member did not come up."""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Member:
    """One etcd member: its name, client and peer ports, data directory and process."""

    name: str
    client_port: int
    peer_port: int
    data_dir: Path
    log: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def client_url(self) -> str:
        return f"http://127.0.0.1:{self.client_port}"

    @property
    def peer_url(self) -> str:
        return f"http://127.0.0.1:{self.peer_port}"


class EtcdCluster:
    """`members` etcd processes forming one cluster on loopback."""

    def __init__(self, members: int = 1) -> None:
        if shutil.which(ETCD) is None:
            raise EtcdLabError("etcd not found: install Debian's etcd-server (make install)")
        self.root = Path(tempfile.mkdtemp(prefix="lb-etcd-"))
        self.members = [Member(f"m{i}", _free_port(), _free_port(), self.root / f"m{i}",
                               self.root / f"m{i}.log") for i in range(members)]
        self._initial_cluster = ",".join(f"{m.name}={m.peer_url}" for m in self.members)

    @property
    def endpoints(self) -> list[str]:
        return [m.client_url for m in self.members]

    def store_url(self, prefix: str) -> str:
        """An `lb run --store` URL naming every member."""
        hosts = ",".join(f"127.0.0.1:{m.client_port}" for m in self.members)
        return f"etcd://{hosts}/{prefix}"

    def start(self, member: Member | None = None, timeout_s: float = 15.0) -> None:
        """Starts every member (or one stopped member) and waits until it serves."""
        todo = [member] if member else self.members
        for m in todo:
            m.data_dir.mkdir(parents=True, exist_ok=True)
            log = open(m.log, "ab")  # noqa: SIM115 (the process keeps it)
            m.proc = subprocess.Popen(
                [ETCD, "--name", m.name, "--data-dir", str(m.data_dir),
                 "--listen-client-urls", m.client_url, "--advertise-client-urls", m.client_url,
                 "--listen-peer-urls", m.peer_url, "--initial-advertise-peer-urls", m.peer_url,
                 "--initial-cluster", self._initial_cluster,
                 "--initial-cluster-state", "new", "--initial-cluster-token", self.root.name,
                 "--heartbeat-interval", "50", "--election-timeout", "500"],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
            log.close()
        deadline = time.monotonic() + timeout_s
        for m in todo:
            while not self._healthy(m):
                if m.proc is not None and m.proc.poll() is not None:
                    raise EtcdLabError(f"etcd {m.name} exited: {m.log.read_text()[-2000:]}")
                if time.monotonic() > deadline:
                    raise EtcdLabError(f"etcd {m.name} not serving after {timeout_s} s")
                time.sleep(0.05)

    @staticmethod
    def _healthy(m: Member) -> bool:
        try:
            r = httpx.get(m.client_url + "/health", timeout=0.5)
            return r.status_code == 200 and r.json().get("health") == "true"
        except (httpx.HTTPError, ValueError):
            return False

    def stop(self, member: Member) -> None:
        """Kills one member (SIGKILL, as a crash would); its data stays for a restart."""
        if member.proc is not None and member.proc.poll() is None:
            member.proc.kill()
            member.proc.wait(10)
        member.proc = None

    def close(self) -> None:
        for m in self.members:
            self.stop(m)
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> EtcdCluster:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
