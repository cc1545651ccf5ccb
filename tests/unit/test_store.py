"""The desired-state database: what is committed survives, what fails leaves no trace."""

from __future__ import annotations

import ipaddress
import sqlite3

import pytest

from lb.control.errors import StoreError
from lb.control.model import BackendSpec, VipSettings, VipSpec
from lb.control.store import SCHEMA_VERSION, Store

ip = ipaddress.ip_address


@pytest.fixture
def path(tmp_path):
    return tmp_path / "state" / "state.db"  # the parent does not exist yet


@pytest.fixture
def store(path):
    s = Store(path)
    yield s
    s.close()


def _vip(address: str = "10.0.0.1", port: int = 80, **kw) -> VipSpec:
    return VipSpec(address=address, port=port, **kw)


def _backend(address: str, weight: int = 1) -> BackendSpec:
    return BackendSpec(address=address, weight=weight)


def test_a_new_store_is_empty_and_creates_its_directory(store, path):
    assert path.exists()
    assert store.load() == {}


def test_vips_and_backends_load_back_as_written(store):
    with store.transaction() as tx:
        a = tx.insert_vip(_vip(flags=["no_conn_table", "hash_no_src_port"]))
        b = tx.insert_vip(_vip("2001:db8::1", 0, protocol="udp"))
        for pos, (addr, w) in enumerate([("10.1.0.3", 1), ("2001:db8::10", 5), ("10.1.0.1", 2)]):
            tx.put_backend(a, _backend(addr, w), pos)
    vips = store.load()
    assert list(vips) == [a, b] and a < b
    va, vb = vips[a], vips[b]
    assert (va.id, va.address, va.port, va.protocol) == (a, ip("10.0.0.1"), 80, "tcp")
    assert va.flags == ["hash_no_src_port", "no_conn_table"]
    assert [(b.address, b.weight) for b in va.backends] == [
        (ip("10.1.0.3"), 1), (ip("2001:db8::10"), 5), (ip("10.1.0.1"), 2)]
    assert (vb.address, vb.port, vb.protocol, vb.flags, vb.backends) == (
        ip("2001:db8::1"), 0, "udp", [], [])


def test_backends_load_in_position_order_not_insertion_order(store):
    with store.transaction() as tx:
        v = tx.insert_vip(_vip())
        tx.put_backend(v, _backend("10.1.0.2"), 7)
        tx.put_backend(v, _backend("10.1.0.1"), 3)
    assert [b.address for b in store.load()[v].backends] == [ip("10.1.0.1"), ip("10.1.0.2")]


def test_a_transaction_that_raises_rolls_back_every_write(store):
    with store.transaction() as tx:
        kept = tx.insert_vip(_vip())
        tx.put_backend(kept, _backend("10.1.0.1"), 1)
    before = store.load()
    with pytest.raises(RuntimeError, match="boom"), store.transaction() as tx:
        tx.insert_vip(_vip("10.0.0.2"))
        tx.put_backend(kept, _backend("10.1.0.2"), 2)
        tx.put_backend(kept, _backend("10.1.0.1", 9), 1)
        tx.set_settings(kept, VipSettings(flags=["no_conn_table"]))
        raise RuntimeError("boom")
    assert store.load() == before
    # The store is usable afterwards (no transaction left open).
    with store.transaction() as tx:
        tx.delete_vip(kept)
    assert store.load() == {}


def test_a_duplicate_vip_is_refused_by_the_database(store):
    with store.transaction() as tx:
        tx.insert_vip(_vip())
    with pytest.raises(sqlite3.IntegrityError), store.transaction() as tx:
        tx.insert_vip(_vip("10.0.0.2"))
        tx.insert_vip(_vip())
    assert [v.address for v in store.load().values()] == [ip("10.0.0.1")]


def test_vip_ids_are_never_reused_after_delete(store, path):
    with store.transaction() as tx:
        first = tx.insert_vip(_vip())
        second = tx.insert_vip(_vip("10.0.0.2"))
    with store.transaction() as tx:
        tx.delete_vip(second)
        tx.delete_vip(first)
    with store.transaction() as tx:
        again = tx.insert_vip(_vip())
    assert again > second
    store.close()
    with Store(path).transaction() as tx:
        assert tx.insert_vip(_vip("10.0.0.2")) > again


