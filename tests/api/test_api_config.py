"""PUT /config: the whole desired state, validated whole, applied atomically, idempotent."""

from __future__ import annotations

import pytest
from api_helpers import (
    assert_problem,
    check,
    error_fields,
    essence,
    predict,
    route_flows,
    unchanged,
    vip_doc,
)

from lb.lab.veth import VethLab

MAX_VIPS, MAX_BACKENDS = 16, 63


def _document(lab: VethLab) -> dict:
    """Three VIPs of both families, flags, weights, 4in4, 4in6 and 6in6 backends."""
    b = lab.backends
    return {"vips": [
        vip_doc(lab.vips_v4()[6], 7400, "udp", {b[0].v4: 1, b[1].v4: 2, b[2].v4: 3},
                ["no_conn_table"]),
        vip_doc(lab.vips_v4()[6], 7401, "tcp", {b[2].v6: 4, b[0].v6: 1},
                ["hash_no_src_port"]),
        vip_doc(lab.vips_v6()[6], 0, "tcp", {b[1].v6: 1}),
    ]}


def test_put_config_applies_the_document_and_get_returns_it(api, api_lab: VethLab) -> None:
    doc = _document(api_lab)
    report = check(api.put("/config", json=doc), 200)
    assert report["vips_added"] == 3 and report["vips_removed"] == report["vips_changed"] == 0
    # Each VIP's ring is written in full from empty (65537 slots each).
    assert report["ring_slots_written"] == 3 * 65537
    assert essence(check(api.get("/config"), 200)["vips"]) == essence(doc["vips"])
    vips = check(api.get("/vips"), 200)
    assert [(v["address"], v["port"]) for v in vips] == [(v["address"], v["port"])
                                                           for v in doc["vips"]]
    # And the data plane does what the document says.
    first = doc["vips"][0]
    weights = {b["address"]: b["weight"] for b in first["backends"]}
    vip, sports = api_lab.vips_v4()[6], range(22000, 22090)
    assert route_flows(api_lab, vip, 7400, sports) == {
        s: predict(weights, api_lab.client.v4, vip, s, 7400, "udp") for s in sports}


def test_same_document_twice_changes_nothing(api, api_lab: VethLab) -> None:
    doc = _document(api_lab)
    check(api.put("/config", json=doc), 200)
    ids = [v["id"] for v in check(api.get("/vips"), 200)]
    assert check(api.put("/config", json=doc), 200) == {
        "vips_added": 0, "vips_removed": 0, "vips_changed": 0, "ring_slots_written": 0}
    assert [v["id"] for v in check(api.get("/vips"), 200)] == ids
    assert essence(check(api.get("/config"), 200)["vips"]) == essence(doc["vips"])
    # GET /config fed back as is is the same document.
    assert check(api.put("/config", json=check(api.get("/config"), 200)), 200)[
        "ring_slots_written"] == 0


def test_matched_vips_keep_their_ids_others_come_and_go(api, api_lab: VethLab) -> None:
    doc = _document(api_lab)
    check(api.put("/config", json=doc), 200)
    ids = {(v["address"], v["port"]): v["id"] for v in check(api.get("/vips"), 200)}
    changed, unchanged, dropped = doc["vips"]
    changed = {**changed, "backends": changed["backends"][:2]}
    added = vip_doc(api_lab.vips_v6()[6], 443, "udp", {api_lab.backends[0].v6: 1})
    new_doc = {"vips": [added, unchanged, changed]}

    report = check(api.put("/config", json=new_doc), 200)
    assert (report["vips_added"], report["vips_removed"], report["vips_changed"]) == (1, 1, 1)
    now = {(v["address"], v["port"]): v["id"] for v in check(api.get("/vips"), 200)}
    for v in (changed, unchanged):
        assert now[(v["address"], v["port"])] == ids[(v["address"], v["port"])]
    assert (dropped["address"], dropped["port"]) not in now
    assert now[(added["address"], added["port"])] > max(ids.values())
    stored = essence(check(api.get("/config"), 200)["vips"])
    assert sorted(stored, key=str) == sorted(essence(new_doc["vips"]), key=str)


