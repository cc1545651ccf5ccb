"""What a next-hop resolution means for the MAC in the running program (no root)."""

from __future__ import annotations

from lb.control import netinfo
from lb.control.nexthop import NEXT_HOP_CHANGES, NextHopWatcher, decide

OLD, NEW = "52:54:00:00:00:01", "52:54:00:00:00:02"


def test_an_unchanged_or_unresolvable_gateway_keeps_the_mac() -> None:
    assert decide(OLD, netinfo.NextHop("10.0.0.1", OLD)) is None
    assert decide(OLD, netinfo.NextHop("10.0.0.1", OLD.upper())) is None
    assert decide(OLD, None) is None


def test_a_new_mac_or_a_new_gateway_with_another_mac_is_written() -> None:
    assert decide(OLD, netinfo.NextHop("10.0.0.1", NEW)) == NEW
    assert decide(OLD, netinfo.NextHop("10.0.0.254", NEW.upper())) == NEW


def test_the_watcher_applies_logs_and_counts_each_change_once(caplog) -> None:
    applied: list[str] = []
    answers = iter([netinfo.NextHop("10.0.0.1", NEW), netinfo.NextHop("10.0.0.1", NEW)])
    watcher = NextHopWatcher(1, OLD, applied.append, resolve=lambda _: next(answers))
    before = NEXT_HOP_CHANGES._value.get()
    try:
        with caplog.at_level("INFO", logger="lb.nexthop"):
            assert watcher.check() == NEW
            assert watcher.check() is None
    finally:
        watcher.close()
    assert applied == [NEW] and watcher.current == NEW
    assert NEXT_HOP_CHANGES._value.get() == before + 1
    assert f"event=next_hop_changed old={OLD} new={NEW}" in caplog.text


def test_an_unresolvable_gateway_is_logged_and_the_mac_kept(caplog) -> None:
    def fail(_: int) -> netinfo.NextHop:
        raise netinfo.NetInfoError("no default route")

    watcher = NextHopWatcher(1, OLD, lambda mac: None, resolve=fail)
    try:
        assert watcher.check() is None
    finally:
        watcher.close()
    assert watcher.current == OLD and "event=next_hop_unresolved" in caplog.text
