"""Observed state, read for the API: counters grouped, per-VIP and per-backend traffic, health.

Pure reads of the data plane and the health monitor, shaped as the REST layer answers them;
the controller calls these under its change lock, so what they see is one consistent state.
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Iterable

from lb.control.health import Health, Monitor, State
from lb.control.model import Address, Vip
from lb.control.service import Balancer
from lb.xdp.consts import Counter

# A backend's health in a VIP (controller._state): (VIP id, backend address) -> State.
StateOf = Callable[[int, Address], State]


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
