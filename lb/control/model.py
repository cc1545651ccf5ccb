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
from lb.xdp.maps import PROTOCOLS, VipKey

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Protocol = Literal["tcp", "udp"]
# F_VIP_* flags by the names the API uses (lower-case VipFlag names).
VIP_FLAGS: dict[str, VipFlag] = {f.name.lower(): f for f in VipFlag}
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
    """A backend of a VIP: its address (the outer destination) and weight."""

    address: IpAddress
    weight: Weight = 1


class WeightUpdate(_Strict):
    """A new weight for an existing backend."""

    weight: Weight


class FlagsUpdate(_Strict):
    """A VIP's new set of flags."""

    flags: Flags


class VipSpec(_Strict):
    """A VIP as created: (address, port, protocol) and its flags."""

    address: IpAddress
    port: Port
    protocol: Protocol = "tcp"
    flags: Flags = Field(default_factory=list, description=f"any of {sorted(VIP_FLAGS)}")

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


def check_backend_family(vip: Address, backend: Address) -> None:
    """IPv4 VIPs take IPv4 or IPv6 backends (4in4, 4in6); IPv6 VIPs only IPv6 ones (6in6)."""
    if vip.version == 6 and backend.version == 4:
        raise ValueError(f"backend {backend} is IPv4 but VIP {vip} is IPv6: an IPv6 VIP "
                         "needs IPv6 backends (6in4 is not supported)")


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
            try:
                check_backend_family(self.address, b.address)
            except ValueError as e:
                raise ValueError(f"backends[{i}].address: {e}") from None
        return self

    def spec(self) -> VipSpec:
        return VipSpec(address=self.address, port=self.port, protocol=self.protocol,
                       flags=self.flags)


class Vip(VipConfig):
    """A VIP as the API returns it: with its id (stable for the VIP's life)."""

    id: int


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
