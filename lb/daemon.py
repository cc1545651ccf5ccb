"""The daemon (`lb run`): load and attach the data plane, reconcile it, serve the REST API.

Start-up, in this order:
1. bind the API socket (in the namespace the daemon starts in, so a lab's API is reachable
   from the host), then enter `netns` if set;
2. load the program with its maps pinned under `pin_dir`: a previous run's maps are reused,
   with every VIP, ring, backend and connection-table entry in them;
3. adopt what the maps hold (VIP numbers, backend slots) and reconcile them with the database,
   writing only ring slots that differ (zero after a plain restart);
4. attach, atomically replacing the previous run's program, which kept forwarding meanwhile
   (an expected-fd replace: a program someone attached meanwhile is not replaced). An
   interface whose program is not ours is refused before anything is loaded, unless
   `replace_foreign` (lb.control.coexist; exit status EXIT_FOREIGN = 5);
5. follow the next hop (lb.control.nexthop) unless next_hop_mac is set: a new gateway MAC is
   written into the running program within a second;
6. serve until SIGTERM/SIGINT. Exiting never detaches: `lb detach` does, on purpose.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import signal
import socket
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any, NoReturn

import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from api.app import create_app
from lb import netns
from lb.control import coexist, netinfo, nexthop
from lb.control.controller import Controller
from lb.control.errors import StoreError
from lb.control.etcd import Etcd, parse_store_url
from lb.control.etcd_store import EtcdStore
from lb.control.fleet import Fleet
from lb.control.health import Monitor
from lb.control.model import ApplyReport
from lb.control.service import Balancer
from lb.control.settings import Settings
from lb.control.store import StateStore, Store
from lb.exitcodes import ExitCode
from lb.xdp import chain, loader, xdpinfo
from lb.xdp.maps import Dataplane
from lb.xdp.simulate import Simulator
from lb.xdp.types import XdpMode

log = logging.getLogger("lb.daemon")


@dataclass
class Runtime:
    """What the running daemon attached, and what its start-up reconcile wrote."""

    settings: Settings
    interface: netinfo.Interface
    next_hop: str
    mode: XdpMode | None = None
    startup: ApplyReport = field(default_factory=ApplyReport)
    adopted_vips: int = 0
    started_at: float = field(default_factory=time.time)
    store: StateStore | None = None

    def readiness(self, dataplane: Dataplane) -> dict[str, Any]:
        problems = []
        try:
            mode = loader.attached_mode(self.interface.index)
        except Exception as e:  # noqa: BLE001 (reported, not raised)
            mode, problems = None, [f"interface: {e}"]
        if mode is None:
            problems.append(f"no XDP program on {self.interface.name}")
        try:
            dataplane.read_config()
        except Exception as e:  # noqa: BLE001
            problems.append(f"maps: {e}")
        return {"ready": not problems, "problems": problems, "interface": self.interface.name,
                "netns": self.settings.netns, "mode": mode, "next_hop_mac": self.next_hop,
                "pin_dir": str(self.settings.pin_dir),
                "startup": {"adopted_vips": self.adopted_vips, **self.startup.model_dump()},
                "store": self.store_status()}

    def store_status(self) -> dict[str, Any]:
        store = self.store
        if isinstance(store, EtcdStore):
            return {"kind": "etcd", "revision": store.revision, "reachable": store.reachable,
                    "from_local_copy": store.from_local_copy}
        return {"kind": "sqlite", "revision": 0, "reachable": True, "from_local_copy": False}


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY on accepted connections only when the
    # listening socket says TCP, and without it a response waits on the client's delayed ACK.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def _refuse(message: str) -> NoReturn:
    log.error("event=interface_refused %s", message)
    print(f"lb run: {message}", file=sys.stderr)
    sys.exit(coexist.EXIT_FOREIGN)


def _claim(settings: Settings, iface: netinfo.Interface) -> xdpinfo.AttachedProgram | None:
    """The program the attach will replace (None: the hook is empty); exits with
    EXIT_FOREIGN, leaving it attached, when it is not ours and replace_foreign is off, or
    when it is our chain's root and chain_slot is not set (the chain's other programs would
    be cut off)."""
    attached = xdpinfo.attached_program(iface.index)
    ours = attached is not None and xdpinfo.is_ours(attached.program,
                                                    xdpinfo.own_map_ids(settings.pin_dir))
    try:
        coexist.takeover(iface.name, attached, ours, settings.replace_foreign)
    except coexist.ForeignProgram as e:
        _refuse(str(e))
    if attached is None:
        return None
    if ours and attached.name == xdpinfo.ROOT_NAME and settings.chain_slot is None:
        _refuse(f"interface {iface.name} runs lb's chain root ({attached.describe()}) with "
                f"slots {chain.slots(settings.pin_dir)} (slot: program id): set chain_slot to "
                f"the balancer's slot, or lb detach to end the chain")
    log.info("event=%s %s on %s", "replace_own" if ours else "replace_foreign",
             attached.describe(), iface.name)
    return attached


def _attach_chained(settings: Settings, iface: netinfo.Interface, prog_fd: int,
                    attached: xdpinfo.AttachedProgram | None) -> XdpMode | None:
    """Put the balancer in its chain slot, then attach the chain's root unless ours already
    runs (a restart only swaps the slot, atomically); returns the mode in effect."""
    slot = settings.chain_slot
    assert slot is not None
    root_bpf, root_fd = loader.load_root(settings.pin_dir)
    try:
        chain.set_slot(settings.pin_dir, slot, prog_fd)
        log.info("event=chain_slot_set slot=%d chain=%s", slot, chain.slots(settings.pin_dir))
        if attached is not None and attached.name == xdpinfo.ROOT_NAME and \
                xdpinfo.is_ours(attached.program, xdpinfo.own_map_ids(settings.pin_dir)):
            return attached.mode
        return loader.replace(root_fd, iface.index, settings.xdp_mode,
                              attached.id if attached else None)
    finally:
        root_bpf.cleanup()  # the attached root (and the slot) keep their programs


def _guarded(header_timeout_s: float, max_connections: int) -> type[H11Protocol]:
    """uvicorn's HTTP/1.1 protocol with two guards uvicorn lacks against slowloris clients:
    a connection that has not sent a whole request head `header_timeout_s` after it opened
    is closed; beyond `max_connections`, the oldest connection still sending its head is
    closed to make room (uvicorn's own limit would answer 503 to everyone instead)."""

    class Guarded(H11Protocol):
        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._opened = time.monotonic()
            self._head_timer = asyncio.get_running_loop().call_later(header_timeout_s,
                                                                     self._head_late)
            if len(self.connections) > max_connections:
                waiting = [c for c in self.connections
                           if isinstance(c, Guarded) and c is not self and c.cycle is None]
                if waiting:
                    min(waiting, key=lambda c: c._opened).transport.close()

        def _head_late(self) -> None:
            if self.cycle is None and not self.transport.is_closing():
                log.debug("event=header_timeout client=%s", self.client)
                self.transport.close()

        def connection_lost(self, exc: Exception | None) -> None:
            self._head_timer.cancel()
            super().connection_lost(exc)

    return Guarded


def run(settings: Settings) -> None:
    """Run the daemon until SIGTERM or SIGINT."""
    logging.basicConfig(level=settings.log_level.upper(),
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    sock = _bind(settings.api_host, settings.api_port)
    if settings.netns:
        netns.enter(settings.netns)
    iface = netinfo.interface(settings.interface)
    egress = netinfo.interface(settings.egress_interface) if settings.egress_interface else iface
    if settings.next_hop_mac:
        next_hop = settings.next_hop_mac
        log.info("next hop %s (from settings)", next_hop)
    else:
        hop = netinfo.next_hop(egress.index)
        next_hop = hop.mac
        log.info("next hop %s: the MAC of default gateway %s on %s", next_hop, hop.gateway,
                 egress.name)
    runtime = Runtime(settings, iface, next_hop)
    attached = _claim(settings, iface)
    chained = settings.chain_slot is not None
    try:  # before the program is loaded: a refusal leaves the kernel untouched
        store = runtime.store = open_store(settings)
    except StoreError as e:  # names the path, the errno and the fix
        log.error("event=store_refused %s", e)
        print(f"lb run: {e}", file=sys.stderr)
        sys.exit(ExitCode.USAGE)

    program = loader.load(settings.sizes(), pin_dir=settings.pin_dir,
                          extra_cflags=loader.chain_cflags(settings.chain_slot) if chained
                          else None)
    for name in program.renewed:
        log.info("event=counters_renewed map=%s reason=layout_changed", name)
    dataplane = Dataplane(program)
    dp_config = settings.runtime_config(
        next_hop_mac=next_hop, src_mac=egress.mac,
        egress_ifindex=egress.index if settings.egress_interface else 0, mtu=egress.mtu)
    dataplane.write_config(dp_config)
    balancer = Balancer.adopt(dataplane)
    runtime.adopted_vips = len(balancer.vips)
    controller = Controller(store, balancer, settings.settle_interval_s,
                            settings.tcp_idle_timeout_s)
    # Traces run packets through a private copy of the program (compiled on the first trace).
    controller.simulator = simulator = Simulator(dataplane)
    runtime.startup = controller.reconcile()
    log.info("reconciled %d VIPs from %s (revision %d) with %d adopted from %s: %s",
             len(controller.vips), _describe(store), controller.revision, runtime.adopted_vips,
             settings.pin_dir, runtime.startup)
    try:
        if chained:
            runtime.mode = _attach_chained(settings, iface, program.fd, attached)
        else:
            runtime.mode = loader.replace(program.fd, iface.index, settings.xdp_mode,
                                          attached.id if attached else None)
    except loader.AttachRaced as e:
        controller.close()
        store.close()
        _refuse(f"another program took {iface.name}'s XDP hook during start-up; nothing was "
                f"replaced: {e}")
    # Health checks start after the first reconcile: until a backend's first verdict it
    # counts as up, so a restart keeps every ring as it was.
    controller.attach_monitor(Monitor(controller.on_health))
    controller.start_settling()
    stop_following = threading.Event()
    fleet = _join_fleet(settings, store, controller, stop_following)
    watcher = None
    if not settings.next_hop_mac:
        def follow(mac: str) -> None:
            nonlocal dp_config
            dp_config = dataclasses.replace(dp_config, next_hop_mac=mac)
            dataplane.write_config(dp_config)
            runtime.next_hop = mac
        watcher = nexthop.NextHopWatcher(egress.index, next_hop, follow).start()
    log.info("attached to %s (ifindex %d%s) in %s mode", iface.name, iface.index,
             f", netns {settings.netns}" if settings.netns else "", runtime.mode)
    controller.events.emit("start", interface=iface.name, netns=settings.netns,
                           mode=str(runtime.mode), revision=controller.revision,
                           adopted_vips=runtime.adopted_vips, pin_dir=str(settings.pin_dir))

    token = settings.api_token.get_secret_value() if settings.api_token else None
    app = create_app(controller, lambda: runtime.readiness(dataplane), token,
                     settings.api_max_body_bytes)
    where = f"http://{settings.api_host}:{sock.getsockname()[1]}"
    if token:
        log.info("API on %s; changes need 'Authorization: Bearer <api_token>'", where)
    else:
        log.info("API on %s (loopback only, no token)", where)
    config = uvicorn.Config(app, log_level=settings.log_level, access_log=False,
                            http=_guarded(settings.api_header_timeout_s,
                                          settings.api_max_connections),
                            timeout_keep_alive=settings.api_keep_alive_s)
    # uvicorn shuts down gracefully on SIGTERM/SIGINT, then re-raises the signal to the
    # handler found before it: make that a clean exit (status 0), not a death by signal.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: sys.exit(0))
    try:
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        stop_following.set()
        if fleet is not None:
            fleet.close()
        if watcher is not None:
            watcher.close()
        controller.close()
        simulator.close()
        store.close()
        log.info("stopped; the XDP program stays attached to %s (lb detach removes it)",
                 iface.name)


def open_store(settings: Settings) -> StateStore:
    """The store `settings.store` names: SQLite in state_dir, or the fleet's etcd prefix
    (with this host's local copy of the applied state in state_dir)."""
    if settings.store == "sqlite":
        return Store(settings.database)
    endpoints, prefix = parse_store_url(settings.store)
    return EtcdStore(Etcd(endpoints), prefix, settings.state_dir / "etcd-applied.json")


def _describe(store: StateStore) -> str:
    if isinstance(store, EtcdStore):
        origin = "its local copy" if store.from_local_copy else "etcd"
        return f"etcd prefix {store.prefix.decode()} ({origin})"
    return str(store.path)


def _join_fleet(settings: Settings, store: StateStore, controller: Controller,
                stop: threading.Event) -> Fleet | None:
    """With an etcd store: follow committed revisions and publish this host's report."""
    if not isinstance(store, EtcdStore):
        return None
    fleet = Fleet(store.etcd, store.prefix, settings.host_name, settings.fleet_lease_ttl_s,
                  on_verdicts=controller.on_fleet_verdicts)
    controller.attach_fleet(fleet, settings.fleet_health)
    fleet.start()

    def follow() -> None:
        store.follow(controller.apply_committed, stop,
                     on_error=lambda e: log.warning("store event=watch_failed error=%s", e))

    threading.Thread(target=follow, name="lb-store-follow", daemon=True).start()
    log.info("fleet event=joined host=%s prefix=%s health=%s", settings.host_name,
             store.prefix.decode(), settings.fleet_health)
    return fleet


def detach(settings: Settings, unpin: bool = False) -> None:
    """Remove the program from the interface; with `unpin`, delete the pinned maps too."""
    if settings.netns:
        netns.enter(settings.netns)
    iface = netinfo.interface(settings.interface)
    loader.detach(iface.index)
    if unpin and settings.pin_dir.exists():
        for pin in settings.pin_dir.iterdir():
            pin.unlink()
        settings.pin_dir.rmdir()
