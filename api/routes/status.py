"""Routes of observed state: liveness, readiness, Prometheus metrics, statistics, probes."""

from __future__ import annotations

from fastapi import APIRouter, Response, status
from fastapi.responses import PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from api.deps import ControllerDep, ReadinessDep, RegistryDep
from api.errors import responses
from api.schemas import Liveness, ProbeSchedule, Readiness, Stats, VipStats
from lb.control import metrics

router = APIRouter(tags=["status"])


@router.get("/metrics", response_class=PlainTextResponse,
            responses={200: {"description": "Prometheus text format"}})
def prometheus(registry: RegistryDep) -> PlainTextResponse:
    """Prometheus text format: data-plane counters (read from the kernel now), health,
    ring rebuilds and slots written, API requests."""
    body = generate_latest(registry) + generate_latest(metrics.registry)
    return PlainTextResponse(body, media_type=CONTENT_TYPE_LATEST)


@router.get("/healthz")
def healthz() -> Liveness:
    """The process is up."""
    return Liveness(status="ok")


@router.get("/readyz", responses={503: {"model": Readiness, "description": "not ready: "
                                        "`problems` says why"}})
def readyz(response: Response, readiness: ReadinessDep) -> Readiness:
    """The program is attached and its maps answer; reports the XDP mode in effect."""
    body = Readiness.model_validate(readiness())
    if not body.ready:
        response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    return body


@router.get("/health/schedule")
def check_schedule(controller: ControllerDep) -> list[ProbeSchedule]:
    """Debug: every probe with the CLOCK_MONOTONIC start times of its last checks."""
    return [ProbeSchedule.model_validate(p) for p in controller.check_schedule()]


@router.get("/stats")
def stats(controller: ControllerDep) -> Stats:
    """Global counters: totals, connection table, pass and drop reasons."""
    return Stats.model_validate(controller.stats())


@router.get("/vips/{vip_id}/stats", responses=responses(404))
def vip_stats(vip_id: int, controller: ControllerDep) -> VipStats:
    """Packets and bytes sent for the VIP and to each of its backends."""
    return VipStats.model_validate(controller.vip_stats(vip_id))
