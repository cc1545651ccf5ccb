"""REST: VIPs are created, listed, read, changed and deleted, in the kernel too; a rejected
request (404, 409, 422, 507) answers the error and changes nothing, in the kernel or the
desired state."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from rest_helpers import MAX_VIPS, Rest, check, create_vip, error_fields, rest_api

from lb.xdp.consts import VipFlag


@pytest.fixture
def rest(tmp_path) -> Iterator[Rest]:
    with rest_api(tmp_path) as r:
        yield r


def test_a_vip_is_created_read_listed_and_deleted_in_the_kernel_too(rest: Rest) -> None:
    api = rest.client
    body = check(api.post("/vips", json={"address": "10.100.0.5", "port": 8080,
                                         "protocol": "udp", "flags": ["no_conn_table"]}), 201)
    assert {k: body[k] for k in ("address", "port", "protocol", "flags", "backends",
                                 "all_backends_down")} == {
        "address": "10.100.0.5", "port": 8080, "protocol": "udp", "flags": ["no_conn_table"],
        "backends": [], "all_backends_down": False}
    assert rest.vip_entry("10.100.0.5", 8080, "udp")[1] == int(VipFlag.NO_CONN_TABLE)
    # The address comes back in canonical form; protocol defaults to tcp.
    other = check(api.post("/vips", json={"address": "FD00:100:0::5", "port": 0}), 201)
    assert (other["address"], other["protocol"]) == ("fd00:100::5", "tcp")
    assert check(api.get(f"/vips/{body['id']}"), 200) == body
    assert [v["id"] for v in check(api.get("/vips"), 200)] == [body["id"], other["id"]]

    assert api.delete(f"/vips/{body['id']}").status_code == 204
    assert [str(k.address) for k in rest.kernel.vip_entries] == ["fd00:100::5"]
    check(api.get(f"/vips/{body['id']}"), 404)
    assert [v["id"] for v in check(api.get("/vips"), 200)] == [other["id"]]


def test_patch_and_flags_change_a_vip_and_its_kernel_entry(rest: Rest) -> None:
    api = rest.client
    vip_id = create_vip(api, "10.100.0.5", 80)
    changed = check(api.patch(f"/vips/{vip_id}", json={"flags": ["hash_no_src_port"],
                                                       "slow_start_s": 5}), 200)
    assert (changed["flags"], changed["slow_start_s"]) == (["hash_no_src_port"], 5)
    assert rest.vip_entry("10.100.0.5", 80)[1] == int(VipFlag.HASH_NO_SRC_PORT)
    flagged = check(api.put(f"/vips/{vip_id}/flags", json={"flags": ["no_conn_table"]}), 200)
    assert (flagged["flags"], flagged["slow_start_s"]) == (["no_conn_table"], 5)
    assert rest.vip_entry("10.100.0.5", 80)[1] == int(VipFlag.NO_CONN_TABLE)
    assert check(api.get(f"/vips/{vip_id}"), 200) == flagged


@pytest.mark.parametrize(("method", "path", "body"), [
    ("GET", "/vips/999", None),
    ("DELETE", "/vips/999", None),
    ("PATCH", "/vips/999", {"flags": []}),
    ("PUT", "/vips/999/flags", {"flags": []}),
])
def test_an_unknown_vip_is_404_and_changes_nothing(rest: Rest, method: str, path: str,
                                                   body: object) -> None:
    create_vip(rest.client, "10.100.0.5", 80, backends={"10.1.0.2": 1})
    before = rest.state()
    response = rest.client.request(method, path, **({} if body is None else {"json": body}))
    assert response.status_code == 404, response.text
    assert "999" in response.json()["detail"]
    assert rest.state() == before


def test_the_same_vip_spelt_otherwise_is_409_and_changes_nothing(rest: Rest) -> None:
    create_vip(rest.client, "fd00:100::7", 443, backends={"fd00:1::2": 2})
    before = rest.state()
    response = rest.client.post("/vips", json={"address": "fd00:100:0:0::7", "port": 443})
    assert response.status_code == 409, response.text
    assert "exists" in response.json()["detail"]
    assert rest.state() == before
    # Another protocol of the same address and port is another VIP.
    create_vip(rest.client, "fd00:100::7", 443, "udp")


# (JSON body of POST /vips, the field the answer must name)
INVALID_VIPS = [
    ({"address": "10.100.0.300", "port": 80}, "address"),
    ({"address": 167772161, "port": 80}, "address"),
    ({"address": "10.100.0.7", "port": 65536}, "port"),
    ({"address": "10.100.0.7", "port": "80"}, "port"),
    ({"address": "10.100.0.7"}, "port"),
    ({"address": "10.100.0.7", "port": 80, "protocol": "icmp"}, "protocol"),
    ({"address": "10.100.0.7", "port": 80, "flags": ["bogus"]}, "flags"),
    ({"address": "10.100.0.7", "port": 80, "colour": "red"}, "colour"),
    ({"address": "10.100.0.7", "port": 0, "check": {"type": "tcp"}}, "check.port"),
]


@pytest.mark.parametrize(("body", "field"), INVALID_VIPS,
                         ids=[f"{f}-{i}" for i, (_, f) in enumerate(INVALID_VIPS)])
def test_an_invalid_vip_is_422_naming_the_field_and_changes_nothing(
        rest: Rest, body: dict, field: str) -> None:
    create_vip(rest.client, "10.100.0.5", 80, backends={"10.1.0.2": 1})
    before = rest.state()
    response = rest.client.post("/vips", json=body)
    assert response.status_code == 422, response.text
    assert field in error_fields(response), response.text
    assert rest.state() == before


@pytest.mark.parametrize(("method", "path", "body", "field"), [
    ("GET", "/vips/first", None, "vip_id"),
    ("PATCH", "/vips/{vip}", {"slow_start_s": -1}, "slow_start_s"),
    ("PATCH", "/vips/{vip}", {"all_down": "panic"}, "all_down"),
    ("PUT", "/vips/{vip}/flags", {"flags": ["no_conn_table", "fast"]}, "flags"),
])
def test_an_invalid_change_of_a_vip_is_422_and_changes_nothing(
        rest: Rest, method: str, path: str, body: object, field: str) -> None:
    vip_id = create_vip(rest.client, "10.100.0.5", 80, backends={"10.1.0.2": 1})
    before = rest.state()
    response = rest.client.request(method, path.format(vip=vip_id),
                                   **({} if body is None else {"json": body}))
    assert response.status_code == 422, response.text
    assert field in error_fields(response), response.text
    assert rest.state() == before


def test_a_vip_beyond_capacity_is_507_and_changes_nothing(rest: Rest) -> None:
    for port in range(MAX_VIPS):
        create_vip(rest.client, "10.100.1.1", 1000 + port)
    before = rest.state()
    response = rest.client.post("/vips", json={"address": "10.100.1.2", "port": 80})
    assert response.status_code == 507, response.text
    assert str(MAX_VIPS) in response.json()["detail"]
    assert rest.state() == before
    # Room is back once a VIP goes.
    check(rest.client.delete(f"/vips/{check(rest.client.get('/vips'), 200)[0]['id']}"), 204)
    create_vip(rest.client, "10.100.1.2", 80)
