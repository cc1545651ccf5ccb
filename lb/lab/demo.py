"""The demo: a VIP before weighted backends in a veth lab, configured over REST, driven by HTTP.

Lifecycle, one printed section each: build the lab (lb.lab.veth), start the daemon (`lb run`, a real
process serving the REST API, its data plane attached in the lab's balancer namespace),
configure the VIP and its backends with REST calls, send requests (each a new TCP connection
from the client's namespace), take out the backend serving a long-lived connection with a REST
call, show that connection still works while new requests avoid that backend, tear everything
down. Teardown runs in `finally`, so Ctrl-C or a failure leaves no namespace, veth, pinned map,
process or XDP program behind.

Every change of state and every figure goes through the REST API (`Control`); the demo only
reads the lab itself (who answered, RX queues).
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import signal
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from lb.client import Client, VipStats
from lb.lab.daemon import LabDaemon, remove_leftover_pins
from lb.lab.namespaces import remove_leftovers
from lb.lab.veth import VIP_HOSTS, VIP_NET_V4, VIP_NET_V6, VethLab
from lb.lab.waits import settle
from lb.table import table
from lb.xdp import loader
from lb.xdp.config import Sizes

Address = ipaddress.IPv4Address | ipaddress.IPv6Address

EPILOG = """\
examples:
  python -m lb.lab.demo                          3 backends, weights 1,2,3, 300 requests per round
  python -m lb.lab.demo --weights 1,1,1          equal weights
  python -m lb.lab.demo --weights 1,1,1,1,1 --requests 1000
  python -m lb.lab.demo --vip fd00:100::1        the same over IPv6
  python -m lb.lab.demo --rx-queues 4            balancer veth with 4 RX queues
  python -m lb.lab.demo --print-cflags           the compiler flags the balancer is loaded with

needs root (bpf(), network namespaces); `make demo` runs it with the project's virtualenv.
"""


@dataclass(frozen=True)
class DemoConfig:
    """What the demo builds and sends; one field per command-line option."""

    weights: tuple[int, ...] = (1, 2, 3)
    requests: int = 300
    vip: str = "10.100.0.1"
    port: int = 80
    rx_queues: int = 2
    prefix: str = "lbd"

    def sizes(self) -> Sizes:
        """Map sizes for the demo: a handful of VIPs, a small connection table."""
        return Sizes(max_vips=8, max_backends=64, conn_table_size=16384)


class Control:
    """The demo's control operations: REST calls to the daemon (lb.client), each change echoed
    as it is made."""

    def __init__(self, api: Client) -> None:
        self.api = api

    @staticmethod
    def echo(method: str, path: str, body: Any = None) -> None:
        print(f"  {method} {path}" + (f" {body}" if body is not None else ""))

    def add_vip(self, address: Address, port: int, protocol: str) -> int:
        self.echo("POST", "/vips", {"address": str(address), "port": port,
                                    "protocol": protocol})
        return self.api.create_vip(str(address), port, protocol)["id"]

    def add_backend(self, vip: int, address: Address, weight: int) -> None:
        self.echo("POST", f"/vips/{vip}/backends", {"address": str(address), "weight": weight})
        self.api.add_backend(vip, str(address), weight)

    def remove_backend(self, vip: int, address: Address) -> None:
        self.echo("DELETE", f"/vips/{vip}/backends/{address}")
        self.api.remove_backend(vip, str(address))

    def vip_stats(self, vip: int) -> VipStats:
        return self.api.vip_stats(vip)

    def ring_share(self, vip: int) -> dict[str, float]:
        """Fraction of the VIP's ring slots each of its backends holds, by address."""
        stats = self.vip_stats(vip)
        return {b["address"]: b["ring_slots"] / stats["ring_size"] for b in stats["backends"]}

    def backend_packets(self, vip: int) -> dict[str, int]:
        """Packets the data plane has sent to each backend of the VIP, by address."""
        return {b["address"]: b["packets"] for b in self.vip_stats(vip)["backends"]}

    def vip_packets(self, vip: int) -> int:
        return self.vip_stats(vip)["packets"]

    def counters(self) -> dict[str, dict[str, int]]:
        return self.api.stats()


def heading(number: int, title: str) -> None:
    print(f"\n== {number}. {title} " + "=" * max(0, 72 - len(title)), flush=True)


def send_requests(lab: VethLab, vip: Address, port: int, n: int) -> Counter[str]:
    """`n` GETs, each over a new TCP connection from the client; counts answers by backend."""
    served: Counter[str] = Counter()
    for _ in range(n):
        try:
            served[lab.http_get(vip, port, timeout=2).strip()] += 1
        except OSError as e:
            served[f"error: {e.__class__.__name__}"] += 1
    return served


