"""Routes of backends: of one VIP (list, add, change, remove), and of an address everywhere."""

from __future__ import annotations

from fastapi import APIRouter, status

from api.deps import CHANGES_STATE, BackendAddress, ControllerDep
from api.errors import responses
from api.schemas import BackendCreate, BackendRead, BackendStatus, BackendUpdate, ChangedVips

router = APIRouter(tags=["backends"])


# Keys the controller leaves out stay out (conn_table_entries is there only when asked for).
@router.get("/vips/{vip_id}/backends", response_model_exclude_unset=True,
            responses=responses(404))
def list_backends(vip_id: int, controller: ControllerDep,
                  conn_entries: bool = False) -> list[BackendStatus]:
    """Each backend: weight, drain, state (up, down, draining, unknown), last check, time
    in state, in ring or not; connection-table entries pointing at it for draining ones
    (all with ?conn_entries=true)."""
    return [BackendStatus.model_validate(b)
            for b in controller.backend_statuses(vip_id, conn_entries)]


@router.post("/vips/{vip_id}/backends", status_code=status.HTTP_201_CREATED,
             dependencies=[CHANGES_STATE], responses=responses(401, 404, 409, 507))
def add_backend(vip_id: int, backend: BackendCreate, controller: ControllerDep) -> BackendRead:
    return controller.add_backend(vip_id, backend)


@router.patch("/vips/{vip_id}/backends/{address}", dependencies=[CHANGES_STATE],
              responses=responses(401, 404))
def update_backend(vip_id: int, address: BackendAddress, update: BackendUpdate,
                   controller: ControllerDep) -> BackendRead:
    """Change a backend's weight and/or drain it (no new flows; established ones stay)."""
    return controller.update_backend(vip_id, address, update)


@router.delete("/vips/{vip_id}/backends/{address}", status_code=status.HTTP_204_NO_CONTENT,
               dependencies=[CHANGES_STATE], responses=responses(401, 404))
def remove_backend(vip_id: int, address: BackendAddress, controller: ControllerDep) -> None:
    controller.remove_backend(vip_id, address)


@router.patch("/backends/{address}", dependencies=[CHANGES_STATE],
              responses=responses(401, 404))
def update_backend_everywhere(address: BackendAddress, update: BackendUpdate,
                              controller: ControllerDep) -> ChangedVips:
    """Change a backend in every VIP that has it, in one step (e.g. drain a host)."""
    return ChangedVips(vips=controller.update_backend_everywhere(address, update))


@router.delete("/backends/{address}", dependencies=[CHANGES_STATE],
               responses=responses(401, 404))
def remove_backend_everywhere(address: BackendAddress, controller: ControllerDep) -> ChangedVips:
    """Take a backend out of every VIP that has it, in one step."""
    return ChangedVips(vips=controller.remove_backend_everywhere(address))
