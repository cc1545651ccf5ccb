"""The REST layer's request and response bodies: Create / Update / Read schemas by resource.

Desired state has one definition, lb.control.model (the store and the CLI use it too): the
Create, Update and Read schemas of VIPs, backends and the configuration are those models,
named here by the role they play in the API (the OpenAPI document keeps the models' names:
VipSpec, VipView, BackendSpec, ...). Observed state (health, readiness, statistics) exists
only as answers: its Read schemas are defined here. Every route answers one of these.
"""

from __future__ import annotations

from typing import Any, Literal, TypeAlias

from pydantic import BaseModel, ConfigDict, Field

from lb.control import model
from lb.control.model import IpAddress

# --- desired state: the domain models, by role ---------------------------------------------
VipCreate: TypeAlias = model.VipSpec
VipUpdate: TypeAlias = model.VipUpdate
FlagsUpdate: TypeAlias = model.FlagsUpdate
VipRead: TypeAlias = model.VipView
BackendCreate: TypeAlias = model.BackendSpec
BackendUpdate: TypeAlias = model.BackendUpdate
BackendRead: TypeAlias = model.BackendSpec
ConfigDocument: TypeAlias = model.ConfigDocument  # read whole (GET), replaced whole (PUT)
ApplyReport: TypeAlias = model.ApplyReport


# --- observed state: answers only --------------------------------------------------------
class _Read(BaseModel):
    # Unknown keys are an error, not dropped: a new key in an answer must be documented here.
    model_config = ConfigDict(extra="forbid")


class FieldError(_Read):
    """One field a request got wrong."""

    field: str = Field(description="the field, e.g. vips[0].backends[1].weight")
    loc: list[str | int] = Field(description="its path: where (body, path, query), then keys")
    msg: str
    type: str = Field(description="the kind of error (e.g. int_type, json_invalid)")


class Problem(_Read):
    """Every 4xx and 5xx: an RFC 9457 problem (media type application/problem+json)."""

    type: str = Field(description="a URN naming the kind of problem, e.g. "
                      "urn:lb:error:not-found")
    title: str = Field(description="the status's phrase")
    status: int
    detail: str = Field(description="what went wrong, naming the field at fault when there "
                        "is one")
    errors: list[FieldError] | None = Field(None, description="validation errors: one per "
                                            "field at fault")


class Liveness(_Read):
    """GET /healthz: the process is up."""

    status: Literal["ok"]


class Startup(_Read):
    """What the daemon's start-up found in pinned maps and wrote to make them the state."""

    adopted_vips: int = Field(description="VIPs found in maps pinned by an earlier run")
    vips_added: int
    vips_removed: int
    vips_changed: int
    ring_slots_written: int


class StoreStatus(_Read):
    """Where desired state comes from and which of its revisions the kernel holds."""

    kind: str = Field(description="sqlite or etcd")
    revision: int = Field(description="the store's revision the kernel holds (0: sqlite)")
    reachable: bool = Field(description="false: etcd does not answer; forwarding goes on "
                            "with the last applied state, changes answer 503")
    from_local_copy: bool = Field(description="started while etcd was unreachable: serving "
                                  "this host's copy of the last applied state")


class Readiness(_Read):
    """GET /readyz: the program is attached and its maps answer (503 when not)."""

    ready: bool
    problems: list[str] = Field(description="what is wrong; empty when ready")
    interface: str
    netns: str | None = Field(description="the network namespace the daemon works in")
    mode: str | None = Field(description="XDP mode in effect (native or generic); "
                             "null: no program attached")
    next_hop_mac: str
    pin_dir: str
    startup: Startup
    store: StoreStatus


class LastCheck(_Read):
    """A backend's last health check."""

    ok: bool
    reason: str
    at: float | None = Field(description="when it ran (Unix time, s)")


class BackendHealth(_Read):
    """A backend's health as its checks see it."""

    state: Literal["unknown", "up", "down"]
    since: float = Field(description="in this state since (Unix time, s)")
    in_state_s: float
    last_check: LastCheck | None
    transitions: int


class BackendCheck(model.CheckSpec):
    """The health check a backend gets: its VIP's, with the port it probes."""

    port: int = Field(description="the port probed: the check's own, else the VIP's")


class BackendStatus(model.BackendSpec):
    """A backend of a VIP as configured and as observed."""

    state: Literal["up", "down", "draining", "unknown"]
    health: BackendHealth | None = Field(description="null: not health-checked")
    in_ring: bool = Field(description="the VIP's ring names it now")
    effective_weight: int = Field(description="the weight its ring has now (0: out of the "
                                  "ring; ramping during slow start)")
    check: BackendCheck | None
    conn_table_entries: int | None = Field(
        None, description="connection-table entries pointing at it; present for draining "
        "backends, and for every one with ?conn_entries=true")


