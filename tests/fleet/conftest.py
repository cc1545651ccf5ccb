"""Fleet fixtures: a real etcd (Debian's etcd-server) on loopback, one member per session.

Scope: `etcd1` is one member for the whole session (tests use their own key prefixes);
`etcd3` is a fresh 3-member cluster per test, for failure tests. Needs: the `etcd` binary
(make install). Cleanup: the members are killed by pid and their data dirs removed, even
when a test fails.
"""

from __future__ import annotations

import itertools

import pytest

from lb.control.etcd import Etcd
from lb.lab.etcd import EtcdCluster

_prefixes = itertools.count()


@pytest.fixture(scope="session")
def etcd1():
    with EtcdCluster(1) as cluster:
        yield cluster


@pytest.fixture
def etcd3():
    with EtcdCluster(3) as cluster:
        yield cluster


@pytest.fixture
def prefix(request) -> bytes:
    """A key prefix of this test's own."""
    return f"/lbtest/{next(_prefixes)}-{request.node.name[:40]}/".encode()


@pytest.fixture
def client(etcd1):
    c = Etcd(etcd1.endpoints, timeout_s=2.0)
    yield c
    c.close()
