"""Helpers of the API tests: REST shorthands, field names in 422 answers, and the traffic oracle.

The traffic oracle answers "which backend does each flow reach?" twice, independently:
`route_flows` sends scapy packets from the lab's client and reads which backend's link carried
each one (watched from the router's side, still encapsulated); `predict` computes the answer
from the configuration alone, with the pure Maglev builder and the flow-hash mirror, never
asking the daemon or reading its maps.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import hashlib
import ipaddress
import json
import mmap
import os
import sqlite3
import subprocess
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import httpx
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import IPv6

from lb.client import Client
from lb.control.maglev import build_ring
from lb.lab.daemon import LabDaemon
from lb.lab.veth import VethLab
from lb.lab.waits import settle, wait_until
from lb.xdp.config import Sizes
from lb.xdp.consts import VipFlag
from lb.xdp.flowhash import flow_hash
from lb.xdp.types import PROTOCOLS

Address = ipaddress.IPv4Address | ipaddress.IPv6Address

# The lab daemon keeps the default ring size (LabDaemon overrides only VIPs, backends, table).
RING_SIZE = Sizes().ring_size

# The session daemon settles ring slots this often, and a flow idle this long after its slot
# changed may follow the slot (`lb run` defaults: 10 s and 900 s; short here, so that settling
# runs under every API test).
SETTLE_INTERVAL_S = 0.5
TCP_IDLE_TIMEOUT_S = 3.0


# --- REST shorthands: raw HTTP (`check`) for the contract, lb.client for the set-up -------
def check(response: httpx.Response, status: int) -> Any:
    """Assert the status (printing the body if not) and return the JSON body, if any."""
    assert response.status_code == status, (
        f"{response.request.method} {response.request.url.path}: {response.status_code} "
        f"{response.text}, expected {status}")
    return response.json() if response.content else None


def create_vip(api: Client, address: Address | str, port: int, protocol: str = "tcp",
               flags: Iterable[str] = (), backends: dict[Any, int] | None = None) -> int:
    """POST /vips and POST each backend, through lb.client (statuses: test_api_contract);
    returns the VIP's id."""
    vip = api.create_vip(str(address), port, protocol, flags=list(flags))
    for backend, weight in (backends or {}).items():
        api.add_backend(vip["id"], str(backend), weight)
    return vip["id"]


def vip_doc(address: Address | str, port: int, protocol: str = "tcp",
            backends: dict[Any, int] | None = None, flags: Iterable[str] = ()) -> dict[str, Any]:
    """One entry of a /config document."""
    return {"address": str(address), "port": port, "protocol": protocol,
            "flags": sorted(flags),
            "backends": [{"address": str(a), "weight": w} for a, w in (backends or {}).items()]}


