"""The daemon follows the next hop: a router's new MAC is used within a second, under traffic."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx
from pyroute2 import IPRoute
from scapy.layers.inet import UDP

from lb.lab.daemon import LabDaemon
from lb.lab.veth import VethLab
from lb.netns import in_netns

NEW_MAC = "02:00:5e:00:01:17"
VIP_PORT = 5353


def _router_mac(lab: VethLab, mac: str) -> float:
    """Give the router's side of the balancer's link `mac`, announced by gratuitous ARP (as a
    VRRP failover does); returns when (time.monotonic()) it changed."""
    with in_netns(lab.router_netns):
        # /proc/sys/net is the opening thread's namespace's.
        Path(f"/proc/sys/net/ipv4/conf/{lab.balancer.router_ifname}/arp_notify").write_text("1")
        with IPRoute() as ipr:
            changed = time.monotonic()
            ipr.link("set", index=lab.balancer.router_ifindex, address=mac)
    return changed


def _neighbours(lab: VethLab) -> list[tuple[str, str]]:
    with in_netns(lab.balancer.netns), IPRoute() as ipr:
        return [(n.get_attr("NDA_DST"), n.get_attr("NDA_LLADDR")) for n in ipr.get_neighbours()]


def _metric(client: httpx.Client, name: str) -> float:
    for line in client.get("/metrics").text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "_total "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not in /metrics")


def test_a_new_router_mac_is_used_within_a_second_under_traffic(bare_balancer: VethLab) -> None:
    lab = bare_balancer
    vip = lab.vips_v4()[0]
    old_mac = lab.balancer.router_mac
    with LabDaemon(lab) as daemon:
        assert daemon.client.get("/readyz").json()["next_hop_mac"] == old_mac
        r = daemon.client.put("/config", json={"vips": [
            {"address": str(vip), "port": VIP_PORT, "protocol": "udp",
             "backends": [{"address": str(lab.backends[0].v4)}]}]})
        assert r.status_code == 200, r.text
        stop = threading.Event()
        frame = bytes(lab.client_frame(vip) / UDP(sport=40000, dport=VIP_PORT) / (b"x" * 32))

        def traffic() -> None:
            while not stop.is_set():
                lab.send_frames([frame])
                time.sleep(0.005)

        def encapsulated(f) -> bool:  # noqa: ANN001 (scapy frame)
            return f.direction == "in" and f.haslayer("IP") and f["IP"].proto == 4

        sender = threading.Thread(target=traffic, daemon=True)
        try:
            with lab.capture("router", lab.balancer.router_ifname, encapsulated) as cap:
                sender.start()
                assert len(cap.wait(5)) >= 5, "no encapsulated traffic before the change"
                changed = _router_mac(lab, NEW_MAC)
                deadline = time.monotonic() + 3
                while time.monotonic() < deadline and not any(
                        f.dst == NEW_MAC for f in cap.frames):
                    time.sleep(0.01)
                frames = list(cap.frames)
            first_new = next((f for f in frames if f.dst == NEW_MAC), None)
            assert first_new is not None, \
                f"no frame to {NEW_MAC} within 3 s; neighbours: {_neighbours(lab)}\n" \
                f"{daemon.log_tail(40)}"
            # scapy stamps each frame with the time it was read (wall clock): compare on it.
            lag = first_new.time - (time.time() - (time.monotonic() - changed))
            assert lag < 1.0, f"the new MAC was used {lag:.3f} s after the change"
            print(f"next hop followed: first frame to the new MAC {1000 * lag:.0f} ms after "
                  "the change")
            after = frames[frames.index(first_new):]
            assert all(f.dst == NEW_MAC for f in after), "old MAC used again after the change"
            assert {f.dst for f in frames} == {old_mac, NEW_MAC}
        finally:
            stop.set()
            sender.join()
        assert daemon.client.get("/readyz").json()["next_hop_mac"] == NEW_MAC
        assert f"event=next_hop_changed old={old_mac} new={NEW_MAC}" in daemon.log_tail(200)
        assert _metric(daemon.client, "lb_next_hop_changes") == 1
        _router_mac(lab, old_mac)
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline and \
                daemon.client.get("/readyz").json()["next_hop_mac"] != old_mac:
            time.sleep(0.05)
        assert daemon.client.get("/readyz").json()["next_hop_mac"] == old_mac
