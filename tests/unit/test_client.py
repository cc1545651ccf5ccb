"""lb.client against a fake network (httpx.MockTransport): requests sent, answers decoded,
statuses mapped onto the error tree, the token sent."""

from __future__ import annotations

import json
from collections.abc import Callable

import httpx
import pytest

from lb.client import (
    ApiError,
    Client,
    ClientError,
    Refused,
    ServerError,
    Unreachable,
    error_messages,
)

URL = "http://lb.test:8470"


class Recorder:
    """A fake daemon: answers every request with `answer(request)` and keeps the requests."""

    def __init__(self, answer: Callable[[httpx.Request], httpx.Response]) -> None:
        self.answer = answer
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return self.answer(request)

    @property
    def last(self) -> httpx.Request:
        return self.requests[-1]

    def body(self) -> object:
        return json.loads(self.last.content) if self.last.content else None


def client(answer: Callable[[httpx.Request], httpx.Response], token: str | None = None
           ) -> tuple[Client, Recorder]:
    recorder = Recorder(answer)
    return Client(URL, token, timeout=5, transport=httpx.MockTransport(recorder)), recorder


def answering(status: int, body: object = None) -> Callable[[httpx.Request], httpx.Response]:
    return lambda _: (httpx.Response(status) if body is None
                      else httpx.Response(status, json=body))


VIP = {"id": 1, "address": "10.100.0.1", "port": 80, "protocol": "tcp", "flags": [],
       "backends": []}


def test_create_vip_sends_only_the_fields_given_and_returns_the_vip() -> None:
    api, sent = client(answering(201, VIP))
    assert api.create_vip("10.100.0.1", 80) == VIP
    assert (sent.last.method, sent.last.url.path) == ("POST", "/vips")
    assert sent.body() == {"address": "10.100.0.1", "port": 80}
    api.create_vip("10.100.0.1", 80, "udp", flags=[], slow_start_s=2.0)
    assert sent.body() == {"address": "10.100.0.1", "port": 80, "protocol": "udp",
                           "flags": [], "slow_start_s": 2.0}


@pytest.mark.parametrize("call, method, path, body", [
    (lambda a: a.list_vips(), "GET", "/vips", None),
    (lambda a: a.get_vip(3), "GET", "/vips/3", None),
    (lambda a: a.update_vip(3, all_down="drop"), "PATCH", "/vips/3", {"all_down": "drop"}),
    (lambda a: a.set_flags(3, ("no_conn_table",)), "PUT", "/vips/3/flags",
     {"flags": ["no_conn_table"]}),
    (lambda a: a.delete_vip(3), "DELETE", "/vips/3", None),
    (lambda a: a.list_backends(3), "GET", "/vips/3/backends", None),
    (lambda a: a.add_backend(3, "10.1.0.2"), "POST", "/vips/3/backends",
     {"address": "10.1.0.2"}),
    (lambda a: a.add_backend(3, "10.1.0.2", 2), "POST", "/vips/3/backends",
     {"address": "10.1.0.2", "weight": 2}),
    (lambda a: a.update_backend(3, "10.1.0.2", drain=True), "PATCH",
     "/vips/3/backends/10.1.0.2", {"drain": True}),
    (lambda a: a.remove_backend(3, "10.1.0.2"), "DELETE", "/vips/3/backends/10.1.0.2", None),
    (lambda a: a.stats(), "GET", "/stats", None),
    (lambda a: a.vip_stats(3), "GET", "/vips/3/stats", None),
    (lambda a: a.get_config(), "GET", "/config", None),
    (lambda a: a.put_config({"vips": []}), "PUT", "/config", {"vips": []}),
    (lambda a: a.check_schedule(), "GET", "/health/schedule", None),
    (lambda a: a.healthz(), "GET", "/healthz", None),
])
def test_each_operation_is_one_request(call, method, path, body) -> None:
    api, sent = client(answering(200, {"ok": True}))
    call(api)
    assert len(sent.requests) == 1
    assert (sent.last.method, sent.last.url.path, sent.body()) == (method, path, body)


def test_an_ipv6_backend_address_is_one_path_segment() -> None:
    api, sent = client(answering(204))
    assert api.remove_backend(3, "fd00:1::2") is None  # 204: no body
    assert sent.last.url.raw_path == b"/vips/3/backends/fd00%3A1%3A%3A2"


