"""Restarts: acknowledged state survives, the program keeps forwarding while the daemon is
gone, and a restart with unchanged state writes no ring slot."""

from __future__ import annotations

import contextlib
import threading
import time
from collections import Counter
from typing import Any

import httpx
from api_helpers import (
    check,
    create_vip,
    essence,
    flow_frames,
    predict,
    route_flows,
    split_encap,
    vip_doc,
)
from scapy.layers.inet import UDP

from lb.lab.daemon import LabDaemon
from lb.lab.decap import DecapSlot
from lb.lab.veth import VethLab
from lb.lab.waits import settle, wait_until

UNCHANGED = {"vips_added": 0, "vips_removed": 0, "vips_changed": 0, "ring_slots_written": 0}


def _startup(ready: dict[str, Any]) -> dict[str, int]:
    return {k: v for k, v in ready["startup"].items() if k != "adopted_vips"}


def test_acknowledged_changes_survive_a_restart_which_writes_no_ring_slot(
        api, lb_api, daemon: LabDaemon, api_lab: VethLab) -> None:
    b = api_lab.backends
    vip, port = api_lab.vips_v4()[7], 7500
    # Backends listed out of address order; then the same set reordered (nothing to apply).
    doc = {"vips": [vip_doc(vip, port, "udp", {b[2].v4: 3, b[0].v4: 1, b[1].v4: 2},
                            ["no_conn_table"]),
                    vip_doc(api_lab.vips_v6()[7], 80, "tcp", {b[1].v6: 1, b[0].v6: 1})]}
    check(api.put("/config", json=doc), 200)
    doc["vips"][1]["backends"].reverse()
    assert check(api.put("/config", json=doc), 200)["ring_slots_written"] == 0
    # One change through every other endpoint.
    other = create_vip(lb_api, api_lab.vips_v4()[7], 7501, backends={b[0].v6: 5, b[2].v4: 1})
    check(api.patch(f"/vips/{other}/backends/{b[2].v4}", json={"weight": 4}), 200)
    check(api.delete(f"/vips/{other}/backends/{b[0].v6}"), 204)
    check(api.put(f"/vips/{other}/flags", json={"flags": ["hash_no_src_port"]}), 200)
    gone = create_vip(lb_api, api_lab.vips_v4()[7], 7502, backends={b[1].v4: 1})
    check(api.delete(f"/vips/{gone}"), 204)
    before = check(api.get("/vips"), 200)

    ready = daemon.restart()
    assert ready["ready"] and ready["mode"] == "native"
    assert ready["startup"]["adopted_vips"] == 3
    assert _startup(ready) == UNCHANGED
    assert check(api.get("/vips"), 200) == before
    # The reordered document still matches what is stored: nothing to apply.
    assert check(api.put("/config", json=check(api.get("/config"), 200)), 200) == UNCHANGED
    # Traffic follows the configuration the restarted daemon serves.
    weights = {x["address"]: x["weight"] for x in before[0]["backends"]}
    sports = range(23000, 23060)
    assert route_flows(api_lab, vip, port, sports) == {
        s: predict(weights, api_lab.client.v4, vip, s, port, "udp") for s in sports}


class _Stream:
    """Rounds of the same UDP flows from the client, paced, until stopped; counts frames."""

    def __init__(self, lab: VethLab, vip, port: int, sports: range) -> None:
        self.frames = flow_frames(lab, vip, port, sports, "udp")
        self.lab, self.rounds = lab, 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="udp-stream", daemon=True)

    def _run(self) -> None:
        while not self.stop.is_set():
            self.lab.send_frames(self.frames)
            self.rounds += 1
            time.sleep(0.05)


