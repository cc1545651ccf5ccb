"""The health-check benchmark: what 1000 backends checked every second cost the daemon, and how
evenly and punctually their checks start.

A real `lb run` daemon (lb.lab.daemon.LabDaemon on a VethLab) is configured by PUT /config with
VIPs whose backends make `--probes` distinct (address, port) TCP probes, each checked every
`--interval` s. The listeners are real: one socket per probe in the lab's backend namespace
(backend addresses on its lo, routed to it by the lab's router), accepted and closed by a
thread of this process, so every check is a full TCP handshake across two veths.

Figures:
  * daemon CPU: utime + stime of the daemon process (every thread) from /proc/<pid>/stat over
    `--duration` s, as % of one core; next to it the same over `--idle` s with no VIP at all.
  * check start spread: from the daemon's record of each probe's recent start times
    (GET /health/schedule, CLOCK_MONOTONIC): the gap between consecutive starts of one probe
    against the interval (jitter: p50, p99, max), and how the probes' starts fall over one
    interval (checks started per tenth of the interval: min and max, against the even share).

Run as root: `python -m bench.health --help`.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import math
import os
import selectors
import signal
import socket
import statistics
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

from bench.dataplane import host_facts, log
from lb.client import Client

BENCH_DIR = Path(__file__).resolve().parent
DEFAULT_JSON = BENCH_DIR / "results" / "health.json"
SCHEMA = "lb-bench-health/1"
# Namespace prefix of the benchmark's lab (leftovers of dead runs are removed first).
LAB_PREFIX = "lbk"
# Where the backend addresses live: on the lab backend's lo, routed there by the router.
BACKEND_NET = ipaddress.IPv4Network("10.210.0.0/24")
FIRST_CHECK_PORT = 9001
# Each VIP has this many backends (one probe each, on the VIP's own check port).
BACKENDS_PER_VIP = 100

TARGET_CPU_PCT = 15.0
# Clock ticks per second of /proc/<pid>/stat's utime and stime.
CLK_TCK = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Options:
    probes: int = 1000
    interval: float = 1.0
    timeout: float = 1.0
    duration: float = 30.0
    warmup: float = 5.0
    idle: float = 10.0
    json_path: Path | None = DEFAULT_JSON


# --- the listeners ---------------------------------------------------------------------------
class Listeners:
    """One listening TCP socket per probe, in the lab backend's namespace; a thread accepts
    and closes every connection (the checks only connect)."""

    def __init__(self, netns: str, endpoints: list[tuple[str, int]]) -> None:
        from lb.netns import in_netns

        self.selector = selectors.DefaultSelector()
        self.sockets: list[socket.socket] = []
        self.accepted = 0
        self._stop = threading.Event()
        try:
            with in_netns(netns):
                for address, port in endpoints:
                    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                    self.sockets.append(s)
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                    s.bind((address, port))
                    s.listen(64)
                    s.setblocking(False)
                    self.selector.register(s, selectors.EVENT_READ)
        except BaseException:
            self.close()
            raise
        self._thread = threading.Thread(target=self._serve, name="listeners", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            for key, _ in self.selector.select(timeout=0.2):
                try:
                    conn, _ = key.fileobj.accept()  # type: ignore[union-attr]
                except OSError:
                    continue
                conn.close()
                self.accepted += 1

    def close(self) -> None:
        self._stop.set()
        if hasattr(self, "_thread"):
            self._thread.join(2)
        for s in self.sockets:
            s.close()
        self.selector.close()


# --- measuring -------------------------------------------------------------------------------
def cpu_seconds(pid: int) -> tuple[float, float]:
    """(utime, stime) of process `pid` (all its threads), in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) / CLK_TCK, int(fields[12]) / CLK_TCK  # stat(5) fields 14, 15


