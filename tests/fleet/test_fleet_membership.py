"""Fleet membership in a real etcd: reports under leases, the fleet verdict, leaving."""

from __future__ import annotations

import ipaddress
import time

from lb.control.etcd import Etcd
from lb.control.fleet import Fleet, target_key
from lb.control.health import State
from lb.lab.waits import wait_until


def _fleet(etcd1, prefix, name, **kw) -> Fleet:
    f = Fleet(Etcd(etcd1.endpoints, timeout_s=2.0), prefix, name, **kw)
    f.start()
    return f


def test_hosts_see_each_other_and_agree_on_the_verdict(etcd1, prefix):
    key = target_key(1, ipaddress.ip_address("10.1.0.2"))
    changed: list[set] = []
    fleet = [_fleet(etcd1, prefix, f"lb{i}", on_verdicts=changed.append) for i in range(3)]
    try:
        assert wait_until(lambda: all(len(f.view()) == 3 for f in fleet), timeout=10)
        fleet[0].report(revision=7, health={key: State.DOWN})
        fleet[1].report(health={key: State.UP})
        fleet[2].report(health={key: State.UP})
        assert wait_until(lambda: all(f.verdict(key) == State.UP for f in fleet), timeout=10)
        # A second host loses it: now most hosts that checked it say down, everywhere.
        fleet[1].report(health={key: State.DOWN})
        assert wait_until(lambda: all(f.verdict(key) == State.DOWN for f in fleet), timeout=10)
        assert any(key in c for c in changed)
        assert wait_until(lambda: {h.name: h.revision for h in fleet[2].view()}["lb0"] == 7,
                          timeout=10)
    finally:
        for f in fleet:
            f.close()


def test_a_host_that_leaves_is_gone_from_every_view_at_once(etcd1, prefix):
    a, b = _fleet(etcd1, prefix, "a"), _fleet(etcd1, prefix, "b")
    try:
        assert wait_until(lambda: len(a.view()) == 2, timeout=10)
        b.close()
        assert wait_until(lambda: [h.name for h in a.view()] == ["a"], timeout=10)
    finally:
        a.close()
        b.close()


def test_a_host_that_stops_renewing_drops_out_when_its_lease_expires(etcd1, prefix):
    a, b = _fleet(etcd1, prefix, "a"), _fleet(etcd1, prefix, "b", ttl_s=2)
    try:
        assert wait_until(lambda: len(a.view()) == 2, timeout=10)
        b._stop.set()   # b hangs: no revoke, no renewal, as a crashed host would
        b._dirty.set()
        for t in b._threads:
            t.join(5)
        t0 = time.monotonic()
        assert wait_until(lambda: [h.name for h in a.view()] == ["a"], timeout=10)
        assert time.monotonic() - t0 < 6
    finally:
        a.close()
        b._lease = 0
        b.close()
