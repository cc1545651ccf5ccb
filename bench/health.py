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

import ipaddress
import math
import os
import selectors
import socket
import statistics
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from bench import common
from bench.common import Result, flag, log
from lb.client import Client

DEFAULT_JSON = common.RESULTS_DIR
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
    """Everything a run depends on; the flags are the flag() fields."""

    probes: int = flag(1000, "distinct (address, port) probes")
    interval: float = flag(1.0, "seconds between two checks of a probe")
    timeout: float = flag(1.0, "bound of one check, seconds")
    duration: float = flag(30.0, "seconds of CPU measured")
    warmup: float = flag(5.0, "seconds after every backend is up, before measuring")
    idle: float = flag(10.0, "seconds of the idle daemon measured first")
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
    return {"jitter_ms": {"p50": statistics.median(gaps_ms), "p99": common.percentile(gaps_ms, 99),
                          "max": max(gaps_ms), "gaps": len(gaps_ms)},
            "per_tenth": phases, "window_s": window, "starts_in_window": starts_in_window,
            "checks_per_s": starts_in_window / window}


def run(opts: Options) -> dict:
    from lb.lab.daemon import LabDaemon, remove_leftover_pins
    from lb.lab.namespaces import remove_leftovers
    from lb.lab.veth import VethLab

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
    even = round(sp["starts_in_window"] / 10)
    core, jitter = "% of one core", sp["jitter_ms"]
    cpu = "utime + stime of the daemon (/proc/<pid>/stat)"
    gap = "gap between consecutive check starts of one probe, minus the interval"
    tenth = "check starts per tenth of the interval over the last window, vs the even share"
    figures = [
        Result("cpu", f"daemon CPU, {opts.probes} TCP checks every {opts.interval:g} s",
               round(m["cpu_pct"], 2), core, cpu, TARGET_CPU_PCT,
               "met" if m["cpu_pct"] < TARGET_CPU_PCT else "missed"),
        Result("cpu_sys", "  of which in the kernel (stime)", round(m["cpu_sys_pct"], 2),
               core, "stime of the daemon (/proc/<pid>/stat)"),
        Result("cpu_idle", "  the same daemon with no VIP", round(m["idle_cpu_pct"], 2), core,
               cpu + ", no VIP configured"),
        Result("checks_per_s", "checks started per second (daemon's record)",
               round(sp["checks_per_s"], 1), "/s", "GET /health/schedule starts in the window",
               opts.probes / opts.interval),
        Result("accepted_per_s", "  connections the listeners accepted per second",
               round(m["accepted_per_s"], 1), "/s", "accept() calls of the listeners"),
        Result("jitter_p50", "start-to-start gap minus interval: p50", round(jitter["p50"], 2),
               "ms", gap),
        Result("jitter_p99", "  p99", round(jitter["p99"], 2), "ms", gap),
        Result("jitter_max", "  max", round(jitter["max"], 2), "ms", gap),
        Result("phase_min", "starts per tenth of the interval: fewest", min(sp["per_tenth"]),
               "", tenth, even),
        Result("phase_max", "  most", max(sp["per_tenth"]), "", tenth, even),
    ]
    return {"schema": SCHEMA, "host": host, "setup": m["setup"], "figures": common.by_name(figures),
            "measured": {"duration_s": opts.duration, "warmup_s": opts.warmup,
                         "idle_s": opts.idle, "cpu_source": "/proc/<pid>/stat utime+stime",
                         "final_states": m["final_states"],
                         "probes_scheduled": m["probes_scheduled"], "spread": sp}}


def _cells(f: dict) -> list[str]:
    percent = f["unit"] == "% of one core"
    target = "" if f["target"] is None else \
        f"< {f['target']:g} %" if percent else f"{f['target']:g}"
    value = f"{f['value']:g} {'%' if percent else f['unit']}".strip()
    return [f["label"], value, target, f["result"]]


def render(report: dict) -> str:
    h, s = report["host"], report["setup"]
    lines = common.heading("Health-check benchmark: the daemon checking many backends", h,
                           f"  {s['probes']} probes: {s['vips']} VIPs x {s['backends_per_vip']} "
                           f"backends, {s['listeners']}")
    lines.append(common.table([_cells(f) for f in report["figures"].values()],
                              ["figure", "value", "target / even", "result"], "lrrl"))
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
    p = common.parser("health", EXAMPLES, Options)
    a = p.parse_args(argv)
    if a.probes < 1 or a.interval <= 0 or a.timeout <= 0 or a.duration <= 0 or a.idle <= 0:
        p.error("--probes, --interval, --timeout, --duration and --idle must be > 0")
    return common.options_from(Options, a)


def main(argv: list[str] | None = None) -> int:
    opts = parse_args(argv)
    if not common.is_root("health", "bpf(), network namespaces"):
        return 1
    common.unwind_on_sigterm()
    report = build_report(opts, common.host_facts(), run(opts))
    common.emit("health", report, render, opts.json_path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
