"""REST: every error answers one shape (an RFC 9457 problem naming what is wrong), whatever
the body sent: non-finite numbers, bytes that are not UTF-8, JSON nested 1,000 levels; the
OpenAPI document lists each operation's error statuses; a 405 says which methods are allowed.
A refused request changes nothing."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from rest_helpers import Rest, assert_problem, check, create_vip, rest_api

JSON = {"content-type": "application/json"}


@pytest.fixture
def rest(tmp_path) -> Iterator[Rest]:
    with rest_api(tmp_path) as r:
        yield r


@pytest.mark.parametrize(("path", "body", "field"), [
    ("/vips", b'{"address": "10.100.1.1", "port": NaN}', "port"),
    ("/vips", b'{"address": "10.100.1.1", "port": Infinity}', "port"),
    ("/vips", b'{"address": "10.100.1.1", "port": -Infinity}', "port"),
    ("/vips", b'{"address": "10.100.1.1", "port": 1e400}', "port"),
    ("/vips", b'{"address": "10.100.1.1", "port": 80, "slow_start_s": NaN}', "slow_start_s"),
    ("/config", b'{"vips": [{"address": "10.100.1.1", "port": 80, "backends": '
                b'[{"address": "10.0.0.1", "weight": NaN}]}]}', "vips[0].backends[0].weight"),
])
def test_a_non_finite_number_answers_422_naming_the_field(
        rest: Rest, path: str, body: bytes, field: str) -> None:
    before = rest.state()
    method = "PUT" if path == "/config" else "POST"
    response = rest.client.request(method, path, content=body, headers=JSON)
    assert response.status_code == 422, response.text
    problem = assert_problem(response)
    assert field in [e["field"] for e in problem["errors"]], problem
    assert field in problem["detail"]
    assert rest.state() == before


@pytest.mark.parametrize(("body", "says"), [
    (b'{"address": "10.100.1.1", "port": 80, "protocol": "\xff\xfe"}', "UTF-8"),
    (b"\xff\xfe{}", "UTF-8"),
    (b"[" * 1000 + b"]" * 1000, "JSON"),
    (b'{"address": "10.100.1.1", "port": 80', "JSON"),
])
def test_an_unreadable_body_answers_saying_what_is_wrong_with_it(
        rest: Rest, body: bytes, says: str) -> None:
    before = rest.state()
    response = rest.client.post("/vips", content=body, headers=JSON)
    assert response.status_code in (400, 422), response.text
    problem = assert_problem(response)
    assert "body" in problem["detail"] and says in problem["detail"], problem
    assert rest.state() == before


@pytest.mark.parametrize(("method", "path", "status"), [
    ("DELETE", "/backends/0", 422),  # the controller's InvalidInput
    ("GET", "/vips/999", 404),
    ("GET", "/vips/abc", 422),  # FastAPI's validation
    ("GET", "/no/such/route", 404),
    ("POST", "/vips", 422),  # no body
])
def test_every_error_has_the_one_problem_shape(
        rest: Rest, method: str, path: str, status: int) -> None:
    response = rest.client.request(method, path)
    assert response.status_code == status, response.text
    assert_problem(response)


def test_a_domain_error_is_a_problem_naming_what_is_wrong(rest: Rest) -> None:
    """(Either family of backend is accepted since 6in4 is supported: the domain error here is
    a backend added twice.)"""
    vip = create_vip(rest.client, "fd00:100::1", 80)
    assert rest.client.post(f"/vips/{vip}/backends", json={"address": "10.0.0.1"}
                            ).status_code == 201
    before = rest.state()
    response = rest.client.post(f"/vips/{vip}/backends", json={"address": "10.0.0.1"})
    assert response.status_code == 409
    assert "10.0.0.1" in assert_problem(response)["detail"]
    assert rest.state() == before


def test_a_405_lists_every_method_the_path_allows(rest: Rest) -> None:
    response = rest.client.request("PUT", "/vips")
    assert response.status_code == 405
    assert set(response.headers["allow"].split(", ")) == {"GET", "POST"}
    assert_problem(response)
    response = rest.client.request("POST", "/vips/1")
    assert set(response.headers["allow"].split(", ")) == {"GET", "PATCH", "DELETE"}


def test_the_openapi_document_lists_each_operations_error_statuses(rest: Rest) -> None:
    doc = check(rest.client.get("/openapi.json"), 200)
    ops = {(m.upper(), p): op for p, item in doc["paths"].items() for m, op in item.items()}
    expected = {("POST", "/vips"): {"401", "409", "413", "422", "507"},
                ("PUT", "/config"): {"401", "409", "413", "422", "507"},
                ("GET", "/vips/{vip_id}"): {"404", "422"},
                ("DELETE", "/vips/{vip_id}/backends/{address}"): {"401", "404", "422"},
                ("POST", "/vips/{vip_id}/backends"): {"401", "404", "409", "413", "422",
                                                      "507"}}
    for op, statuses in expected.items():
        assert statuses <= set(ops[op]["responses"]), (op, ops[op]["responses"].keys())
    for op in ops.values():
        for code, answer in op["responses"].items():
            if int(code) >= 400:
                schema = answer["content"]["application/problem+json"]["schema"]
                assert schema == {"$ref": "#/components/schemas/Problem"}, (code, answer)
