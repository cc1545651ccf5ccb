"""GET /trace on a real daemon: what the trace says a flow's packet does is what the lab sees
a real packet of the same flow do (IPv4, IPv6, a port-0 VIP, a drained backend, an address
that is not a VIP), and a trace changes no counter or connection-table entry."""

from __future__ import annotations

import ipaddress
import json
import os
from collections.abc import Iterator

import pytest
from api_helpers import create_vip, route_flows
from scapy.layers.inet import TCP

from lb.cli import main
from lb.client import Client
from lb.lab.veth import VIP_NET_V4, VethLab
from lb.lab.waits import wait_until

# No server listens there: a SYN is answered by a RST from the backend, which the client's
# kernel ignores (a SYN-ACK from a server would draw a RST from the client, through the VIP,
# that the captures would count as a second packet of the flow).
PORT = 9000


def _client_of(lab: VethLab, dst: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str:
    return str(lab.client.v4 if dst.version == 4 else lab.client.v6)


def _traced_backend(trace: dict) -> set[str]:
    """The outer destinations the trace's verdicts name (one per CPU; equal unless a
    connection-table entry exists on one CPU only)."""
    assert trace["simulated"], trace
    return {v["outer"]["dst"] for v in trace["verdicts"] if v["outer"]}


def _check_new_flow(lab: VethLab, api: Client, dst, dport: int, sport: int, vip_id: int,
                    match: str) -> dict:
    trace = api.trace(_client_of(lab, dst), str(dst), sport, dport, "tcp", syn=True)
    assert trace["vip"]["id"] == vip_id and trace["vip"]["match"] == match, trace
    assert all(v["verdict"] == "tx" for v in trace["verdicts"]), trace["verdicts"]
    assert all("ct_miss" in v["reasons"] for v in trace["verdicts"]), trace["verdicts"]
    reached = route_flows(lab, dst, dport, [sport], "tcp", "S")[sport]
    assert _traced_backend(trace) == {reached}, (trace, reached)
    assert trace["slot_backend"]["address"] == reached
    return trace


def test_trace_of_an_ipv4_flow_matches_the_lab(api_lab, lb_api):
    vip = api_lab.vips_v4()[0]
    backends = {b.v4: 1 for b in api_lab.backends}
    vip_id = create_vip(lb_api, vip, PORT, backends=backends)
    for sport in (41001, 41002, 41003):
        _check_new_flow(api_lab, lb_api, vip, PORT, sport, vip_id, "exact port")


def test_trace_of_an_ipv6_flow_matches_the_lab(api_lab, lb_api):
    vip = api_lab.vips_v6()[0]
    vip_id = create_vip(lb_api, vip, PORT, backends={b.v6: 1 for b in api_lab.backends})
    trace = _check_new_flow(api_lab, lb_api, vip, PORT, 42001, vip_id, "exact port")
    assert {v["outer"]["family"] for v in trace["verdicts"]} == {"ipv6"}


def test_trace_of_a_port_0_vip_matches_the_lab(api_lab, lb_api):
    vip = api_lab.vips_v4()[1]
    vip_id = create_vip(lb_api, vip, 0, backends={b.v4: 1 for b in api_lab.backends})
    _check_new_flow(api_lab, lb_api, vip, 8080, 43001, vip_id, "port 0")


@pytest.fixture
def one_cpu() -> Iterator[int]:
    """This process on its first CPU only, so that the packets it sends through the veth lab
    are processed on that CPU (veth delivers on the sender's CPU), whose connection table
    then holds their flows. Restored afterwards."""
    saved = os.sched_getaffinity(0)
    cpu = min(saved)
    os.sched_setaffinity(0, {cpu})
    try:
        yield cpu
    finally:
        os.sched_setaffinity(0, saved)


def test_trace_of_a_flow_to_a_drained_backend_matches_the_lab(api_lab, lb_api, one_cpu):
    vip = api_lab.vips_v4()[0]
    vip_id = create_vip(lb_api, vip, PORT, backends={b.v4: 1 for b in api_lab.backends})
    sport = 44001
    first = route_flows(api_lab, vip, PORT, [sport], "tcp", "S")[sport]  # now in the table
    lb_api.update_backend(vip_id, first, drain=True)
    trace = lb_api.trace(str(api_lab.client.v4), str(vip), sport, PORT)
    assert {w["backend"] for w in trace["conn_table"]} == {first}, trace["conn_table"]
    drained = {b["address"]: b for b in trace["backends"]}[first]
    assert drained["drain"] and drained["state"] == "draining" and not drained["in_ring"]
    # Which CPU's table holds it is the lab's choice (its balancer queues are polled by NAPI
    # threads pinned per queue), not the sender's: the trace must name at least one.
    holding = {w["cpu"] for w in trace["conn_table"]}
    assert holding, trace["conn_table"]
    for v in trace["verdicts"]:
        if v["cpu"] in holding:  # the CPU whose table holds the flow keeps it on `first`
            assert v["verdict"] == "tx" and v["outer"]["dst"] == first, v
            assert "ct_hit" in v["reasons"], v
    assert route_flows(api_lab, vip, PORT, [sport], "tcp", "A")[sport] == first
    # A new connection of the same 5-tuple (a SYN) avoids the drained backend, in the trace
    # and in the lab.
    syn = lb_api.trace(str(api_lab.client.v4), str(vip), sport, PORT, syn=True)
    assert first not in _traced_backend(syn)
    assert route_flows(api_lab, vip, PORT, [sport], "tcp", "S")[sport] in _traced_backend(syn)


def test_trace_of_a_non_vip_address_matches_the_lab(api_lab, lb_api):
    create_vip(lb_api, api_lab.vips_v4()[0], PORT, backends={b.v4: 1 for b in api_lab.backends})
    other = VIP_NET_V4.network_address + 200  # routed to the balancer, not a VIP
    trace = lb_api.trace(str(api_lab.client.v4), str(other), 45001, PORT, syn=True)
    assert trace["vip"] is None and trace["no_vip_reason"] == f"no VIP has address {other}"
    assert {v["verdict"] for v in trace["verdicts"]} == {"pass"}
    assert all(v["reasons"] == ["pass", "pass_not_vip"] for v in trace["verdicts"])
    before = lb_api.stats()["pass_reasons"]["not_vip"]
    api_lab.send_frames([api_lab.client_frame(other) / TCP(sport=45001, dport=80, flags="S")])
    wait_until(lambda: lb_api.stats()["pass_reasons"]["not_vip"] > before, timeout=5)


def test_a_trace_changes_no_counter_and_no_connection_table_entry(api_lab, lb_api):
    vip = api_lab.vips_v4()[0]
    vip_id = create_vip(lb_api, vip, PORT, backends={b.v4: 1 for b in api_lab.backends})
    route_flows(api_lab, vip, PORT, [46001], "tcp", "S")
    before = (lb_api.vip_stats(vip_id), lb_api.stats()["totals"]["tx"],
              lb_api.stats()["conn_table"],
              [b.get("conn_table_entries") for b in lb_api.list_backends(vip_id, True)])
    for sport, syn in ((46001, False), (46001, True), (46002, True), (46002, False)):
        trace = lb_api.trace(str(api_lab.client.v4), str(vip), sport, PORT, syn=syn)
        assert {v["verdict"] for v in trace["verdicts"]} == {"tx"}
    after = (lb_api.vip_stats(vip_id), lb_api.stats()["totals"]["tx"],
             lb_api.stats()["conn_table"],
             [b.get("conn_table_entries") for b in lb_api.list_backends(vip_id, True)])
    assert after == before


def test_lb_trace_prints_the_vip_slot_and_verdict(api_lab, lb_api, daemon, capsys,
                                                  monkeypatch):
    vip = api_lab.vips_v4()[0]
    create_vip(lb_api, vip, PORT, backends={b.v4: 1 for b in api_lab.backends})
    monkeypatch.setenv("LB_API", daemon.url)
    capsys.readouterr()
    assert main(["trace", str(api_lab.client.v4), str(vip), "47001", str(PORT), "--syn"]) == 0
    out = capsys.readouterr().out
    trace = lb_api.trace(str(api_lab.client.v4), str(vip), 47001, PORT, syn=True)
    lines = dict(line.split(None, 1) for line in out.splitlines() if " " in line)
    assert lines["vip"].startswith(f"{trace['vip']['id']}: {vip} {PORT}/tcp (matched by exact")
    assert f"ring slot {trace['ring_slot']}: backend {trace['slot_backend']['address']}" in out
    assert "no connection-table entry on any CPU" in out
    assert " -> outer ipv4 " in out
    assert f"-> {trace['slot_backend']['address']} ttl 64" in out
    assert main(["trace", str(api_lab.client.v4), str(vip), "47001", str(PORT), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["ring_slot"] == trace["ring_slot"]