class ChangedVips(_Read):
    """The ids of the VIPs a change of one backend address touched."""

    vips: list[int]


class ProbeSchedule(_Read):
    """A health probe and the CLOCK_MONOTONIC start times (s) of its last checks."""

    address: IpAddress
    port: int
    type: str
    interval_s: float
    starts: list[float]


class Stats(_Read):
    """Global data-plane counters (packets), by group, by lower-case counter name."""

    totals: dict[str, int]
    conn_table: dict[str, int]
    pass_reasons: dict[str, int]
    drop_reasons: dict[str, int]


class BackendTraffic(_Read):
    """What was sent to one backend of a VIP (its counters cover every VIP it serves)."""

    address: IpAddress
    weight: int
    ring_slots: int = Field(description="slots of this VIP's ring naming it")
    packets: int
    bytes: int


class VipStats(_Read):
    """Packets and bytes sent for a VIP and to each of its backends."""

    id: int
    packets: int
    bytes: int
    ct_miss_nonsyn: int = Field(description="its non-SYN TCP packets that missed the "
                                "connection table: flows that lost their state")
    ring_size: int
    backends: list[BackendTraffic]


class FleetHost(_Read):
    """One host's last report to the fleet."""

    name: str
    revision: int = Field(description="the store revision whose state its kernel holds")
    rings: dict[int, str] = Field(description="VIP id -> digest of its ring in the kernel "
                                  "(by backend address: equal rings, equal digests)")
    health: dict[str, str] = Field(description="its own verdicts: '<vip id>/<backend>' -> "
                                   "up, down or unknown")
    started_at: float = Field(description="when its daemon started (Unix time, s)")
    updated_at: float = Field(description="when it last reported (Unix time, s)")


class FleetView(_Read):
    """GET /fleet: the hosts of this host's fleet and whether their rings agree."""

    host: str = Field(description="the host that answered")
    store: str = Field(description="sqlite (a single host) or etcd")
    hosts: list[FleetHost]
    agreed: bool = Field(description="every host applied the same revision and holds the "
                         "same ring for every VIP")
    disagreeing_vips: list[int] = Field(description="VIPs whose ring digest differs between "
                                        "hosts, or that some host lacks")


# --- flow trace (GET /trace) ----------------------------------------------------------------
class TraceFlow(_Read):
    """The traced flow's 5-tuple."""

    src: str
    dst: str
    sport: int
    dport: int
    protocol: str


class TraceVip(_Read):
    """The VIP a traced flow matches, and how: its own port, or the address's port-0 VIP."""

    id: int
    address: str
    port: int
    protocol: str
    match: Literal["exact port", "port 0"]
    flags: list[str]


class TraceSlotBackend(_Read):
    """The backend a ring slot names (index 0 / address None: the slot is empty)."""

    index: int
    address: str | None


class TraceConnWay(_Read):
    """A connection-table way holding the flow (cpu, set and way are None without a
    simulator: the table's flat read)."""

    cpu: int | None
    set: int | None
    way: int | None
    backend_index: int
    backend: str | None
    idle_settles: int | None
    age_s: float | None = Field(description="UDP: seconds since the way's last packet; "
                                "TCP ways carry no time (None)")


class TraceBackend(_Read):
    """A backend the trace names (the slot's, or a connection-table way's), as observed."""

    address: str
    weight: int
    drain: bool
    state: str
    in_ring: bool


class TraceOuter(_Read):
    """The outer header an encapsulated packet leaves with."""

    family: Literal["ipv4", "ipv6"]
    src: str
    dst: str
    ttl: int
    mac_src: str
    mac_dst: str


class TraceVerdict(_Read):
    """What the program did with the packet had it arrived on `cpu`."""

    cpu: int
    verdict: str
    reasons: list[str] = Field(description="the counters the packet raised (verdict totals, "
                               "connection-table outcome, pass or drop reason)")
    outer: TraceOuter | None


class Trace(_Read):
    """GET /trace: why a flow goes where it goes (see docs/api.md#flow-trace)."""

    flow: TraceFlow
    syn: bool
    vip: TraceVip | None
    no_vip_reason: str | None
    flow_hash: int | None
    ring_slot: int | None
    slot_backend: TraceSlotBackend | None
    slot_settled: bool | None
    conn_table: list[TraceConnWay]
    backends: list[TraceBackend]
    verdicts: list[TraceVerdict]
    simulated: bool = Field(description="whether `verdicts` come from the program (False: "
                            "no simulator, e.g. a daemon without a data plane)")


# --- events (GET /events) -------------------------------------------------------------------
class Events(_Read):
    """GET /events: events after the cursor, and the cursor to ask with next. Each event has
    `seq`, `time`, `kind` and the kind's fields (docs/api.md#events)."""

    events: list[dict[str, Any]]
    next: int
