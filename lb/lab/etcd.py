"""A real etcd cluster on loopback for the lab and the tests: 1 or 3 members, stopped and removed.

Each member is Debian's `etcd` (etcd-server 3.4) with its own data directory under a
temporary folder and free ports on loopback, or on `host` inside network namespace `netns`
(a lab host the balancers' namespaces reach through the router: a daemon that entered its
balancer's namespace cannot reach the root namespace's loopback). `EtcdCluster` is a context
manager: leaving it kills the members it started (by pid) and removes their data, even when a
test failed.
Members can be stopped and started again one by one, for failure tests.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from lb.netns import in_netns

ETCD = "etcd"
# What a fleet at full capacity needs of etcd (docs/operations.md, "Running a fleet"): one
# PUT /config of 512 VIPs x 100 backends is one transaction of 515 operations and about 5.5 MB
# through the JSON gateway (values in base64), beyond etcd's defaults (128 and 1.5 MiB).
SERVER_LIMITS = ("--max-txn-ops", "4096", "--max-request-bytes", str(32 * 1024 * 1024))


class EtcdLabError(RuntimeError):
    """etcd is not installed, or a member did not come up."""


def _free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


@dataclass
class Member:
    """One etcd member: its name, client and peer ports, data directory and process."""

    name: str
    client_port: int
    peer_port: int
    data_dir: Path
    log: Path
    host: str = "127.0.0.1"
    proc: subprocess.Popen[bytes] | None = None

    @property
    def client_url(self) -> str:
        return f"http://{self.host}:{self.client_port}"

    @property
    def peer_url(self) -> str:
        return f"http://{self.host}:{self.peer_port}"


class EtcdCluster:
    """`members` etcd processes forming one cluster on loopback."""

    def __init__(self, members: int = 1, netns: str | None = None,
                 host: str = "127.0.0.1") -> None:
        if shutil.which(ETCD) is None:
            raise EtcdLabError("etcd not found: install Debian's etcd-server (make install)")
        self.netns = netns
        self.root = Path(tempfile.mkdtemp(prefix="lb-etcd-"))
        with in_netns(netns) if netns else contextlib.nullcontext():
            ports = [(_free_port(host), _free_port(host)) for _ in range(members)]
        self.members = [Member(f"m{i}", c, p, self.root / f"m{i}", self.root / f"m{i}.log",
                               host) for i, (c, p) in enumerate(ports)]
        self._initial_cluster = ",".join(f"{m.name}={m.peer_url}" for m in self.members)

    @property
    def endpoints(self) -> list[str]:
        return [m.client_url for m in self.members]

    def store_url(self, prefix: str) -> str:
        """An `lb run --store` URL naming every member."""
        hosts = ",".join(f"{m.host}:{m.client_port}" for m in self.members)
        return f"etcd://{hosts}/{prefix}"

    def start(self, member: Member | None = None, timeout_s: float = 15.0) -> None:
        """Starts every member (or one stopped member) and waits until it serves."""
        todo = [member] if member else self.members
        for m in todo:
            m.data_dir.mkdir(parents=True, exist_ok=True)
            log = open(m.log, "ab")  # noqa: SIM115 (the process keeps it)
            # `ip netns exec` execs etcd itself: the pid is etcd's, as without a namespace.
            inside = ["ip", "netns", "exec", self.netns] if self.netns else []
            m.proc = subprocess.Popen(
                [*inside, ETCD, "--name", m.name, "--data-dir", str(m.data_dir),
                 "--listen-client-urls", m.client_url, "--advertise-client-urls", m.client_url,
                 "--listen-peer-urls", m.peer_url, "--initial-advertise-peer-urls", m.peer_url,
                 "--initial-cluster", self._initial_cluster,
                 "--initial-cluster-state", "new", "--initial-cluster-token", self.root.name,
                 "--heartbeat-interval", "50", "--election-timeout", "500",
                 *SERVER_LIMITS],
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

    def _healthy(self, m: Member) -> bool:
        try:
            with in_netns(self.netns) if self.netns else contextlib.nullcontext():
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
