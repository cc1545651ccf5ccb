"""REST: GET /trace answers from the model and the maps: the VIP matched (exact port before
port 0) or why none, the hash and ring slot the program would use, the slot's backend, the
flow's connection-table entries and the health of the backends named."""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterator

import pytest
from rest_helpers import SIZES, Rest, check, create_vip, rest_api

from lb.xdp.flowhash import flow_hash
from lb.xdp.types import Flow

ip = ipaddress.ip_address


@pytest.fixture
def api(tmp_path) -> Iterator[Rest]:
    with rest_api(tmp_path) as rest:
        yield rest


def _trace(api: Rest, **params) -> dict:
    query = {"src": "192.0.2.7", "sport": 40000, "proto": "tcp", **params}
    return check(api.client.get("/trace", params=query), 200)


def test_trace_names_the_exact_port_vip_its_slot_and_backend(api):
    vip_id = create_vip(api.client, "10.100.0.1", 80, backends={"10.1.0.1": 1, "10.1.0.2": 1})
    create_vip(api.client, "10.100.0.1", 0, backends={"10.1.0.3": 1})
    t = _trace(api, dst="10.100.0.1", dport=80)
    assert t["vip"]["id"] == vip_id and t["vip"]["match"] == "exact port"
    h = flow_hash(ip("192.0.2.7"), ip("10.100.0.1"), 40000, 80, socket.IPPROTO_TCP)
    assert (t["flow_hash"], t["ring_slot"]) == (h, h % SIZES.ring_size)
    ring = api.kernel.read_ring(api.vip_num("10.100.0.1", 80))
    index = ring[h % SIZES.ring_size]
    assert t["slot_backend"] == {"index": index, "address": str(api.kernel.backends[index])}
    assert [b["address"] for b in t["backends"]] == [t["slot_backend"]["address"]]
    assert t["backends"][0]["state"] == "unknown" and t["backends"][0]["in_ring"]
    assert t["simulated"] is False and t["verdicts"] == []


def test_trace_falls_back_to_the_port_0_vip(api):
    vip_id = create_vip(api.client, "10.100.0.1", 0, backends={"10.1.0.3": 1})
    t = _trace(api, dst="10.100.0.1", dport=8443)
    assert t["vip"]["id"] == vip_id and t["vip"]["match"] == "port 0"
    assert t["slot_backend"]["address"] == "10.1.0.3"


def test_trace_says_why_no_vip_matches(api):
    create_vip(api.client, "10.100.0.1", 80, backends={"10.1.0.1": 1})
    t = _trace(api, dst="10.9.9.9", dport=80)
    assert t["vip"] is None and t["no_vip_reason"] == "no VIP has address 10.9.9.9"
    t = _trace(api, dst="10.100.0.1", dport=81)
    assert t["vip"] is None and "no VIP has port 81 or port 0" in t["no_vip_reason"]
    assert "80/tcp" in t["no_vip_reason"]
    t = _trace(api, dst="10.100.0.1", dport=80, proto="udp")
    assert t["vip"] is None and "protocol udp" in t["no_vip_reason"]


def test_trace_shows_the_connection_table_entry_and_a_draining_backend(api):
    vip_id = create_vip(api.client, "10.100.0.1", 80, backends={"10.1.0.1": 1, "10.1.0.2": 1})
    t = _trace(api, dst="10.100.0.1", dport=80)
    other = "10.1.0.2" if t["slot_backend"]["address"] == "10.1.0.1" else "10.1.0.1"
    index = next(i for i, a in api.kernel.backends.items() if str(a) == other)
    flow = Flow(ip("192.0.2.7"), ip("10.100.0.1"), 40000, 80, socket.IPPROTO_TCP)
    api.kernel.conn[flow] = index
    check(api.client.patch(f"/vips/{vip_id}/backends/{other}", json={"drain": True}), 200)
    t = _trace(api, dst="10.100.0.1", dport=80)
    assert [(w["backend"], w["backend_index"]) for w in t["conn_table"]] == [(other, index)]
    drained = {b["address"]: b for b in t["backends"]}[other]
    assert drained["drain"] and drained["state"] == "draining" and not drained["in_ring"]


@pytest.mark.parametrize("params, field", [
    ({"dst": "10.100.0.1", "dport": 70000}, "dport"),
    ({"dst": "10.100.0.1", "dport": 80, "proto": "icmp"}, "proto"),
    ({"dst": "not-an-address", "dport": 80}, "dst"),
    ({"dst": "10.100.0.1", "dport": 80, "flags": "fin"}, "flags"),
])
def test_trace_refuses_bad_parameters(api, params, field):
    r = api.client.get("/trace", params={"src": "192.0.2.7", "sport": 1, **params})
    assert r.status_code == 422 and field in r.text


def test_trace_refuses_mixed_families(api):
    r = api.client.get("/trace", params={"src": "2001:db8::1", "dst": "10.100.0.1",
                                         "sport": 1, "dport": 80})
    assert r.status_code == 422 and "different address families" in r.text
