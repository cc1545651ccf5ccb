"""The one place errors become HTTP answers: a table of statuses, and one body shape for all.

Every 4xx and 5xx answers an RFC 9457 problem (`application/problem+json`, schema Problem):

    {"type": "urn:lb:error:not-found", "title": "Not Found", "status": 404,
     "detail": "no VIP with id 9"}

`detail` is one string saying what went wrong, naming the field at fault when there is one
("weight: must be ..."); a request that fails validation adds `errors`, one entry per field
(`field` "vips[0].port", `loc` its path, `msg`), and its `detail` joins them. Inputs are
never echoed (a NaN or a 1e400 could not be encoded back).

The control plane raises lb.control.errors' errors and knows no HTTP; every route lets them
through, and the handler answers the table's status:

    BalancerError        400  (any error of the service the table does not name)
    ├── NotFound         404  the VIP or backend does not exist
    ├── AlreadyExists    409  the VIP or backend is already there
    ├── InvalidInput     422  a value the data plane cannot take
    ├── CapacityError    507  the data plane has no room left (max_vips, max_backends)
    └── StoreError       500  the store refused the commit (the kernel was put back)
        ├── StoreFull    507  the store's disk is full
        ├── Conflict     409  another balancer host committed a change first: retry
        └── Unavailable  503  the store (etcd) cannot be reached: nothing changed

The framework's own errors take the same shape: 401 (no token), 404 (no route), 405 (the
`Allow` header lists every method the path takes), 413 (body over api_max_body_bytes), 422
(validation; a body that is not UTF-8 JSON, or nested too deep, says so), 500 (a bug).
"""

from __future__ import annotations

import json
import logging
import re
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from api.schemas import Problem
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

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"

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
    status.HTTP_400_BAD_REQUEST: "the request cannot be served as it is",
    status.HTTP_401_UNAUTHORIZED: "a change without the bearer token",
    status.HTTP_404_NOT_FOUND: "no such VIP or backend",
    status.HTTP_409_CONFLICT: "the VIP or backend already exists, or another host "
                              "committed first",
    status.HTTP_413_CONTENT_TOO_LARGE: "the body is larger than api_max_body_bytes",
    status.HTTP_422_UNPROCESSABLE_CONTENT: "the body or a parameter is invalid (`errors` "
                                           "names each field)",
    status.HTTP_500_INTERNAL_SERVER_ERROR: "the store refused the commit (the kernel was "
                                           "put back)",
    status.HTTP_503_SERVICE_UNAVAILABLE: "the store cannot be reached: nothing changed",
    status.HTTP_507_INSUFFICIENT_STORAGE: "no room left: the data plane's maps or the "
                                          "store's disk",
}


def status_of(exc: BalancerError) -> int:
    """The table's status for `exc`: its class's, or its nearest listed base's."""
    return next(ERROR_STATUS[c] for c in type(exc).__mro__ if c in ERROR_STATUS)


def problem(code: int, detail: str, errors: list[dict[str, Any]] | None = None,
            headers: dict[str, str] | None = None) -> JSONResponse:
    """The problem answer of status `code`: type, title, status, detail (and errors)."""
    title = HTTPStatus(code).phrase
    body: dict[str, Any] = {"type": "urn:lb:error:" + re.sub(r"\W+", "-", title.lower()),
                            "title": title, "status": code, "detail": detail}
    if errors is not None:
        body["errors"] = errors
    return JSONResponse(body, status_code=code, headers=headers, media_type=PROBLEM_JSON)


def field_name(loc: list[Any]) -> str:
    """A validation error's path as one field name: ["body", "vips", 0, "port"] ->
    "vips[0].port" (the "body"/"path"/"query" part kept only when it is all there is)."""
    parts = list(loc[1:]) if len(loc) > 1 and loc[0] in ("body", "path", "query") else loc
    name = ""
    for part in parts:
        name += f"[{part}]" if isinstance(part, int) else f".{part}" if name else str(part)
    return name or "body"


def _message(error: dict[str, Any]) -> str:
    if error.get("type") == "json_invalid":
        reason = (error.get("ctx") or {}).get("error", "")
        return (f"the body is not valid JSON ({reason})" if reason
                else "the body is not valid JSON")
    return str(error.get("msg", "invalid")).removeprefix("Value error, ")


def _validation_errors(exc: RequestValidationError) -> list[dict[str, Any]]:
    """Each error as {field, loc, msg, type}: the input is left out (NaN, inf, bytes)."""
    return [{"field": field_name(list(e.get("loc", ()))),
             "loc": [p if isinstance(p, int) else str(p) for p in e.get("loc", ())],
             "msg": _message(e), "type": str(e.get("type", ""))}
            for e in exc.errors()]


async def _domain(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, BalancerError)
    return problem(status_of(exc), str(exc))