def test_put_backend_again_updates_the_weight_in_place(store):
    with store.transaction() as tx:
        v = tx.insert_vip(_vip())
        for pos, addr in enumerate(["10.1.0.1", "10.1.0.2", "10.1.0.3"]):
            tx.put_backend(v, _backend(addr), pos)
    with store.transaction() as tx:
        tx.put_backend(v, _backend("10.1.0.1", 9), 99)  # position of an update is ignored
    assert [(b.address, b.weight) for b in store.load()[v].backends] == [
        (ip("10.1.0.1"), 9), (ip("10.1.0.2"), 1), (ip("10.1.0.3"), 1)]


def test_delete_backend_removes_only_that_vips_backend(store):
    with store.transaction() as tx:
        a, b = tx.insert_vip(_vip()), tx.insert_vip(_vip("10.0.0.2"))
        for v in (a, b):
            tx.put_backend(v, _backend("10.1.0.1"), 1)
            tx.put_backend(v, _backend("10.1.0.2"), 2)
    with store.transaction() as tx:
        tx.delete_backend(a, ip("10.1.0.1"))
    vips = store.load()
    assert [x.address for x in vips[a].backends] == [ip("10.1.0.2")]
    assert [x.address for x in vips[b].backends] == [ip("10.1.0.1"), ip("10.1.0.2")]


def test_deleting_a_vip_deletes_its_backends(store, path):
    with store.transaction() as tx:
        a, b = tx.insert_vip(_vip()), tx.insert_vip(_vip("10.0.0.2"))
        tx.put_backend(a, _backend("10.1.0.1"), 1)
        tx.put_backend(b, _backend("10.1.0.2"), 2)
    with store.transaction() as tx:
        tx.delete_vip(a)
    assert list(store.load()) == [b]
    raw = sqlite3.connect(path)
    assert raw.execute("SELECT vip_id, address FROM backends").fetchall() == [(b, "10.1.0.2")]
    raw.close()


def test_reopening_the_file_sees_committed_data_only(store, path):
    with store.transaction() as tx:
        v = tx.insert_vip(_vip(flags=["no_conn_table"]))
        tx.put_backend(v, _backend("2001:db8::10", 3), 1)
    with pytest.raises(KeyboardInterrupt), store.transaction() as tx:
        tx.insert_vip(_vip("10.0.0.9"))
        raise KeyboardInterrupt  # interrupted mid-change: rolled back too
    expected = store.load()
    store.close()
    reopened = Store(path)
    try:
        assert reopened.load() == expected
        assert reopened.load()[v].backends == [_backend("2001:db8::10", 3)]
    finally:
        reopened.close()


def test_next_position_follows_the_highest_position_in_use(store):
    assert store.next_position() == 1
    with store.transaction() as tx:
        v = tx.insert_vip(_vip())
        for pos, addr in [(1, "10.1.0.1"), (2, "10.1.0.2"), (3, "10.1.0.3"), (4, "10.1.0.4")]:
            tx.put_backend(v, _backend(addr), pos)
    with store.transaction() as tx:
        tx.delete_backend(v, ip("10.1.0.1"))
        tx.delete_backend(v, ip("10.1.0.2"))
    assert store.next_position() == 5


def test_a_database_of_another_schema_version_is_refused(path):
    Store(path).close()
    raw = sqlite3.connect(path)
    with raw:
        raw.execute("UPDATE meta SET value = ? WHERE key = 'schema'", (str(SCHEMA_VERSION + 1),))
    raw.close()
    with pytest.raises(StoreError, match=f"schema version {SCHEMA_VERSION + 1}"):
        Store(path)


def test_a_file_that_is_not_a_database_is_refused(path):
    path.parent.mkdir(parents=True)
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError, match=str(path)):
        Store(path)


@pytest.mark.parametrize("kind", ["parent is a file", "database is a directory"])
def test_a_state_dir_that_cannot_be_opened_names_the_path_the_errno_and_the_fix(
        tmp_path, kind: str) -> None:
    if kind == "parent is a file":
        (tmp_path / "file").write_text("")
        path = tmp_path / "file" / "state" / "state.db"
    else:
        path = tmp_path / "state.db"
        path.mkdir()
    with pytest.raises(StoreError) as caught:
        Store(path)
    message = str(caught.value)
    assert str(path) in message and "errno" in message and "--state-dir" in message, message
    assert ("ENOTDIR" if kind == "parent is a file" else "EISDIR") in message, message
