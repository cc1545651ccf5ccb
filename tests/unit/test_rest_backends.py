"""REST: backends are added, listed, changed and removed, per VIP and everywhere at once, and
the VIP's ring in the kernel follows; a rejected request changes nothing."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator

import pytest
from rest_helpers import MAX_BACKENDS, Rest, check, create_vip, error_fields, rest_api


@pytest.fixture
def rest(tmp_path) -> Iterator[Rest]:
    with rest_api(tmp_path) as r:
        yield r


def test_backends_are_added_listed_reweighted_and_removed_in_the_ring(rest: Rest) -> None:
    api = rest.client
    vip_id = create_vip(api, "10.100.0.5", 80)
    added = check(api.post(f"/vips/{vip_id}/backends",
                           json={"address": "10.1.0.2", "weight": 3}), 201)
    assert added == {"address": "10.1.0.2", "weight": 3, "drain": False}
    # Weight defaults to 1; an IPv4 VIP takes IPv6 backends (4in6).
    added = check(api.post(f"/vips/{vip_id}/backends", json={"address": "fd00:1:1::2"}), 201)
    assert added == {"address": "fd00:1:1::2", "weight": 1, "drain": False}
    assert rest.ring("10.100.0.5", 80) == {"10.1.0.2", "fd00:1:1::2"}
    listed = check(api.get(f"/vips/{vip_id}/backends"), 200)
    assert [(b["address"], b["weight"], b["state"], b["in_ring"], b["effective_weight"])
            for b in listed] == [("10.1.0.2", 3, "unknown", True, 3),
                                 ("fd00:1:1::2", 1, "unknown", True, 1)]
    assert all(b["health"] is None and b["check"] is None for b in listed)
    assert all("conn_table_entries" not in b for b in listed)

    num = rest.vip_num("10.100.0.5", 80)
    ring = rest.kernel.read_ring(num)
    # The path's address is matched by value, not by spelling.
    changed = check(api.patch(f"/vips/{vip_id}/backends/fd00:1:1:0::2", json={"weight": 12}),
                    200)
    assert changed == {"address": "fd00:1:1::2", "weight": 12, "drain": False}
    assert rest.kernel.read_ring(num) != ring

    assert api.delete(f"/vips/{vip_id}/backends/10.1.0.2").status_code == 204
    assert rest.ring("10.100.0.5", 80) == {"fd00:1:1::2"}
    assert [b["address"] for b in check(api.get(f"/vips/{vip_id}"), 200)["backends"]] == [
        "fd00:1:1::2"]


def test_a_draining_backend_leaves_the_ring_and_shows_its_table_entries(rest: Rest) -> None:
    api = rest.client
    vip_id = create_vip(api, "10.100.0.5", 80, backends={"10.1.0.2": 1, "10.1.0.3": 1})
    check(api.patch(f"/vips/{vip_id}/backends/10.1.0.3", json={"drain": True}), 200)
    assert rest.ring("10.100.0.5", 80) == {"10.1.0.2"}
    index = rest.controller.balancer.backend_index(ipaddress.ip_address("10.1.0.3"))
    rest.kernel.conn.update({("flow-a",): index, ("flow-b",): index})
    listed = {b["address"]: b for b in check(api.get(f"/vips/{vip_id}/backends"), 200)}
    assert listed["10.1.0.3"]["state"] == "draining"
    assert listed["10.1.0.3"]["conn_table_entries"] == 2
    assert "conn_table_entries" not in listed["10.1.0.2"]
    asked = check(api.get(f"/vips/{vip_id}/backends", params={"conn_entries": "true"}), 200)
    assert [b["conn_table_entries"] for b in asked] == [0, 2]


def test_a_backend_changes_and_leaves_every_vip_in_one_request(rest: Rest) -> None:
    api = rest.client
    first = create_vip(api, "10.100.0.5", 80, backends={"10.1.0.2": 1, "10.1.0.3": 1})
    second = create_vip(api, "10.100.0.5", 81, backends={"10.1.0.2": 1})
    third = create_vip(api, "10.100.0.5", 82, backends={"10.1.0.3": 1})
    assert check(api.patch("/backends/10.1.0.2", json={"drain": True}), 200) == {
        "vips": [first, second]}
    assert rest.ring("10.100.0.5", 80) == {"10.1.0.3"} and rest.ring("10.100.0.5", 81) == set()
    assert check(api.delete("/backends/10.1.0.3"), 200) == {"vips": [first, third]}
    assert rest.ring("10.100.0.5", 80) == set() and rest.ring("10.100.0.5", 82) == set()
    check(api.delete("/backends/10.1.0.3"), 404)


@pytest.mark.parametrize(("method", "path", "body"), [
    ("GET", "/vips/999/backends", None),
    ("POST", "/vips/999/backends", {"address": "10.1.0.2"}),
    ("PATCH", "/vips/999/backends/10.1.0.2", {"weight": 2}),
    ("PATCH", "/vips/{vip}/backends/10.1.1.2", {"weight": 2}),
    ("DELETE", "/vips/999/backends/10.1.0.2", None),
    ("DELETE", "/vips/{vip}/backends/10.1.1.2", None),
    ("PATCH", "/backends/10.1.1.2", {"drain": True}),
    ("DELETE", "/backends/10.1.1.2", None),
])
def test_an_unknown_vip_or_backend_is_404_and_changes_nothing(
        rest: Rest, method: str, path: str, body: object) -> None:
    vip_id = create_vip(rest.client, "10.100.0.5", 80, backends={"10.1.0.2": 1})
    before = rest.state()
    response = rest.client.request(method, path.format(vip=vip_id),
                                   **({} if body is None else {"json": body}))
    assert response.status_code == 404, response.text
    assert response.json()["detail"].startswith("no ")
    assert rest.state() == before


def test_a_backend_already_in_the_vip_is_409_and_changes_nothing(rest: Rest) -> None:
    vip_id = create_vip(rest.client, "fd00:100::7", 443, backends={"fd00:1::2": 2})
    before = rest.state()
    response = rest.client.post(f"/vips/{vip_id}/backends",
                                json={"address": "fd00:1:0::2", "weight": 5})
    assert response.status_code == 409, response.text
    assert rest.state() == before


# (method, path, JSON body, the field the answer must name); {vip} / {vip6} exist.
INVALID = [
    ("POST", "/vips/{vip}/backends", {"address": "10.1.0.999"}, "address"),
    ("POST", "/vips/{vip}/backends", {"address": "10.1.2.2", "weight": 0}, "weight"),
    ("POST", "/vips/{vip}/backends", {"address": "10.1.2.2", "weight": 1.5}, "weight"),
    ("POST", "/vips/{vip}/backends", {"address": "10.1.2.2", "weight": 65536}, "weight"),
    ("POST", "/vips/{vip}/backends", {"address": "10.1.2.2", "port": 80}, "port"),
    ("PATCH", "/vips/{vip}/backends/10.1.0.2", {"weight": 0}, "weight"),
    ("PATCH", "/vips/{vip}/backends/10.1.0.2", {}, "weight and/or drain"),
    ("PATCH", "/vips/{vip}/backends/10.1.0.2", {"weight": 2, "address": "10.1.1.2"},
     "address"),
    ("PATCH", "/vips/{vip}/backends/10.1.0.256", {"weight": 2}, "address"),
    ("DELETE", "/vips/{vip}/backends/backend0", None, "address"),
    ("PATCH", "/backends/backend0", {"drain": True}, "address"),
    ("DELETE", "/backends/10.1.0.256", None, "address"),
]


@pytest.mark.parametrize(("method", "path", "body", "field"), INVALID,
                         ids=[f"{m}-{p}-{f}" for m, p, _, f in INVALID])
def test_an_invalid_backend_request_is_422_naming_the_field_and_changes_nothing(
        rest: Rest, method: str, path: str, body: object, field: str) -> None:
    vips = {"vip": create_vip(rest.client, "10.100.0.6", 80, backends={"10.1.0.2": 1}),
            "vip6": create_vip(rest.client, "fd00:100::6", 80)}
    before = rest.state()
    response = rest.client.request(method, path.format(**vips),
                                   **({} if body is None else {"json": body}))
    assert response.status_code == 422, response.text
    assert field in error_fields(response), response.text
    assert rest.state() == before


def test_a_backend_beyond_capacity_is_507_and_changes_nothing(rest: Rest) -> None:
    full = {f"10.2.0.{i + 1}": 1 for i in range(MAX_BACKENDS)}
    first = create_vip(rest.client, "10.100.0.8", 80, backends=full)
    second = create_vip(rest.client, "10.100.0.8", 81)
    before = rest.state()
    for vip_id in (first, second):
        response = rest.client.post(f"/vips/{vip_id}/backends", json={"address": "10.3.0.1"})
        assert response.status_code == 507, response.text
    assert rest.state() == before
    # A backend already in use elsewhere takes no new slot.
    check(rest.client.post(f"/vips/{second}/backends", json={"address": "10.2.0.1"}), 201)
