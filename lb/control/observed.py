"""Observed state, read for the API: counters grouped, per-VIP and per-backend traffic, health.

Pure reads of the data plane and the health monitor, shaped as the REST layer answers them;
the controller calls these under its change lock, so what they see is one consistent state.
"""

from __future__ import annotations

import collections
import socket
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Protocol

from lb.control.health import Health, Monitor, State
from lb.control.model import Address, Vip
from lb.control.service import Balancer
from lb.xdp.consts import Counter
from lb.xdp.flowhash import flow_hash
from lb.xdp.types import Flow, VipKey

if TYPE_CHECKING:
    from lb.xdp.simulate import Simulation

# A backend's health in a VIP (controller._state): (VIP id, backend address) -> State.
StateOf = Callable[[int, Address], State]

_PROTO_NAMES = {socket.IPPROTO_TCP: "tcp", socket.IPPROTO_UDP: "udp"}


def counter_groups(counters: dict[str, int]) -> dict[str, dict[str, int]]:
    """Global counters (name -> packets) grouped: totals, connection table, pass and drop
    reasons, each name without its group's prefix."""
    groups: dict[str, dict[str, int]] = {"totals": {}, "conn_table": {},
                                          "pass_reasons": {}, "drop_reasons": {}}
    for counter in Counter:
        name = counter.name.lower()
        if name.startswith("ct_"):
            groups["conn_table"][name[3:]] = counters[name]
        elif name.startswith("pass_"):
            groups["pass_reasons"][name[5:]] = counters[name]
        elif name.startswith("drop_"):
            groups["drop_reasons"][name[5:]] = counters[name]
        else:
            groups["totals"][name] = counters[name]
    return groups


def vip_stats(balancer: Balancer, vip: Vip) -> dict[str, object]:
    """Packets and bytes sent for a VIP and to each of its backends (a backend's counters
    cover every VIP it serves), with each backend's ring slots."""
    dp = balancer.dp
    num = balancer.vips[vip.key].num
    packets, nbytes = dp.vip_stats(num)
    slots = collections.Counter(dp.read_ring(num))
    backends = []
    for b in vip.backends:
        index = balancer.backend_index(b.address)
        bp, bb = dp.backend_stats(index)
        backends.append({"address": str(b.address), "weight": b.weight,
                         "ring_slots": slots[index], "packets": bp, "bytes": bb})
    return {"id": vip.id, "packets": packets, "bytes": nbytes,
            "ct_miss_nonsyn": dp.vip_ct_miss_nonsyn(num),
            "ring_size": balancer.sizes.ring_size, "backends": backends}


def backend_statuses(balancer: Balancer, vip: Vip, state_of: StateOf,
                     monitor: Monitor | None, conn_entries: bool) -> list[dict[str, object]]:
    """Each backend of a VIP as configured and as observed: state (up, down, draining,
    unknown), the last check's result, time in state, whether it is in the ring, its
    effective weight, and (for draining backends, or all with `conn_entries`) how many
    connection-table entries still point at it."""
    current = balancer.vips[vip.key].backends
    counts: collections.Counter[int] | None = None
    if conn_entries or any(b.drain for b in vip.backends):
        counts = collections.Counter(i for _, i in balancer.dp.conn_table())
    out = []
    for b in vip.backends:
        health: Health | None = monitor.health((vip.id, b.address)) if monitor else None
        state = state_of(vip.id, b.address)
        entry: dict[str, object] = {
            **b.model_dump(mode="json"),
            "state": "draining" if b.drain else str(state),
            "health": None if health is None else health.as_dict(),
            "in_ring": b.address in current,
            "effective_weight": current.get(b.address, 0),
            # The check this backend gets: the VIP's, with the port it probes.
            "check": None if vip.check is None else
            {**vip.check.model_dump(mode="json"), "port": vip.check_port},
        }
        if counts is not None and (b.drain or conn_entries):
            index = balancer.backend_index_or_none(b.address)
            entry["conn_table_entries"] = counts[index] if index else 0
        out.append(entry)
    return out


def check_schedule(monitor: Monitor | None) -> list[dict[str, object]]:
    """Each probe with the start times of its last checks (CLOCK_MONOTONIC seconds, the
    clock every process on the host shares): how evenly and punctually checks run."""
    if monitor is None:
        return []
    return [{"address": str(k.address), "port": k.port, "type": k.spec.type,
             "interval_s": k.spec.interval_s, "starts": starts}
            for k, starts in monitor.start_times().items()]


def metrics_snapshot(balancer: Balancer, vips: Iterable[Vip],
                     state_of: StateOf) -> dict[str, object]:
    """What /metrics reports from the kernel and the health checks, read now."""
    dp = balancer.dp
    out = []
    health: collections.Counter[str] = collections.Counter()
    for v in vips:
        state = balancer.vips.get(v.key)
        if state is None:
            continue
        packets, nbytes = dp.vip_stats(state.num)
        backends = []
        for b in v.backends:
            index = balancer.backend_index_or_none(b.address)
            bp, bb = dp.backend_stats(index) if index else (0, 0)
            backends.append({"address": str(b.address), "packets": bp, "bytes": bb})
            health["draining" if b.drain else str(state_of(v.id, b.address))] += 1
        out.append({"vip": f"{v.address}:{v.port}/{v.protocol}", "packets": packets,
                    "bytes": nbytes, "ct_miss_nonsyn": dp.vip_ct_miss_nonsyn(state.num),
                    "backends": backends})
    return {"counters": dp.counters(), "vips": out, "health": dict(health)}