def request_round(lab: VethLab, control: Control, vip_id: int, vip: Address, cfg: DemoConfig,
                  weights: dict[str, int], addresses: dict[str, Address]) -> Counter[str]:
    """Send cfg.requests new-connection HTTP requests to the VIP, print who served them,
    and return the responses per backend name."""
    before = control.backend_packets(vip_id)
    t = time.monotonic()
    served = send_requests(lab, vip, cfg.port, cfg.requests)
    elapsed = time.monotonic() - t
    settle(lambda: control.vip_packets(vip_id), quiet=0.1)
    after = control.backend_packets(vip_id)
    sent = {a: after.get(a, 0) - before.get(a, 0) for a in after}
    print_round(lab, served, sent, weights, addresses, elapsed)
    return served


def print_round(lab: VethLab, served: Counter[str], sent: dict[str, int],
                weights: dict[str, int], addresses: dict[str, Address], elapsed: float) -> None:
    """Responses per backend (from the HTTP bodies) next to the data plane's packet counts."""
    total_weight = sum(weights.values())
    answered = max(1, sum(served.values()))
    rows = []
    for backend in lab.backends:
        name = backend.name
        in_ring = name in weights
        rows.append((name, str(addresses[name]), weights[name] if in_ring else "-",
                     f"{weights[name] / total_weight:.1%}" if in_ring else "-",
                     served[name], f"{served[name] / answered:.1%}",
                     sent.get(str(addresses[name]), "-")))
    print(table(rows, ("backend", "address", "weight", "expected", "responses", "share",
                       "packets"), "llrrrrr"))
    errors = {k: v for k, v in served.items() if k.startswith("error")}
    if errors:
        print(f"  failed requests: {errors}")
    print(f"  {sum(served.values())} requests in {elapsed:.2f} s. 'packets' (GET /vips/{{id}}/"
          "stats): what the balancer sent to each backend;\n  client -> VIP only (SYN, "
          "request, ACKs, FIN): the replies go backend -> router -> client.")


def print_counters(lab: VethLab, control: Control) -> None:
    """The data plane's global counters that tell the story (GET /stats), and how the packets
    spread over the balancer veth's RX queues."""
    c = control.counters()
    row = {"tx": c["totals"]["tx"], "ct_miss": c["conn_table"]["miss"],
           "ct_hit": c["conn_table"]["hit"], "pass": c["totals"]["pass"],
           "drop": c["totals"]["drop"], "drop_no_backend": c["drop_reasons"]["no_backend"],
           "drop_too_big": c["drop_reasons"]["too_big"]}
    print("  data-plane counters since start (GET /stats):")
    print(table([list(row.values())], list(row), "r" * len(row)))
    queues = lab.balancer_rx_queues()
    print("  XDP packets per RX queue of the balancer's veth: "
          + ", ".join(f"queue {q}: {n}" for q, n in sorted(queues.items())))


def run(cfg: DemoConfig) -> int:
    vip = ipaddress.ip_address(cfg.vip)
    started = time.monotonic()
    ok = False
    heading(1, "Building the lab")
    stale = remove_leftovers(cfg.prefix) + remove_leftover_pins()
    if stale:
        print(f"  removed what an earlier, aborted run left behind: {', '.join(stale)}")
    with VethLab(n_backends=len(cfg.weights), rx_queues=cfg.rx_queues,
                 prefix=cfg.prefix) as lab:
        print(f"  namespaces: {', '.join(lab.namespaces)}")
        print(f"  client {lab.client.v4} / {lab.client.v6} -> router -> balancer "
              f"{lab.balancer.v4} ({cfg.rx_queues} RX queues) -> router -> backends")
        for b in lab.backends:
            print(f"  {b.name}: {b.v4} / {b.v6}, VIPs on lo, xdp_decap on {b.ifname}")

        heading(2, "Starting the daemon")
        t = time.monotonic()
        sizes = cfg.sizes()
        with LabDaemon(lab, max_vips=sizes.max_vips, max_backends=sizes.max_backends,
                       conn_table_size=sizes.conn_table_size) as daemon:
            print(f"  $ lb {' '.join(daemon.args[3:])}")
            ready = daemon.api.readyz()
            print(f"  ready in {time.monotonic() - t:.1f} s (compile, load, attach): API on "
                  f"{daemon.url}, attached to {ready['netns']}/{ready['interface']} in "
                  f"{ready['mode']} mode")
            print(f"  one-arm: XDP_TX to the next hop {ready['next_hop_mac']} (the default "
                  f"gateway's MAC, resolved by the daemon); maps pinned in {ready['pin_dir']}")
            ok = demo_rounds(lab, Control(daemon.api), vip, cfg)
            heading(7, "Tearing down")
    left = lab.remaining_namespaces()
    print("  daemon stopped, pinned maps removed, servers stopped, namespaces deleted "
          f"({f'LEFT: {left}' if left else 'none left'}); "
          f"total {time.monotonic() - started:.1f} s")
    return 0 if ok else 1


