"""Desired state: the VIPs and backends an operator asked for, as validated documents.

These pydantic models are the one definition of what a VIP, a backend and the whole
configuration look like: the REST API takes and returns them, the store persists them,
the CLI prints them. Validation is whole-document: a configuration with one bad field is
rejected with the path of that field, before anything is written anywhere.
"""

from __future__ import annotations

import ipaddress
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    IPvAnyAddress,
    model_validator,
)

from lb.xdp.consts import VipFlag
from lb.xdp.types import PROTOCOLS, VipKey

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Protocol = Literal["tcp", "udp"]
# F_VIP_* flags by the names the API uses (lower-case VipFlag names).
VIP_FLAGS: dict[str, VipFlag] = {f.name.lower(): f for f in VipFlag if f.name}
FlagName = Literal[tuple(VIP_FLAGS)]  # type: ignore[valid-type]
# Largest backend weight; Maglev quotas are exact for any weights, this bounds the arithmetic.
MAX_WEIGHT = 65535
Port = Annotated[int, Field(strict=True, ge=0, le=65535,
                            description="destination port; 0 = every port of the address")]
Weight = Annotated[int, Field(strict=True, ge=1, le=MAX_WEIGHT,
                              description="share of new flows, relative to the VIP's others")]


def _address_as_text(value: object) -> object:
    # ipaddress would also take 167772161 or b"\n\0\0\1" for 10.0.0.1; a typo should not.
    if isinstance(value, int | bytes):
        raise ValueError("an IP address is written as text, e.g. \"10.0.0.1\" or \"2001:db8::1\"")
    return value


def _no_zone(address: Address) -> Address:
    # The data plane keys addresses by their bytes alone: fe80::1%eth0 and fe80::1%eth1 would
    # be two VIPs here and one in the kernel.
    if getattr(address, "scope_id", None):
        raise ValueError(f"{address}: an address with a zone (%...) is not supported")
    return address


