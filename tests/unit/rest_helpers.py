"""The REST layer over a real controller in-process: the app, a TestClient, the fake kernel.

`rest_api()` builds what `lb run` serves, minus the kernel: a real Store (SQLite in a
temporary folder), a real Balancer and Controller, and api.app.create_app, over
tests/unit/fakes.py's RecordingDataplane. Tests send HTTP through fastapi's TestClient and read
back what "the kernel" holds. No root, no bcc.
"""

from __future__ import annotations

import contextlib
import ipaddress
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from fakes import RecordingDataplane
from fastapi import FastAPI

from api.app import create_app
from lb.control.controller import Controller
from lb.control.service import Balancer
from lb.control.store import Store
from lb.xdp.config import Sizes
from lb.xdp.types import PROTOCOLS, VipKey

with warnings.catch_warnings():
    # Starlette 1.x warns that its TestClient prefers httpx2; the project's client is httpx.
    warnings.filterwarnings("ignore", "Using `httpx` with `starlette.testclient`")
    from fastapi.testclient import TestClient

# 4 VIPs, 5 usable backend slots (slot 0 means "none"), a small prime ring.
SIZES = Sizes(max_vips=4, max_backends=6, ring_size=13)
MAX_VIPS, MAX_BACKENDS = SIZES.max_vips, SIZES.max_backends - 1
TOKEN = "unit-test-token"


def ready() -> dict[str, Any]:
    """A /readyz body of a daemon whose program is attached (as lb.daemon reports it)."""
    return {"ready": True, "problems": [], "interface": "eth0", "netns": None,
            "mode": "native", "next_hop_mac": "02:00:00:00:00:01", "pin_dir": "/sys/fs/bpf/lb",
            "startup": {"adopted_vips": 0, "vips_added": 0, "vips_removed": 0,
                        "vips_changed": 0, "ring_slots_written": 0},
            "store": {"kind": "sqlite", "revision": 0, "reachable": True,
                      "from_local_copy": False}}


@dataclass
class Rest:
    """One API under test: its app, a client, the controller behind it and its fake kernel."""

    app: FastAPI
    client: TestClient
    controller: Controller
    kernel: RecordingDataplane

    def state(self) -> tuple[dict[str, object], Any]:
        """Everything a request could change: the kernel's maps and the desired state."""
        return self.kernel.snapshot(), check(self.client.get("/config"), 200)

    def vip_entry(self, address: str, port: int, protocol: str = "tcp") -> tuple[int, int]:
        """The VIP's entry in the kernel: (number, i.e. its ring's index; F_VIP_* flags)."""
        key = VipKey(ipaddress.ip_address(address), port, PROTOCOLS[protocol])
        return self.kernel.vip_entries[key]

    def vip_num(self, address: str, port: int, protocol: str = "tcp") -> int:
        return self.vip_entry(address, port, protocol)[0]

    def ring(self, address: str, port: int, protocol: str = "tcp") -> set[str]:
        """The backend addresses the VIP's ring names in the kernel."""
        slots = self.kernel.read_ring(self.vip_num(address, port, protocol))
        return {str(self.kernel.backends[i]) for i in slots if i}


@contextlib.contextmanager
def rest_api(tmp_path: Path, token: str | None = None,
             max_body_bytes: int = 4 * 1024 * 1024) -> Iterator[Rest]:
    """An API as `lb run` builds it (with `token`: changes need it), over the fake kernel.

    Cleanup: the client's lifespan ended, the store closed (tmp_path holds the database)."""
    store = Store(tmp_path / "state.db")
    kernel = RecordingDataplane(SIZES)
    controller = Controller(store, Balancer(kernel))
    controller.reconcile()
    app = create_app(controller, ready, token, max_body_bytes)
    try:
        with TestClient(app) as client:
            yield Rest(app, client, controller, kernel)
    finally:
        controller.close()
        store.close()


def check(response: httpx.Response, status: int) -> Any:
    """Assert the status (printing the body if not) and return the JSON body, if any."""
    assert response.status_code == status, (
        f"{response.request.method} {response.request.url.path}: {response.status_code} "
        f"{response.text}, expected {status}")
    return response.json() if response.content else None


def error_fields(response: httpx.Response) -> str:
    """Every field a 422 answer names, as one string: the `loc` paths of a validation error
    (e.g. "body.vips.0.backends.1.weight") and its `detail` ("field: message")."""
    body = response.json()
    assert_problem(response)
    return " ".join([body["detail"]] + [".".join(str(p) for p in e["loc"]) + " " + e["msg"]
                                        for e in body.get("errors") or ()])


def assert_problem(response: httpx.Response) -> dict[str, Any]:
    """Assert the answer is an RFC 9457 problem (api/errors.py's one error shape); return it."""
    assert response.headers["content-type"] == "application/problem+json", response.headers
    body = response.json()
    assert body["status"] == response.status_code and isinstance(body["detail"], str), body
    assert body["type"].startswith("urn:lb:error:") and body["title"], body
    return body


def create_vip(client: TestClient, address: str, port: int, protocol: str = "tcp",
               backends: dict[str, int] | None = None, **settings: Any) -> int:
    """POST /vips, then POST each backend; returns the VIP's id."""
    vip = check(client.post("/vips", json={"address": address, "port": port,
                                           "protocol": protocol, **settings}), 201)
    for backend, weight in (backends or {}).items():
        check(client.post(f"/vips/{vip['id']}/backends",
                          json={"address": backend, "weight": weight}), 201)
    return vip["id"]
