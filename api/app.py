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
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from lb.control import metrics
from lb.control.controller import Controller
from lb.control.errors import AlreadyExists, BalancerError, CapacityError, InvalidInput, NotFound
from lb.control.model import (
    ApplyReport,
    BackendSpec,
    BackendUpdate,
    ConfigDocument,
    FlagsUpdate,
    Vip,
    VipSpec,
    VipUpdate,
    VipView,
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

    registry = CollectorRegistry()
    registry.register(metrics.DataplaneCollector(controller.metrics_snapshot))

    @app.middleware("http")
    async def _count_requests(request: Request, call_next: Any) -> Any:
        response = await call_next(request)
        route = request.scope.get("route")
        metrics.API_REQUESTS.labels(request.method, getattr(route, "path", "unmatched"),
                                    str(response.status_code)).inc()
        return response

    @app.get("/metrics", response_class=PlainTextResponse)
    def prometheus() -> PlainTextResponse:
        """Prometheus text format: data-plane counters (read from the kernel now), health,
        ring rebuilds and slots written, API requests."""
        body = generate_latest(registry) + generate_latest(metrics.registry)
        return PlainTextResponse(body, media_type=CONTENT_TYPE_LATEST)

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

    def view(vip: Vip) -> VipView:
        return VipView(**dict(vip), all_backends_down=controller.all_down(vip.id))

    @app.get("/vips")
    def list_vips() -> list[VipView]:
        return [view(v) for v in controller.list_vips()]

    @app.post("/vips", status_code=status.HTTP_201_CREATED)
    def create_vip(spec: VipSpec) -> VipView:
        return view(controller.create_vip(spec))

    @app.get("/vips/{vip_id}")
    def get_vip(vip_id: int) -> VipView:
        """The VIP; `all_backends_down` tells whether its all-down rule is in force."""
        return view(controller.get_vip(vip_id))

    @app.delete("/vips/{vip_id}", status_code=status.HTTP_204_NO_CONTENT)
    def delete_vip(vip_id: int) -> None:
        controller.delete_vip(vip_id)

    @app.patch("/vips/{vip_id}")
    def update_vip(vip_id: int, update: VipUpdate) -> VipView:
        """Change a VIP's flags, health check, all-down rule or slow start."""
        return view(controller.update_vip(vip_id, update))

    @app.put("/vips/{vip_id}/flags")
    def set_flags(vip_id: int, update: FlagsUpdate) -> VipView:
        return view(controller.set_flags(vip_id, update.flags))

    @app.get("/vips/{vip_id}/backends")
    def list_backends(vip_id: int, conn_entries: bool = False) -> list[dict[str, Any]]:
        """Each backend: weight, drain, state (up, down, draining, unknown), last check, time
        in state, in ring or not; connection-table entries pointing at it for draining ones
        (all with ?conn_entries=true)."""
        return controller.backend_statuses(vip_id, conn_entries)

    @app.post("/vips/{vip_id}/backends", status_code=status.HTTP_201_CREATED)
    def add_backend(vip_id: int, backend: BackendSpec) -> BackendSpec:
        return controller.add_backend(vip_id, backend)

    @app.patch("/vips/{vip_id}/backends/{address}")
    def update_backend(vip_id: int, address: str, update: BackendUpdate) -> BackendSpec:
        """Change a backend's weight and/or drain it (no new flows; established ones stay)."""
        return controller.update_backend(vip_id, _address(address), update)

    @app.delete("/vips/{vip_id}/backends/{address}", status_code=status.HTTP_204_NO_CONTENT)
    def remove_backend(vip_id: int, address: str) -> None:
        controller.remove_backend(vip_id, _address(address))

    @app.patch("/backends/{address}")
    def update_backend_everywhere(address: str, update: BackendUpdate) -> dict[str, list[int]]:
        """Change a backend in every VIP that has it, in one step (e.g. drain a host)."""
        return {"vips": controller.update_backend_everywhere(_address(address), update)}

    @app.delete("/backends/{address}")
    def remove_backend_everywhere(address: str) -> dict[str, list[int]]:
        """Take a backend out of every VIP that has it, in one step."""
        return {"vips": controller.remove_backend_everywhere(_address(address))}

    @app.get("/health/schedule")
    def check_schedule() -> list[dict[str, Any]]:
        """Debug: every probe with the CLOCK_MONOTONIC start times of its last checks."""
        return controller.check_schedule()

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
