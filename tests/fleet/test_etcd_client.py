"""The etcd client against a real etcd: reads, compare-and-swap transactions, leases, watches."""

from __future__ import annotations

import threading
import time

import pytest

from lb.control.etcd import (
    Etcd,
    EtcdUnreachable,
    delete,
    mod_revision_is,
    parse_store_url,
    prefix_end,
    put,
)


def test_put_then_get_prefix_returns_every_key_under_it_and_nothing_beside(client, prefix):
    client.put(prefix + b"a", b"1")
    client.put(prefix + b"b", b"2")
    client.put(prefix[:-1] + b"x", b"outside")  # shares the prefix but for its last byte
    revision, kvs = client.get_prefix(prefix)
    assert [(kv.key, kv.value) for kv in kvs] == [(prefix + b"a", b"1"), (prefix + b"b", b"2")]
    assert revision >= max(kv.mod_revision for kv in kvs)


def test_a_transaction_applies_only_when_its_compare_holds(client, prefix):
    client.put(prefix + b"gen", b"")
    base = client.get(prefix + b"gen").mod_revision
    ok, rev = client.txn([mod_revision_is(prefix + b"gen", base)],
                         [put(prefix + b"v", b"first"), put(prefix + b"gen", b"")])
    assert ok and rev > base
    # The same base again: someone (we) moved on, so this one must lose and write nothing.
    ok, _ = client.txn([mod_revision_is(prefix + b"gen", base)], [put(prefix + b"v", b"lost")])
    assert not ok
    assert client.get(prefix + b"v").value == b"first"


def test_compare_on_revision_0_means_the_key_does_not_exist(client, prefix):
    ok, _ = client.txn([mod_revision_is(prefix + b"k", 0)], [put(prefix + b"k", b"1")])
    assert ok
    ok, _ = client.txn([mod_revision_is(prefix + b"k", 0)], [put(prefix + b"k", b"2")])
    assert not ok


def test_delete_with_prefix_removes_the_subtree(client, prefix):
    client.put(prefix + b"d/1", b"")
    client.put(prefix + b"d/2", b"")
    ok, _ = client.txn([], [delete(prefix + b"d/", prefix=True)])
    assert ok and client.get_prefix(prefix + b"d/")[1] == []


def test_a_key_put_under_a_lease_goes_when_the_lease_is_revoked(client, prefix):
    lease = client.lease_grant(30)
    assert client.lease_keepalive(lease) > 0
    client.put(prefix + b"leased", b"x", lease=lease)
    assert client.get(prefix + b"leased").lease == lease
    client.lease_revoke(lease)
    assert client.get(prefix + b"leased") is None


def test_a_watch_sees_every_change_after_its_start_revision_in_order(client, prefix):
    start = client.put(prefix + b"before", b"0")
    stop, seen = threading.Event(), []

    def watch():
        for batch in client.watch_prefix(prefix, start + 1, stop):
            seen.extend((e.kind, e.kv.key) for e in batch.events)
            if len(seen) >= 3:
                stop.set()

    t = threading.Thread(target=watch)
    t.start()
    client.put(prefix + b"a", b"1")
    client.put(prefix + b"b", b"2")
    client.txn([], [delete(prefix + b"a")])
    t.join(10)
    stop.set()
    assert seen == [("put", prefix + b"a"), ("put", prefix + b"b"), ("delete", prefix + b"a")]


def test_an_endpoint_that_does_not_answer_is_skipped(etcd1, prefix):
    c = Etcd(["http://127.0.0.1:9", *etcd1.endpoints], timeout_s=1.0)
    try:
        assert c.put(prefix + b"k", b"v") > 0
    finally:
        c.close()


def test_no_endpoint_answering_is_unreachable_not_a_hang():
    c = Etcd(["http://127.0.0.1:9"], timeout_s=0.5)
    t0 = time.monotonic()
    with pytest.raises(EtcdUnreachable, match="127.0.0.1:9"):
        c.get(b"/x")
    assert time.monotonic() - t0 < 5
    c.close()


def test_prefix_end_is_the_next_key_after_every_key_with_the_prefix():
    assert prefix_end(b"/lb/") == b"/lb0"
    assert prefix_end(b"a\xff") == b"b"
    assert prefix_end(b"\xff") == b"\0"


@pytest.mark.parametrize("url, endpoints, prefix", [
    ("etcd://127.0.0.1:2379/lb", ["http://127.0.0.1:2379"], b"/lb/"),
    ("etcd://a:1,b:2/edge/fra1/", ["http://a:1", "http://b:2"], b"/edge/fra1/"),
])
def test_store_urls_name_every_member_and_the_prefix(url, endpoints, prefix):
    assert parse_store_url(url) == (endpoints, prefix)


@pytest.mark.parametrize("url, message", [
    ("sqlite", "not an etcd store URL"),
    ("etcd://127.0.0.1:2379", "needs a key prefix"),
    ("etcd://127.0.0.1/lb", "is not HOST:PORT"),
    ("etcd://h:99999/lb", "is not HOST:PORT"),
])
def test_bad_store_urls_are_refused_with_the_reason(url, message):
    with pytest.raises(ValueError, match=message):
        parse_store_url(url)
