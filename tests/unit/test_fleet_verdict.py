"""The fleet's health verdict and ring digests: pure rules every host computes alike."""

from __future__ import annotations

import ipaddress

import pytest

from lb.control.fleet import HostReport, fleet_verdict, ring_digest
from lb.control.health import State

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


def test_equal_rings_digest_equal_and_a_moved_slot_changes_the_digest():
    a, b = ipaddress.ip_address("10.1.0.2"), ipaddress.ip_address("fd00:1::2")
    ring = [a, b, a, None]
    assert ring_digest(ring) == ring_digest(list(ring))
    assert ring_digest(ring) != ring_digest([b, a, a, None])
    assert ring_digest(ring) != ring_digest([a, b, a])


def test_a_host_report_survives_its_json_form():
    r = HostReport("lb1", revision=42, rings={3: "ab"}, health={"3/10.1.0.2": "down"},
                   started_at=1.5, updated_at=2.5)
    assert HostReport.from_json(r.to_json()) == r
