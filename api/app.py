"""The REST API: a thin FastAPI layer over lb.control.controller (one route, one call).

Validation is the models' (lb.control.model): FastAPI answers 422 naming the field. The
controller's errors map to statuses in one table. Changes need a bearer token when one is
configured (always when the API listens beyond loopback).
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, HTTPException, Request, Response, status
from fastapi.responses import JSONResponse

from lb.control.controller import Controller
from lb.control.model import (
    ApplyReport,
    BackendSpec,
    ConfigDocument,
    FlagsUpdate,
    Vip,
    VipSpec,
    WeightUpdate,
)
from lb.control.service import (
    AlreadyExists,
    BalancerError,
    CapacityError,
    InvalidInput,
    NotFound,
)

# The controller's errors as HTTP statuses (507: the data plane has no room left).
ERROR_STATUS: dict[type[BalancerError], int] = {
    NotFound: status.HTTP_404_NOT_FOUND,
    AlreadyExists: status.HTTP_409_CONFLICT,
    InvalidInput: status.HTTP_422_UNPROCESSABLE_CONTENT,
    CapacityError: status.HTTP_507_INSUFFICIENT_STORAGE,
}
_READ_METHODS = {"GET", "HEAD", "OPTIONS"}


def _address(address: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    try:
        return ipaddress.ip_address(address)
    except ValueError:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT,
                            f"address: {address!r} is not an IP address") from None


def create_app(controller: Controller, readiness: Callable[[], dict[str, Any]],
               token: str | None = None) -> FastAPI:
    """The API over `controller`; `readiness()` returns the /readyz body (key "ready")."""
    app = FastAPI(title="lb", version="1",
                  description="An XDP layer-4 load balancer: VIPs, backends, stats, config.")

    @app.exception_handler(BalancerError)
    async def _balancer_error(request: Request, exc: BalancerError) -> JSONResponse:
        code = next((c for t, c in ERROR_STATUS.items() if isinstance(exc, t)), 400)
        return JSONResponse({"detail": str(exc)}, status_code=code)

    if token is not None:
        expected = f"Bearer {token}".encode()

        @app.middleware("http")
        async def _require_token(request: Request, call_next: Any) -> Any:
            if request.method not in _READ_METHODS:
                given = request.headers.get("authorization", "").encode()
                if not hmac.compare_digest(given, expected):
                    return JSONResponse({"detail": "a bearer token is required to change "
                                         "state (Authorization: Bearer ...)"},
                                        status_code=status.HTTP_401_UNAUTHORIZED,
                                        headers={"WWW-Authenticate": "Bearer"})
            return await call_next(request)

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        """The process is up."""
        return {"status": "ok"}

    @app.get("/readyz")
    def readyz(response: Response) -> dict[str, Any]:
        """The program is attached and its maps answer; reports the XDP mode in effect."""
        body = readiness()
        if not body.get("ready"):
            response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
        return body

    @app.get("/vips")
    def list_vips() -> list[Vip]:
        return controller.list_vips()

    @app.post("/vips", status_code=status.HTTP_201_CREATED)
    def create_vip(spec: VipSpec) -> Vip:
        return controller.create_vip(spec)

    @app.get("/vips/{vip_id}")
    def get_vip(vip_id: int) -> Vip:
        return controller.get_vip(vip_id)

    @app.delete("/vips/{vip_id}", status_code=status.HTTP_204_NO_CONTENT)
    def delete_vip(vip_id: int) -> None:
        controller.delete_vip(vip_id)

    @app.put("/vips/{vip_id}/flags")
    def set_flags(vip_id: int, update: FlagsUpdate) -> Vip:
        return controller.set_flags(vip_id, update.flags)

    @app.get("/vips/{vip_id}/backends")
    def list_backends(vip_id: int) -> list[BackendSpec]:
        return controller.get_vip(vip_id).backends

    @app.post("/vips/{vip_id}/backends", status_code=status.HTTP_201_CREATED)
    def add_backend(vip_id: int, backend: BackendSpec) -> BackendSpec:
        return controller.add_backend(vip_id, backend)

    @app.patch("/vips/{vip_id}/backends/{address}")
    def set_weight(vip_id: int, address: str, update: WeightUpdate) -> BackendSpec:
        return controller.set_weight(vip_id, _address(address), update.weight)

    @app.delete("/vips/{vip_id}/backends/{address}", status_code=status.HTTP_204_NO_CONTENT)
    def remove_backend(vip_id: int, address: str) -> None:
        controller.remove_backend(vip_id, _address(address))

    @app.get("/stats")
    def stats() -> dict[str, dict[str, int]]:
        """Global counters: totals, connection table, pass and drop reasons."""
        return controller.stats()

    @app.get("/vips/{vip_id}/stats")
    def vip_stats(vip_id: int) -> dict[str, Any]:
        """Packets and bytes sent for the VIP and to each of its backends."""
        return controller.vip_stats(vip_id)

    @app.get("/config")
    def get_config() -> ConfigDocument:
        """The whole desired state."""
        return controller.export()

    @app.put("/config")
    def put_config(document: ConfigDocument) -> ApplyReport:
        """Replace the whole desired state: validated whole, applied atomically."""
        return controller.replace(document)

    return app
