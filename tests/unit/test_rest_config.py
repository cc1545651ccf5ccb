"""REST: PUT /config makes the desired state (and the kernel) exactly the document, GET /config
gives it back; a document that is invalid or does not fit changes nothing."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from rest_helpers import MAX_BACKENDS, MAX_VIPS, Rest, check, create_vip, error_fields, rest_api


@pytest.fixture
def rest(tmp_path) -> Iterator[Rest]:
    with rest_api(tmp_path) as r:
        yield r


def vip_doc(address: str, port: int, backends: dict[str, int] | None = None,
            **settings: Any) -> dict[str, Any]:
    """One entry of a /config document."""
    return {"address": address, "port": port, **settings,
            "backends": [{"address": a, "weight": w} for a, w in (backends or {}).items()]}


def essence(document: dict[str, Any]) -> list[tuple]:
    return [(v["address"], v["port"], v["protocol"],
             [(b["address"], b["weight"]) for b in v["backends"]]) for v in document["vips"]]


def test_put_config_replaces_the_whole_state_and_get_gives_it_back(rest: Rest) -> None:
    api = rest.client
    kept = create_vip(api, "10.100.0.5", 80, backends={"10.1.0.2": 1})
    create_vip(api, "10.100.0.5", 81)  # not in the document: removed
    document = {"vips": [vip_doc("10.100.0.5", 80, {"10.1.0.2": 2, "10.1.0.3": 1}),
                         vip_doc("fd00:100::9", 53, {"fd00:1::2": 1}, protocol="udp")]}
    report = check(api.put("/config", json=document), 200)
    assert report == {"vips_added": 1, "vips_removed": 1, "vips_changed": 1,
                      "ring_slots_written": report["ring_slots_written"]}
    assert report["ring_slots_written"] > 0
    assert essence(check(api.get("/config"), 200)) == [
        ("10.100.0.5", 80, "tcp", [("10.1.0.2", 2), ("10.1.0.3", 1)]),
        ("fd00:100::9", 53, "udp", [("fd00:1::2", 1)])]
    # A VIP is matched by (address, port, protocol): it keeps its id.
    assert check(api.get("/vips"), 200)[0]["id"] == kept
    assert rest.ring("10.100.0.5", 80) == {"10.1.0.2", "10.1.0.3"}
    assert rest.ring("fd00:100::9", 53, "udp") == {"fd00:1::2"}
    assert len(rest.kernel.vip_entries) == 2

    before = rest.state()
    again = check(api.put("/config", json=document), 200)
    assert again == {"vips_added": 0, "vips_removed": 0, "vips_changed": 0,
                     "ring_slots_written": 0}
    assert rest.state() == before
    check(api.put("/config", json={"vips": []}), 200)
    assert check(api.get("/config"), 200) == {"vips": []} and rest.kernel.vip_entries == {}


# (document, the field the answer must name)
INVALID = [
    ({"vips": [vip_doc("10.100.0.9", 80, {"10.1.0.2": 1}),
               vip_doc("10.100.0.9", 81, {"10.1.1.2": 0})]}, "vips.1.backends.0.weight"),
    ({"vips": [vip_doc("10.100.0.9", 80), vip_doc("10.100.0.9", 80)]}, "listed twice"),
    ({"vips": [{**vip_doc("10.100.0.9", 80), "backends": [{"address": "10.1.0.2"},
                                                          {"address": "10.1.0.2"}]}]},
     "backends[1].address"),
    ({"vips": [vip_doc("10.100.0.9", 80, mode="fast")]}, "vips.0.mode"),
    ({"vip": []}, "vip"),
]


@pytest.mark.parametrize(("document", "field"), INVALID,
                         ids=[f"{f}-{i}" for i, (_, f) in enumerate(INVALID)])
def test_an_invalid_document_is_422_naming_the_field_and_changes_nothing(
        rest: Rest, document: dict, field: str) -> None:
    create_vip(rest.client, "10.100.0.9", 80, backends={"10.1.0.2": 1})
    before = rest.state()
    response = rest.client.put("/config", json=document)
    assert response.status_code == 422, response.text
    assert field in error_fields(response), response.text
    assert rest.state() == before


@pytest.mark.parametrize("document", [
    {"vips": [vip_doc("10.100.1.1", 1000 + i) for i in range(MAX_VIPS + 1)]},
    {"vips": [vip_doc("10.100.0.8", 80, {f"10.2.0.{i + 1}": 1
                                         for i in range(MAX_BACKENDS + 1)})]},
], ids=["vips", "backends"])
def test_a_document_that_does_not_fit_is_507_and_changes_nothing(rest: Rest,
                                                                  document: dict) -> None:
    create_vip(rest.client, "10.100.0.9", 80, backends={"10.1.0.2": 1})
    before = rest.state()
    response = rest.client.put("/config", json=document)
    assert response.status_code == 507, response.text
    assert rest.state() == before
