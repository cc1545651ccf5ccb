"""Validation of the desired-state documents: what the API and the store accept and refuse."""

from __future__ import annotations

import ipaddress

import pytest
from pydantic import ValidationError

from lb.control.model import (
    MAX_WEIGHT,
    BackendSpec,
    BackendUpdate,
    ConfigDocument,
    FlagsUpdate,
    VipConfig,
    VipSpec,
)
from lb.xdp.consts import VipFlag

ip = ipaddress.ip_address


def _error_text(exc: pytest.ExceptionInfo[ValidationError]) -> str:
    return str(exc.value)


@pytest.mark.parametrize("address", ["10.0.0.300", "10.0.0", "not-an-ip", "", "10.0.0.1/32",
                                     "fe80::1%eth0", 167772161, b"\n\0\0\1", None])
def test_vip_with_a_bad_address_is_rejected(address):
    with pytest.raises(ValidationError, match="address"):
        VipSpec(address=address, port=80)


@pytest.mark.parametrize("port", [-1, 65536, "80", True, 80.0, None])
def test_vip_port_out_of_range_or_not_an_int_is_rejected(port):
    with pytest.raises(ValidationError, match="port"):
        VipSpec(address="10.0.0.1", port=port)


@pytest.mark.parametrize("port", [0, 1, 65535])
def test_vip_port_bounds_and_zero_for_all_ports_are_accepted(port):
    assert VipSpec(address="10.0.0.1", port=port).port == port


def test_vip_protocol_is_tcp_by_default_and_must_be_tcp_or_udp():
    assert VipSpec(address="10.0.0.1", port=80).protocol == "tcp"
    assert VipSpec(address="10.0.0.1", port=53, protocol="udp").key.proto == 17
    for bad in ("sctp", "TCP", 6):
        with pytest.raises(ValidationError, match="protocol"):
            VipSpec(address="10.0.0.1", port=80, protocol=bad)


def test_unknown_flag_is_rejected_in_vip_and_flags_update():
    with pytest.raises(ValidationError, match="flags"):
        VipSpec(address="10.0.0.1", port=80, flags=["no_such_flag"])
    with pytest.raises(ValidationError, match="flags"):
        FlagsUpdate(flags=["no_such_flag"])


def test_flags_are_deduplicated_and_sorted_and_map_to_the_data_plane_bits():
    names = sorted(f.name.lower() for f in VipFlag)
    spec = VipSpec(address="10.0.0.1", port=80, flags=[*reversed(names), names[0]])
    assert spec.flags == names
    expected = VipFlag(0)
    for f in VipFlag:
        expected |= f
    assert spec.flag_bits == expected
    assert VipSpec(address="10.0.0.1", port=80).flag_bits == VipFlag(0)


def test_flags_update_is_deduplicated_and_sorted():
    names = sorted(f.name.lower() for f in VipFlag)
    assert FlagsUpdate(flags=[*reversed(names), *names]).flags == names


@pytest.mark.parametrize("weight", [0, -1, MAX_WEIGHT + 1, True, "2", 1.5])
def test_bad_weight_is_rejected(weight):
    with pytest.raises(ValidationError, match="weight"):
        BackendSpec(address="10.1.0.1", weight=weight)
    with pytest.raises(ValidationError, match="weight"):
        BackendUpdate(weight=weight)


def test_weight_defaults_to_one_and_accepts_the_maximum():
    assert BackendSpec(address="10.1.0.1").weight == 1
    assert BackendUpdate(weight=MAX_WEIGHT).weight == MAX_WEIGHT


@pytest.mark.parametrize("model, fields", [
    (VipSpec, {"address": "10.0.0.1", "port": 80, "colour": "blue"}),
    (BackendSpec, {"address": "10.1.0.1", "wieght": 2}),
    (BackendUpdate, {"weight": 2, "address": "10.1.0.1"}),
    (FlagsUpdate, {"flags": [], "extra": 1}),
    (ConfigDocument, {"vips": [], "version": 2}),
    (VipConfig, {"address": "10.0.0.1", "port": 80, "id": 3}),
])
def test_unknown_fields_are_rejected(model, fields):
    with pytest.raises(ValidationError, match="[Ee]xtra"):
        model(**fields)


def test_ipv6_vip_takes_ipv4_and_ipv6_backends():
    # 6in4: the data plane sends an IPv6 VIP's packets under an IPv4 outer header.
    doc = {"vips": [{"address": "2001:db8::1", "port": 443, "backends": [
        {"address": "2001:db8::10"}, {"address": "10.1.0.1"}]}]}
    vip = ConfigDocument.model_validate(doc).vips[0]
    assert [b.address for b in vip.backends] == [ip("2001:db8::10"), ip("10.1.0.1")]


def test_ipv4_vip_takes_ipv6_and_ipv4_backends():
    vip = VipConfig(address="10.0.0.1", port=80,
                    backends=[{"address": "2001:db8::10"}, {"address": "10.1.0.1", "weight": 3}])
    assert [b.address for b in vip.backends] == [ip("2001:db8::10"), ip("10.1.0.1")]
    assert vip.backends[1].weight == 3


def test_a_backend_listed_twice_in_a_vip_is_rejected():
    with pytest.raises(ValidationError) as exc:
        VipConfig(address="10.0.0.1", port=80,
                  backends=[{"address": "10.1.0.1"}, {"address": "10.1.0.2"},
                            {"address": "10.1.0.1", "weight": 2}])
    assert "backends[2].address" in _error_text(exc)


def test_the_same_backend_written_two_ways_is_a_duplicate():
    with pytest.raises(ValidationError, match=r"backends\[1\]"):
        VipConfig(address="2001:db8::1", port=80,
                  backends=[{"address": "2001:db8::a"}, {"address": "2001:0db8:0::000a"}])


def test_a_vip_listed_twice_in_a_document_names_the_second_entry():
    doc = {"vips": [{"address": "10.0.0.1", "port": 80},
                    {"address": "10.0.0.1", "port": 443},
                    {"address": "10.0.0.1", "port": 80, "backends": [{"address": "10.1.0.1"}]}]}
    with pytest.raises(ValidationError) as exc:
        ConfigDocument.model_validate(doc)
    assert "vips[2]" in _error_text(exc)


def test_same_address_and_port_with_another_protocol_is_another_vip():
    doc = ConfigDocument.model_validate({"vips": [
        {"address": "10.0.0.1", "port": 53, "protocol": "udp"},
        {"address": "10.0.0.1", "port": 53, "protocol": "tcp"}]})
    assert len({v.key for v in doc.vips}) == 2


def test_a_document_round_trips_through_json():
    doc = ConfigDocument.model_validate({"vips": [
        {"address": "2001:db8::1", "port": 0, "protocol": "udp",
         "flags": sorted(f.name.lower() for f in VipFlag)[:1],
         "backends": [{"address": "2001:db8::10", "weight": 7}]},
        {"address": "10.0.0.1", "port": 80, "backends": [{"address": "2001:db8::11"}]}]})
    assert ConfigDocument.model_validate_json(doc.model_dump_json()) == doc


def test_empty_document_is_valid():
    assert ConfigDocument().vips == []
    assert ConfigDocument.model_validate({}).vips == []
