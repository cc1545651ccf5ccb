"""The one place domain errors become HTTP statuses: a table, and the handlers that apply it.

The control plane raises lb.control.service's errors and knows no HTTP; every route lets them
through, and the handler answers the table's status with `{"detail": "<the message>"}` (a
message names the field at fault when there is one, e.g. "weight: must be ...").

    BalancerError        400  (any error of the service the table does not name)
    ├── NotFound         404  the VIP or backend does not exist
    ├── AlreadyExists    409  the VIP or backend is already there
    ├── InvalidInput     422  a value the data plane cannot take
    ├── CapacityError    507  the data plane has no room left (max_vips, max_backends)
    └── StoreError       500  the store refused the commit (the kernel was put back)
        ├── StoreFull    507  the store's disk is full
        ├── Conflict     409  another balancer host committed a change first: retry
        └── Unavailable  503  the store (etcd) cannot be reached: nothing changed
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request, status
from fastapi.responses import JSONResponse

from api.schemas import ErrorDetail
from lb.control.errors import (
    AlreadyExists,
    BalancerError,
    CapacityError,
    Conflict,
    InvalidInput,
    NotFound,
    StoreError,
    StoreFull,
    Unavailable,
)

# Each domain error's status; a subclass takes its nearest listed base's.
ERROR_STATUS: dict[type[BalancerError], int] = {
    BalancerError: status.HTTP_400_BAD_REQUEST,
    NotFound: status.HTTP_404_NOT_FOUND,
    AlreadyExists: status.HTTP_409_CONFLICT,
    InvalidInput: status.HTTP_422_UNPROCESSABLE_CONTENT,
    CapacityError: status.HTTP_507_INSUFFICIENT_STORAGE,
    StoreError: status.HTTP_500_INTERNAL_SERVER_ERROR,
    StoreFull: status.HTTP_507_INSUFFICIENT_STORAGE,
    Conflict: status.HTTP_409_CONFLICT,
    Unavailable: status.HTTP_503_SERVICE_UNAVAILABLE,
}

_MEANING = {
    status.HTTP_401_UNAUTHORIZED: "a change without the bearer token",
    status.HTTP_404_NOT_FOUND: "no such VIP or backend",
    status.HTTP_409_CONFLICT: "the VIP or backend already exists",
    status.HTTP_507_INSUFFICIENT_STORAGE: "the data plane has no room left",
}


def status_of(exc: BalancerError) -> int:
    """The table's status for `exc`: its class's, or its nearest listed base's."""
    return next(ERROR_STATUS[c] for c in type(exc).__mro__ if c in ERROR_STATUS)


async def _answer(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, BalancerError)
    return JSONResponse({"detail": str(exc)}, status_code=status_of(exc))


def install(app: FastAPI) -> None:
    """Register the table's handler for every error it lists."""
    for error in ERROR_STATUS:
        app.add_exception_handler(error, _answer)


def responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` for the error statuses a route can answer (body: ErrorDetail)."""
    return {code: {"model": ErrorDetail, "description": _MEANING[code]} for code in codes}