def demo_rounds(lab: VethLab, control: Control, vip: Address, cfg: DemoConfig) -> bool:
    """Sections 3 to 6: configure, send, remove a backend, send again; True if the
    established connection kept its backend while new ones avoided it."""
    heading(3, f"Configuring VIP {vip}:{cfg.port}/tcp through the REST API")
    vip_id = control.add_vip(vip, cfg.port, "tcp")
    addresses = {b.name: (b.v4 if vip.version == 4 else b.v6) for b in lab.backends}
    weights = {b.name: w for b, w in zip(lab.backends, cfg.weights, strict=True)}
    for name, weight in weights.items():
        control.add_backend(vip_id, addresses[name], weight)
    share = control.ring_share(vip_id)
    print(table([(n, str(addresses[n]), weights[n], f"{share[str(addresses[n])]:.1%}")
                 for n in weights], ("backend", "address", "weight", "ring share"), "llrr"))
    lab.start_http_servers([vip], cfg.port)

    heading(4, f"{cfg.requests} requests, each a new TCP connection")
    request_round(lab, control, vip_id, vip, cfg, weights, addresses)
    print_counters(lab, control)

    heading(5, "Removing the backend that serves a long-lived connection")
    conn = lab.http_connection(vip, cfg.port)
    try:
        conn.request("GET", "/")
        victim = conn.getresponse().read().decode().strip()
        print(f"  connection opened from port {conn.sock.getsockname()[1]}, served by {victim}")
        control.remove_backend(vip_id, addresses[victim])
        del weights[victim]
        share = control.ring_share(vip_id)
        print(f"  removed {victim} ({addresses[victim]}) from the ring; ring share now: "
              + ", ".join(f"{n} {share[str(addresses[n])]:.1%}" for n in weights))

        heading(6, f"{cfg.requests} new requests, and the open connection")
        served = request_round(lab, control, vip_id, vip, cfg, weights, addresses)
        answers = []
        for _ in range(3):
            conn.request("GET", "/")
            answers.append(conn.getresponse().read().decode().strip())
        print(f"  the connection opened before the removal: 3 more requests on it -> "
              f"{', '.join(answers)}")
        ok = answers == [victim] * 3 and served[victim] == 0
        print("  established flow kept its backend, new flows avoided it: "
              + ("yes" if ok else "NO"))
    finally:
        conn.close()
    print_counters(lab, control)
    return ok


def parse_args(argv: Sequence[str] | None = None) -> tuple[DemoConfig, bool]:
    parser = argparse.ArgumentParser(
        prog="python -m lb.lab.demo", description=__doc__.splitlines()[0], epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    defaults = DemoConfig()
    parser.add_argument("--weights", default=",".join(map(str, defaults.weights)),
                        help="comma-separated backend weights, one backend each "
                             "(default: %(default)s)")
    parser.add_argument("--requests", type=int, default=defaults.requests,
                        help="HTTP requests per round (default: %(default)s)")
    parser.add_argument("--vip", default=defaults.vip,
                        help="VIP address, in 10.100.0.1-8 or fd00:100::1-8 "
                             "(default: %(default)s)")
    parser.add_argument("--port", type=int, default=defaults.port,
                        help="VIP port (default: %(default)s)")
    parser.add_argument("--rx-queues", type=int, default=defaults.rx_queues,
                        help="RX queues of the balancer's veth (default: %(default)s)")
    parser.add_argument("--prefix", default=defaults.prefix,
                        help="namespace name prefix (default: %(default)s)")
    parser.add_argument("--print-cflags", action="store_true",
                        help="print the compiler flags the balancer is loaded with, and exit")
    args = parser.parse_args(argv)
    try:
        weights = tuple(int(w) for w in args.weights.split(","))
    except ValueError:
        parser.error(f"--weights: not a list of integers: {args.weights!r}")
    if not weights or min(weights) <= 0 or len(weights) > 250:
        parser.error("--weights: 1 to 250 positive integers")
    if args.requests <= 0:
        parser.error("--requests must be positive")
    try:
        vip = ipaddress.ip_address(args.vip)
    except ValueError as e:
        parser.error(f"--vip: {e}")
    net = VIP_NET_V4 if vip.version == 4 else VIP_NET_V6
    if vip not in net or not 1 <= int(vip) - int(net.network_address) <= VIP_HOSTS:
        parser.error(f"--vip: the lab's backends hold {net.network_address + 1} to "
                     f"{net.network_address + VIP_HOSTS}, not {vip}")
    cfg = DemoConfig(weights=weights, requests=args.requests, vip=args.vip, port=args.port,
                     rx_queues=args.rx_queues, prefix=args.prefix)
    return cfg, args.print_cflags


def main(argv: Sequence[str] | None = None) -> int:
    cfg, print_cflags = parse_args(argv)
    if print_cflags:
        print(" ".join(loader.compile_flags(cfg.sizes())))
        return 0
    if os.geteuid() != 0:
        print("lb.lab.demo needs root (bpf(), network namespaces)", file=sys.stderr)
        return 2
    # SIGTERM unwinds like Ctrl-C: every `finally` runs, the lab is torn down.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        return run(cfg)
    except KeyboardInterrupt:
        print("\ninterrupted: the lab has been torn down", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
