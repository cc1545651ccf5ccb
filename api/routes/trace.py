"""Routes of flow traces: where a flow goes and why, as the maps and the program answer."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query

from api.deps import ControllerDep
from api.schemas import Trace
from lb.control.errors import InvalidInput
from lb.control.model import IpAddress
from lb.xdp.types import PROTOCOLS, Flow

router = APIRouter(tags=["trace"])

Port = Annotated[int, Query(ge=0, le=65535)]


@router.get("/trace")
def trace(controller: ControllerDep, src: IpAddress, dst: IpAddress, sport: Port, dport: Port,
          proto: Literal["tcp", "udp"] = "tcp", flags: Literal["syn", ""] = "") -> Trace:
    """The VIP the flow matches (or why none), its hash and ring slot, the slot's backend,
    the flow's connection-table ways on every CPU, the health of the backends named, and
    the program's verdict on one packet of the flow (`flags=syn`: a SYN, else an ACK) with
    its outer header. Read-only: the packet runs through a private copy of the program
    (docs/api.md#flow-trace)."""
    if src.version != dst.version:
        raise InvalidInput(f"src {src} and dst {dst} are of different address families")
    flow = Flow(src, dst, sport, dport, PROTOCOLS[proto])
    return Trace.model_validate(controller.trace(flow, syn=flags == "syn"))
