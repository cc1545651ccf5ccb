"""The demo: a VIP in front of weighted backends in a veth lab, driven by real HTTP requests.

Lifecycle, one printed section each: build the lab (lb.lab), load and attach the balancer,
configure the VIP and its backends, send requests (each a new TCP connection from the client's
namespace), take out the backend serving a long-lived connection, show that connection still
works while new requests avoid that backend, tear everything down. Teardown runs in `finally`,
so Ctrl-C or a failure leaves no namespace, veth or XDP program behind.

Every change of state goes through `Control`, which today calls `lb.control.service.Balancer`
directly; a REST client with the same methods can replace it without touching the rest.
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

from lb.control.service import Balancer, vip_key
from lb.lab import VIP_HOSTS, VIP_NET_V4, VIP_NET_V6, VethLab, remove_leftovers, settle
from lb.xdp import loader
from lb.xdp.config import Sizes
from lb.xdp.maps import Dataplane, VipKey

Address = ipaddress.IPv4Address | ipaddress.IPv6Address

EPILOG = """\
examples:
  python -m lb.demo                          3 backends, weights 1,2,3, 300 requests per round
  python -m lb.demo --weights 1,1,1          equal weights
  python -m lb.demo --weights 1,1,1,1,1 --requests 1000
  python -m lb.demo --vip fd00:100::1        the same over IPv6
  python -m lb.demo --rx-queues 4            balancer veth with 4 RX queues
  python -m lb.demo --print-cflags           the compiler flags the balancer is loaded with

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
        return Sizes(max_vips=8, conn_table_size=16384)


class Control:
    """The demo's control operations, through the balancer service (later: the REST API)."""

    def __init__(self, balancer: Balancer) -> None:
        self.balancer = balancer

    def add_vip(self, address: Address, port: int, protocol: str) -> VipKey:
        key = vip_key(str(address), port, protocol)
        self.balancer.add_vip(key)
        return key

    def add_backend(self, vip: VipKey, address: Address, weight: int) -> None:
        self.balancer.add_backend(vip, address, weight)

    def remove_backend(self, vip: VipKey, address: Address) -> None:
        self.balancer.remove_backend(vip, address)

    def ring_share(self, vip: VipKey) -> dict[Address, float]:
        """Fraction of the VIP's ring slots each of its backends holds."""
        slots = Counter(self.balancer.dp.read_ring(self.balancer.vips[vip].num))
        total = sum(slots.values())
        return {a: slots[self.balancer.backend_index(a)] / total
                for a in self.balancer.vips[vip].backends}

    def backend_packets(self, address: Address) -> int:
        """Packets the data plane has sent to a backend."""
        return self.balancer.dp.backend_stats(self.balancer.backend_index(address))[0]

    def vip_packets(self, vip: VipKey) -> int:
        return self.balancer.dp.vip_stats(self.balancer.vips[vip].num)[0]

    def counters(self) -> dict[str, int]:
        return self.balancer.dp.counters()


def heading(number: int, title: str) -> None:
    print(f"\n== {number}. {title} " + "=" * max(0, 72 - len(title)), flush=True)


