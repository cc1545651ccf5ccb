"""What routes are given through dependencies: the controller, readiness, the token check.

create_app puts the objects on `app.state` (controller, readiness, token, registry); each
getter here hands one to a route, and tests swap any of them with `app.dependency_overrides`.
`require_token` guards every route that changes state: with a token configured, such a
request needs `Authorization: Bearer <token>` (compared in constant time, as UTF-8
bytes), else 401.
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request, Security, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import CollectorRegistry

from lb.control.controller import Controller
from lb.control.errors import InvalidInput
from lb.control.events import ACTOR
from lb.control.model import Address

# Dependencies are async (they only read app.state): no worker-thread hop per request.


async def get_controller(request: Request) -> Controller:
    return request.app.state.controller


async def get_readiness(request: Request) -> Callable[[], dict[str, Any]]:
    """The daemon's readiness probe: returns the /readyz body (key "ready")."""
    return request.app.state.readiness


async def get_registry(request: Request) -> CollectorRegistry:
    """The registry of the data plane's collector (read from the kernel at each scrape)."""
    return request.app.state.registry


async def get_token(request: Request) -> str | None:
    """The bearer token changes need; None: changes need none (a loopback-only API)."""
    return request.app.state.token


ControllerDep = Annotated[Controller, Depends(get_controller)]
ReadinessDep = Annotated[Callable[[], dict[str, Any]], Depends(get_readiness)]
RegistryDep = Annotated[CollectorRegistry, Depends(get_registry)]

bearer = HTTPBearer(auto_error=False, description="needed by every change when the daemon "
                    "has an api_token (always when the API listens beyond loopback)")


async def require_token(
        request: Request,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Security(bearer)],
        token: Annotated[str | None, Depends(get_token)]) -> None:
    """Let the request through if no token is configured or it carries that very token;
    the change's events name who made it (lb.control.events.ACTOR): the peer's address,
    with "(token)" when it showed the token."""
    peer = request.client.host if request.client else "unknown"
    if token is None:
        ACTOR.set(peer)
        return
    # Header bytes arrive decoded as latin-1: back to bytes, compared with the token's UTF-8
    # (a token with non-ASCII characters is sent as UTF-8, as lb.client does).
    sent = credentials.credentials.encode("latin-1") if credentials else b""
    if credentials is None or not hmac.compare_digest(sent, token.encode()):
        raise HTTPException(status.HTTP_401_UNAUTHORIZED,
                            "a bearer token is required to change state "
                            "(Authorization: Bearer ...)",
                            headers={"WWW-Authenticate": "Bearer"})
    ACTOR.set(f"{peer} (token)")


# On every route that changes state: `dependencies=[CHANGES_STATE]`.
CHANGES_STATE = Depends(require_token)


async def backend_address(address: str) -> Address:
    """The {address} of a backend's path, matched by value (fd00::2 is fd00:0::2)."""
    try:
        return ipaddress.ip_address(address)
    except ValueError:
        raise InvalidInput(f"address: {address!r} is not an IP address") from None


BackendAddress = Annotated[Address, Depends(backend_address)]
