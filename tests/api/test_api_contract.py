"""The REST contract: every endpoint's answer, every error status, and that a rejected request
changes nothing (neither the desired state nor what the data plane does with packets)."""

from __future__ import annotations

import pytest
from api_helpers import (
    assert_problem,
    check,
    create_vip,
    daemon_state,
    error_fields,
    predict,
    route_flows,
    unchanged,
    vip_doc,
)

from lb.lab.veth import VethLab
from lb.lab.waits import wait_until
from lb.netns import in_netns
from lb.xdp import loader

ENDPOINTS = {
    "/healthz": {"get"},
    "/readyz": {"get"},
    "/vips": {"get", "post"},
    "/vips/{vip_id}": {"get", "delete", "patch"},
    "/vips/{vip_id}/flags": {"put"},
    "/vips/{vip_id}/backends": {"get", "post"},
    "/vips/{vip_id}/backends/{address}": {"patch", "delete"},
    "/stats": {"get"},
    "/fleet": {"get"},
    "/vips/{vip_id}/stats": {"get"},
    "/config": {"get", "put"},
    "/trace": {"get"},
    "/events": {"get"},
    "/backends/{address}": {"patch", "delete"},
    "/metrics": {"get"},
}
# The LabDaemon's sizes: 16 VIPs, 64 backend slots of which slot 0 means "none".
MAX_VIPS, MAX_BACKENDS = 16, 63


def _backends(n: int, start: int = 0) -> dict[str, int]:
    """n distinct backend addresses (no need to exist for the API) with weight 1."""
    return {f"10.2.{(start + i) // 200}.{(start + i) % 200 + 1}": 1 for i in range(n)}


def test_healthz_answers_ok(api) -> None:
    assert check(api.get("/healthz"), 200) == {"status": "ok"}


def test_readyz_reports_the_attached_program_its_mode_and_startup(api, daemon) -> None:
    body = check(api.get("/readyz"), 200)
    assert body["ready"] is True and body["problems"] == []
    assert body["mode"] == "native"
    assert body["interface"] == daemon.lab.balancer.ifname
    assert body["pin_dir"] == str(daemon.pin_dir)
    assert set(body["startup"]) >= {"adopted_vips", "vips_added", "vips_removed",
                                    "vips_changed", "ring_slots_written"}


def test_readyz_is_503_naming_the_problem_when_the_program_is_detached(api, daemon) -> None:
    lab = daemon.lab
    try:
        with in_netns(lab.balancer.netns):
            loader.detach(lab.balancer.ifindex)
        response = api.get("/readyz")
        assert response.status_code == 503, response.text
        body = response.json()
        assert body["ready"] is False and body["mode"] is None
        assert any(lab.balancer.ifname in p for p in body["problems"]), body["problems"]
        check(api.get("/healthz"), 200)
    finally:
        ready = daemon.restart()  # attaches again, with the maps (and state) it had
    assert ready["ready"] and ready["mode"] == "native"


def test_openapi_documents_every_endpoint(api) -> None:
    spec = check(api.get("/openapi.json"), 200)
    paths = {path: set(ops) for path, ops in spec["paths"].items()}
    for path, methods in ENDPOINTS.items():
        assert methods <= paths.get(path, set()), f"{path}: documented {paths.get(path)}"
    schemas = spec["components"]["schemas"]
    assert {"VipSpec", "BackendSpec", "ConfigDocument", "VipView", "CheckSpec"} <= set(schemas)
    assert schemas["VipSpec"].get("additionalProperties") is False


def test_vip_is_created_listed_read_and_deleted(api) -> None:
    body = check(api.post("/vips", json={"address": "10.100.0.5", "port": 8080,
                                         "protocol": "udp",
                                         "flags": ["no_conn_table", "hash_no_src_port"]}), 201)
    vip_id = body["id"]
    assert {k: body[k] for k in ("address", "port", "protocol", "flags", "backends")} == {
        "address": "10.100.0.5", "port": 8080, "protocol": "udp",
        "flags": ["hash_no_src_port", "no_conn_table"], "backends": []}
    # Protocol defaults to tcp; the address comes back in canonical form.
    other = check(api.post("/vips", json={"address": "FD00:100:0::5", "port": 0}), 201)
    assert (other["address"], other["protocol"]) == ("fd00:100::5", "tcp")
    got = check(api.get(f"/vips/{vip_id}"), 200)
    assert {k: got[k] for k in body} == body
    assert [v["id"] for v in check(api.get("/vips"), 200)] == [vip_id, other["id"]]

    assert api.delete(f"/vips/{vip_id}").status_code == 204
    check(api.get(f"/vips/{vip_id}"), 404)
    check(api.delete(f"/vips/{vip_id}"), 404)
    assert [v["id"] for v in check(api.get("/vips"), 200)] == [other["id"]]
    # Ids are never reused: the same VIP created again is a new VIP.
    again = check(api.post("/vips", json={"address": "10.100.0.5", "port": 8080,
                                          "protocol": "udp"}), 201)
    assert again["id"] > other["id"]