# An IPv4 or IPv6 address, given as text (or an ipaddress object), without a zone.
IpAddress = Annotated[IPvAnyAddress, BeforeValidator(_address_as_text), AfterValidator(_no_zone)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _unique_sorted(flags: list[str]) -> list[str]:
    return sorted(set(flags))


# VIP flags by name; a set, so returned deduplicated and sorted.
Flags = Annotated[list[FlagName], AfterValidator(_unique_sorted)]  # type: ignore[valid-type]


class BackendSpec(_Strict):
    """A backend of a VIP: its address (the outer destination), weight, and drain switch."""

    address: IpAddress
    weight: Weight = 1
    drain: bool = Field(False, strict=True, description="take no new flows; established "
                        "flows stay until they end")


class BackendUpdate(_Strict):
    """New weight and/or drain switch for an existing backend (PATCH)."""

    weight: Weight | None = None
    drain: bool | None = Field(None, strict=True)

    @model_validator(mode="after")
    def _something(self) -> BackendUpdate:
        if self.weight is None and self.drain is None:
            raise ValueError("give weight and/or drain")
        return self


Seconds = Annotated[float, Field(gt=0, le=3600)]
Count = Annotated[int, Field(strict=True, ge=1, le=100)]


class CheckSpec(_Strict):
    """How a VIP's backends are health-checked (all fields have defaults: `{}` is a TCP
    connect to the VIP's port every 2 s, up after 2 successes, down after 3 failures)."""

    type: Literal["tcp", "http", "https", "udp", "none"] = "tcp"
    port: int | None = Field(None, ge=1, le=65535,
                             description="port to probe on the backend; default: the VIP's")
    interval_s: Seconds = 2.0
    timeout_s: Seconds = 1.0
    rise: Count = Field(2, description="consecutive successes to come up")
    fall: Count = Field(3, description="consecutive failures to go down")
    http_path: str = "/"
    http_host: str | None = Field(None, description="Host header; default: the backend")
    http_status: int = Field(200, ge=100, le=599, description="expected status")
    http_body: str | None = Field(None, description="substring the body must contain")
    udp_payload: str = Field("", description="datagram sent (UTF-8)")
    udp_expect: str | None = Field(None, description="substring the reply must contain")


AllDown = Literal["keep_last_ring", "drop"]
SlowStart = Annotated[float, Field(ge=0, le=3600, description="seconds over which a backend "
                                   "that comes up ramps from weight 1 to its weight; 0 = off")]


class FlagsUpdate(_Strict):
    """A VIP's new set of flags."""

    flags: Flags


# A VIP's health check; null: not checked, every backend counts as up.
Check = Annotated[CheckSpec | None, Field(description="health check of the backends; null: "
                                          "not checked, every backend counts as up")]
# What happens when every backend is down.
AllDownRule = Annotated[AllDown, Field(description="when every backend is down: keep sending "
                                       "on the last ring, or drop (counted as no_backend)")]
FlagList = Annotated[Flags, Field(description=f"any of {sorted(VIP_FLAGS)}")]


class VipSettings(_Strict):
    """What a VIP can change after creation: flags, health check, all-down rule, slow start."""

    flags: FlagList = []
    check: Check = None
    all_down: AllDownRule = "keep_last_ring"
    slow_start_s: SlowStart = 0.0


class VipUpdate(_Strict):
    """PATCH /vips/{id}: the settings given replace the VIP's (others stay)."""

    flags: FlagList | None = None
    check: Check = None
    all_down: AllDownRule | None = None
    slow_start_s: SlowStart | None = None


class VipSpec(_Strict):
    """A VIP as created: (address, port, protocol) and its settings."""

    address: IpAddress
    port: Port
    protocol: Protocol = "tcp"
    flags: FlagList = []
    check: Check = None
    all_down: AllDownRule = "keep_last_ring"
    slow_start_s: SlowStart = 0.0

    @model_validator(mode="after")
    def _check_port(self) -> VipSpec:
        if (self.check is not None and self.check.type != "none" and self.check.port is None
                and self.port == 0):
            raise ValueError("check.port: required for a VIP of every port (port 0)")
        return self

    def settings(self) -> VipSettings:
        return VipSettings(flags=self.flags, check=self.check, all_down=self.all_down,
                           slow_start_s=self.slow_start_s)

    @property
    def check_port(self) -> int:
        return (self.check.port if self.check and self.check.port else None) or self.port

    @property
    def key(self) -> VipKey:
        return VipKey(self.address, self.port, PROTOCOLS[self.protocol])

    @property
    def flag_bits(self) -> VipFlag:
        bits = VipFlag(0)
        for name in self.flags:
            bits |= VIP_FLAGS[name]
        return bits

    def describe(self) -> str:
        return f"{self.address} {self.port}/{self.protocol}"


class VipConfig(VipSpec):
    """A VIP with its backends: one entry of the configuration document."""

    backends: list[BackendSpec] = Field(default_factory=list)

    @model_validator(mode="after")
    def _backends_valid(self) -> VipConfig:
        seen: set[Address] = set()
        for i, b in enumerate(self.backends):
            if b.address in seen:
                raise ValueError(f"backends[{i}].address: {b.address} is listed twice")
            seen.add(b.address)
        return self

    def spec(self) -> VipSpec:
        return VipSpec(**self.model_dump(exclude={"backends", "id"}))


class Vip(VipConfig):
    """A VIP as the API returns it: with its id (stable for the VIP's life)."""

    id: int


class VipView(Vip):
    """A VIP with what is observed about it: whether every backend is down (its `all_down`
    rule is then in force)."""

    all_backends_down: bool = False


class ConfigDocument(_Strict):
    """The whole desired state: every VIP with its backends (GET and PUT /config)."""

    vips: list[VipConfig] = Field(default_factory=list)

    @model_validator(mode="after")
    def _vips_unique(self) -> ConfigDocument:
        seen: set[VipKey] = set()
        for i, v in enumerate(self.vips):
            if v.key in seen:
                raise ValueError(f"vips[{i}]: VIP {v.describe()} is listed twice")
            seen.add(v.key)
        return self


class ApplyReport(BaseModel):
    """What one change did to the kernel: VIPs added/removed/changed and ring slots written."""

    vips_added: int = 0
    vips_removed: int = 0
    vips_changed: int = 0
    ring_slots_written: int = 0

    def add(self, other: ApplyReport) -> None:
        self.vips_added += other.vips_added
        self.vips_removed += other.vips_removed
        self.vips_changed += other.vips_changed
        self.ring_slots_written += other.ring_slots_written
