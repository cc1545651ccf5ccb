"""bench.throughput runs end to end: veth mode, and real-NIC mode across two namespaces that
stand in for the balancer host and the generator host (validity and cleanup, never speed)."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from bench.throughput import NS_PREFIX, VethPair
from lb.lab.namespaces import remove_leftovers

pytestmark = pytest.mark.root

ROOT = Path(__file__).resolve().parents[2]
SHORT = ["--duration", "1", "--rounds", "1", "--warmup", "0.5", "--flows", "64"]

# What a real NIC's receive side does with a frame (delivers it to the stack): a veth only
# delivers XDP_TX frames to a peer that has an XDP program (docs/development.md, "Platform facts").
PASS_PROGRAM = b"int xdp_pass(struct xdp_md *ctx) { return XDP_PASS; }"


def _namespaces() -> set[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return {line.split()[0] for line in out.splitlines() if line.startswith(NS_PREFIX)}


def _bench(*args: str, netns: str | None = None) -> list[str]:
    cmd = [sys.executable, "-m", "bench.throughput", *args]
    return ["ip", "netns", "exec", netns, *cmd] if netns else cmd


def _valid_row(row: dict) -> None:
    assert row["result"] in ("PASS", "MISS"), row["problems"]
    assert row["ratio"] is not None and row["ratio"] > 0
    assert row["floor_xdp_tx_pps"] > 0 and row["balancer_xdp_tx_pps"] > 0
    assert row["balancer_counter_pps"] > 0  # the balancer's own tx counter moved


def test_veth_mode_measures_balancer_and_floor_and_leaves_nothing(tmp_path):
    remove_leftovers(NS_PREFIX)
    out = tmp_path / "throughput.json"
    run = subprocess.run(_bench(*SHORT, "--queues", "1", "--json", str(out)), cwd=ROOT,
                         capture_output=True, text=True, timeout=180)
    assert run.returncode == 0, f"exit {run.returncode}:\n{run.stdout}\n{run.stderr}"
    (row,) = json.loads(out.read_text())["rows"]
    assert row["mode"] == "veth" and row["queues"] == 1
    _valid_row(row)
    assert row["balancer_pps"] > 0 and row["floor_pps"] > 0  # the receiving end (the sink)
    assert not _namespaces()


def test_real_nic_mode_runs_across_two_hosts(tmp_path):
    """The two-host steps of bench/README.md, each host a namespace, the NICs a veth pair."""
    from bcc import BPF

    remove_leftovers(NS_PREFIX)
    out = tmp_path / "nic.json"
    passer = BPF(text=PASS_PROGRAM)
    try:
        with VethPair(1) as hosts:
            hosts.attach("gen", passer.load_func(b"xdp_pass", BPF.XDP).fd)
            generator = subprocess.Popen(
                _bench("--generate", "--interface", hosts.gen_if, "--dst-mac", hosts.lb_mac,
                       "--flows", "64", "--duration", "1", "--gen-cpus", "0",
                       netns=hosts.gen_ns),
                cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            try:
                run = subprocess.run(
                    _bench("--interface", hosts.lb_if, "--peer-mac", hosts.gen_mac,
                           "--backends", "10.200.0.1,10.200.0.2", *SHORT, "--json", str(out),
                           netns=hosts.lb_ns),
                    cwd=ROOT, capture_output=True, text=True, timeout=180)
            finally:
                generator.send_signal(signal.SIGINT)
                gen_out, gen_err = generator.communicate(timeout=30)
            assert run.returncode == 0, f"exit {run.returncode}:\n{run.stdout}\n{run.stderr}"
            (row,) = json.loads(out.read_text())["rows"]
            assert row["mode"] == "nic" and row["interface"] == hosts.lb_if
            _valid_row(row)
            received = [float(m.group(1).replace(",", "")) for m in
                        re.finditer(r"received\s+([\d,]+) pps", gen_out)]
            assert received and max(received) > 0, f"generator:\n{gen_out}\n{gen_err}"
            # The balancer host detached what it attached.
            link = subprocess.run(["ip", "-n", hosts.lb_ns, "link", "show", hosts.lb_if],
                                  capture_output=True, text=True).stdout
            assert "xdp" not in link
    finally:
        passer.cleanup()
    assert not _namespaces()
