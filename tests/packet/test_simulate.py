"""The flow simulator (lb.xdp.simulate): the same verdict and frame as the live program, and
not one byte of the live maps changed."""

from __future__ import annotations

import ipaddress
import os
import socket

import pytest

from lb.xdp.simulate import Simulator, build_frame
from lb.xdp.types import Flow

ip = ipaddress.ip_address
TCP, UDP = socket.IPPROTO_TCP, socket.IPPROTO_UDP

# Every map the program writes while handling a packet.
WRITTEN_MAPS = ("counters", "vip_stats", "backend_stats", "ct_v4", "ct_v6", "icmp_budget")

FLOWS = {
    "v4 tcp exact port": Flow(ip("192.0.2.9"), ip("10.0.0.1"), 40001, 80, TCP),
    "v4 tcp port-0 VIP": Flow(ip("192.0.2.9"), ip("10.0.0.2"), 40002, 9999, TCP),
    "v6 tcp": Flow(ip("2001:db8::9"), ip("fc00::1"), 40003, 443, TCP),
    "v6 udp to v4 backends": Flow(ip("2001:db8::9"), ip("fc00::1"), 40004, 53, UDP),
    "not a VIP address": Flow(ip("192.0.2.9"), ip("10.9.9.9"), 40005, 80, TCP),
    "VIP address, no VIP on the port": Flow(ip("192.0.2.9"), ip("10.0.0.1"), 40006, 81, TCP),
}


@pytest.fixture(scope="module")
def simulator(loaded_rig):
    sim = Simulator(loaded_rig.dp)
    yield sim
    sim.close()


def _snapshot(rig) -> dict[str, bytes]:
    out = {}
    for name in WRITTEN_MAPS:
        t = rig.program.table(name)
        out[name] = b"".join(bytes(v) if not isinstance(v, list) else
                             b"".join(bytes(c) for c in v) for _, v in t.items())
    return out


@pytest.mark.parametrize("name", list(FLOWS))
@pytest.mark.parametrize("syn", [True, False], ids=["syn", "ack"])
def test_simulation_matches_the_live_program_and_writes_nothing_live(rig, simulator, name, syn):
    flow = FLOWS[name]
    before = _snapshot(rig)
    sim = simulator.simulate(flow, syn)
    assert _snapshot(rig) == before, "the simulation changed a live map"
    cpu = os.sched_getaffinity(0)
    assert [v.cpu for v in sim.verdicts] == sorted(cpu)
    got = sim.verdicts[0]
    # Now the real thing: the live program, on the same frame, on the same CPU.
    result = rig.run(build_frame(flow, syn))
    assert got.verdict == result.verdict_name.lower(), (name, got)
    assert got.frame_len == len(result.frame)
    live_reasons = [k for k, v in rig.counters().items() if v]
    if rig.lost_state():  # counters() leaves ct_miss_nonsyn out: it is read on its own
        live_reasons.append("ct_miss_nonsyn")
    assert sorted(got.reasons) == sorted(live_reasons)
    if got.verdict == "tx":
        assert got.outer is not None
        assert sim.slot_backend is not None
        assert ip(got.outer["dst"]) == rig.backend_address(sim.slot_backend)
        assert sim.vip is not None and sim.vip.address == flow.dst
    else:
        assert got.outer is None


def test_simulation_sees_the_live_connection_table(rig, simulator):
    flow = FLOWS["v4 tcp exact port"]
    state = rig.balancer.vips[rig.vips["v4tcp"]]
    ring_pick = rig.ring_choice("v4tcp", flow)
    other = next(i for i in (rig.balancer.backend_index(a) for a in state.backends)
                 if i != ring_pick)
    rig.plant(flow, other)
    sim = simulator.simulate(flow, syn=False)
    assert {w.backend for w in sim.ways} == {other}
    assert {w.cpu for w in sim.ways} == set(range(rig.dp.sizes.cpus))
    got = sim.verdicts[0]
    assert got.verdict == "tx" and "ct_hit" in got.reasons
    assert ip(got.outer["dst"]) == rig.backend_address(other)
    # A SYN takes a fresh decision: the ring's backend.
    syn = simulator.simulate(flow, syn=True).verdicts[0]
    assert ip(syn.outer["dst"]) == rig.backend_address(ring_pick)