async def _validation(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = _validation_errors(exc)
    if any(e["type"] == "json_invalid" for e in errors):
        # json.loads guesses UTF-16/32 from the first bytes: say when the body is not UTF-8.
        try:
            (await request.body()).decode()
        except UnicodeDecodeError as bad:
            return problem(status.HTTP_400_BAD_REQUEST,
                           f"the body is not UTF-8 JSON (byte {bad.start} is "
                           f"{bad.object[bad.start]:#x})",
                           [{"field": "body", "loc": ["body"], "msg": "not UTF-8",
                             "type": "json_invalid"}])
        for error in errors:
            error["field"], error["loc"] = "body", ["body"]
    return problem(status.HTTP_422_UNPROCESSABLE_CONTENT,
                   "; ".join(f"{e['field']}: {e['msg']}" for e in errors), errors)


def _allowed(request: Request) -> list[str]:
    """Every method some route of the app takes at this request's path (HEAD aside)."""
    path = request.url.path
    methods: set[str] = set()
    for route in request.app.state.routes:
        if route.path_regex.match(path):
            methods |= set(route.methods or ())
    return sorted(methods - {"HEAD"})


async def _http(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    headers = dict(exc.headers or {})
    detail = exc.detail if isinstance(exc.detail, str) else json.dumps(exc.detail)
    if exc.status_code == status.HTTP_405_METHOD_NOT_ALLOWED:
        headers["Allow"] = ", ".join(_allowed(request))
        detail = f"{request.method} is not allowed here; allowed: {headers['Allow']}"
    elif exc.status_code == status.HTTP_404_NOT_FOUND and detail == "Not Found":
        detail = f"no route {request.url.path}"
    elif exc.status_code == status.HTTP_400_BAD_REQUEST and "parsing the body" in detail:
        detail = "the body is not UTF-8 JSON"
    return problem(exc.status_code, detail, headers=headers or None)


async def _bug(request: Request, exc: Exception) -> JSONResponse:
    log.exception("%s %s failed", request.method, request.url.path)
    return problem(status.HTTP_500_INTERNAL_SERVER_ERROR,
                   f"internal error: {type(exc).__name__} (see the daemon's log)")


def install(app: FastAPI) -> None:
    """Register the handlers: the table's errors, validation, HTTP errors, anything else;
    and make the OpenAPI document say so (see `_document`)."""
    for error in ERROR_STATUS:
        app.add_exception_handler(error, _domain)
    app.add_exception_handler(RequestValidationError, _validation)
    app.add_exception_handler(HTTPException, _http)
    app.add_exception_handler(Exception, _bug)
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = _document(generate())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _error(code: int) -> dict[str, Any]:
    return {"description": _MEANING[code],
            "content": {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}}}


def _document(doc: dict[str, Any]) -> dict[str, Any]:
    """Every operation lists the errors the framework adds to the routes' own: 422 (any
    parameter or body), 413 and 400 (a body), 401 and the store's 409/500/503/507 (a
    change); every error's body is a
    Problem in application/problem+json (FastAPI's own 422 schema is replaced)."""
    for item in doc["paths"].values():
        for op in item.values():
            answers = op.setdefault("responses", {})
            extra = []
            if op.get("parameters") or "requestBody" in op:
                extra.append(status.HTTP_422_UNPROCESSABLE_CONTENT)
            if "requestBody" in op:
                extra += [status.HTTP_400_BAD_REQUEST, status.HTTP_413_CONTENT_TOO_LARGE]
            if op.get("security"):  # a change: the token, and the store's refusals
                extra += [status.HTTP_401_UNAUTHORIZED, status.HTTP_409_CONFLICT,
                          status.HTTP_500_INTERNAL_SERVER_ERROR,
                          status.HTTP_503_SERVICE_UNAVAILABLE,
                          status.HTTP_507_INSUFFICIENT_STORAGE]
            for code in extra:
                answers.setdefault(str(code), {})
            for code in list(answers):
                if int(code) >= 400:
                    answers[code] = _error(int(code))
    schemas = doc.setdefault("components", {}).setdefault("schemas", {})
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)
    _link(doc)
    return doc


def _link(doc: dict[str, Any]) -> None:
    """OpenAPI links: a created VIP's id feeds every operation on /vips/{vip_id}..., an added
    backend's address (with its VIP's id) every operation on .../backends/{address}, so that
    a client (or schemathesis' stateful mode) can follow them."""
    paths = doc["paths"]

    def links(params: set[str], values: dict[str, str]) -> dict[str, Any]:
        return {op["operationId"]: {"operationId": op["operationId"],
                                    "parameters": {p: values[p] for p in params}}
                for path, item in paths.items() for op in item.values()
                if set(re.findall(r"{(\w+)}", path)) == params}

    created = paths["/vips"]["post"]["responses"]["201"]
    created["links"] = links({"vip_id"}, {"vip_id": "$response.body#/id"})
    added = paths["/vips/{vip_id}/backends"]["post"]["responses"]["201"]
    added["links"] = links({"vip_id", "address"}, {"vip_id": "$request.path.vip_id",
                                                   "address": "$response.body#/address"})


def responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` for the error statuses a route can answer (body: Problem)."""
    return {code: {"model": Problem, "description": _MEANING[code]} for code in codes}
