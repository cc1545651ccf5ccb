"""A full disk under the state directory: a change answers 507 naming what failed, and the
kernel, the VIP list and the stats stay as the database says (the kernel is put back when
the commit fails). Root: a tmpfs of a few hundred KB is mounted as the daemon's state dir."""

from __future__ import annotations

import errno
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from api_helpers import assert_problem, check, daemon_state, vip_doc

from lb.lab.daemon import LabDaemon
from lb.lab.veth import VethLab
from lb.netns import in_netns
from lb.xdp import loader

# A second daemon in the lab's balancer namespace, on its `lo` (as in test_api_auth).
ON_LO = ["--interface", "lo", "--xdp-mode", "generic", "--next-hop-mac", "02:00:00:00:00:01"]


def _fill(folder: Path) -> Path:
    """Write zeros into folder/filler until the filesystem has no block left."""
    filler = folder / "filler"
    with open(filler, "wb", buffering=0) as f:
        try:
            while True:
                f.write(b"\0" * 4096)
        except OSError as e:
            assert e.errno == errno.ENOSPC, e
    return filler


def _kernel_view(d: LabDaemon) -> list[tuple[int, str, int, list[tuple[str, int]]]]:
    """Each VIP the kernel serves, with the backends its ring names and their slot counts."""
    view = []
    for vip in check(d.client.get("/vips"), 200):
        stats = check(d.client.get(f"/vips/{vip['id']}/stats"), 200)
        view.append((vip["id"], vip["address"], stats["ring_size"],
                     sorted((b["address"], b["ring_slots"]) for b in stats["backends"])))
    return view


@pytest.fixture
def on_tiny_disk(api_lab: VethLab, tmp_path: Path) -> Iterator[LabDaemon]:
    """A daemon whose state directory is a 512 KB tmpfs.

    Cleanup: the daemon stopped, its program detached from lo, the tmpfs unmounted."""
    d = LabDaemon(api_lab, extra_args=ON_LO, log_path=tmp_path / "daemon.log")
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", str(d.state_dir)],
                   check=True)
    try:
        with d:
            yield d
    finally:
        subprocess.run(["umount", str(d.state_dir)], check=True)
        d.state_dir.rmdir()
        with in_netns(api_lab.balancer.netns):
            loader.detach(1)  # lo is ifindex 1 in every namespace


def test_a_change_on_a_full_disk_is_507_and_the_kernel_stays_as_the_database_says(
        on_tiny_disk: LabDaemon) -> None:
    d, api = on_tiny_disk, on_tiny_disk.client
    kept = check(api.post("/vips", json={"address": "10.100.3.1", "port": 80}), 201)["id"]
    check(api.post(f"/vips/{kept}/backends", json={"address": "10.1.0.2"}), 201)
    before = daemon_state(d)
    kernel_before = _kernel_view(d)
    filler = _fill(d.state_dir)
    document = {"vips": [vip_doc("10.100.3.2", 80 + i, backends={
        f"10.1.0.{j + 2}": 1 for j in range(8)}) for i in range(12)]}
    try:
        changes = [api.put("/config", json=document),
                   api.delete(f"/vips/{kept}"),
                   api.post(f"/vips/{kept}/backends", json={"address": "10.1.0.3"})]
        for response in changes:
            assert response.status_code == 507, response.text
            detail = assert_problem(response)["detail"]
            assert "full" in detail and "state.db" in detail, detail
        after = daemon_state(d)
        assert (after["config"], after["rows"]) == (before["config"], before["rows"])
        # The kernel holds what the database says: the same VIPs, each ring naming the same
        # backends (put back, a VIP may sit in another ring slot: raw map bytes may differ).
        assert _kernel_view(d) == kernel_before
        assert check(api.get(f"/vips/{kept}/stats"), 200)["backends"][0]["ring_slots"] > 0
    finally:
        filler.unlink()
    # Room again: the same change is applied.
    check(api.put("/config", json=document), 200)
    assert len(check(api.get("/vips"), 200)) == 12
