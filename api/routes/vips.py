"""Routes of VIPs: list, create, read, change (settings, flags) and delete."""

from __future__ import annotations

from fastapi import APIRouter, status

from api.deps import CHANGES_STATE, ControllerDep
from api.errors import responses
from api.schemas import FlagsUpdate, VipCreate, VipRead, VipUpdate

router = APIRouter(tags=["vips"])


# Answers are built by controller.view(vip): from the VIP the call returned, under the lock
# (a concurrent change can neither make it vanish mid-answer nor mix two states).


@router.get("/vips")
def list_vips(controller: ControllerDep) -> list[VipRead]:
    return controller.views()


@router.post("/vips", status_code=status.HTTP_201_CREATED, dependencies=[CHANGES_STATE],
             responses=responses(401, 409, 507))
def create_vip(spec: VipCreate, controller: ControllerDep) -> VipRead:
    vip = controller.create_vip(spec)
    return controller.view(vip)


@router.get("/vips/{vip_id}", responses=responses(404))
def get_vip(vip_id: int, controller: ControllerDep) -> VipRead:
    """The VIP; `all_backends_down` tells whether its all-down rule is in force."""
    vip = controller.get_vip(vip_id)
    return controller.view(vip)


@router.delete("/vips/{vip_id}", status_code=status.HTTP_204_NO_CONTENT,
               dependencies=[CHANGES_STATE], responses=responses(401, 404))
def delete_vip(vip_id: int, controller: ControllerDep) -> None:
    controller.delete_vip(vip_id)


@router.patch("/vips/{vip_id}", dependencies=[CHANGES_STATE], responses=responses(401, 404))
def update_vip(vip_id: int, update: VipUpdate, controller: ControllerDep) -> VipRead:
    """Change a VIP's flags, health check, all-down rule or slow start."""
    vip = controller.update_vip(vip_id, update)
    return controller.view(vip)


@router.put("/vips/{vip_id}/flags", dependencies=[CHANGES_STATE],
            responses=responses(401, 404))
def set_flags(vip_id: int, update: FlagsUpdate, controller: ControllerDep) -> VipRead:
    vip = controller.set_flags(vip_id, update.flags)
    return controller.view(vip)
