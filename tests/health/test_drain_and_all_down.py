"""Drain, the all-down rule, and connection-table flows of a backend that goes down.

A draining backend keeps its established flows and takes no new ones; when every backend of a
VIP is down, `all_down` keeps the last ring (default) or drops; a backend that goes down loses
its connection-table flows too: their next packets are re-decided by the ring.
"""

from __future__ import annotations

import collections
import socket

from health_helpers import (
    DOWN_DEADLINE,
    UP_DEADLINE,
    Servers,
    answers,
    backends,
    fast_check,
    put_config,
    ring_slots,
    vip_doc,
    wait_for,
    wait_states,
)

from lb.client import Client
from lb.lab.veth import VethLab
from lb.lab.waits import settle
from lb.netns import in_netns


def test_draining_backend_keeps_established_flows_and_takes_no_new_ones(
        api: Client, lab: VethLab, servers: Servers) -> None:
    port = 8106
    vip = lab.vips_v4()[5]
    servers.start_all(port)
    (vip_id,) = put_config(api, vip_doc(vip, port, lab.backends, check=fast_check()))
    addrs = {b.name: str(b.v4) for b in lab.backends}
    assert wait_states(api, vip_id, dict.fromkeys(addrs.values(), "up"),
                       UP_DEADLINE) is not None

    # Open keep-alive connections (established flows) and note who serves each.
    conns = [lab.http_connection(vip, port) for _ in range(15)]
    try:
        served = []
        for conn in conns:
            conn.request("GET", "/")
            served.append(conn.getresponse().read().decode().strip())
        drained = collections.Counter(served).most_common(1)[0][0]
        address = addrs[drained]
        api.update_backend(vip_id, address, drain=True)

        seen = backends(api, vip_id)[address]
        assert seen["state"] == "draining" and seen["drain"] is True
        assert not seen["in_ring"] and ring_slots(api, vip_id)[address] == 0
        established = served.count(drained)
        assert seen["conn_table_entries"] >= established, (seen, established)
        # Established flows keep reaching the draining backend, request after request.
        for conn, first in zip(conns, served, strict=True):
            for _ in range(3):
                conn.request("GET", "/")
                assert conn.getresponse().read().decode().strip() == first
        # New flows never do.
        new = answers(lab, vip, port)
        assert drained not in new and sum(new.values()) == new.total()
        assert set(new) <= set(addrs) - {drained}, new
    finally:
        for conn in conns:
            conn.close()

    # Undrained through the all-VIPs resource: back in the ring.
    assert api.update_backend_everywhere(address, drain=False) == [vip_id]
    assert backends(api, vip_id)[address]["in_ring"]
    assert drained in answers(lab, vip, port)


def test_all_backends_down_keeps_the_last_ring_or_drops(
        api: Client, lab: VethLab, servers: Servers) -> None:
    serve_port, check_port = 8107, 8108
    vip = lab.vips_v4()[6]
    servers.start_all(serve_port)  # traffic: keeps running
    checked = servers.start_all(check_port)  # what the checks probe: stopped below
    (vip_id,) = put_config(api, vip_doc(vip, serve_port, lab.backends,
                                        check=fast_check(port=check_port)))
    addrs = [str(b.v4) for b in lab.backends]
    assert wait_states(api, vip_id, dict.fromkeys(addrs, "up"), UP_DEADLINE) is not None

    # Down one after the other: the last ring with a backend up names backend2 alone.
    for server, address in zip(checked[:2], addrs[:2], strict=True):
        servers.stop(server)
        assert wait_states(api, vip_id, {address: "down"}, DOWN_DEADLINE) is not None
    last_ring = ring_slots(api, vip_id)
    assert last_ring[addrs[2]] == sum(last_ring.values()) > 0, last_ring
    assert api.get_vip(vip_id)["all_backends_down"] is False

    servers.stop(checked[2])
    assert wait_states(api, vip_id, {addrs[2]: "down"}, DOWN_DEADLINE) is not None
    view = api.get_vip(vip_id)
    assert view["all_backends_down"] is True and view["all_down"] == "keep_last_ring"
    # keep_last_ring (the default): the ring stays the last one, and new flows are served.
    assert ring_slots(api, vip_id) == last_ring
    assert [b["in_ring"] for b in backends(api, vip_id).values()] == [False, False, True]
    assert answers(lab, vip, serve_port, n=10) == {"backend2": 10}

    # drop: the ring empties and new flows are dropped, counted as no_backend.
    dropped_before = api.stats()["drop_reasons"]["no_backend"]
    view = api.update_vip(vip_id, all_down="drop")
    assert view["all_down"] == "drop" and view["all_backends_down"] is True
    assert view["check"]["port"] == check_port  # a PATCH keeps the settings it does not give
    assert set(ring_slots(api, vip_id).values()) == {0}
    assert not any(b["in_ring"] for b in backends(api, vip_id).values())
    outcome = answers(lab, vip, serve_port, n=3, timeout=0.5)
    assert not set(outcome) & {"backend0", "backend1", "backend2"}, outcome
    dropped = settle(lambda: api.stats()["drop_reasons"]["no_backend"])
    assert dropped >= dropped_before + 3, (dropped_before, dropped)

    # A backend coming back ends the all-down state.
    servers.start(lab.backends[0], check_port)
    assert wait_states(api, vip_id, {addrs[0]: "up"}, UP_DEADLINE) is not None
    assert api.get_vip(vip_id)["all_backends_down"] is False
    assert set(answers(lab, vip, serve_port, n=10)) == {"backend0"}


def test_flows_of_a_backend_that_goes_down_are_re_decided(
        api: Client, lab: VethLab, servers: Servers) -> None:
    udp_port, check_port = 8109, 8110
    vip = lab.vips_v4()[7]
    checked = servers.start_all(check_port)
    (vip_id,) = put_config(api, vip_doc(vip, udp_port, lab.backends, protocol="udp",
                                        check=fast_check(port=check_port)))
    addrs = [str(b.v4) for b in lab.backends]
    assert wait_states(api, vip_id, dict.fromkeys(addrs, "up"), UP_DEADLINE) is not None

    def decapsulated() -> list[int]:
        return [lab.decapsulated(b) for b in lab.backends]

    with in_netns(lab.client.netns):
        flow = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # one flow: one source port
    try:
        flow.bind((str(lab.client.v4), 0))

        def send(n: int) -> list[int]:
            before = settle(decapsulated)
            for i in range(n):
                flow.sendto(f"datagram {i}".encode(), (str(vip), udp_port))
            after = settle(decapsulated)
            return [a - b for a, b in zip(after, before, strict=True)]

        first = send(20)
        assert sorted(first) == [0, 0, 20], first  # one flow: one backend
        owner = first.index(20)
        entries = backends(api, vip_id, conn_entries=True)[addrs[owner]]["conn_table_entries"]
        assert entries >= 1

        servers.stop(checked[owner])
        assert wait_for(lambda: not backends(api, vip_id)[addrs[owner]]["in_ring"],
                        DOWN_DEADLINE) is not None
        # The same flow (in the connection table, pointing at the dead backend) now goes
        # elsewhere: its packets are re-decided by the ring, which no longer names it.
        second = send(20)
        assert second[owner] == 0 and sorted(second) == [0, 0, 20], (owner, second)
    finally:
        flow.close()
