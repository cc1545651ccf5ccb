"""The REST API's assembly: the app, its state, its routers, error handlers and middleware.

The layer is thin: a route validates (the models of lb.control.model: FastAPI answers 422
naming the field), makes one controller call and answers a schema of api/schemas.py. Where
the parts live:

    api/routes/   one router per resource: vips, backends, config, status, fleet, trace, events
    api/deps.py   the controller, readiness and the token check, given to routes
    api/errors.py the one table from domain errors to HTTP statuses
    api/schemas.py the request and response bodies

Changes need a bearer token when one is configured (always when the API listens beyond
loopback); reads never do.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI, Request, Response
from prometheus_client import CollectorRegistry
from starlette.exceptions import HTTPException
from starlette.status import HTTP_413_CONTENT_TOO_LARGE as HTTP_413
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api import errors
from api.routes import backends, config, events, fleet, status, trace, vips
from lb.control import metrics
from lb.control.controller import Controller


async def _count_requests(request: Request,
                          call_next: Callable[[Request], Awaitable[Response]]) -> Response:
    """Count every answer by method, route template (not the path: ids stay out of the
    labels) and status."""
    response = await call_next(request)
    route = request.scope.get("route")
    metrics.API_REQUESTS.labels(request.method, getattr(route, "path", "unmatched"),
                                str(response.status_code)).inc()
    return response


def create_app(controller: Controller, readiness: Callable[[], dict[str, Any]],
               token: str | None = None, max_body_bytes: int = 4 * 1024 * 1024) -> FastAPI:
    """The API over `controller`; `readiness()` returns the /readyz body (key "ready");
    with `token`, every change needs `Authorization: Bearer <token>`; a body over
    `max_body_bytes` answers 413 before it is parsed."""
    app = FastAPI(title="lb", version="1",
                  description="An XDP layer-4 load balancer: VIPs, backends, stats, config.")
    registry = CollectorRegistry()
    registry.register(metrics.DataplaneCollector(controller.metrics_snapshot))
    app.state.controller = controller
    app.state.readiness = readiness
    app.state.token = token
    app.state.registry = registry
    routers = (status.router, vips.router, backends.router, config.router, fleet.router,
               trace.router, events.router)
    for router in routers:
        app.include_router(router)
    # The routes by path, for the methods a 405 lists in `Allow`.
    app.state.routes = [r for router in routers for r in router.routes]
    errors.install(app)
    app.middleware("http")(_count_requests)
    app.add_middleware(BodyLimit, max_bytes=max_body_bytes)
    return app


class BodyLimit:
    """413 for a body over `max_bytes`: at once when Content-Length says so, else when the
    bytes read pass it (the rest is not read). Either answer is a problem (api/errors.py)."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        too_large = f"the body is larger than {self.max_bytes} bytes (api_max_body_bytes)"
        length = dict(scope["headers"]).get(b"content-length", b"0")
        if length.isdigit() and int(length) > self.max_bytes:
            response = errors.problem(HTTP_413, too_large,
                                      headers={"Connection": "close"})
            await response(scope, receive, send)
            return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.max_bytes:
                raise HTTPException(HTTP_413, too_large)
            return message

        await self.app(scope, counted, send)
