"""Routes of the fleet: which hosts apply the desired state, at which revision, with which rings."""

from __future__ import annotations

from fastapi import APIRouter

from api.deps import ControllerDep
from api.schemas import FleetView

router = APIRouter(tags=["fleet"])


@router.get("/fleet")
def fleet(controller: ControllerDep) -> FleetView:
    """Every live host of this host's fleet (a single host: itself): the revision of desired
    state each applied, each VIP's ring digest, and the VIPs whose rings differ."""
    return FleetView.model_validate(controller.fleet_view())
