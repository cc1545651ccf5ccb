"""Prometheus metrics: the data plane's counters read at scrape time, and the daemon's own.

`DataplaneCollector` reads the kernel's per-CPU counters (summed) when Prometheus scrapes,
so a scrape always shows the kernel's truth and the daemon keeps no copy. The daemon's own
events (ring rebuilds, slots written, health transitions, API requests) are ordinary
prometheus-client counters in a registry of their own.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from lb.xdp.consts import Counter as DpCounter

# The daemon's own event counters, registered in `registry` (one per daemon process).
registry = CollectorRegistry()
RING_REBUILDS = Counter("lb_ring_rebuilds", "Rings written because a VIP's backends changed",
                        registry=registry)
RING_SLOTS_WRITTEN = Counter("lb_ring_slots_written",
                             "Ring slots rewritten in the kernel (only differing slots are "
                             "written)", registry=registry)
RING_SLOTS_SETTLED = Counter("lb_ring_slots_settled",
                             "Ring slots settled: no live flow holds them, so their TCP "
                             "packets skip the connection table", registry=registry)
HEALTH_TRANSITIONS = Counter("lb_health_transitions", "Backend health state changes",
                             ["state"], registry=registry)
API_REQUESTS = Counter("lb_api_requests", "REST API requests by method, route and status",
                       ["method", "route", "status"], registry=registry)


def _reason_metrics(counters: dict[str, int]) -> Iterator[CounterMetricFamily]:
    packets = CounterMetricFamily("lb_packets", "Packets by XDP verdict", labels=["verdict"])
    passes = CounterMetricFamily("lb_pass_reasons",
                                 "Packets passed to the kernel, by reason", labels=["reason"])
    drops = CounterMetricFamily("lb_drop_reasons", "Packets dropped, by reason",
                                labels=["reason"])
    ct = CounterMetricFamily("lb_conn_table", "Connection-table lookups by result (hit, "
                             "miss, udp_expired); settled: TCP packets a settled ring slot "
                             "sent without one; miss_nonsyn: non-SYN TCP misses (lost state)",
                             labels=["result"])
    for c in DpCounter:
        name = c.name.lower()
        value = counters[name]
        if name.startswith("ct_"):
            ct.add_metric([name[3:]], value)
        elif name.startswith("pass_"):
            passes.add_metric([name[5:]], value)
        elif name.startswith("drop_"):
            drops.add_metric([name[5:]], value)
        else:
            packets.add_metric([name], value)
    yield from (packets, passes, drops, ct)


class DataplaneCollector(Collector):
    """Reads the kernel's counters at each scrape through `snapshot()`, which returns
    {"counters": {name: n}, "vips": [{"vip", "packets", "bytes", "ct_miss_nonsyn",
    "backends": [...]}],
    "health": {state: n}}."""

    def __init__(self, snapshot: Callable[[], dict[str, Any]]) -> None:
        self.snapshot = snapshot

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        snap = self.snapshot()
        yield from _reason_metrics(snap["counters"])
        vip_packets = CounterMetricFamily("lb_vip_packets", "Packets sent for a VIP",
                                          labels=["vip"])
        vip_bytes = CounterMetricFamily("lb_vip_bytes", "Bytes sent for a VIP", labels=["vip"])
        vip_lost = CounterMetricFamily("lb_vip_ct_miss_nonsyn",
                                       "Non-SYN TCP packets of a VIP that missed the "
                                       "connection table (flows that lost their state)",
                                       labels=["vip"])
        be_packets = CounterMetricFamily("lb_backend_packets",
                                         "Packets sent to a backend (over all its VIPs)",
                                         labels=["backend"])
        be_bytes = CounterMetricFamily("lb_backend_bytes",
                                       "Bytes sent to a backend (over all its VIPs)",
                                       labels=["backend"])
        seen: set[str] = set()
        for vip in snap["vips"]:
            vip_packets.add_metric([vip["vip"]], vip["packets"])
            vip_bytes.add_metric([vip["vip"]], vip["bytes"])
            vip_lost.add_metric([vip["vip"]], vip.get("ct_miss_nonsyn", 0))
            for b in vip["backends"]:
                if b["address"] not in seen:
                    seen.add(b["address"])
                    be_packets.add_metric([b["address"]], b["packets"])
                    be_bytes.add_metric([b["address"]], b["bytes"])
        yield from (vip_packets, vip_bytes, vip_lost, be_packets, be_bytes)
        health = GaugeMetricFamily("lb_backends", "Backends (per VIP) by health state",
                                   labels=["state"])
        for state, n in sorted(snap.get("health", {}).items()):
            health.add_metric([state], n)
        yield health