class FlowSimulator(Protocol):
    """What a trace asks of the data plane beyond the DataplanePort: the kernel's view of a
    flow and the program's verdict on one of its packets (lb.xdp.simulate.Simulator)."""

    def prepare(self) -> None:
        """Get ready to simulate (may take seconds: called outside the controller's lock)."""

    def simulate(self, flow: Flow, syn: bool) -> Simulation:
        """The kernel's view of `flow` and the verdicts on one packet of it (a SYN if `syn`)."""


def _why_no_vip(vips: Iterable[Vip], flow: Flow) -> str:
    same_address = [v for v in vips if v.address == flow.dst]
    if not same_address:
        return f"no VIP has address {flow.dst}"
    have = ", ".join(sorted(f"{v.port}/{v.protocol}" for v in same_address))
    return (f"address {flow.dst} is a VIP's, but no VIP has port {flow.dport} or port 0 for "
            f"protocol {_PROTO_NAMES.get(flow.proto, flow.proto)} (VIPs there: {have})")


def trace(balancer: Balancer, vips: Iterable[Vip], flow: Flow, syn: bool, state_of: StateOf,
          simulator: FlowSimulator | None) -> dict[str, object]:
    """Why a flow goes where it goes: the VIP it matches (exact port, else port 0) or why
    none; the flow hash and ring slot; the slot's backend and whether it is settled; the
    flow's connection-table ways on every CPU; the health and drain state of each backend
    named; and, with a simulator, the program's verdict on one packet of the flow (a SYN if
    `syn`) with the outer header it gets. Reads only."""
    vips = list(vips)
    by_key = {v.key: v for v in vips}
    out: dict[str, object] = {
        "flow": {"src": str(flow.src), "dst": str(flow.dst), "sport": flow.sport,
                 "dport": flow.dport, "protocol": _PROTO_NAMES.get(flow.proto, str(flow.proto))},
        "syn": syn, "vip": None, "no_vip_reason": None, "flow_hash": None, "ring_slot": None,
        "slot_backend": None, "slot_settled": None, "conn_table": [], "backends": [],
        "verdicts": [], "simulated": simulator is not None}
    vip = match = None
    for port, how in ((flow.dport, "exact port"), (0, "port 0")):
        vip = by_key.get(VipKey(flow.dst, port, flow.proto))
        if vip is not None:
            match = how
            break
    sim = simulator.simulate(flow, syn) if simulator is not None else None
    index_address: dict[int, Address] = {}

    def named(index: int) -> str | None:
        if index not in index_address:
            address, _ = balancer.dp.backend_slot(index)
            if address is None:
                return None
            index_address[index] = address
        return str(index_address[index])

    if vip is None:
        out["no_vip_reason"] = _why_no_vip(vips, flow)
    else:
        state = balancer.vips.get(vip.key)
        out["vip"] = {"id": vip.id, "address": str(vip.address), "port": vip.port,
                      "protocol": vip.protocol, "match": match,
                      "flags": list(vip.flags)}
        if state is not None:
            h = flow_hash(flow.src, flow.dst, flow.sport, flow.dport, flow.proto,
                          int(state.flags))
            pos = h % balancer.sizes.ring_size
            out["flow_hash"], out["ring_slot"] = h, pos
            if sim is not None:
                index, settled = sim.slot_backend or 0, sim.slot_settled
            else:
                index, settled = balancer.dp.read_ring(state.num)[pos], None
            out["slot_backend"] = {"index": index, "address": named(index) if index else None}
            out["slot_settled"] = settled
    if sim is not None:
        out["conn_table"] = [{"cpu": w.cpu, "set": w.set, "way": w.way, "backend_index": w.backend,
                              "backend": named(w.backend), "idle_settles": w.idle_settles,
                              "age_s": w.age_s} for w in sim.ways]
        out["verdicts"] = [{"cpu": v.cpu, "verdict": v.verdict, "reasons": v.reasons,
                            "outer": v.outer} for v in sim.verdicts]
    else:
        out["conn_table"] = [{"cpu": None, "set": None, "way": None, "backend_index": i,
                              "backend": named(i), "idle_settles": None, "age_s": None}
                             for f, i in balancer.dp.conn_table() if f == flow]
    if vip is not None:
        wanted = set(index_address.values())
        out["backends"] = [{"address": str(b.address), "weight": b.weight, "drain": b.drain,
                            "state": "draining" if b.drain else str(state_of(vip.id, b.address)),
                            "in_ring": b.address in balancer.vips[vip.key].backends}
                           for b in vip.backends if b.address in wanted]
    return out