class _Requests:
    """GETs on one keep-alive TCP connection through the VIP, paced, until stopped."""

    def __init__(self, lab: VethLab, vip) -> None:
        self.conn = lab.http_connection(vip, 80)
        self.answers: list[str] = []
        self.errors: list[str] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="http-stream", daemon=True)

    def get(self) -> str:
        self.conn.request("GET", "/")
        return self.conn.getresponse().read().decode().strip()

    def _run(self) -> None:
        while not self.stop.is_set():
            try:
                self.answers.append(self.get())
            except Exception as e:  # noqa: BLE001 - every failure is reported by the test
                self.errors.append(repr(e))
                return
            time.sleep(0.05)


def test_sigkill_while_traffic_flows_loses_and_misroutes_no_packet(
        api, lb_api, daemon: LabDaemon, api_lab: VethLab) -> None:
    """UDP flows to a VIP without connection table (every packet a ring lookup) and a
    keep-alive HTTP connection keep flowing while the daemon is SIGKILLed and started again:
    every packet reaches the backend the configuration names, the connection never breaks,
    and the new daemon writes no ring slot."""
    lab = api_lab
    vip, port = lab.vips_v4()[7], 9000
    weights = {b.v6: w for b, w in zip(lab.backends, (1, 2, 3), strict=True)}
    create_vip(lb_api, vip, port, "udp", ["no_conn_table"], weights)
    create_vip(lb_api, lab.vips_v4()[0], 80, "tcp", backends={b.v4: 1 for b in lab.backends})
    sports = range(24000, 24020)
    expected = {s: predict(weights, lab.client.v4, vip, s, port, "udp") for s in sports}
    assert route_flows(lab, vip, port, sports) == expected

    def decapsulated() -> dict[str, int]:
        return {str(b.v6): lab.decap_counts(b)[DecapSlot.V4_IN_V6] for b in lab.backends}

    def ours(frame: Any) -> bool:
        split = split_encap(frame)
        return (split is not None and split[1].haslayer(UDP)
                and split[1][UDP].dport == port and str(split[1].dst) == str(vip))

    drops_before = check(api.get("/stats"), 200)["totals"]["drop"]
    decap_before = decapsulated()
    stream, http = _Stream(lab, vip, port, sports), _Requests(lab, lab.vips_v4()[0])
    try:
        serving = http.get()
        with contextlib.ExitStack() as stack:
            captures = {str(b.v6): stack.enter_context(
                lab.capture("router", b.router_ifname, ours)) for b in lab.backends}
            stream.thread.start()
            http.thread.start()
            assert wait_until(lambda: stream.rounds >= 5 and len(http.answers) >= 3)
            daemon.kill()
            killed_at = (stream.rounds, len(http.answers))
            ready = daemon.start()
            restarted_at = (stream.rounds, len(http.answers))
            assert wait_until(lambda: stream.rounds >= restarted_at[0] + 5
                              and len(http.answers) >= restarted_at[1] + 3)
            stream.stop.set()
            http.stop.set()
            stream.thread.join(5)
            http.thread.join(5)
            sent = stream.rounds * len(sports)
            settle(lambda: sum(len(c.frames) for c in captures.values()), quiet=0.2)
    finally:
        stream.stop.set()
        http.stop.set()
        http.conn.close()
    print(f"rounds: {killed_at[0]} before the kill, {restarted_at[0] - killed_at[0]} while "
          f"restarting, {stream.rounds} in all; HTTP answers {len(http.answers)}")
    assert restarted_at[0] > killed_at[0], "no packet was sent while the daemon was down"

    # No packet lost: every one decapsulated, on the backend its flow belongs to.
    per_backend = Counter(expected[s] for s in sports)
    want = {a: stream.rounds * per_backend[a] for a in decap_before}
    assert wait_until(lambda: {a: n - decap_before[a] for a, n in decapsulated().items()}
                      == want), (f"decapsulated {decapsulated()} - {decap_before}, "
                                 f"expected {want} ({sent} sent)")
    # No packet misrouted: every captured frame of a flow crossed its backend's link.
    for address, capture in captures.items():
        wrong = [f for f in capture.frames if expected[split_encap(f)[1][UDP].sport] != address]
        assert not wrong, f"{len(wrong)} frames reached {address} that belong elsewhere"
    assert sum(len(c.frames) for c in captures.values()) == sent
    assert check(api.get("/stats"), 200)["totals"]["drop"] == drops_before

    assert not http.errors, f"the keep-alive connection broke: {http.errors}"
    assert set(http.answers) == {serving}, Counter(http.answers)
    assert ready["startup"]["adopted_vips"] == 2
    assert _startup(ready) == UNCHANGED