def essence(vips: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What these tests set of each VIP (address, port, protocol, flags, backends' address
    and weight): comparisons with a hand-written document ignore fields left at defaults."""
    return [{"address": v["address"], "port": v["port"], "protocol": v["protocol"],
             "flags": v["flags"],
             "backends": [(b["address"], b["weight"]) for b in v["backends"]]} for v in vips]


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


# --- a rejected request changes nothing: config, kernel and database rows -----------------
_libbpf = ctypes.CDLL("libbpf.so.1", use_errno=True)
_libbpf.bpf_obj_get.argtypes = [ctypes.c_char_p]
_libbpf.bpf_obj_get.restype = ctypes.c_int
# Small maps read whole with bpftool; the rings (BPF_F_MMAPABLE, max_vips * 65537 slots)
# are hashed through a read-only mmap.
_DUMPED_MAPS = ("vips_v4", "vips_v6", "backends")


def _bpftool(*args: str) -> Any:
    out = subprocess.run(["bpftool", "-j", *args], check=True, capture_output=True, text=True)
    return json.loads(out.stdout)


def _rings_digest(pin: Path) -> str:
    info = _bpftool("map", "show", "pinned", str(pin))
    length = -(-info["bytes_value"] * info["max_entries"] // mmap.PAGESIZE) * mmap.PAGESIZE
    fd = _libbpf.bpf_obj_get(str(pin).encode())
    assert fd >= 0, f"{pin}: {os.strerror(ctypes.get_errno())}"
    try:
        with mmap.mmap(fd, length, mmap.MAP_SHARED, mmap.PROT_READ) as view:
            return hashlib.sha256(view).hexdigest()
    finally:
        os.close(fd)


def daemon_state(daemon: LabDaemon) -> dict[str, Any]:
    """Everything a request could change, read beside the API: the desired state (GET
    /config), the database's rows (state.db read-only, every table) and the kernel's VIP
    and backend maps and rings (the pinned maps)."""
    rows: dict[str, Any] = {}
    db = sqlite3.connect(f"file:{daemon.state_dir / 'state.db'}?mode=ro", uri=True)
    try:
        tables = [t for (t,) in db.execute("SELECT name FROM sqlite_master WHERE type = "
                                           "'table' ORDER BY name")]
        for table in tables:
            rows[table] = sorted(db.execute(f"SELECT * FROM {table}").fetchall(), key=repr)
    finally:
        db.close()
    kernel: dict[str, Any] = {name: sorted(map(repr, _bpftool("map", "dump", "pinned",
                                                              str(daemon.pin_dir / name))))
                              for name in _DUMPED_MAPS}
    kernel["rings"] = _rings_digest(daemon.pin_dir / "rings")
    return {"config": check(daemon.client.get("/config"), 200), "rows": rows,
            "kernel": kernel}


@contextlib.contextmanager
def unchanged(daemon: LabDaemon) -> Iterator[dict[str, Any]]:
    """Assert that what runs inside changes nothing (a rejected request): the config, the
    database rows and the kernel's maps are the same after as before (yields the before)."""
    before = daemon_state(daemon)
    yield before
    after = daemon_state(daemon)
    for part in before:
        assert after[part] == before[part], f"a rejected request changed the {part}"


# --- the traffic oracle -------------------------------------------------------------------
@functools.lru_cache(maxsize=64)
def _ring(members: tuple[tuple[str, int], ...]) -> tuple[list[str], Any]:
    return [key for key, _ in members], build_ring(list(members), RING_SIZE)


def predict(backends: dict[Any, int], src: Address, vip: Address, sport: int, dport: int,
            protocol: str, flags: Iterable[str] = ()) -> str:
    """The backend address (str) the configuration names for a new flow: Maglev ring of the
    (address, weight) set, slot = flow hash modulo the ring size."""
    keys, ring = _ring(tuple(sorted((str(a), w) for a, w in backends.items())))
    bits = sum(int(VipFlag[f.upper()]) for f in flags)
    h = flow_hash(src, vip, sport, dport, PROTOCOLS[protocol], bits)
    return keys[ring[h % RING_SIZE]]


def split_encap(frame: Any) -> tuple[Address, Any] | None:
    """(outer destination, inner IP packet) of an IP-in-IP frame sent toward a backend."""
    if getattr(frame, "direction", None) != "out":
        return None
    raw = bytes(frame)[14:]
    if not raw:
        return None
    if raw[0] >> 4 == 4 and raw[9] in (4, 41):
        ihl, total = (raw[0] & 0xF) * 4, int.from_bytes(raw[2:4], "big")
        outer, inner = ipaddress.ip_address(raw[16:20]), raw[ihl:total]
    elif raw[0] >> 4 == 6 and raw[6] in (4, 41):
        length = int.from_bytes(raw[4:6], "big")
        outer, inner = ipaddress.ip_address(raw[24:40]), raw[40:40 + length]
    else:
        return None
    return outer, (IP(inner) if inner[0] >> 4 == 4 else IPv6(inner))


def flow_frames(lab: VethLab, vip: Address, port: int, sports: Iterable[int], protocol: str,
                tcp_flags: str = "S") -> list[Any]:
    """One scapy frame per source port from the client to vip:port."""
    def l4(sport: int) -> Any:
        if protocol == "udp":
            return UDP(sport=sport, dport=port)
        return TCP(sport=sport, dport=port, flags=tcp_flags, seq=1)
    return [lab.client_frame(vip) / l4(s) / f"flow {s}".encode() for s in sports]


def route_flows(lab: VethLab, vip: Address, port: int, sports: Iterable[int],
                protocol: str = "udp", tcp_flags: str = "S") -> dict[int, str]:
    """Send one packet per source port from the client to vip:port; returns, for each, the
    outer destination (str) it reached the backends' links with.

    Asserts what any forwarded packet must satisfy: it crossed exactly one backend's link, its
    outer destination is that backend's own address, and it arrived once.
    """
    sports = list(sports)
    layer = UDP if protocol == "udp" else TCP

    def ours(frame: Any) -> bool:
        split = split_encap(frame)
        if split is None:
            return False
        inner = split[1]
        return (ipaddress.ip_address(inner.dst) == vip and inner.haslayer(layer)
                and inner[layer].dport == port)

    with contextlib.ExitStack() as stack:
        captures = {b: stack.enter_context(lab.capture("router", b.router_ifname, ours))
                    for b in lab.backends}
        lab.send_frames(flow_frames(lab, vip, port, sports, protocol, tcp_flags))
        wait_until(lambda: sum(len(c.frames) for c in captures.values()) >= len(sports),
                   timeout=5)
        settle(lambda: sum(len(c.frames) for c in captures.values()), quiet=0.1)

    reached: dict[int, str] = {}
    for backend, capture in captures.items():
        for frame in capture.frames:
            outer, inner = split_encap(frame)
            sport = inner[layer].sport
            assert outer in (backend.v4, backend.v6), (
                f"flow {sport} crossed {backend.name}'s link addressed to {outer}")
            assert sport not in reached, f"flow {sport} reached {reached[sport]} and {outer}"
            client = lab.client.v4 if vip.version == 4 else lab.client.v6
            assert (ipaddress.ip_address(inner.src), bytes(inner[layer].payload)) == (
                client, f"flow {sport}".encode()), f"inner packet changed: {inner!r}"
            reached[sport] = str(outer)
    missing = sorted(set(sports) - set(reached))
    assert not missing, f"{len(missing)} of {len(sports)} flows reached no backend: {missing[:10]}"
    return reached
