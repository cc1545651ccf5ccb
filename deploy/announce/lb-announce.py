#!/usr/bin/env python3
"""Announce each VIP (/32 or /128) by BGP while it has a backend to serve it, withdraw it when not.

A health hook for an existing BGP daemon, reading the balancer's REST API (`GET /readyz`,
`GET /vips`, `GET /vips/{id}/stats`); standard library only, so any python3 runs it.

    exabgp   ExaBGP runs it as a `process` (see exabgp.conf); it prints `announce route ...` and
             `withdraw route ...` on stdout whenever the set of VIPs to announce changes.
    bird     writes BIRD include files of `route <vip>/<len> blackhole;` lines, lb-vips4.conf and
             lb-vips6.conf (a static protocol is of one family; see bird.conf), and runs
             `birdc configure` when one changes (run it as a service next to bird).

A VIP address is announced when at least one VIP on it (any port, any protocol) has at least one
usable backend. A backend is usable unless the API reports it down: when backends carry a
`health` object (`{"state": "up" | "down" | "unknown", ...}`), only `down` counts as down;
without one (no health checks) every configured backend counts as up. `unknown` counts as up,
as it does for the data plane until a check's first verdict.

On SIGTERM or SIGINT it withdraws what it announced, then exits (draining a host).
Everything is also withdrawn when the daemon says it is not ready (no program attached), or when the
API has been unreachable for --stale-after seconds: a daemon restart (a few seconds, the program
keeps forwarding meanwhile) does not flap the routes, a dead host does.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterable
from pathlib import Path
from typing import Any

DOWN = "down"


def prefix(address: str) -> str:
    """The host route of a VIP address: a.b.c.d/32 or x::y/128."""
    ip = ipaddress.ip_address(address)
    return f"{ip}/{ip.max_prefixlen}"


def backend_up(backend: dict[str, Any]) -> bool:
    """A backend is up unless its optional `health.state` says `down`."""
    health = backend.get("health")
    if isinstance(health, dict):
        return health.get("state") != DOWN
    if isinstance(health, str):  # tolerate a flat "health": "down"
        return health != DOWN
    return True


def vip_servable(vip: dict[str, Any], stats: dict[str, Any] | None) -> bool:
    """True when the VIP has at least one backend that is up (health from either document)."""
    backends = {b["address"]: b for b in vip.get("backends", [])}
    for b in (stats or {}).get("backends", []):
        if b.get("address") in backends and "health" in b:
            backends[b["address"]] = {**backends[b["address"]], "health": b["health"]}
    return any(backend_up(b) for b in backends.values())


def wanted_prefixes(vips: Iterable[dict[str, Any]],
                    stats: dict[int, dict[str, Any]]) -> set[str]:
    """The host routes to announce: the addresses with at least one servable VIP."""
    return {prefix(v["address"]) for v in vips if vip_servable(v, stats.get(v["id"]))}


def exabgp_commands(old: set[str], new: set[str]) -> list[str]:
    """ExaBGP API lines that move the announced set from `old` to `new`."""
    return ([f"withdraw route {p} next-hop self" for p in sorted(old - new)]
            + [f"announce route {p} next-hop self" for p in sorted(new - old)])


def bird_include(prefixes: Iterable[str], version: int) -> str:
    """A BIRD static-protocol include for IP `version` (4 or 6): one blackhole route per VIP.
    BIRD exports them by BGP; the balancer's XDP program takes the packets before the kernel's
    routing would see them."""
    nets = sorted(n for n in map(ipaddress.ip_network, prefixes) if n.version == version)
    lines = [f"# written by lb-announce: IPv{version} VIPs with a usable backend"]
    lines += [f"route {n} blackhole;" for n in nets]
    return "\n".join(lines) + "\n"


class Api:
    """GETs against the daemon's REST API (reads need no token; one is sent if given)."""

    def __init__(self, url: str, token: str | None, timeout: float) -> None:
        self.url, self.token, self.timeout = url.rstrip("/"), token, timeout

    def get(self, path: str, ok_statuses: tuple[int, ...] = (200,)) -> Any:
        request = urllib.request.Request(self.url + path)
        if self.token:
            request.add_header("Authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as answer:
                return json.load(answer)
        except urllib.error.HTTPError as e:
            if e.code in ok_statuses:
                return json.load(e)
            raise

    def snapshot(self) -> set[str]:
        """What to announce now; empty when the daemon is up but not ready."""
        ready = self.get("/readyz", ok_statuses=(503,))
        if not ready.get("ready"):
            log(f"daemon not ready ({'; '.join(ready.get('problems', []))}): withdrawing all")
            return set()
        vips = self.get("/vips")
        stats = {}
        for v in vips:
            try:
                stats[v["id"]] = self.get(f"/vips/{v['id']}/stats")
            except urllib.error.HTTPError as e:
                if e.code != 404:  # deleted between the two calls: just skip it
                    raise
        return wanted_prefixes(vips, stats)


def log(message: str) -> None:
    # stdout belongs to ExaBGP; stderr goes to its log (or the journal)
    print(f"lb-announce: {message}", file=sys.stderr, flush=True)


def apply_bird(prefixes: set[str], directory: Path, birdc: str | None) -> bool:
    """Rewrite lb-vips4.conf / lb-vips6.conf in `directory` (atomically) and, if one changed,
    run `birdc configure` (unless `birdc` is None). Returns whether anything changed."""
    changed = False
    for version in (4, 6):
        path = directory / f"lb-vips{version}.conf"
        text = bird_include(prefixes, version)
        if path.exists() and path.read_text() == text:
            continue
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(text)
        tmp.replace(path)
        changed = True
    if changed and birdc:
        subprocess.run([birdc, "configure"], check=True, stdout=subprocess.DEVNULL)
    return changed


def main(argv: list[str] | None = None) -> int:
    epilog = ("examples:\n"
              "  lb-announce.py                          an ExaBGP process, forever\n"
              "  lb-announce.py --once                   one poll's commands, then exit\n"
              "  lb-announce.py --mode bird --bird-dir /etc/bird\n")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog=epilog,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--api", default=os.environ.get("LB_API", "http://127.0.0.1:8470"))
    parser.add_argument("--token", default=os.environ.get("LB_API_TOKEN"))
    parser.add_argument("--mode", choices=["exabgp", "bird"], default="exabgp")
    parser.add_argument("--bird-dir", type=Path, default=Path("/etc/bird"),
                        help="where lb-vips4.conf and lb-vips6.conf are written")
    parser.add_argument("--birdc", default="birdc", help="birdc command; '' to not reload")
    parser.add_argument("--interval", type=float, default=2.0, help="seconds between polls")
    parser.add_argument("--timeout", type=float, default=2.0, help="seconds per API call")
    parser.add_argument("--stale-after", type=float, default=30.0,
                        help="withdraw everything after the API is unreachable this long")
    parser.add_argument("--once", action="store_true", help="one poll, then exit")
    args = parser.parse_args(argv)

    api = Api(args.api, args.token, args.timeout)
    announced: set[str] = set()

    def publish(wanted: set[str]) -> None:
        nonlocal announced
        if args.mode == "exabgp":
            for line in exabgp_commands(announced, wanted):
                print(line, flush=True)
        else:
            apply_bird(wanted, args.bird_dir, args.birdc or None)
        if wanted != announced:
            log(f"announced: {', '.join(sorted(wanted)) or 'nothing'}")
        announced = wanted

    def stop(signum: int, _frame: object) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    last_seen = time.monotonic()
    try:
        while True:
            try:
                wanted = api.snapshot()
                last_seen = time.monotonic()
            except (OSError, ValueError, urllib.error.URLError) as e:
                unreachable = time.monotonic() - last_seen
                if unreachable < args.stale_after and not args.once:
                    log(f"API unreachable ({e}); keeping {len(announced)} route(s) for "
                        f"{args.stale_after - unreachable:.0f} s more")
                    time.sleep(args.interval)
                    continue
                log(f"API unreachable ({e}): withdrawing all")
                wanted = set()
            publish(wanted)
            if args.once:
                return 0
            time.sleep(args.interval)
    except (SystemExit, KeyboardInterrupt):
        log("stopping: withdrawing all")
        publish(set())
        return 0

if __name__ == "__main__":
    sys.exit(main())
