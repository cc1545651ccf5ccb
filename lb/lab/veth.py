"""The veth lab: namespaces and veths where the balancer runs one-arm, as it does in production.

Topology (one router; every link is its own veth pair, no bridge)::

    client ns                 router ns (forwarding)              backend ns (one per backend)
    eth0 10.0.1.2 ------- cl 10.0.1.1            be0 10.1.0.1 ------- eth0 10.1.0.2   xdp_decap
         fd00:0:1::2         fd00:0:1::1         be1 10.1.1.1 ------- eth0 10.1.1.2   xdp_decap
                                                  ...                  lo: the VIPs, HTTP servers
                          lb 10.0.2.1  xdp_pass
                             fd00:0:2::1
                               |
    balancer ns              eth0 10.0.2.2  xdp_balancer, `rx_queues` RX queues
                                  fd00:0:2::2

Backend i's link is 10.1.i.0/24 and fd00:1:i::/64 (router .1/::1, backend .2/::2).

A packet's way: the client routes the VIP ranges (10.100.0.0/24, fd00:100::/64) to the router,
the router routes them to the balancer. The balancer's XDP program encapsulates (outer
destination: the chosen backend's address) and sends the frame back out the same veth with
XDP_TX, to the router's MAC (one-arm mode, Katran's model). The router routes the outer
destination to that backend's link, where `xdp_decap` (lb/lab/decap.c) strips the outer header
and the kernel delivers the client's packet to the VIP on `lo`. Replies go from the backend to
the router to the client and never cross the balancer (direct server return).

Point-to-point links instead of a shared bridge: every hop is a routed hop, so the balancer's
next-hop MAC is simply the router's side of its veth, and each link can be watched on its own
(the router's `be<i>` interface carries exactly what backend i receives, still encapsulated).

Platform facts this relies on (docs/development.md, "Platform facts"):

- XDP_TX on a veth is only delivered when the peer has an XDP program: the router's `lb` end
  carries `xdp_pass`.
- Real sockets through XDP on veth need TX checksum offload off on the sending veth, so it is off
  on both ends of every link.
- Frames grow by up to 40 bytes once encapsulated: the client's link has a 1500-byte MTU, the
  balancer's and backends' links `FABRIC_MTU` = 1540, and `runtime_config()` says so to the
  balancer, so a full-size client packet still fits.
- A veth runs XDP on the CPU that sent the packet, unlike a NIC, whose RSS pins a flow to one
  queue and so to one CPU. The per-CPU connection table needs the NIC's behaviour:
  `steer_balancer_queues()` turns on threaded NAPI on the balancer's veth and pins each RX
  queue's poller thread to one CPU.
- `setns` is per thread: `in_netns()` switches only the calling thread and switches it back
  (unlike pyroute2's pushns/popns it saves /proc/thread-self, not /proc/self, keeps no global
  stack, and never creates a missing namespace), and `/sys` does not follow, so interfaces are
  looked up by netlink. A socket stays in the namespace it was created in, whichever thread
  uses it later: servers, captures and client connections are created inside, used outside.

Names: every namespace is `<prefix><pid>-<seq>-<role>` (e.g. `lbt4242-0-router`). Interfaces
exist only inside the lab's namespaces, never in the root namespace, so deleting the namespaces
deletes every veth. `remove_leftovers(prefix)` (lb.lab.namespaces) deletes the namespaces of
runs whose process is gone (an aborted run, a killed test).
"""

from __future__ import annotations

import contextlib
import errno
import http.client
import ipaddress
import itertools
import logging
import os
import re
import socket
import subprocess
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from pyroute2 import IPRoute
from pyroute2 import netns as pyroute2_netns

from lb.lab.capture import Capture, packet_socket
from lb.lab.decap import DECAP_SOURCE, DECAPSULATED, DecapSlot
from lb.lab.errors import LabError
from lb.lab.hosts import Backend, Host
from lb.lab.namespaces import napi_threads, set_tx_checksum, sysctl
from lb.lab.servers import BackendHTTPServer
from lb.netns import NETNS_DIR, in_netns
from lb.xdp import loader
from lb.xdp.config import RuntimeConfig
from lb.xdp.types import XdpMode