def test_list_backends_asks_for_conn_entries_only_when_told() -> None:
    api, sent = client(answering(200, []))
    api.list_backends(3, conn_entries=True)
    assert sent.last.url.params["conn_entries"] == "true"
    api.list_backends(3)
    assert "conn_entries" not in sent.last.url.params


def test_the_everywhere_operations_return_the_vip_ids() -> None:
    api, sent = client(answering(200, {"vips": [1, 4]}))
    assert api.update_backend_everywhere("10.1.0.2", drain=False) == [1, 4]
    assert (sent.last.method, sent.last.url.path, sent.body()) == (
        "PATCH", "/backends/10.1.0.2", {"drain": False})
    assert api.remove_backend_everywhere("10.1.0.2") == [1, 4]
    assert (sent.last.method, sent.last.url.path) == ("DELETE", "/backends/10.1.0.2")


def test_put_config_sends_an_encoded_document_as_it_is() -> None:
    report = {"vips_added": 1, "vips_removed": 0, "vips_changed": 0, "ring_slots_written": 7}
    api, sent = client(answering(200, report))
    text = b'{"vips": [ ]}'
    assert api.put_config(text) == report
    assert sent.last.content == text
    assert sent.last.headers["content-type"] == "application/json"


def test_readyz_answers_when_not_ready_and_metrics_is_text() -> None:
    api, _ = client(answering(503, {"ready": False, "problems": ["no XDP program on eth0"]}))
    assert api.readyz() == {"ready": False, "problems": ["no XDP program on eth0"]}
    api, _ = client(lambda _: httpx.Response(200, text="lb_packets_total 3\n"))
    assert api.metrics() == "lb_packets_total 3\n"


def test_the_token_goes_with_every_request_and_no_token_sends_none() -> None:
    api, sent = client(answering(200, []), token="s3cret")
    api.list_vips()
    api.delete_vip(1)
    assert [r.headers["authorization"] for r in sent.requests] == ["Bearer s3cret"] * 2
    api, sent = client(answering(200, []))
    api.list_vips()
    assert "authorization" not in sent.last.headers


@pytest.mark.parametrize("status, error", [(400, Refused), (401, Refused), (404, Refused),
                                           (409, Refused), (422, Refused),
                                           (500, ServerError), (503, ServerError)])
def test_error_statuses_map_onto_the_tree(status, error) -> None:
    api, _ = client(answering(status, {"detail": "VIP 9 does not exist"}))
    with pytest.raises(error) as caught:
        api.get_vip(9)
    e = caught.value
    assert isinstance(e, ApiError) and isinstance(e, ClientError)
    assert (e.status, e.detail, e.messages) == (status, "VIP 9 does not exist",
                                                ["VIP 9 does not exist"])
    assert str(e).startswith(f"{status} ")


def test_a_422_gives_one_message_per_field() -> None:
    detail = [{"loc": ["body", "vips", 0, "backends", 1, "weight"], "msg": "too big"},
              {"loc": ["body", "port"], "msg": "Value error, not a port"}]
    api, _ = client(answering(422, {"detail": detail}))
    with pytest.raises(Refused) as caught:
        api.put_config({"vips": []})
    assert caught.value.detail == detail
    assert caught.value.messages == ["vips[0].backends[1].weight: too big", "port: not a port"]


def test_an_error_without_a_json_detail_keeps_its_text() -> None:
    response = httpx.Response(502, text="bad gateway\n")
    assert error_messages(response) == ["bad gateway"]
    assert error_messages(httpx.Response(500)) == ["Internal Server Error"]


def test_no_answer_is_unreachable_with_the_reason() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("[Errno 111] Connection refused", request=request)

    def hang(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out", request=request)

    api, _ = client(refuse)
    with pytest.raises(Unreachable, match=f"cannot reach the API at {URL}: .*refused"):
        api.list_vips()
    api, _ = client(hang)
    with pytest.raises(Unreachable, match="no answer within 5 s") as caught:
        api.stats()
    assert isinstance(caught.value, ClientError) and not isinstance(caught.value, ApiError)


def test_a_context_manager_closes_the_connection_pool() -> None:
    with Client(URL, transport=httpx.MockTransport(answering(200, []))) as api:
        assert api.list_vips() == []
    assert api.http.is_closed