def table(rows: Sequence[Sequence[object]], header: Sequence[str], align: str) -> str:
    """Rows as columns under `header`; `align` has one letter per column, l(eft) or r(ight)."""
    cells = [[str(c) for c in header]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = []
    for n, row in enumerate(cells):
        parts = [c.rjust(w) if a == "r" else c.ljust(w)
                 for c, w, a in zip(row, widths, align, strict=True)]
        lines.append("  " + "  ".join(parts).rstrip())
        if n == 0:
            lines.append("  " + "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def send_requests(lab: VethLab, vip: Address, port: int, n: int) -> Counter[str]:
    """`n` GETs, each over a new TCP connection from the client; counts answers by backend."""
    served: Counter[str] = Counter()
    for _ in range(n):
        try:
            served[lab.http_get(vip, port, timeout=2).strip()] += 1
        except OSError as e:
            served[f"error: {e.__class__.__name__}"] += 1
    return served


def request_round(lab, control, key, vip, cfg, weights, addresses) -> Counter[str]:
    """Send cfg.requests new-connection HTTP requests to the VIP, print who served them,
    and return the responses per backend name."""
    before = {n: control.backend_packets(a) for n, a in addresses.items()}
    t = time.monotonic()
    served = send_requests(lab, vip, cfg.port, cfg.requests)
    settle(lambda: control.vip_packets(key), quiet=0.1)
    print_round(lab, control, served, before, weights, addresses, time.monotonic() - t)
    return served


def print_round(lab: VethLab, control: Control, served: Counter[str], before: dict[str, int],
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
                     control.backend_packets(addresses[name]) - before[name]))
    print(table(rows, ("backend", "address", "weight", "expected", "responses", "share",
                       "packets"), "llrrrrr"))
    errors = {k: v for k, v in served.items() if k.startswith("error")}
    if errors:
        print(f"  failed requests: {errors}")
    print(f"  {sum(served.values())} requests in {elapsed:.2f} s. 'packets': what the balancer "
          "sent to each backend;\n  client -> VIP only (SYN, request, ACKs, FIN): the replies "
          "go backend -> router -> client.")


def print_counters(lab: VethLab, control: Control) -> None:
    """The data plane's global counters that tell the story (lb_consts.h CNT_*), and how the
    packets spread over the balancer veth's RX queues."""
    c = control.counters()
    keys = ("tx", "ct_miss", "ct_hit", "pass", "drop", "drop_no_backend", "drop_too_big")
    print("  data-plane counters since start:")
    print(table([[c[k] for k in keys]], keys, "r" * len(keys)))
    queues = lab.balancer_rx_queues()
    print("  XDP packets per RX queue of the balancer's veth: "
          + ", ".join(f"queue {q}: {n}" for q, n in sorted(queues.items())))


def run(cfg: DemoConfig) -> int:
    vip = ipaddress.ip_address(cfg.vip)
    started = time.monotonic()
    program = dataplane = None
    ok = False
    heading(1, "Building the lab")
    stale = remove_leftovers(cfg.prefix)
    if stale:
        print(f"  removed namespaces an earlier, aborted run left behind: {', '.join(stale)}")
    with VethLab(n_backends=len(cfg.weights), rx_queues=cfg.rx_queues,
                 prefix=cfg.prefix) as lab:
        try:
            print(f"  namespaces: {', '.join(lab.namespaces)}")
            print(f"  client {lab.client.v4} / {lab.client.v6} -> router -> balancer "
                  f"{lab.balancer.v4} ({cfg.rx_queues} RX queues) -> router -> backends")
            for b in lab.backends:
                print(f"  {b.name}: {b.v4} / {b.v6}, VIPs on lo, xdp_decap on {b.ifname}")

            heading(2, "Loading the balancer")
            t = time.monotonic()
            program = loader.load(cfg.sizes())
            mode = lab.attach_balancer(program.fd)
            dataplane = Dataplane(program)
            dataplane.write_config(lab.runtime_config())
            print(f"  compiled and loaded in {time.monotonic() - t:.1f} s, attached to "
                  f"{lab.balancer.netns}/{lab.balancer.ifname} in {mode} mode")
            print(f"  one-arm: XDP_TX to the router's MAC {lab.balancer.router_mac}")

            heading(3, f"Configuring VIP {vip}:{cfg.port}/tcp")
            control = Control(Balancer(dataplane))
            key = control.add_vip(vip, cfg.port, "tcp")
            addresses = {b.name: (b.v4 if vip.version == 4 else b.v6) for b in lab.backends}
            weights = {b.name: w for b, w in zip(lab.backends, cfg.weights, strict=True)}
            for name, weight in weights.items():
                control.add_backend(key, addresses[name], weight)
            share = control.ring_share(key)
            print(table([(n, str(addresses[n]), weights[n], f"{share[addresses[n]]:.1%}")
                         for n in weights], ("backend", "address", "weight", "ring share"),
                        "llrr"))
            lab.start_http_servers([vip], cfg.port)

            heading(4, f"{cfg.requests} requests, each a new TCP connection")
            request_round(lab, control, key, vip, cfg, weights, addresses)
            print_counters(lab, control)

            heading(5, "Removing the backend that serves a long-lived connection")
            conn = lab.http_connection(vip, cfg.port)
            try:
                conn.request("GET", "/")
                victim = conn.getresponse().read().decode().strip()
                print(f"  connection opened from port {conn.sock.getsockname()[1]}, "
                      f"served by {victim}")
                control.remove_backend(key, addresses[victim])
                del weights[victim]
                share = control.ring_share(key)
                print(f"  removed {victim} ({addresses[victim]}) from the ring; ring share now: "
                      + ", ".join(f"{n} {share[addresses[n]]:.1%}" for n in weights))

                heading(6, f"{cfg.requests} new requests, and the open connection")
                served = request_round(lab, control, key, vip, cfg, weights, addresses)
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
        finally:
            heading(7, "Tearing down")
            if dataplane is not None:
                dataplane.close()
            if program is not None:
                program.close()
    left = lab.remaining_namespaces()
    print("  servers stopped, XDP detached, namespaces deleted "
          f"({f'LEFT: {left}' if left else 'none left'}); "
          f"total {time.monotonic() - started:.1f} s")
    return 0 if ok else 1


def parse_args(argv: Sequence[str] | None = None) -> tuple[DemoConfig, bool]:
    parser = argparse.ArgumentParser(
        prog="python -m lb.demo", description=__doc__.splitlines()[0], epilog=EPILOG,
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
        print("lb.demo needs root (bpf(), network namespaces)", file=sys.stderr)
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
