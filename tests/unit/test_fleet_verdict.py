"""The fleet's health verdict and ring digests: pure rules every host computes alike."""

from __future__ import annotations

import ipaddress

import pytest

from lb.control.fleet import HostReport, fleet_verdict
from lb.control.health import State
from lb.control.maglev import ring_digest

UP, DOWN, UNKNOWN = State.UP, State.DOWN, State.UNKNOWN


@pytest.mark.parametrize("verdicts, expected", [
    ([], UNKNOWN),
    ([UNKNOWN, UNKNOWN], UNKNOWN),
    ([DOWN], DOWN),
    ([UP], UP),
    ([UP, UP, DOWN], UP),          # one host alone cannot reach it: the fleet keeps it
    ([UP, DOWN, DOWN], DOWN),
    ([UP, DOWN], UP),              # a tie keeps the backend in
    ([DOWN, DOWN, UNKNOWN], DOWN),  # hosts without a verdict do not vote
    ([UP, UNKNOWN, UNKNOWN], UP),
])
def test_a_backend_is_down_for_the_fleet_only_when_most_hosts_that_checked_it_say_so(
        verdicts, expected):
    assert fleet_verdict(verdicts) == expected


def test_the_verdict_does_not_depend_on_the_order_hosts_are_read_in():
    vs = [UP, DOWN, DOWN, UP, DOWN]
    assert fleet_verdict(vs) == fleet_verdict(list(reversed(vs))) == DOWN


def test_equal_rings_digest_equal_whatever_index_each_host_gave_the_backends():
    a, b = ipaddress.ip_address("10.1.0.2"), ipaddress.ip_address("fd00:1::2")
    here = ring_digest([1, 2, 1, 1], {1: a, 2: b})
    there = ring_digest([7, 3, 7, 7], {3: b, 7: a})  # another host's backend table
    assert here == there
    assert here != ring_digest([2, 1, 1, 1], {1: a, 2: b})   # one slot moved
    assert here != ring_digest([1, 2, 1], {1: a, 2: b})      # another ring size
    assert here != ring_digest([1, 2, 1, 1], {1: a, 2: ipaddress.ip_address("10.1.0.3")})


def test_a_host_report_survives_its_json_form():
    r = HostReport("lb1", revision=42, rings={3: "ab"}, health={"3/10.1.0.2": "down"},
                   started_at=1.5, updated_at=2.5)
    assert HostReport.from_json(r.to_json()) == r
