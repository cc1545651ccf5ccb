"""The one Python client of the daemon's REST API: one typed method per operation, one error tree.

Every caller that talks to a running daemon (the `lb` commands, the lab's demo, the benchmarks,
the tests' shorthands) goes through `Client`; only tests of the HTTP contract itself (exact
status codes, malformed bodies) send raw requests.

    with Client("http://127.0.0.1:8470", token=None) as api:
        vip = api.create_vip("10.100.0.1", 80)
        api.add_backend(vip["id"], "10.1.0.2", weight=2)
        print(api.vip_stats(vip["id"])["backends"])

A method returns the API's JSON body decoded (dicts and lists, typed below as TypedDicts of
the fields callers read; the API may send more), None for an answer without a body (204).
It raises, for anything but a 2xx answer:

    ClientError                   talking to the API did not give the answer asked for
    ├── Unreachable               no HTTP answer: nothing listens, or no answer in time
    └── ApiError                  an HTTP answer with an error status (.status, .detail)
        ├── Refused               4xx: the request was wrong or not allowed
        └── ServerError           5xx: the API could not do what it was asked

`ApiError.messages` are the API's error as lines: its problem's `detail` string, or one
`field: message` line per entry of its `errors` (the fields at fault in a 422 answer).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from types import TracebackType
from typing import Any, NotRequired, TypedDict
from urllib.parse import quote

import httpx

DEFAULT_API = "http://127.0.0.1:8470"
# Seconds to wait for an answer (a whole-config import writes every ring it changes).
DEFAULT_TIMEOUT = 30.0


# --- errors --------------------------------------------------------------------------------
class ClientError(Exception):
    """Talking to the API did not give the answer asked for."""


class Unreachable(ClientError):
    """No HTTP answer: nothing listens at the URL, or it did not answer within `timeout` s."""

    def __init__(self, url: str, timeout: float, cause: httpx.TransportError) -> None:
        self.url, self.timeout = url, timeout
        reason = (f"no answer within {timeout:g} s" if isinstance(cause, httpx.TimeoutException)
                  else str(cause) or type(cause).__name__)
        super().__init__(f"cannot reach the API at {url}: {reason}")


class ApiError(ClientError):
    """An HTTP answer with an error status: `status` (int), `reason` (its phrase), `detail`
    (the body's `detail`, or its text), `messages` (the error as lines)."""

    def __init__(self, response: httpx.Response) -> None:
        self.status = response.status_code
        self.reason = response.reason_phrase
        self.detail = _detail(response)
        self.messages = error_messages(response)
        super().__init__(f"{self.status} {self.reason}: " + "; ".join(self.messages))


class Refused(ApiError):
    """4xx: the request was wrong (or not allowed); the API says which field."""


class ServerError(ApiError):
    """5xx: the API could not do what it was asked."""


def _detail(response: httpx.Response) -> Any:
    try:
        return response.json()["detail"]
    except (ValueError, KeyError, TypeError):
        return response.text


def error_messages(response: httpx.Response) -> list[str]:
    """The API's error as lines: its `detail` string, or one `field: message` per 422 error."""
    try:
        body = response.json()
        detail = body["detail"]
    except (ValueError, KeyError, TypeError):
        return [response.text.strip() or response.reason_phrase]
    if isinstance(body.get("errors"), list):  # a problem with one entry per field at fault
        detail = body["errors"]
    if isinstance(detail, list):
        return [_field_message(e) for e in detail]
    return [str(detail)]


def _field_message(error: dict[str, Any]) -> str:
    """One FastAPI validation error as `vips[0].backends[1].address: message`."""
    loc = list(error.get("loc", []))
    if len(loc) > 1 and loc[0] in ("body", "path", "query"):
        loc = loc[1:]
    field = ""
    for part in loc:
        field += f"[{part}]" if isinstance(part, int) else f".{part}" if field else str(part)
    message = str(error.get("msg", error)).removeprefix("Value error, ")
    return f"{field}: {message}" if field else message


# --- what the API answers (the fields callers read; bodies may carry more) ------------------
class Backend(TypedDict):
    """A backend of a VIP, as configured (POST/PATCH answers, /config entries)."""

    address: str
    weight: int
    drain: NotRequired[bool]


class BackendStatus(Backend):
    """GET /vips/{id}/backends: a backend with its health and ring membership."""

    state: str  # up, down, draining, unknown
    in_ring: bool
    effective_weight: int
    health: dict[str, Any] | None


class Vip(TypedDict):
    """A VIP (GET /vips, /vips/{id}, POST /vips)."""

    id: int
    address: str
    port: int
    protocol: str
    flags: list[str]
    backends: list[Backend]
    check: dict[str, Any] | None
    all_down: str
    slow_start_s: float
    all_backends_down: bool


class ApplyReport(TypedDict):
    """PUT /config: what the change did."""

    vips_added: int
    vips_removed: int
    vips_changed: int
    ring_slots_written: int


class Readiness(TypedDict):
    """GET /readyz: `ready`, where the program is attached and what startup found."""

    ready: bool
    interface: NotRequired[str | None]
    netns: NotRequired[str | None]
    mode: NotRequired[str | None]
    next_hop_mac: NotRequired[str | None]
    pin_dir: NotRequired[str | None]
    problems: NotRequired[list[str]]
    startup: dict[str, int]


class BackendCounters(TypedDict):
    """One backend in GET /vips/{id}/stats."""

    address: str
    weight: int
    ring_slots: int
    packets: int
    bytes: int


class VipStats(TypedDict):
    """GET /vips/{id}/stats: the VIP's packets and bytes, each backend's ring slots and
    counters (a backend's counters count every VIP it serves)."""

    id: int
    packets: int
    bytes: int
    ring_size: int
    backends: list[BackendCounters]


# Global counters (GET /stats): group (totals, conn_table, pass_reasons, drop_reasons) ->
# counter name -> packets.
Stats = dict[str, dict[str, int]]
# A whole desired state (GET and PUT /config): {"vips": [VIP with "backends", ...]}.
ConfigDocument = dict[str, Any]


def _path(*parts: object) -> str:
    """A URL path from parts, each percent-encoded (an IPv6 address stays one segment)."""
    return "".join("/" + quote(str(p), safe="") for p in parts)


def _given(**fields: Any) -> dict[str, Any]:
    """The fields that are not None: what a body sends (the API's defaults apply to the rest)."""
    return {k: v for k, v in fields.items() if v is not None}


# --- the client ----------------------------------------------------------------------------
class Client:
    """HTTP to one daemon's API at `base_url`; `token`, when given, goes with every request as
    a bearer token; `timeout` in seconds per request. `transport` replaces httpx's (a socket
    option, or an httpx.MockTransport in tests). Close it, or use it as a context manager."""

    def __init__(self, base_url: str = DEFAULT_API, token: str | None = None,
                 timeout: float = DEFAULT_TIMEOUT, *,
                 transport: httpx.BaseTransport | None = None) -> None:
        self.url, self.timeout = base_url, timeout
        # UTF-8 bytes: httpx would encode a str header as ASCII (a token may have non-ASCII).
        headers = {"Authorization": b"Bearer " + token.encode()} if token else {}
        self.http = httpx.Client(base_url=base_url, headers=headers, timeout=timeout,
                                 transport=transport)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 _traceback: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        self.http.close()

    def request(self, method: str, path: str, body: Any = None, *,
                params: Mapping[str, Any] | None = None, content: bytes | str | None = None,
                accept: Iterable[int] = (), timeout: float | None = None) -> httpx.Response:
        """`method path` with `body` as JSON (or `content` as it is, already JSON); returns
        the response if its status is 2xx or in `accept`, else raises an ApiError."""
        extra: dict[str, Any] = {}
        if timeout is not None:
            extra["timeout"] = timeout
        if content is not None:
            extra["content"] = content
            extra["headers"] = {"content-type": "application/json"}
        elif body is not None:
            extra["json"] = body
        try:
            r = self.http.request(method, path, params=params, **extra)
        except httpx.TransportError as e:
            raise Unreachable(self.url, self.timeout if timeout is None else timeout,
                              e) from None
        if r.is_error and r.status_code not in accept:
            raise (ServerError if r.status_code >= 500 else Refused)(r)
        return r

    def call(self, method: str, path: str, body: Any = None, **options: Any) -> Any:
        """`request`, then the decoded JSON body (None when the answer has none)."""
        r = self.request(method, path, body, **options)
        return r.json() if r.content else None

    # --- the process ---------------------------------------------------------------------
    def healthz(self) -> dict[str, str]:
        """GET /healthz: the process is up."""
        return self.call("GET", "/healthz")

    def readyz(self, timeout: float | None = None) -> Readiness:
        """GET /readyz; a daemon that is not ready (503) answers too: read `ready`."""
        return self.call("GET", "/readyz", accept=(503,), timeout=timeout)

    def metrics(self) -> str:
        """GET /metrics: the Prometheus text."""
        return self.request("GET", "/metrics").text

    def check_schedule(self) -> list[dict[str, Any]]:
        """GET /health/schedule: every probe with the start times of its last checks."""
        return self.call("GET", "/health/schedule")

    # --- VIPs ----------------------------------------------------------------------------
    def list_vips(self) -> list[Vip]:
        return self.call("GET", "/vips")

    def get_vip(self, vip_id: int) -> Vip:
        return self.call("GET", _path("vips", vip_id))

    def create_vip(self, address: str, port: int, protocol: str | None = None, *,
                   flags: Sequence[str] | None = None, **settings: Any) -> Vip:
        """POST /vips; fields left None take the API's defaults (tcp, no flags, ...);
        `settings` are further VIP fields (check, all_down, slow_start_s)."""
        return self.call("POST", "/vips", _given(address=address, port=port,
                                                 protocol=protocol, flags=flags, **settings))

    def update_vip(self, vip_id: int, **changes: Any) -> Vip:
        """PATCH /vips/{id}: flags, check, all_down, slow_start_s."""
        return self.call("PATCH", _path("vips", vip_id), changes)

    def set_flags(self, vip_id: int, flags: Sequence[str]) -> Vip:
        """PUT /vips/{id}/flags: exactly these flags."""
        return self.call("PUT", _path("vips", vip_id, "flags"), {"flags": list(flags)})

    def delete_vip(self, vip_id: int) -> None:
        self.call("DELETE", _path("vips", vip_id))

    # --- backends ------------------------------------------------------------------------
    def list_backends(self, vip_id: int, conn_entries: bool = False) -> list[BackendStatus]:
        """GET /vips/{id}/backends; `conn_entries`: count connection-table entries of all."""
        params = {"conn_entries": "true"} if conn_entries else None
        return self.call("GET", _path("vips", vip_id, "backends"), params=params)

    def add_backend(self, vip_id: int, address: str, weight: int | None = None,
                    **fields: Any) -> Backend:
        """POST /vips/{id}/backends; weight None: the API's default (1)."""
        return self.call("POST", _path("vips", vip_id, "backends"),
                         _given(address=address, weight=weight, **fields))

    def update_backend(self, vip_id: int, address: str, **changes: Any) -> Backend:
        """PATCH /vips/{id}/backends/{address}: weight and/or drain."""
        return self.call("PATCH", _path("vips", vip_id, "backends", address), changes)

    def remove_backend(self, vip_id: int, address: str) -> None:
        self.call("DELETE", _path("vips", vip_id, "backends", address))

    def update_backend_everywhere(self, address: str, **changes: Any) -> list[int]:
        """PATCH /backends/{address}: in every VIP that has it; returns those VIPs' ids."""
        return self.call("PATCH", _path("backends", address), changes)["vips"]

    def remove_backend_everywhere(self, address: str) -> list[int]:
        """DELETE /backends/{address}: out of every VIP that has it; returns their ids."""
        return self.call("DELETE", _path("backends", address))["vips"]

    # --- counters and the whole configuration --------------------------------------------
    def stats(self) -> Stats:
        return self.call("GET", "/stats")

    def vip_stats(self, vip_id: int) -> VipStats:
        return self.call("GET", _path("vips", vip_id, "stats"))

    def trace(self, src: str, dst: str, sport: int, dport: int, proto: str = "tcp",
              syn: bool = False) -> dict[str, Any]:
        """GET /trace: where a flow goes and why, with the program's verdict on one packet
        of it (a SYN if `syn`, else an ACK)."""
        params: dict[str, Any] = {"src": src, "dst": dst, "sport": sport, "dport": dport,
                                  "proto": proto}
        if syn:
            params["flags"] = "syn"
        # The first trace compiles the simulator (seconds): wait longer than for a read.
        return self.call("GET", "/trace", params=params, timeout=max(self.timeout, 30.0))

    def events(self, since: int = 0, wait: float = 0.0) -> dict[str, Any]:
        """GET /events: the events after cursor `since` and the `next` cursor; with none yet,
        the daemon waits up to `wait` seconds (a long poll)."""
        return self.call("GET", "/events", params={"since": since, "wait": wait},
                         timeout=self.timeout + wait)

    def fleet(self) -> dict[str, Any]:
        """GET /fleet: every live host's revision and ring digests, and who disagrees."""
        return self.call("GET", "/fleet")

    def get_config(self) -> ConfigDocument:
        return self.call("GET", "/config")

    def put_config(self, document: ConfigDocument | bytes | str) -> ApplyReport:
        """PUT /config: the desired state becomes exactly `document` (a dict, or its JSON
        already encoded, so that a caller timing the call does not time the encoding)."""
        if isinstance(document, bytes | str):
            return self.call("PUT", "/config", content=document)
        return self.call("PUT", "/config", document)