log = logging.getLogger(__name__)

# The client's link: what a client on the Internet sees.
CLIENT_MTU = 1500
# The balancer's and backends' links: room for the client's full-size packet plus an IPv6 outer
# header (40 bytes), so nothing is dropped as too big once encapsulated.
FABRIC_MTU = CLIENT_MTU + 40

VIP_NET_V4 = ipaddress.IPv4Network("10.100.0.0/24")
VIP_NET_V6 = ipaddress.IPv6Network("fd00:100::/64")
# VIP addresses a lab puts on every backend's lo by default: .1 to .8 of each range.
VIP_HOSTS = 8

_lab_seq = itertools.count()

# IFA_F_NODAD: an IPv6 address usable at once, no duplicate address detection (also sysctl'd off).
_IFA_F_NODAD = 0x02


class VethLab:
    """Client, router, balancer and `n_backends` backend namespaces, wired for one-arm XDP.

    Context manager: building happens on entry; on exit (also after a failure halfway through
    building) HTTP servers stop, every XDP program the lab attached is detached and every
    namespace it created is deleted, which deletes its veths. `close()` is the same, callable
    once or more.

    n_backends: backend namespaces (backend0...); rx_queues: RX (and TX) queues of both ends of
    the balancer's veth; prefix: first part of every namespace name (see `remove_leftovers`);
    vip_hosts: VIP addresses put on every backend's `lo`, the first of each VIP range.
    """

    def __init__(self, n_backends: int = 3, rx_queues: int = 2, prefix: str = "lbl",
                 vip_hosts: int = VIP_HOSTS, n_balancers: int = 1) -> None:
        if not 1 <= n_backends <= 250:
            raise ValueError(f"n_backends must be 1..250, got {n_backends}")
        if not 1 <= n_balancers <= 8:
            raise ValueError(f"n_balancers must be 1..8, got {n_balancers}")
        if not 1 <= rx_queues <= 64:
            raise ValueError(f"rx_queues must be 1..64, got {rx_queues}")
        if not re.fullmatch(r"[a-z]+", prefix):
            raise ValueError(f"prefix must be lower-case letters, got {prefix!r}")
        self.n_backends, self.rx_queues, self.prefix = n_backends, rx_queues, prefix
        self.vip_hosts = vip_hosts
        self.name = f"{prefix}{os.getpid()}-{next(_lab_seq)}"
        self.router_netns = f"{self.name}-router"
        self.client = Host("client", f"{self.name}-client",
                           v4=ipaddress.IPv4Address("10.0.1.2"),
                           v6=ipaddress.IPv6Address("fd00:0:1::2"),
                           router_v4=ipaddress.IPv4Address("10.0.1.1"),
                           router_v6=ipaddress.IPv6Address("fd00:0:1::1"), router_ifname="cl")
        # Balancer j's link is 10.0.(2+j).0/24, fd00:0:(2+j)::/64; the first is `balancer`.
        self.balancers = [
            Host("balancer" if j == 0 else f"balancer{j}",
                 f"{self.name}-balancer" if j == 0 else f"{self.name}-balancer{j}",
                 v4=ipaddress.IPv4Address(f"10.0.{2 + j}.2"),
                 v6=ipaddress.IPv6Address(f"fd00:0:{2 + j:x}::2"),
                 router_v4=ipaddress.IPv4Address(f"10.0.{2 + j}.1"),
                 router_v6=ipaddress.IPv6Address(f"fd00:0:{2 + j:x}::1"),
                 router_ifname="lb" if j == 0 else f"lb{j}")
            for j in range(n_balancers)
        ]
        self.balancer = self.balancers[0]
        self.routed_balancers: list[Host] = list(self.balancers)  # in the VIP route now
        self.backends = [
            Backend(f"backend{i}", f"{self.name}-be{i}",
                    v4=ipaddress.IPv4Address(f"10.1.{i}.2"),
                    v6=ipaddress.IPv6Address(f"fd00:1:{i:x}::2"),
                    router_v4=ipaddress.IPv4Address(f"10.1.{i}.1"),
                    router_v6=ipaddress.IPv6Address(f"fd00:1:{i:x}::1"),
                    router_ifname=f"be{i}", index=i)
            for i in range(n_backends)
        ]
        self._namespaces: list[str] = []
        self._attached: list[tuple[str, int]] = []  # (netns, ifindex) of every XDP we attached
        self._napi_cpus: dict[int, int] = {}  # balancer NAPI thread pid -> CPU
        self._bpf_handles: list[Any] = []
        self._silent: list[socket.socket] = []  # listeners of silent_listener(), closed on close
        self._decap: Any = None  # bcc handle of the xdp_decap instance (its counters)
        self._closed = False

    # --- lifecycle ----------------------------------------------------------------------------
    def __enter__(self) -> VethLab:
        try:
            self._build()
        except BaseException:
            self.close(raise_errors=False)
            raise
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        self.close(raise_errors=exc_type is None)

    @property
    def hosts(self) -> list[Host]:
        return [self.client, *self.balancers, *self.backends]

    @property
    def namespaces(self) -> list[str]:
        """Every namespace this lab created (so far), router first."""
        return list(self._namespaces)

    def remaining_namespaces(self) -> list[str]:
        """This lab's namespaces that exist right now (after `close()`: none)."""
        return sorted(n for n in pyroute2_netns.listnetns() if n.startswith(self.name + "-"))

    def _build(self) -> None:
        for name in (self.router_netns, *(h.netns for h in self.hosts)):
            self._create_netns(name)
        self._wire()
        for host in self.hosts:
            self._configure_host(host)
        self._configure_router()
        # One decap instance for every backend (its counters are keyed by interface MAC).
        self._decap, decap_fd = loader.load_function(DECAP_SOURCE, "xdp_decap")
        self._bpf_handles.append(self._decap)
        for backend in self.backends:
            self._configure_backend(backend)
            self._attach(backend.netns, backend.ifindex, decap_fd)
        # XDP_TX from the balancer is delivered only if the router's side has an XDP program.
        bpf, fd = loader.load_function(DECAP_SOURCE, "xdp_pass")
        self._bpf_handles.append(bpf)
        for balancer in self.balancers:
            self._attach(self.router_netns, balancer.router_ifindex, fd)

    def _create_netns(self, name: str) -> None:
        if (NETNS_DIR / name).exists():
            raise LabError(f"namespace {name} already exists")
        pyroute2_netns.create(name)
        self._namespaces.append(name)
        with in_netns(name):
            # Before any interface exists, so that every interface inherits it.
            sysctl("net.ipv6.conf.all.accept_dad", 0)
            sysctl("net.ipv6.conf.default.accept_dad", 0)
            sysctl("net.ipv6.conf.default.router_solicitations", 0)
            sysctl("net.ipv6.conf.default.accept_ra", 0)
            sysctl("net.ipv4.conf.all.rp_filter", 0)
            sysctl("net.ipv4.conf.default.rp_filter", 0)
            with IPRoute() as ipr:
                ipr.link("set", index=ipr.link_lookup(ifname="lo")[0], state="up")

    def _wire(self) -> None:
        """Create every veth pair from inside the router: its end there, the other end put
        straight into the host's namespace (nothing ever appears in the root namespace)."""
        with in_netns(self.router_netns), IPRoute() as ipr:
            for host in self.hosts:
                queues = self.rx_queues if host in self.balancers else 1
                mtu = CLIENT_MTU if host is self.client else FABRIC_MTU
                fd = os.open(NETNS_DIR / host.netns, os.O_RDONLY)
                try:
                    ipr.link("add", ifname=host.router_ifname, kind="veth", mtu=mtu,
                             num_rx_queues=queues, num_tx_queues=queues,
                             peer={"ifname": host.ifname, "net_ns_fd": fd, "mtu": mtu,
                                   "num_rx_queues": queues, "num_tx_queues": queues})
                finally:
                    os.close(fd)
                link = ipr.link("get", index=ipr.link_lookup(ifname=host.router_ifname)[0])[0]
                host.router_ifindex = link["index"]
                host.router_mac = link.get_attr("IFLA_ADDRESS")
                set_tx_checksum(host.router_ifname, False)
                ipr.link("set", index=host.router_ifindex, state="up")
                ipr.addr("add", index=host.router_ifindex, address=str(host.router_v4),
                         prefixlen=host.prefixlen_v4)
                ipr.addr("add", index=host.router_ifindex, address=str(host.router_v6),
                         prefixlen=host.prefixlen_v6, flags=_IFA_F_NODAD)

    def _configure_host(self, host: Host) -> None:
        with in_netns(host.netns), IPRoute() as ipr:
            host.ifindex = ipr.link_lookup(ifname=host.ifname)[0]
            host.mac = ipr.link("get", index=host.ifindex)[0].get_attr("IFLA_ADDRESS")
            set_tx_checksum(host.ifname, False)
            ipr.link("set", index=host.ifindex, state="up")
            ipr.addr("add", index=host.ifindex, address=str(host.v4), prefixlen=host.prefixlen_v4)
            ipr.addr("add", index=host.ifindex, address=str(host.v6), prefixlen=host.prefixlen_v6,
                     flags=_IFA_F_NODAD)
            ipr.route("add", dst="0.0.0.0/0", gateway=str(host.router_v4))
            ipr.route("add", dst="::/0", gateway=str(host.router_v6), family=socket.AF_INET6)

    def _configure_router(self) -> None:
        with in_netns(self.router_netns):
            sysctl("net.ipv4.ip_forward", 1)
            sysctl("net.ipv6.conf.all.forwarding", 1)
            # Several balancers: ECMP by the L4 hash, as an edge router spreads flows.
            sysctl("net.ipv4.fib_multipath_hash_policy", 1)
            sysctl("net.ipv6.fib_multipath_hash_policy", 1)
        self.route_vips(self.balancers)

    def route_vips(self, balancers: Sequence[Host]) -> None:
        """Route the VIP ranges over `balancers` (several: a multipath route, each flow to one
        by its L4 hash), replacing the route in place (a balancer leaving or joining)."""
        if not balancers:
            raise ValueError("route_vips needs at least one balancer")
        with in_netns(self.router_netns), IPRoute() as ipr:
            for net, family, attr in ((VIP_NET_V4, socket.AF_INET, "v4"),
                                      (VIP_NET_V6, socket.AF_INET6, "v6")):
                hops = [str(getattr(b, attr)) for b in balancers]
                if len(hops) == 1:
                    ipr.route("replace", dst=str(net), gateway=hops[0], family=family)
                else:
                    ipr.route("replace", dst=str(net), family=family,
                              multipath=[{"gateway": h} for h in hops])
        self.routed_balancers = list(balancers)

    def _configure_backend(self, backend: Backend) -> None:
        with in_netns(backend.netns):
            # DSR hygiene: the VIPs on lo are never announced or answered for on eth0.
            sysctl("net.ipv4.conf.all.arp_ignore", 1)
            sysctl("net.ipv4.conf.all.arp_announce", 2)
            with IPRoute() as ipr:
                lo = ipr.link_lookup(ifname="lo")[0]
                vips: list[ipaddress.IPv4Address | ipaddress.IPv6Address] = [
                    *self.vips_v4(), *self.vips_v6()]
                for vip in vips:
                    ipr.addr("add", index=lo, address=str(vip),
                             prefixlen=vip.max_prefixlen, flags=_IFA_F_NODAD)

    def _attach(self, netns: str, ifindex: int, fd: int,
                mode: XdpMode = XdpMode.NATIVE) -> XdpMode:
        with in_netns(netns):
            effective = loader.attach(fd, ifindex, mode)
        self._attached.append((netns, ifindex))
        return effective

    def close(self, raise_errors: bool = True) -> None:
        """Stop servers, detach every XDP program the lab attached, delete its namespaces.

        Every step runs even if an earlier one failed; with `raise_errors`, a LabError listing
        what failed is raised at the end.
        """
        if self._closed:
            return
        self._closed = True
        problems: list[str] = []
        for backend in self.backends:
            for server in backend.servers:
                try:
                    server.close()
                except Exception as e:  # noqa: BLE001 - keep tearing down, report at the end
                    problems.append(f"HTTP server on {backend.name}: {e}")
            backend.servers.clear()
        for sock in self._silent:
            sock.close()
        self._silent.clear()
        for netns, ifindex in reversed(self._attached):
            try:
                with in_netns(netns):
                    loader.detach(ifindex)
            except FileNotFoundError:
                pass
            except Exception as e:  # noqa: BLE001
                problems.append(f"detach XDP from {netns} ifindex {ifindex}: {e}")
        self._attached.clear()
        for bpf in self._bpf_handles:
            with contextlib.suppress(Exception):
                bpf.cleanup()
        self._bpf_handles.clear()
        for name in reversed(self._namespaces):
            try:
                pyroute2_netns.remove(name)
            except OSError as e:
                if e.errno != errno.ENOENT:
                    problems.append(f"delete namespace {name}: {e}")
        self._namespaces.clear()
        if problems:
            message = "lab teardown incomplete:\n  " + "\n  ".join(problems)
            log.error(message)
            if raise_errors:
                raise LabError(message)

    # --- the balancer -------------------------------------------------------------------------
    def attach_balancer(self, prog_fd: int, mode: XdpMode = XdpMode.NATIVE) -> XdpMode:
        """Attach the balancer program to the balancer's veth; returns the mode in effect.

        The lab detaches it on close.
        """
        effective = self._attach(self.balancer.netns, self.balancer.ifindex, prog_fd, mode)
        self.steer_balancer_queues()
        return effective

    def detach_balancers(self) -> None:
        """Take whatever XDP program is on every balancer's interface off (a daemon's
        `lb run` leaves its program attached on exit, by design)."""
        for balancer in self.balancers:
            with in_netns(balancer.netns):
                loader.detach(balancer.ifindex)

    def steer_balancer_queues(self, balancer: Host | None = None) -> dict[int, int]:
        """Make the balancer's veth process each RX queue on one fixed CPU, as a NIC with RSS
        and per-queue interrupts does; returns {NAPI thread pid: CPU}.

        A veth runs XDP on whichever CPU sent the packet, so one flow's packets can meet the
        program on different CPUs, and a per-CPU connection table would miss half of them.
        With threaded NAPI each RX queue is polled by its own kernel thread, which is pinned
        here (queue thread i to CPU i mod CPUs); flows keep their queue (the router hashes
        them onto its TX queues), so they keep their CPU. Needs the program attached (veth
        creates its NAPI instances then); idempotent. `balancer`: one of `balancers`
        (default: the first).
        """
        host = balancer or self.balancer
        threaded = Path("/sys/class/net") / host.ifname / "threaded"
        # /sys shows the namespace of whoever mounted it: `ip netns exec` mounts the netns' own.
        ns = host.netns
        state = subprocess.run(["ip", "netns", "exec", ns, "cat", str(threaded)],
                               capture_output=True, text=True, check=True).stdout.strip()
        if state == "1":
            return dict(self._napi_cpus)
        before = napi_threads(host.ifname)
        subprocess.run(["ip", "netns", "exec", ns, "sh", "-c", f"echo 1 > {threaded}"],
                       check=True)
        new = sorted(napi_threads(host.ifname) - before)
        if len(new) != self.rx_queues:
            raise LabError(f"expected {self.rx_queues} NAPI threads for {ns}/"
                           f"{host.ifname}, found {len(new)}")
        cpus = sorted(os.sched_getaffinity(0))
        for i, pid in enumerate(new):
            os.sched_setaffinity(pid, {cpus[i % len(cpus)]})
            self._napi_cpus[pid] = cpus[i % len(cpus)]
        return dict(self._napi_cpus)

    def runtime_config(self, **overrides: Any) -> RuntimeConfig:
        """The balancer's settings for this topology: one-arm XDP_TX to the router's MAC, from
        the balancer veth's MAC, MTU of the backends' links. Keyword arguments override."""
        settings: dict[str, Any] = dict(next_hop_mac=self.balancer.router_mac,
                                        src_mac=self.balancer.mac, egress_ifindex=0,
                                        mtu=FABRIC_MTU)
        settings.update(overrides)
        return RuntimeConfig(**settings)

    def balancer_rx_queues(self) -> dict[int, int]:
        """XDP packets seen by each RX queue of the balancer's veth (from `ethtool -S`)."""
        out = subprocess.run(["ip", "netns", "exec", self.balancer.netns, "ethtool", "-S",
                              self.balancer.ifname], capture_output=True, text=True, check=True)
        queues = {}
        for m in re.finditer(r"rx_queue_(\d+)_xdp_packets:\s*(\d+)", out.stdout):
            queues[int(m.group(1))] = int(m.group(2))
        return queues

    # --- addresses ----------------------------------------------------------------------------
    def vips_v4(self) -> list[ipaddress.IPv4Address]:
        """The IPv4 VIP addresses the backends hold on lo (10.100.0.1...)."""
        return [VIP_NET_V4.network_address + i for i in range(1, self.vip_hosts + 1)]

    def vips_v6(self) -> list[ipaddress.IPv6Address]:
        """The IPv6 VIP addresses the backends hold on lo (fd00:100::1...)."""
        return [VIP_NET_V6.network_address + i for i in range(1, self.vip_hosts + 1)]

    # --- decap counters -----------------------------------------------------------------------
    def decap_counts(self, backend: Backend) -> dict[DecapSlot, int]:
        """Frames xdp_decap counted on a backend's interface, by slot, summed over CPUs."""
        table = self._decap[b"decap_counters"]
        key = table.Key()
        key.mac[:] = bytes.fromhex(backend.mac.replace(":", ""))
        per_cpu = table.get(key)
        return {slot: sum(cpu.packets[slot] for cpu in per_cpu or ()) for slot in DecapSlot}

    def decapsulated(self, backend: Backend) -> int:
        """Frames a backend decapsulated (all four family pairs)."""
        counts = self.decap_counts(backend)
        return sum(counts[s] for s in DECAPSULATED)

    def clear_decap_counts(self) -> None:
        self._decap[b"decap_counters"].clear()

    # --- HTTP ---------------------------------------------------------------------------------
    def start_http_servers(self, addresses: Iterable[ipaddress.IPv4Address |
                                                     ipaddress.IPv6Address],
                           port: int = 80) -> None:
        """Run an HTTP server on every backend for each VIP address; each answers with its
        backend's name. The sockets are created inside the backends' namespaces."""
        for backend in self.backends:
            for address in addresses:
                with in_netns(backend.netns):
                    server = BackendHTTPServer(backend.name, address, port)
                backend.servers.append(server)
                server.start()

    def start_backend_server(self, backend: Backend, port: int) -> BackendHTTPServer:
        """Run an HTTP server on every address of `backend` (its own, which health checks
        probe, and the VIPs on its lo) at `port`; it answers with the backend's name and 200
        until told otherwise (`set_status`). Stop it with `stop_server` (the lab stops it on
        close)."""
        with in_netns(backend.netns):
            server = BackendHTTPServer(backend.name, ipaddress.IPv6Address("::"), port)
        backend.servers.append(server)
        server.start()
        return server

    def stop_server(self, server: BackendHTTPServer) -> None:
        """Stop a backend's HTTP server: its port refuses connections from then on."""
        for backend in self.backends:
            if server in backend.servers:
                backend.servers.remove(server)
        server.close()

    def silent_listener(self, backend: Backend, port: int) -> socket.socket:
        """A TCP socket listening on `backend`'s own IPv4 address that never accepts: the
        kernel completes handshakes, then nothing ever answers (a hung server). Close it to
        stop listening; the lab closes it on close."""
        with in_netns(backend.netns):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((str(backend.v4), port))
        sock.listen(1024)
        self._silent.append(sock)
        return sock

    def add_backend_network(self, backend: Backend, network: ipaddress.IPv4Network
                            ) -> list[ipaddress.IPv4Address]:
        """Put every host address of `network` on `backend`'s lo and route `network` to it in
        the router, so the balancer (and the client) reach them; returns the addresses. For
        many backends in one namespace (the health benchmark's 1000 listeners)."""
        addresses = list(network.hosts())
        with in_netns(backend.netns), IPRoute() as ipr:
            lo = ipr.link_lookup(ifname="lo")[0]
            for address in addresses:
                ipr.addr("add", index=lo, address=str(address), prefixlen=32)
        with in_netns(self.router_netns), IPRoute() as ipr:
            ipr.route("add", dst=str(network), gateway=str(backend.v4))
        return addresses

    def http_connection(self, address: ipaddress.IPv4Address | ipaddress.IPv6Address,
                        port: int = 80, timeout: float = 3.0) -> http.client.HTTPConnection:
        """A TCP connection from the client namespace to address:port, already connected.

        The caller closes it; requests on it reuse the same connection (HTTP keep-alive).
        """
        conn = http.client.HTTPConnection(str(address), port, timeout=timeout)
        with in_netns(self.client.netns):
            conn.connect()
        return conn

    def http_get(self, address: ipaddress.IPv4Address | ipaddress.IPv6Address, port: int = 80,
                 path: str = "/", timeout: float = 3.0) -> str:
        """One GET over a new TCP connection from the client; returns the body (the backend's
        name and a newline). Raises OSError / http.client errors when nothing answers."""
        conn = self.http_connection(address, port, timeout)
        try:
            conn.request("GET", path, headers={"Connection": "close"})
            response = conn.getresponse()
            body = response.read().decode()
            if response.status != 200:
                raise LabError(f"GET {address}:{port}{path}: HTTP {response.status}")
            return body
        finally:
            conn.close()

    # --- raw frames ---------------------------------------------------------------------------
    def client_frame(self, dst: ipaddress.IPv4Address | ipaddress.IPv6Address, **ip_fields: Any
                     ) -> Any:
        """Ether/IP (or Ether/IPv6) from the client to `dst`, addressed to the router's MAC;
        add the L4 layer with `/`."""
        from scapy.layers.inet import IP
        from scapy.layers.inet6 import IPv6
        from scapy.layers.l2 import Ether

        ether = Ether(src=self.client.mac, dst=self.client.router_mac)
        if dst.version == 6:
            return ether / IPv6(src=str(self.client.v6), dst=str(dst), **ip_fields)
        return ether / IP(src=str(self.client.v4), dst=str(dst), **ip_fields)

    def send_frames(self, frames: Iterable[Any], host: Host | None = None) -> int:
        """Send frames (scapy packets or bytes) out of a host's interface, the client's by
        default, through one AF_PACKET socket; returns how many were sent."""
        host = host or self.client
        with in_netns(host.netns):
            sock = packet_socket(host.ifname)
        sent = 0
        try:
            for frame in frames:
                sock.send(frame if isinstance(frame, bytes) else bytes(frame))
                sent += 1
        finally:
            sock.close()
        return sent

    def capture(self, host: Host | str, ifname: str | None = None,
                lfilter: Callable[[Any], bool] | None = None) -> Capture:
        """A Capture on a host's interface; pass "router" and a router interface name (e.g.
        `backend.router_ifname`) to watch a link from the router's side."""
        if isinstance(host, Host):
            return Capture(host.netns, ifname or host.ifname, lfilter)
        if host != "router" or ifname is None:
            raise ValueError("capture(host) takes a Host, or 'router' and an interface name")
        return Capture(self.router_netns, ifname, lfilter)