def test_backends_are_added_listed_reweighted_and_removed(api, lb_api) -> None:
    vip_id = create_vip(lb_api, "10.100.0.5", 80)

    def backends() -> list[tuple[str, int]]:
        return [(b["address"], b["weight"])
                for b in check(api.get(f"/vips/{vip_id}/backends"), 200)]

    added = check(api.post(f"/vips/{vip_id}/backends",
                           json={"address": "10.1.0.2", "weight": 3}), 201)
    assert (added["address"], added["weight"]) == ("10.1.0.2", 3)
    # Weight defaults to 1; IPv4 VIPs take IPv6 backends too (4in6).
    added = check(api.post(f"/vips/{vip_id}/backends", json={"address": "fd00:1:1::2"}), 201)
    assert (added["address"], added["weight"]) == ("fd00:1:1::2", 1)
    assert backends() == [("10.1.0.2", 3), ("fd00:1:1::2", 1)]

    changed = check(api.patch(f"/vips/{vip_id}/backends/10.1.0.2", json={"weight": 7}), 200)
    assert (changed["address"], changed["weight"]) == ("10.1.0.2", 7)
    # The path address is matched by value, not by spelling.
    check(api.patch(f"/vips/{vip_id}/backends/fd00:1:1:0::2", json={"weight": 2}), 200)
    assert [(b["address"], b["weight"]) for b in check(api.get(f"/vips/{vip_id}"), 200)[
        "backends"]] == [("10.1.0.2", 7), ("fd00:1:1::2", 2)]

    assert api.delete(f"/vips/{vip_id}/backends/10.1.0.2").status_code == 204
    assert backends() == [("fd00:1:1::2", 2)]
    check(api.delete(f"/vips/{vip_id}/backends/10.1.0.2"), 404)


def test_vip_flags_are_replaced(api, lb_api) -> None:
    vip_id = create_vip(lb_api, "10.100.0.5", 80, flags=["no_conn_table"])
    body = check(api.put(f"/vips/{vip_id}/flags", json={"flags": ["hash_no_src_port"]}), 200)
    assert body["flags"] == ["hash_no_src_port"]
    assert check(api.get(f"/vips/{vip_id}"), 200)["flags"] == ["hash_no_src_port"]


def test_stats_count_the_packets_sent_for_a_vip_and_its_backends(api, lb_api, api_lab: VethLab
                                                                  ) -> None:
    vip, port = api_lab.vips_v4()[4], 7200
    vip_id = create_vip(lb_api, vip, port, "udp", backends={b.v4: 1 for b in api_lab.backends})
    before_vip, before = check(api.get(f"/vips/{vip_id}/stats"), 200), check(api.get("/stats"), 200)
    assert set(before) == {"totals", "conn_table", "pass_reasons", "drop_reasons"}
    assert {"pass", "drop", "tx", "redirect"} <= set(before["totals"])
    assert {"no_backend", "too_big", "fragment"} <= set(before["drop_reasons"])

    flows = 60
    route_flows(api_lab, vip, port, range(20000, 20000 + flows))
    assert wait_until(lambda: api.get(f"/vips/{vip_id}/stats").json()["packets"]
                      - before_vip["packets"] == flows)
    after_vip, after = check(api.get(f"/vips/{vip_id}/stats"), 200), check(api.get("/stats"), 200)
    assert after_vip["id"] == vip_id and after_vip["bytes"] > before_vip["bytes"]
    per_backend = [a["packets"] - b["packets"]
                   for a, b in zip(after_vip["backends"], before_vip["backends"], strict=True)]
    assert [b["address"] for b in after_vip["backends"]] == [str(b.v4) for b in api_lab.backends]
    assert sum(per_backend) == flows and all(n > 0 for n in per_backend), per_backend
    assert after["totals"]["tx"] - before["totals"]["tx"] >= flows
    assert after["conn_table"]["miss"] - before["conn_table"]["miss"] >= flows