# One invalid item anywhere: (what is wrong, how to break a valid document, field named).
BROKEN = [
    ("weight 0 deep inside", lambda d: d["vips"][1]["backends"][1].update(weight=0),
     "vips.1.backends.1.weight"),
    ("VIP listed twice", lambda d: d["vips"].append(dict(d["vips"][0])), "vips[3]"),
    ("backend listed twice", lambda d: d["vips"][0]["backends"].append(
        dict(d["vips"][0]["backends"][0])), "backends[2].address"),
    ("unknown flag", lambda d: d["vips"][0]["flags"].append("turbo"), "vips.0.flags"),
    ("unknown field", lambda d: d["vips"][1].update(timeout=5), "vips.1.timeout"),
    ("port out of range", lambda d: d["vips"][2].update(port=70000), "vips.2.port"),
    ("bad address", lambda d: d["vips"][0]["backends"][0].update(address="10.1.0"),
     "vips.0.backends.0.address"),
]


@pytest.mark.parametrize(("what", "breaks", "field"), BROKEN, ids=[b[0] for b in BROKEN])
def test_document_with_one_invalid_item_changes_nothing(api, daemon, api_lab: VethLab,
                                                        what: str, breaks,
                                                        field: str) -> None:
    """The document would remove a VIP, add one and change another: none of it happens."""
    doc = _document(api_lab)
    check(api.put("/config", json=doc), 200)
    before_vips = check(api.get("/vips"), 200)
    bad = _document(api_lab)
    bad["vips"][0]["backends"].pop()
    bad["vips"][1]["address"] = "10.100.0.7"
    breaks(bad)
    with unchanged(daemon):
        response = api.put("/config", json=bad)
    assert response.status_code == 422, response.text
    assert field in error_fields(response), f"{what}: the answer does not name {field}: " \
                                            f"{response.text}"
    assert check(api.get("/vips"), 200) == before_vips
    assert check(api.put("/config", json=doc), 200)["ring_slots_written"] == 0


def test_document_over_capacity_changes_nothing_in_database_or_kernel(
        api, daemon, api_lab: VethLab) -> None:
    """Too many VIPs, too many distinct backends: 507, and neither the database nor the kernel
    moved: the restart that follows finds nothing to write and serves the same document."""
    doc = _document(api_lab)
    check(api.put("/config", json=doc), 200)
    before = check(api.get("/vips"), 200)
    with unchanged(daemon):
        too_many_vips = {"vips": [*doc["vips"][1:], *(vip_doc("10.100.2.1", 3000 + i)
                                                     for i in range(MAX_VIPS - 1))]}
        response = api.put("/config", json=too_many_vips)
        assert response.status_code == 507, response.text
        assert str(MAX_VIPS) in assert_problem(response)["detail"]
        backends = {f"10.4.{i // 100}.{i % 100 + 1}": 1 for i in range(MAX_BACKENDS - 1)}
        too_many_backends = {"vips": [doc["vips"][0],
                                      vip_doc("10.100.2.1", 80, "tcp", backends)]}
        response = api.put("/config", json=too_many_backends)
        assert response.status_code == 507, response.text
        assert str(MAX_BACKENDS) in assert_problem(response)["detail"]
    assert check(api.get("/vips"), 200) == before

    ready = daemon.restart()
    assert ready["startup"] == {"adopted_vips": 3, "vips_added": 0, "vips_removed": 0,
                                "vips_changed": 0, "ring_slots_written": 0}
    assert check(api.get("/vips"), 200) == before


def test_document_that_fits_only_after_its_removals_is_accepted(api) -> None:
    """Every backend slot is in use; the new document frees slots in one VIP and takes new ones
    in another: it fits as a whole, so it is applied (capacity is the end state's)."""
    def addresses(prefix: str, n: int) -> dict[str, int]:
        return {f"10.{prefix}.{i}": 1 for i in range(1, n + 1)}

    full = {"vips": [vip_doc("10.100.3.1", 80, backends=addresses("5.0", 31)),
                     vip_doc("10.100.3.2", 80, backends=addresses("6.0", 32))]}
    check(api.put("/config", json=full), 200)
    # VIP 1 drops two and adds three new; VIP 2 drops one: 63 distinct backends in the end.
    first = {**addresses("5.0", 29), **addresses("7.0", 3)}
    second = addresses("6.0", 31)
    doc = {"vips": [vip_doc("10.100.3.1", 80, backends=first),
                    vip_doc("10.100.3.2", 80, backends=second)]}
    assert len(first.keys() | second.keys()) == MAX_BACKENDS
    report = check(api.put("/config", json=doc), 200)
    assert report["vips_changed"] == 2
    assert essence(check(api.get("/config"), 200)["vips"]) == essence(doc["vips"])