def cpu_percent(pid: int, seconds: float) -> tuple[float, float]:
    """The process's CPU use over the next `seconds`, as % of one core: (user + system,
    system alone)."""
    (u0, s0), t0 = cpu_seconds(pid), time.monotonic()
    time.sleep(seconds)
    (u1, s1), t1 = cpu_seconds(pid), time.monotonic()
    wall = t1 - t0
    return 100.0 * (u1 - u0 + s1 - s0) / wall, 100.0 * (s1 - s0) / wall


def states(client: Client, vip_ids: list[int]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for vip_id in vip_ids:
        for b in client.list_backends(vip_id):
            counts[b["state"]] = counts.get(b["state"], 0) + 1
    return counts


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def spread(schedule: list[dict], interval: float, window: float) -> dict:
    """Jitter of consecutive starts of each probe, and starts per tenth of the interval over
    the last `window` seconds (every probe's starts in it)."""
    gaps_ms = []
    phases = [0] * 10
    latest = max(s for p in schedule for s in p["starts"])
    starts_in_window = 0
    for p in schedule:
        starts = p["starts"]
        gaps_ms += [abs((b - a) - interval) * 1000
                    for a, b in zip(starts, starts[1:], strict=False)]
        for s in starts:
            if s > latest - window:
                starts_in_window += 1
                phases[int((s % interval) / interval * 10) % 10] += 1
    return {"jitter_ms": {"p50": statistics.median(gaps_ms), "p99": percentile(gaps_ms, 0.99),
                          "max": max(gaps_ms), "gaps": len(gaps_ms)},
            "per_tenth": phases, "window_s": window, "starts_in_window": starts_in_window,
            "checks_per_s": starts_in_window / window}


def run(opts: Options) -> dict:
    from lb.lab.daemon import LabDaemon, remove_leftover_pins
    from lb.lab.veth import VethLab, remove_leftovers

    vips = math.ceil(opts.probes / BACKENDS_PER_VIP)
    per_vip = math.ceil(opts.probes / vips)
    if per_vip > BACKEND_NET.num_addresses - 2:
        raise SystemExit(f"--probes {opts.probes}: at most {BACKEND_NET.num_addresses - 2} "
                         f"backends per VIP")
    remove_leftovers(LAB_PREFIX)
    remove_leftover_pins()
    log("building a veth lab and starting `lb run` on it ...")
    with VethLab(n_backends=1, prefix=LAB_PREFIX) as lab, \
            LabDaemon(lab, max_vips=max(16, vips), max_backends=per_vip + 2) as daemon:
        pid = daemon.process.pid  # type: ignore[union-attr]
        addresses = [str(a) for a in lab.add_backend_network(lab.backends[0], BACKEND_NET)]
        addresses = addresses[:per_vip]
        # Probe k: backend k % per_vip on the check port of VIP k // per_vip.
        endpoints = [(addresses[k % per_vip], FIRST_CHECK_PORT + k // per_vip)
                     for k in range(opts.probes)]
        log(f"  daemon pid {pid}; {len(endpoints)} listeners in {lab.backends[0].netns}")
        listeners = Listeners(lab.backends[0].netns, endpoints)
        try:
            client = daemon.api
            log(f"daemon idle (no VIP) for {opts.idle:.0f} s ...")
            idle, _ = cpu_percent(pid, opts.idle)
            document = {"vips": [
                {"address": f"10.100.1.{v + 1}", "port": 80, "protocol": "tcp",
                 "check": {"type": "tcp", "port": FIRST_CHECK_PORT + v,
                           "interval_s": opts.interval, "timeout_s": opts.timeout},
                 "backends": [{"address": a} for a in
                              addresses[:opts.probes - v * per_vip]]}
                for v in range(vips)]}
            client.put_config(document)
            vip_ids = [v["id"] for v in client.list_vips()]
            deadline = time.monotonic() + 10 * opts.interval + 10
            while (st := states(client, vip_ids)).get("up", 0) < opts.probes:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"backends not all up: {st}")
                time.sleep(0.5)
            log(f"all {opts.probes} backends up; warm-up {opts.warmup:.0f} s, then "
                f"{opts.duration:.0f} s measured ...")
            time.sleep(opts.warmup)
            accepted_before = listeners.accepted
            busy, busy_sys = cpu_percent(pid, opts.duration)
            accepted = listeners.accepted - accepted_before
            schedule = client.check_schedule()
            final = states(client, vip_ids)
            client.put_config({"vips": []})
        finally:
            listeners.close()
        setup = {"daemon": " ".join(daemon.args[1:]),
                 "probes": opts.probes, "vips": vips, "backends_per_vip": per_vip,
                 "listeners": f"{len(endpoints)} sockets on {per_vip} addresses of "
                              f"{BACKEND_NET} (lo of {lab.backends[0].netns}) x {vips} ports",
                 "check": {"type": "tcp", "interval_s": opts.interval,
                           "timeout_s": opts.timeout}}
    window = min(opts.duration, 7 * opts.interval)  # the daemon keeps 8 starts per probe
    return {"setup": setup, "idle_cpu_pct": idle, "cpu_pct": busy, "cpu_sys_pct": busy_sys,
            "connections_accepted": accepted, "accepted_per_s": accepted / opts.duration,
            "probes_scheduled": len(schedule), "final_states": final,  # type: ignore[arg-type]
            "spread": spread(schedule, opts.interval, window)}  # type: ignore[arg-type]


# --- report ----------------------------------------------------------------------------------
def build_report(opts: Options, host: dict, m: dict) -> dict:
    sp = m["spread"]
    even = sp["starts_in_window"] / 10
    figures = {
        "cpu": {"label": f"daemon CPU, {opts.probes} TCP checks every {opts.interval:g} s",
                "value": round(m["cpu_pct"], 2), "unit": "% of one core",
                "target": TARGET_CPU_PCT,
                "result": "met" if m["cpu_pct"] < TARGET_CPU_PCT else "missed"},
        "cpu_sys": {"label": "  of which in the kernel (stime)",
                    "value": round(m["cpu_sys_pct"], 2), "unit": "% of one core",
                    "target": None, "result": ""},
        "cpu_idle": {"label": "  the same daemon with no VIP",
                     "value": round(m["idle_cpu_pct"], 2), "unit": "% of one core",
                     "target": None, "result": ""},
        "checks_per_s": {"label": "checks started per second (daemon's record)",
                         "value": round(sp["checks_per_s"], 1), "unit": "/s",
                         "target": opts.probes / opts.interval, "result": ""},
        "accepted_per_s": {"label": "  connections the listeners accepted per second",
                           "value": round(m["accepted_per_s"], 1), "unit": "/s",
                           "target": None, "result": ""},
        "jitter_p50": {"label": "start-to-start gap minus interval: p50",
                       "value": round(sp["jitter_ms"]["p50"], 2), "unit": "ms",
                       "target": None, "result": ""},
        "jitter_p99": {"label": "  p99", "value": round(sp["jitter_ms"]["p99"], 2),
                       "unit": "ms", "target": None, "result": ""},
        "jitter_max": {"label": "  max", "value": round(sp["jitter_ms"]["max"], 2),
                       "unit": "ms", "target": None, "result": ""},
        "phase_min": {"label": "starts per tenth of the interval: fewest",
                      "value": min(sp["per_tenth"]), "unit": "", "target": round(even),
                      "result": ""},
        "phase_max": {"label": "  most", "value": max(sp["per_tenth"]), "unit": "",
                      "target": round(even), "result": ""},
    }
    return {"schema": SCHEMA, "host": host, "setup": m["setup"], "figures": figures,
            "measured": {"duration_s": opts.duration, "warmup_s": opts.warmup,
                         "idle_s": opts.idle, "cpu_source": "/proc/<pid>/stat utime+stime",
                         "final_states": m["final_states"],
                         "probes_scheduled": m["probes_scheduled"], "spread": sp}}


def render(report: dict) -> str:
    h, s = report["host"], report["setup"]
    lines = [
        "Health-check benchmark: the daemon checking many backends",
        f"  kernel {h['kernel']}, CPU {h['cpu_model']} x {h['cpus']}, {h['date']}",
        f"  {s['probes']} probes: {s['vips']} VIPs x {s['backends_per_vip']} backends, "
        f"{s['listeners']}",
        "",
    ]
    head = f"{'figure':<50}{'value':>14}{'target / even':>16}  result"
    lines += [head, "-" * len(head)]
    for f in report["figures"].values():
        percent = f["unit"] == "% of one core"
        target = "" if f["target"] is None else \
            f"< {f['target']:g} %" if percent else f"{f['target']:g}"
        value = f"{f['value']:g} {'%' if percent else f['unit']}".strip()
        lines.append(f"{f['label']:<50}{value:>14}{target:>16}  {f['result']}")
    m = report["measured"]
    lines += ["", f"per tenth of the interval (last {m['spread']['window_s']:g} s): "
              f"{m['spread']['per_tenth']}",
              f"backend states at the end: {m['final_states']}; probes scheduled: "
              f"{m['probes_scheduled']}"]
    return "\n".join(lines)


EXAMPLES = """\
examples:
  python -m bench.health                       # 1000 probes every 1 s, 30 s measured
  python -m bench.health --duration 60         # a longer, steadier CPU figure
  python -m bench.health --probes 2000 --interval 0.5 --json /tmp/h.json   # 4000 checks/s
  python -m bench.health --duration 10 --idle 3 --no-json   # a quick look
"""


def parse_args(argv: list[str] | None = None) -> Options:
    d = Options()
    p = argparse.ArgumentParser(
        prog="python -m bench.health",
        description="Measure what health checks cost a real `lb run` daemon on a veth lab: "
                    "its CPU use while it checks --probes TCP listeners every --interval "
                    "seconds, and the spread of check start times. Needs root.",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--probes", type=int, default=d.probes,
                   help="distinct (address, port) probes (default %(default)s)")
    p.add_argument("--interval", type=float, default=d.interval,
                   help="seconds between two checks of a probe (default %(default)s)")
    p.add_argument("--timeout", type=float, default=d.timeout,
                   help="bound of one check, seconds (default %(default)s)")
    p.add_argument("--duration", type=float, default=d.duration,
                   help="seconds of CPU measured (default %(default)s)")
    p.add_argument("--warmup", type=float, default=d.warmup,
                   help="seconds after every backend is up, before measuring (default "
                        "%(default)s)")
    p.add_argument("--idle", type=float, default=d.idle,
                   help="seconds of the idle daemon measured first (default %(default)s)")
    p.add_argument("--json", type=Path, default=d.json_path, metavar="PATH",
                   help="where to write the JSON (default: bench/results/health.json)")
    p.add_argument("--no-json", action="store_true", help="write no JSON")
    a = p.parse_args(argv)
    if a.probes < 1 or a.interval <= 0 or a.timeout <= 0 or a.duration <= 0 or a.idle <= 0:
        p.error("--probes, --interval, --timeout, --duration and --idle must be > 0")
    return Options(probes=a.probes, interval=a.interval, timeout=a.timeout,
                   duration=a.duration, warmup=a.warmup, idle=a.idle,
                   json_path=None if a.no_json else a.json)


def main(argv: list[str] | None = None) -> int:
    opts = parse_args(argv)
    if os.geteuid() != 0:
        log("bench.health needs root (bpf(), network namespaces)")
        return 1
    # SIGTERM unwinds like Ctrl-C, so the lab, the daemon and its pins are removed.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    host = host_facts(SimpleNamespace(cpu=None))
    report = build_report(opts, host, run(opts))
    print(render(report))
    if opts.json_path is not None:
        opts.json_path.parent.mkdir(parents=True, exist_ok=True)
        opts.json_path.write_text(json.dumps(report, indent=2) + "\n")
        log(f"wrote {opts.json_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