# --- 422: invalid input, the field named --------------------------------------------------
# (method, path, JSON body, field the message must name); {vip} / {vip6} are existing VIPs.
INVALID = [
    ("post", "/vips", {"address": "10.100.0.300", "port": 80}, "address"),
    ("post", "/vips", {"address": "not-an-ip", "port": 80}, "address"),
    ("post", "/vips", {"address": "10.100.0.7", "port": 65536}, "port"),
    ("post", "/vips", {"address": "10.100.0.7", "port": -1}, "port"),
    ("post", "/vips", {"address": "10.100.0.7", "port": "80"}, "port"),
    ("post", "/vips", {"address": "10.100.0.7"}, "port"),
    ("post", "/vips", {"address": "10.100.0.7", "port": 80, "protocol": "icmp"}, "protocol"),
    ("post", "/vips", {"address": "10.100.0.7", "port": 80, "flags": ["bogus"]}, "flags"),
    ("post", "/vips", {"address": "10.100.0.7", "port": 80, "colour": "red"}, "colour"),
    ("post", "/vips/{vip}/backends", {"address": "10.1.0.999"}, "address"),
    ("post", "/vips/{vip}/backends", {"address": "10.1.2.2", "weight": 0}, "weight"),
    ("post", "/vips/{vip}/backends", {"address": "10.1.2.2", "weight": -5}, "weight"),
    ("post", "/vips/{vip}/backends", {"address": "10.1.2.2", "weight": 1.5}, "weight"),
    ("post", "/vips/{vip}/backends", {"address": "10.1.2.2", "weight": 65536}, "weight"),
    ("post", "/vips/{vip}/backends", {"address": "10.1.2.2", "port": 80}, "port"),
    ("patch", "/vips/{vip}/backends/10.1.0.2", {"weight": 0}, "weight"),
    ("patch", "/vips/{vip}/backends/10.1.0.2", {"weight": 2, "address": "10.1.1.2"}, "address"),
    ("patch", "/vips/{vip}/backends/10.1.0.256", {"weight": 2}, "address"),
    ("delete", "/vips/{vip}/backends/backend0", None, "address"),
    ("put", "/vips/{vip}/flags", {"flags": ["no_conn_table", "fast"]}, "flags"),
    ("get", "/vips/first", None, "vip_id"),
    ("put", "/config", {"vips": [vip_doc("10.100.0.9", 80, backends={"10.1.0.2": 1}),
                                 vip_doc("10.100.0.9", 81, backends={"10.1.1.2": 0})]},
     "vips.1.backends.0.weight"),
]


@pytest.fixture
def two_vips(api, lb_api, api_lab: VethLab) -> dict[str, int]:
    """An IPv4 VIP with one backend and an IPv6 VIP with none: what INVALID's paths name."""
    return {"vip": create_vip(lb_api, "10.100.0.6", 80, backends={"10.1.0.2": 1}),
            "vip6": create_vip(lb_api, "fd00:100::6", 80)}


@pytest.mark.parametrize(("method", "path", "body", "field"), INVALID,
                         ids=[f"{m}-{p}-{f}-{i}" for i, (m, p, _, f) in enumerate(INVALID)])
def test_invalid_input_is_422_naming_the_field_and_changes_nothing(
        api, daemon, two_vips, method: str, path: str, body: object, field: str) -> None:
    kwargs = {} if body is None else {"json": body}
    with unchanged(daemon):
        response = api.request(method.upper(), path.format(**two_vips), **kwargs)
    assert response.status_code == 422, response.text
    assert field in error_fields(response), f"the answer does not name {field}: {response.text}"


# --- 404, 409 -----------------------------------------------------------------------------
NOT_FOUND = [
    ("get", "/vips/{missing}", None),
    ("delete", "/vips/{missing}", None),
    ("get", "/vips/{missing}/backends", None),
    ("post", "/vips/{missing}/backends", {"address": "10.1.0.2"}),
    ("put", "/vips/{missing}/flags", {"flags": []}),
    ("get", "/vips/{missing}/stats", None),
    ("patch", "/vips/{missing}/backends/10.1.0.2", {"weight": 2}),
    ("patch", "/vips/{vip}/backends/10.1.1.2", {"weight": 2}),
    ("delete", "/vips/{missing}/backends/10.1.0.2", None),
    ("delete", "/vips/{vip}/backends/10.1.1.2", None),
]


@pytest.mark.parametrize(("method", "path", "body"), NOT_FOUND,
                         ids=[f"{m}-{p}" for m, p, _ in NOT_FOUND])
def test_unknown_vip_or_backend_is_404_and_changes_nothing(api, daemon, two_vips, method: str,
                                                           path: str, body: object) -> None:
    kwargs = {} if body is None else {"json": body}
    with unchanged(daemon):
        response = api.request(method.upper(), path.format(missing=10**9, **two_vips),
                               **kwargs)
    assert response.status_code == 404, response.text
    assert assert_problem(response)["detail"]


def test_duplicate_vip_or_backend_is_409_and_changes_nothing(api, lb_api, daemon) -> None:
    vip_id = create_vip(lb_api, "fd00:100::7", 443, backends={"fd00:1::2": 2})
    with unchanged(daemon):
        # The same VIP, spelt differently: still the same (address, port, protocol).
        check(api.post("/vips", json={"address": "fd00:100:0:0::7", "port": 443}), 409)
        check(api.post(f"/vips/{vip_id}/backends",
                       json={"address": "fd00:1:0::2", "weight": 5}), 409)
    # Another port or protocol of the same address is another VIP.
    create_vip(lb_api, "fd00:100::7", 443, "udp")
    create_vip(lb_api, "fd00:100::7", 444)


