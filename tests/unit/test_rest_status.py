"""REST: liveness, readiness, statistics and metrics read what the kernel holds; the OpenAPI
document describes every endpoint and its answer; each domain error has its one status."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator

import pytest
from rest_helpers import Rest, assert_problem, check, create_vip, ready, rest_api

from api.deps import get_controller, get_readiness
from api.errors import ERROR_STATUS
from lb.control.errors import (
    AlreadyExists,
    BalancerError,
    CapacityError,
    InvalidInput,
    NotFound,
)

# Every path and its methods (tests/api/test_api_contract.py checks the same of the daemon).
ENDPOINTS = {
    "/healthz": {"get"},
    "/readyz": {"get"},
    "/metrics": {"get"},
    "/health/schedule": {"get"},
    "/stats": {"get"},
    "/fleet": {"get"},
    "/vips": {"get", "post"},
    "/vips/{vip_id}": {"get", "delete", "patch"},
    "/vips/{vip_id}/flags": {"put"},
    "/vips/{vip_id}/stats": {"get"},
    "/vips/{vip_id}/backends": {"get", "post"},
    "/vips/{vip_id}/backends/{address}": {"patch", "delete"},
    "/backends/{address}": {"patch", "delete"},
    "/config": {"get", "put"},
    "/trace": {"get"},
    "/events": {"get"},
}


@pytest.fixture
def rest(tmp_path) -> Iterator[Rest]:
    with rest_api(tmp_path) as r:
        yield r


def test_healthz_answers_ok(rest: Rest) -> None:
    assert check(rest.client.get("/healthz"), 200) == {"status": "ok"}


def test_readyz_answers_the_daemons_readiness(rest: Rest) -> None:
    assert check(rest.client.get("/readyz"), 200) == ready()


def test_readyz_is_503_with_the_problems_when_not_ready(rest: Rest) -> None:
    detached = {**ready(), "ready": False, "mode": None, "problems": ["no XDP program on eth0"]}
    rest.app.dependency_overrides[get_readiness] = lambda: (lambda: detached)
    response = rest.client.get("/readyz")
    assert response.status_code == 503, response.text
    assert response.json() == detached
    check(rest.client.get("/healthz"), 200)


def test_stats_group_the_kernels_counters(rest: Rest) -> None:
    rest.kernel.counter_values.update(tx=7, ct_miss=3, drop_no_backend=2, pass_not_ip=5,
                                      ct_miss_nonsyn=1, drop_l4_malformed=4)
    stats = check(rest.client.get("/stats"), 200)
    assert set(stats) == {"totals", "conn_table", "pass_reasons", "drop_reasons"}
    assert (stats["totals"]["tx"], stats["conn_table"]["miss"],
            stats["drop_reasons"]["no_backend"], stats["pass_reasons"]["not_ip"]) == (7, 3, 2, 5)
    assert (stats["conn_table"]["miss_nonsyn"], stats["drop_reasons"]["l4_malformed"]) == (1, 4)


def test_vip_stats_give_each_backends_traffic_and_ring_slots(rest: Rest) -> None:
    vip_id = create_vip(rest.client, "10.100.0.5", 80, backends={"10.1.0.2": 1, "10.1.0.3": 2})
    num = rest.vip_num("10.100.0.5", 80)
    first, second = (rest.controller.balancer.backend_index(ipaddress.ip_address(a))
                     for a in ("10.1.0.2", "10.1.0.3"))
    rest.kernel.vip_traffic[num] = (10, 1000)
    rest.kernel.vip_misses[num] = 3
    rest.kernel.backend_traffic[second] = (4, 400)
    stats = check(rest.client.get(f"/vips/{vip_id}/stats"), 200)
    ring = rest.kernel.read_ring(num)
    assert stats == {"id": vip_id, "packets": 10, "bytes": 1000, "ct_miss_nonsyn": 3,
                     "ring_size": len(ring),
                     "backends": [
                         {"address": "10.1.0.2", "weight": 1, "packets": 0, "bytes": 0,
                          "ring_slots": ring.count(first)},
                         {"address": "10.1.0.3", "weight": 2, "packets": 4, "bytes": 400,
                          "ring_slots": ring.count(second)}]}
    assert ring.count(first) + ring.count(second) == len(ring)
    check(rest.client.get("/vips/999/stats"), 404)


def test_metrics_expose_the_kernel_counters_and_requests_by_route(rest: Rest) -> None:
    vip_id = create_vip(rest.client, "10.100.0.5", 80, backends={"10.1.0.2": 1})
    check(rest.client.get(f"/vips/{vip_id}/backends"), 200)
    rest.kernel.vip_traffic[rest.vip_num("10.100.0.5", 80)] = (9, 900)
    rest.kernel.vip_misses[rest.vip_num("10.100.0.5", 80)] = 2
    rest.kernel.counter_values.update(ct_miss_nonsyn=2, drop_l4_malformed=1)
    response = rest.client.get("/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert 'lb_vip_packets_total{vip="10.100.0.5:80/tcp"} 9.0' in text, text
    assert 'lb_vip_ct_miss_nonsyn_total{vip="10.100.0.5:80/tcp"} 2.0' in text, text
    assert 'lb_conn_table_total{result="miss_nonsyn"} 2.0' in text, text
    assert 'lb_drop_reasons_total{reason="l4_malformed"} 1.0' in text, text
    assert 'lb_backends{state="unknown"} 1.0' in text, text
    # Requests are counted by route template, not by path (ids stay out of the labels).
    assert 'route="/vips/{vip_id}/backends",status="200"' in text, text


def test_the_probe_schedule_is_empty_without_health_checks(rest: Rest) -> None:
    assert check(rest.client.get("/health/schedule"), 200) == []


def test_openapi_documents_every_endpoint_and_what_it_answers(rest: Rest) -> None:
    spec = check(rest.client.get("/openapi.json"), 200)
    assert {p: set(ops) for p, ops in spec["paths"].items()} == ENDPOINTS
    schemas = spec["components"]["schemas"]
    assert {"VipSpec", "VipUpdate", "VipView", "BackendSpec", "BackendUpdate", "BackendStatus",
            "ConfigDocument", "ApplyReport", "CheckSpec", "Readiness", "Stats",
            "VipStats"} <= set(schemas)
    assert schemas["VipSpec"].get("additionalProperties") is False
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            (code, answer), = ((c, a) for c, a in op["responses"].items() if c.startswith("2"))
            if code == "204" or path == "/metrics":
                continue
            schema = answer["content"]["application/json"]["schema"]
            assert "$ref" in schema or "$ref" in schema.get("items", {}), (method, path, schema)


class _Raising:
    """A controller stand-in whose get_vip raises `error` (swapped in for the real one)."""

    def __init__(self, error: BalancerError) -> None:
        self.error = error

    def get_vip(self, vip_id: int) -> None:
        raise self.error


class _Unlisted(BalancerError):
    pass


class _Missing(NotFound):
    pass


@pytest.mark.parametrize(("error", "status"), [
    (NotFound("no VIP with id 1"), 404),
    (AlreadyExists("VIP exists"), 409),
    (InvalidInput("weight: must be positive"), 422),
    (CapacityError("all 4 VIPs are in use"), 507),
    (_Missing("a subclass takes its base's status"), 404),
    (_Unlisted("any other error of the service"), 400),
], ids=lambda v: type(v).__name__ if isinstance(v, Exception) else str(v))
def test_each_domain_error_answers_its_status_with_its_message(
        rest: Rest, error: BalancerError, status: int) -> None:
    rest.app.dependency_overrides[get_controller] = lambda: _Raising(error)
    response = rest.client.get("/vips/1")
    assert response.status_code == status
    assert assert_problem(response)["detail"] == str(error)


def test_the_error_table_names_every_error_of_the_service() -> None:
    errors, todo = set(), [BalancerError]
    while todo:  # the whole tree, not only the first level
        e = todo.pop()
        if e.__module__.startswith("lb."):
            errors.add(e)
            todo.extend(e.__subclasses__())
    assert set(ERROR_STATUS) == errors
