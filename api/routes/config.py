"""Routes of the configuration: the whole desired state, read or replaced in one document."""

from __future__ import annotations

from fastapi import APIRouter

from api.deps import CHANGES_STATE, ControllerDep
from api.errors import responses
from api.schemas import ApplyReport, ConfigDocument

router = APIRouter(tags=["config"])


@router.get("/config")
def get_config(controller: ControllerDep) -> ConfigDocument:
    """The whole desired state."""
    return controller.export()


@router.put("/config", dependencies=[CHANGES_STATE], responses=responses(401, 507))
def put_config(document: ConfigDocument, controller: ControllerDep) -> ApplyReport:
    """Replace the whole desired state: validated whole, applied atomically."""
    return controller.replace(document)