# --- 507: capacity ------------------------------------------------------------------------
def test_vip_beyond_capacity_is_507_and_changes_nothing(api, lb_api, daemon) -> None:
    full = {"vips": [vip_doc("10.100.1.1", 1000 + i) for i in range(MAX_VIPS)]}
    check(api.put("/config", json=full), 200)
    with unchanged(daemon):
        response = api.post("/vips", json={"address": "10.100.1.2", "port": 80})
        assert response.status_code == 507, response.text
        assert str(MAX_VIPS) in assert_problem(response)["detail"]
        over = {"vips": [*full["vips"], vip_doc("10.100.1.2", 80)]}
        check(api.put("/config", json=over), 507)
    # Room is back once a VIP goes.
    check(api.delete(f"/vips/{check(api.get('/vips'), 200)[0]['id']}"), 204)
    create_vip(lb_api, "10.100.1.2", 80)


def test_backend_beyond_capacity_is_507_and_changes_nothing(api, daemon) -> None:
    full = {"vips": [vip_doc("10.100.0.8", 80, backends=_backends(MAX_BACKENDS)),
                     vip_doc("10.100.0.8", 81)]}
    check(api.put("/config", json=full), 200)
    first, second = (v["id"] for v in check(api.get("/vips"), 200))
    with unchanged(daemon):
        response = api.post(f"/vips/{first}/backends", json={"address": "10.3.0.1"})
        assert response.status_code == 507, response.text
        check(api.post(f"/vips/{second}/backends", json={"address": "10.3.0.1"}), 507)
        over = {"vips": [full["vips"][0],
                         vip_doc("10.100.0.8", 81, backends={"10.3.0.1": 1})]}
        check(api.put("/config", json=over), 507)
    # A backend already in use elsewhere takes no new slot.
    check(api.post(f"/vips/{second}/backends", json={"address": "10.2.0.1"}), 201)


# --- a rejected request leaves the data plane as it was -----------------------------------
def test_rejected_requests_leave_every_flow_on_its_backend(api, lb_api, daemon,
                                                          api_lab: VethLab) -> None:
    """A VIP without connection table (every packet is a fresh ring lookup): after a volley of
    rejected requests of every kind, the same flows reach the same backends as before, which
    are the ones the configuration names."""
    vip, port = api_lab.vips_v4()[5], 7300
    backends = {b.v4: w for b, w in zip(api_lab.backends, (1, 2, 3), strict=True)}
    vip_id = create_vip(lb_api, vip, port, "udp", ["no_conn_table"], backends)
    sports = range(21000, 21150)
    routed = route_flows(api_lab, vip, port, sports)
    assert routed == {s: predict(backends, api_lab.client.v4, vip, s, port, "udp")
                      for s in sports}
    assert len(set(routed.values())) == 3
    state = daemon_state(daemon)
    before = state["config"]

    v4 = str(api_lab.backends[0].v4)
    rejected = [
        (api.post(f"/vips/{vip_id}/backends", json={"address": v4}), 409),
        (api.post(f"/vips/{vip_id}/backends", json={"address": "10.1.9.2", "weight": 0}), 422),
        (api.patch(f"/vips/{vip_id}/backends/{v4}", json={"weight": -1}), 422),
        (api.patch(f"/vips/{vip_id}/backends/10.1.9.2", json={"weight": 9}), 404),
        (api.delete(f"/vips/{vip_id}/backends/10.1.9.2"), 404),
        (api.put(f"/vips/{vip_id}/flags", json={"flags": ["sticky"]}), 422),
        (api.post("/vips", json={"address": str(vip), "port": port, "protocol": "udp"}), 409),
        # A whole document that would change this VIP, with one bad item: nothing applies.
        (api.put("/config", json={"vips": [
            vip_doc(vip, port, "udp", {api_lab.backends[0].v4: 5}, ["no_conn_table"]),
            vip_doc("fd00:100::8", 80, backends={"10.1.0.2": 0})]}), 422),
        # ... and documents over capacity: too many backends, too many VIPs.
        (api.put("/config", json={"vips": [
            vip_doc(vip, port, "udp", _backends(MAX_BACKENDS + 1), ["no_conn_table"])]}), 507),
        (api.put("/config", json={"vips": [
            *before["vips"], *(vip_doc("10.100.1.1", 2000 + i) for i in range(MAX_VIPS))]}),
         507),
    ]
    for response, status in rejected:
        assert response.status_code == status, response.text

    assert daemon_state(daemon) == state
    assert route_flows(api_lab, vip, port, sports) == routed
