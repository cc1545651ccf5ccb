"""Taking a backend out of a VIP's ring: its established flows stay with it, new flows avoid it."""

from __future__ import annotations

from collections import Counter

import pytest
from scapy.layers.inet import TCP

from lb.control.service import Balancer
from lb.lab.veth import VethLab
from lb.lab.waits import wait_until
from lb.xdp.maps import Dataplane

FLOWS = 300


def test_removed_backend_keeps_its_established_flows_but_gets_no_new_ones(
        lab: VethLab, dataplane: Dataplane, balancer: Balancer, make_vip) -> None:
    vip, port = lab.vips_v4()[4], 6000
    key, state = make_vip(vip, port, "tcp", {b.v4: 1 for b in lab.backends})
    removed = lab.backends[1]
    indexes = [balancer.backend_index(b.v4) for b in lab.backends]
    removed_index = balancer.backend_index(removed.v4)

    def per_backend() -> Counter[int]:
        return Counter({i: dataplane.backend_stats(i)[0] for i in indexes})

    def send(sports: range, flags: str) -> Counter[int]:
        """Send one packet per flow; returns how many each backend index received."""
        before, total = per_backend(), dataplane.vip_stats(state.num)[0]
        lab.send_frames(lab.client_frame(vip) / TCP(sport=s, dport=port, flags=flags, seq=7)
                        for s in sports)
        assert wait_until(lambda: dataplane.vip_stats(state.num)[0] - total >= len(sports))
        return per_backend() - before

    # Establish: a SYN per flow takes a ring decision, remembered in the connection table.
    established = range(30000, 30000 + FLOWS)
    send(established, "S")
    table = {flow.sport: index for flow, index in dataplane.conn_table()
             if flow.dst == vip and flow.dport == port}
    assert sorted(table) == list(established)
    share = Counter(table.values())
    assert share[removed_index] > 0, f"no established flow on {removed.name}: {share}"

    balancer.remove_backend(key, removed.v4)
    assert removed_index not in set(dataplane.read_ring(state.num))

    # Established flows (ACKs, no SYN): every flow stays where it was, the removed one included.
    assert send(established, "A") == share
    assert {f.sport: i for f, i in dataplane.conn_table()
            if f.dst == vip and f.dport == port} == table

    # New flows, and new connections (SYN) on the old ports: none reaches the removed backend.
    for sports in (range(31000, 31000 + FLOWS), established):
        got = send(sports, "S")
        assert got[removed_index] == 0, f"{got[removed_index]} new flows went to {removed.name}"
        assert sum(got.values()) == FLOWS


@pytest.mark.parametrize("family", [4, 6], ids=["ipv4", "ipv6"])
def test_open_tcp_connection_keeps_working_after_its_backend_is_removed(
        lab: VethLab, balancer: Balancer, make_vip, http_vips, family: int) -> None:
    vip = http_vips[0 if family == 4 else 1]
    addresses = {b.name: (b.v4 if family == 4 else b.v6) for b in lab.backends}
    key, _ = make_vip(vip, 80, "tcp", dict.fromkeys(addresses.values(), 1))

    def get(conn) -> str:
        conn.request("GET", "/")
        return conn.getresponse().read().decode().strip()

    conn = lab.http_connection(vip, 80)
    try:
        serving = get(conn)
        balancer.remove_backend(key, addresses[serving])
        assert [get(conn) for _ in range(3)] == [serving] * 3
        fresh = Counter(lab.http_get(vip).strip() for _ in range(60))
        assert serving not in fresh, f"new connections still reach {serving}: {fresh}"
        assert set(fresh) == set(addresses) - {serving}, f"new connections went to {fresh}"
        assert get(conn) == serving, "the open connection broke after new connections came"
    finally:
        conn.close()
