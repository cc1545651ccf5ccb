"""Which backend gets a flow: new flows spread in proportion to the weights, a flow stays put."""

from __future__ import annotations

import math
from collections import Counter

import pytest
from scapy.layers.inet import TCP, UDP

from lb.control.service import Balancer
from lb.lab.veth import VethLab
from lb.lab.waits import settle, wait_until
from lb.xdp.flowhash import flow_hash
from lb.xdp.maps import Dataplane

# Spread: distinct UDP flows (one packet each, one source port each) over weights 1:2:3.
SPREAD_FLOWS = 3000
SPREAD_WEIGHTS = (1, 2, 3)
# Allowed distance from n * w/W, in binomial standard deviations sqrt(n p (1 - p)): 3 sigma is
# about +-61 flows (2.0 points) for weight 1, +-77 (2.6) for 2, +-82 (2.7) for 3. The flows are
# fixed and the hash deterministic, so the outcome is the same on every run: never flaky.
SIGMAS = 3.0


def test_new_flows_spread_over_backends_in_proportion_to_weight(
        lab: VethLab, dataplane: Dataplane, balancer: Balancer, make_vip) -> None:
    vip, port = lab.vips_v4()[2], 5000
    weights = {b: w for b, w in zip(lab.backends, SPREAD_WEIGHTS, strict=True)}
    _, state = make_vip(vip, port, "udp", {b.v4: w for b, w in weights.items()})
    sports = range(10000, 10000 + SPREAD_FLOWS)
    queues_before = lab.balancer_rx_queues()

    lab.send_frames(lab.client_frame(vip) / UDP(sport=s, dport=port) / b"spread" for s in sports)
    assert wait_until(lambda: dataplane.vip_stats(state.num)[0] >= SPREAD_FLOWS, timeout=5), \
        f"{dataplane.vip_stats(state.num)[0]} of {SPREAD_FLOWS} flows reached the balancer"

    counts = {b: dataplane.backend_stats(balancer.backend_index(b.v4))[0] for b in lab.backends}
    decapsulated = {b: settle(lambda b=b: lab.decapsulated(b)) for b in lab.backends}
    # The control plane's mirror of the flow hash, read against the ring in the kernel.
    ring = dataplane.read_ring(state.num)
    index_to_backend = {balancer.backend_index(b.v4): b for b in lab.backends}
    predicted = Counter(
        index_to_backend[ring[flow_hash(lab.client.v4, vip, s, port, 17) % len(ring)]]
        for s in sports)

    total_weight = sum(SPREAD_WEIGHTS)
    lines = [f"{'backend':9} {'weight':>6} {'expected':>8} {'got':>5} {'decap':>5} "
             f"{'share':>7} {'3 sigma':>7}"]
    failures = []
    for backend, weight in weights.items():
        p = weight / total_weight
        expected = SPREAD_FLOWS * p
        allowed = SIGMAS * math.sqrt(SPREAD_FLOWS * p * (1 - p))
        got = counts[backend]
        lines.append(f"{backend.name:9} {weight:>6} {expected:>8.0f} {got:>5} "
                     f"{decapsulated[backend]:>5} {got / SPREAD_FLOWS:>7.1%} {allowed:>7.0f}")
        if abs(got - expected) > allowed:
            failures.append(f"{backend.name}: {got}, expected {expected:.0f} +- {allowed:.0f}")
    table = "\n".join(lines)
    print("\n" + table)
    print(f"balancer RX queues (XDP packets, before -> after): {queues_before} -> "
          f"{lab.balancer_rx_queues()}")

    assert sum(counts.values()) == SPREAD_FLOWS, table
    assert not failures, "\n".join(failures) + "\n" + table
    assert decapsulated == counts, f"backends decapsulated {decapsulated}\n{table}"
    assert dict(predicted) == counts, f"the control plane's flow hash predicts {predicted}"


def test_flows_are_processed_on_every_rx_queue_of_the_balancer(
        lab: VethLab, dataplane: Dataplane, make_vip) -> None:
    """The balancer's veth has 2 RX queues; the router spreads flows over them by flow hash."""
    vip, port = lab.vips_v4()[2], 5002
    _, state = make_vip(vip, port, "udp", {b.v4: 1 for b in lab.backends})
    before = lab.balancer_rx_queues()
    assert len(before) == lab.rx_queues == 2
    lab.send_frames(lab.client_frame(vip) / UDP(sport=s, dport=port) for s in range(200))
    assert wait_until(lambda: dataplane.vip_stats(state.num)[0] >= 200)
    after = lab.balancer_rx_queues()
    per_queue = {q: after[q] - before[q] for q in before}
    assert all(n > 0 for n in per_queue.values()), f"XDP packets per RX queue: {per_queue}"


@pytest.mark.parametrize("family", [4, 6], ids=["ipv4", "ipv6"])
@pytest.mark.parametrize("l4", ["tcp", "udp"])
def test_same_flow_always_reaches_the_same_backend(
        lab: VethLab, dataplane: Dataplane, balancer: Balancer, make_vip, family: int,
        l4: str) -> None:
    """Each flow's packets (TCP: a SYN, then ACKs) all go to one backend, flow after flow."""
    vip = (lab.vips_v4() if family == 4 else lab.vips_v6())[3]
    port, flows, packets = 5003, 8, 25
    addresses = [b.v4 if family == 4 else b.v6 for b in lab.backends]
    make_vip(vip, port, l4, dict.fromkeys(addresses, 1))
    indexes = [balancer.backend_index(a) for a in addresses]

    def per_backend() -> list[int]:
        return [dataplane.backend_stats(i)[0] for i in indexes]

    chosen = []
    for flow in range(flows):
        sport = 20000 + flow
        if l4 == "tcp":
            layers = [TCP(sport=sport, dport=port, flags="S", seq=1)] + [
                TCP(sport=sport, dport=port, flags="A", seq=2 + n) for n in range(packets - 1)]
        else:
            layers = [UDP(sport=sport, dport=port) for _ in range(packets)]
        before = per_backend()
        lab.send_frames(lab.client_frame(vip) / layer / f"packet {n}"
                        for n, layer in enumerate(layers))
        assert wait_until(lambda b=before: sum(per_backend()) - sum(b) >= packets)
        delta = [a - b for a, b in zip(per_backend(), before, strict=True)]
        assert sorted(delta) == [0, 0, packets], (
            f"flow {sport}: packets per backend {delta}, expected all {packets} on one")
        chosen.append(delta.index(packets))
    # Not a single backend for everything: flows do differ (8 flows on 3 backends).
    assert len(set(chosen)) > 1, f"every flow went to backend {chosen[0]}"
