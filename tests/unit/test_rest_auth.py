"""REST: with a token, every change needs `Authorization: Bearer <token>` (401 otherwise, and
nothing changes); reads never need it; without a token, changes need none."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from rest_helpers import TOKEN, Rest, check, create_vip, rest_api

from api.deps import get_token
from lb.client import Client

GOOD = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def secured(tmp_path) -> Iterator[Rest]:
    """An API created with a token, holding one VIP (id 1) with backend 10.1.0.2."""
    with rest_api(tmp_path, token=TOKEN) as r:
        check(r.client.put("/config", headers=GOOD, json={"vips": [
            {"address": "10.100.0.12", "port": 81, "backends": [{"address": "10.1.0.2"}]}]}),
            200)
        yield r


# One request of every state-changing kind on VIP 1, and its status when allowed.
CHANGES = [
    ("POST", "/vips", {"address": "10.100.0.13", "port": 80}, 201),
    ("PATCH", "/vips/1", {"slow_start_s": 1}, 200),
    ("PUT", "/vips/1/flags", {"flags": ["no_conn_table"]}, 200),
    ("POST", "/vips/1/backends", {"address": "10.1.1.2"}, 201),
    ("PATCH", "/vips/1/backends/10.1.0.2", {"weight": 3}, 200),
    ("DELETE", "/vips/1/backends/10.1.1.2", None, 204),
    ("PATCH", "/backends/10.1.0.2", {"drain": True}, 200),
    ("DELETE", "/backends/10.1.0.2", None, 200),
    ("DELETE", "/vips/1", None, 204),
    ("PUT", "/config", {"vips": []}, 200),
]
REFUSED = {"none": None, "wrong": "Bearer wrong-token", "no-scheme": TOKEN,
           "basic": f"Basic {TOKEN}", "longer": f"Bearer {TOKEN}x", "empty": "Bearer"}


@pytest.mark.parametrize("authorization", list(REFUSED.values()), ids=list(REFUSED))
def test_a_change_without_the_right_token_is_401_and_changes_nothing(
        secured: Rest, authorization: str | None) -> None:
    before = secured.state()
    headers = {} if authorization is None else {"Authorization": authorization}
    for method, path, body, _ in CHANGES:
        r = secured.client.request(method, path, headers=headers,
                                   **({} if body is None else {"json": body}))
        assert r.status_code == 401, f"{method} {path}: {r.status_code} {r.text}"
        assert r.headers["www-authenticate"] == "Bearer"
        assert "token" in r.json()["detail"]
    assert secured.state() == before


def test_the_token_is_checked_before_the_request_is(secured: Rest) -> None:
    """An invalid change, or one of a VIP that does not exist, is refused for want of the
    token before anything looks at it."""
    for method, path, body in [("POST", "/vips", {"address": "not-an-ip"}),
                               ("DELETE", "/vips/999", None),
                               ("DELETE", "/vips/1/backends/backend0", None)]:
        r = secured.client.request(method, path, **({} if body is None else {"json": body}))
        assert r.status_code == 401, f"{method} {path}: {r.status_code} {r.text}"


def test_every_change_with_the_token_is_applied(secured: Rest) -> None:
    for method, path, body, status in CHANGES:
        r = secured.client.request(method, path, headers=GOOD,
                                   **({} if body is None else {"json": body}))
        assert r.status_code == status, f"{method} {path}: {r.status_code} {r.text}"
    assert check(secured.client.get("/config"), 200) == {"vips": []}
    assert secured.kernel.vip_entries == {}


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/vips", "/vips/1",
                                  "/vips/1/backends", "/vips/1/stats", "/config", "/stats",
                                  "/health/schedule", "/metrics", "/openapi.json"])
def test_reads_need_no_token(secured: Rest, path: str) -> None:
    assert secured.client.get(path).status_code == 200


def test_without_a_token_changes_need_none(tmp_path) -> None:
    with rest_api(tmp_path) as rest:
        create_vip(rest.client, "10.100.0.12", 80, backends={"10.1.0.2": 1})
        assert rest.ring("10.100.0.12", 80) == {"10.1.0.2"}


def test_a_token_swapped_in_through_its_dependency_is_required(tmp_path) -> None:
    with rest_api(tmp_path) as rest:
        rest.app.dependency_overrides[get_token] = lambda: "another-token"
        check(rest.client.post("/vips", json={"address": "10.100.0.12", "port": 80}), 401)
        check(rest.client.post("/vips", json={"address": "10.100.0.12", "port": 80},
                               headers={"Authorization": "Bearer another-token"}), 201)
        rest.app.dependency_overrides.clear()
        check(rest.client.delete("/vips/1"), 204)


def test_every_operation_that_changes_state_is_documented_as_needing_the_token(
        secured: Rest) -> None:
    """The OpenAPI document says which operations need the bearer token: all but reads."""
    spec = check(secured.client.get("/openapi.json"), 200)
    operations = [(m, p, op) for p, ops in spec["paths"].items() for m, op in ops.items()]
    assert len(operations) == 23
    for method, path, op in operations:
        assert (op.get("security") == [{"HTTPBearer": []}]) == (method != "get"), (method, path)
    assert spec["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"


def test_a_token_with_non_ascii_characters_is_taken_as_utf8(tmp_path) -> None:
    token = "pässwört-ключ-🔑"
    with rest_api(tmp_path, token=token) as rest:
        before = rest.state()
        latin1 = {"Authorization": b"Bearer " + "pässwört".encode("latin-1")}
        assert rest.client.post("/vips", headers=latin1,
                                json={"address": "10.100.0.9", "port": 80}).status_code == 401
        assert rest.state() == before
        utf8 = {"Authorization": b"Bearer " + token.encode()}
        check(rest.client.post("/vips", headers=utf8,
                               json={"address": "10.100.0.9", "port": 80}), 201)
        # lb.client sends it so (httpx alone would refuse to encode it as ASCII).
        with Client("http://testserver", token=token,
                    transport=rest.client._transport) as api:
            assert api.delete_vip(1) is None
        assert check(rest.client.get("/vips"), 200) == []
