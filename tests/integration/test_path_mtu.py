"""Path MTU discovery through the balancer: a client's full-size TCP segments do not fit the
MTU toward the backends once encapsulated; the balancer's ICMP "too big" makes the client's
own kernel shrink them, and the request gets through (the kernel's sockets on both ends)."""

from __future__ import annotations

import re
import subprocess

import pytest

from lb.lab.veth import VethLab
from lb.xdp.maps import Dataplane

# The balancer's MTU toward the backends in this test: the client's 1500-byte packets plus a
# 20- or 40-byte outer header do not fit, so every full-size segment is answered.
MTU = 1400
# A request header big enough to need several full-size segments.
PAD = "p" * 6000


def _route_mtu(lab: VethLab, family: int, vip) -> int | None:
    """The path MTU the client's kernel has learnt for `vip` (None: none learnt)."""
    out = subprocess.run(["ip", f"-{family}", "-n", lab.client.netns, "route", "get", str(vip)],
                         capture_output=True, text=True, check=True).stdout
    m = re.search(r"\bmtu (\d+)", out)
    return int(m.group(1)) if m else None


def _flush_learnt_mtu(lab: VethLab, family: int) -> None:
    subprocess.run(["ip", f"-{family}", "-n", lab.client.netns, "route", "flush", "cache"],
                   capture_output=True)


@pytest.mark.parametrize("family", [4, 6], ids=["ipv4", "ipv6"])
def test_client_learns_the_path_mtu_from_the_balancer_and_gets_through(
        lab: VethLab, dataplane: Dataplane, make_vip, http_vips, family: int) -> None:
    vip = http_vips[0 if family == 4 else 1]
    backends = [b.v4 if family == 4 else b.v6 for b in lab.backends]
    make_vip(vip, 80, "tcp", dict.fromkeys(backends, 1))
    overhead = 20 if family == 4 else 40  # the lab's backends share the VIP's family
    _flush_learnt_mtu(lab, family)
    assert _route_mtu(lab, family, vip) is None
    dataplane.write_config(lab.runtime_config(mtu=MTU))
    try:
        conn = lab.http_connection(vip, 80, timeout=10)
        try:
            conn.request("GET", "/", headers={"Connection": "close", "X-Pad": PAD})
            response = conn.getresponse()
            body = response.read().decode()
        finally:
            conn.close()
        learnt = _route_mtu(lab, family, vip)
        counters = dataplane.counters()
    finally:
        dataplane.write_config(lab.runtime_config())
        _flush_learnt_mtu(lab, family)

    assert response.status == 200 and body.startswith("backend"), (response.status, body)
    assert learnt == MTU - overhead, f"the client learnt {learnt}, expected {MTU - overhead}"
    assert counters["icmp_too_big"] >= 1
    assert counters["drop_too_big"] == 0
    # Every segment of the retried request fitted: the balancer forwarded it.
    assert counters["tx"] >= len(PAD) // (MTU - overhead)