def test_sigkill_loses_no_acknowledged_backend(api, lb_api, daemon: LabDaemon) -> None:
    """Backends are added one request after another until SIGKILL: after the restart every
    acknowledged one is there (and at most the one in flight besides)."""
    vip_id = create_vip(lb_api, "10.100.0.9", 80)
    acked: list[str] = []
    in_flight: list[str] = []

    def add() -> None:
        for i in range(1, 60):
            address = f"10.8.0.{i}"
            in_flight.append(address)
            try:
                r = daemon.client.post(f"/vips/{vip_id}/backends", json={"address": address})
            except httpx.HTTPError:
                return
            if r.status_code != 201:
                return
            acked.append(address)

    adder = threading.Thread(target=add, name="adder", daemon=True)
    adder.start()
    assert wait_until(lambda: len(acked) >= 10, timeout=20)
    daemon.kill()
    adder.join(10)
    ready = daemon.start()
    stored = [b["address"] for b in check(api.get(f"/vips/{vip_id}/backends"), 200)]
    assert stored[:len(acked)] == acked, f"acknowledged {acked}, stored {stored}"
    assert set(stored) - set(acked) <= {in_flight[-1]}, f"stored {stored}, acked {acked}"
    assert ready["ready"]


def test_sigkill_during_put_config_leaves_one_whole_document(
        api, daemon: LabDaemon) -> None:
    """Two large documents are PUT in turn until SIGKILL, most likely halfway through writing
    the rings: after the restart the desired state is one whole document (the last
    acknowledged or the one in flight), the start-up repaired the kernel to it, and a further
    restart finds nothing to write."""
    def doc(variant: int) -> dict[str, Any]:
        vips = []
        for i in range(12):
            port = 5000 + i + 4 * variant  # A and B share 8 VIPs, 4 of each are their own
            backends = {f"10.9.{variant}.{(i + j) % 30 + 1}": 1 + (i + j + variant) % 3
                        for j in range(10)}
            vips.append(vip_doc("10.100.0.10", port, "udp", backends))
        return {"vips": vips}

    docs = [doc(0), doc(1)]
    check(api.put("/config", json=docs[0]), 200)
    acked: list[int] = [0]
    in_flight: list[int] = []

    def put() -> None:
        n = 1
        while True:
            in_flight.append(n % 2)
            try:
                r = daemon.client.put("/config", json=docs[n % 2])
            except httpx.HTTPError:
                return
            if r.status_code != 200:
                return
            acked.append(n % 2)
            n += 1

    putter = threading.Thread(target=put, name="putter", daemon=True)
    putter.start()
    assert wait_until(lambda: len(acked) >= 4, timeout=30)
    time.sleep(0.07)  # land somewhere inside a PUT, not at its start
    daemon.kill()
    putter.join(10)

    first = daemon.start()
    stored = sorted(essence(check(api.get("/config"), 200)["vips"]), key=str)
    print(f"{len(acked) - 1} PUTs acknowledged; first start-up after the kill: "
          f"{first['startup']}")
    whole = [sorted(essence(docs[n]["vips"]), key=str) for n in (acked[-1], in_flight[-1])]
    assert stored in whole, "the stored state is no document"  # VIPs are listed by id
    assert daemon.restart()["startup"] == {"adopted_vips": 12, **UNCHANGED}
