"""Routes of VIPs: list, create, read, change (settings, flags) and delete."""

from __future__ import annotations

from fastapi import APIRouter, status

from api.deps import CHANGES_STATE, ControllerDep
from api.errors import responses
from api.schemas import FlagsUpdate, VipCreate, VipRead, VipUpdate
from lb.control.controller import Controller
from lb.control.model import Vip

router = APIRouter(tags=["vips"])


def _read(controller: Controller, vip: Vip) -> VipRead:
    return VipRead(**dict(vip), all_backends_down=controller.all_down(vip.id))


@router.get("/vips")
def list_vips(controller: ControllerDep) -> list[VipRead]:
    return [_read(controller, v) for v in controller.list_vips()]


@router.post("/vips", status_code=status.HTTP_201_CREATED, dependencies=[CHANGES_STATE],
             responses=responses(401, 409, 507))
def create_vip(spec: VipCreate, controller: ControllerDep) -> VipRead:
    return _read(controller, controller.create_vip(spec))


@router.get("/vips/{vip_id}", responses=responses(404))
def get_vip(vip_id: int, controller: ControllerDep) -> VipRead:
    """The VIP; `all_backends_down` tells whether its all-down rule is in force."""
    return _read(controller, controller.get_vip(vip_id))


@router.delete("/vips/{vip_id}", status_code=status.HTTP_204_NO_CONTENT,
               dependencies=[CHANGES_STATE], responses=responses(401, 404))
def delete_vip(vip_id: int, controller: ControllerDep) -> None:
    controller.delete_vip(vip_id)


@router.patch("/vips/{vip_id}", dependencies=[CHANGES_STATE], responses=responses(401, 404))
def update_vip(vip_id: int, update: VipUpdate, controller: ControllerDep) -> VipRead:
    """Change a VIP's flags, health check, all-down rule or slow start."""
    return _read(controller, controller.update_vip(vip_id, update))


@router.put("/vips/{vip_id}/flags", dependencies=[CHANGES_STATE],
            responses=responses(401, 404))
def set_flags(vip_id: int, update: FlagsUpdate, controller: ControllerDep) -> VipRead:
    return _read(controller, controller.set_flags(vip_id, update.flags))
