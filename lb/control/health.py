"""Health checking: every probe scheduled and run concurrently, rise/fall state per backend.

The checks themselves (TCP, HTTP, HTTPS, UDP) are in lb.control.probes.

A probe is a backend address and port checked one way, shared by every VIP that checks it so.
TCP probes all run on one thread with one epoll (_TcpProber: a non-blocking connect per check,
no event-loop object); HTTP, HTTPS and UDP probes are tasks on a uvloop event loop in a thread
of its own. Either way a slow or hanging backend only ever delays itself: every check is
bounded by its timeout. State changes are applied by one worker thread, off the probers.
A backend's state moves from `unknown` to `up` after `rise` consecutive successes and to `down`
after `fall` consecutive failures (from `unknown` too); each move is reported to a callback,
which changes the rings. Health is observed state: it is never persisted, and rebuilt from
`unknown` on every start. Until its first verdict a backend is treated as up (see README).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import enum
import errno
import heapq
import itertools
import logging
import os
import select
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import uvloop

from lb.control.model import Address, CheckSpec
from lb.control.probes import probe, tcp_connect

log = logging.getLogger("lb.health")


class State(enum.StrEnum):
    """A backend's health as seen by its checks."""

    UNKNOWN = "unknown"
    UP = "up"
    DOWN = "down"


@dataclass
class Health:
    """One backend's check state: the verdict, its counters, the last result."""

    state: State = State.UNKNOWN
    since: float = field(default_factory=time.time)
    successes: int = 0
    failures: int = 0
    last_ok: bool | None = None
    last_reason: str = "not checked yet"
    last_checked: float | None = None
    transitions: int = 0

    def record(self, ok: bool, reason: str, spec: CheckSpec) -> State | None:
        """Count one result; returns the new state if it changed."""
        self.last_ok, self.last_reason, self.last_checked = ok, reason, time.time()
        if ok:
            self.successes, self.failures = self.successes + 1, 0
            if self.state != State.UP and self.successes >= spec.rise:
                return self._move(State.UP)
        else:
            self.failures, self.successes = self.failures + 1, 0
            if self.state != State.DOWN and self.failures >= spec.fall:
                return self._move(State.DOWN)
        return None

    def _move(self, state: State) -> State:
        self.state, self.since = state, time.time()
        self.transitions += 1
        return state

    def as_dict(self) -> dict[str, Any]:
        return {"state": str(self.state), "since": self.since,
                "in_state_s": round(time.time() - self.since, 3),
                "last_check": None if self.last_ok is None else
                {"ok": self.last_ok, "reason": self.last_reason, "at": self.last_checked},
                "transitions": self.transitions}


# --- the monitor --------------------------------------------------------------------------
Target = tuple[int, Address]  # (VIP id, backend address)
_GOLDEN_RATIO = (5 ** 0.5 - 1) / 2
OnChange = Callable[[list[Target], State, Health], None]


@dataclass(frozen=True)
class ProbeKey:
    """What is probed: a backend address and port with one check spec. VIPs that check the
    same backend the same way share one probe (one backend in 512 VIPs: one probe)."""

    address: Address
    port: int
    spec: CheckSpec


@dataclass
class _Job:
    key: ProbeKey
    targets: set[Target]
    health: Health = field(default_factory=Health)
    task: asyncio.Task[None] | None = None
    # Where in its interval the probe runs: 0 <= phase < 1.
    phase: float = 0.0
    # False once the monitor stopped it (checked instead of looking the key up: cheaper).
    active: bool = True
    # Monotonic start times of the last checks.
    started: collections.deque[float] = field(default_factory=lambda: collections.deque(
        maxlen=8))


# Least time between two batches of TCP check starts (their jitter is at most this).
_TICK_S = 0.01


class _TcpProber:
    """Every TCP check, on one thread with one epoll: no event loop, no task, no future per
    check. A check is a non-blocking connect; its socket waits in epoll until it connects,
    fails or times out, then closes with a reset. Thousands of checks a second cost little
    more than their system calls."""

    def __init__(self, complete: Callable[[_Job, bool, str], None]) -> None:
        self._complete = complete
        self._epoll = select.epoll()
        self._due: list[tuple[float, int, _Job]] = []  # (start time, seq, job), a heap
        # (deadline, check number, fd), a heap; fds are reused, the check number is not.
        self._deadlines: list[tuple[float, int, int]] = []
        self._inflight: dict[int, tuple[_Job, socket.socket, float, int]] = {}
        self._seq = itertools.count()
        self._lock = threading.Lock()
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._epoll.register(self._wake_r, select.EPOLLIN)
        self._running = True
        self._thread = threading.Thread(target=self._loop, name="lb-health-tcp", daemon=True)
        self._thread.start()

    def add(self, job: _Job) -> None:
        with self._lock:
            first = time.monotonic() + job.key.spec.interval_s * job.phase
            heapq.heappush(self._due, (first, next(self._seq), job))
        os.write(self._wake_w, b"x")

    def close(self) -> None:
        self._running = False
        os.write(self._wake_w, b"x")
        self._thread.join(5)
        for _job, sock, _started, _check in self._inflight.values():
            sock.close()
        self._epoll.close()
        os.close(self._wake_r)
        os.close(self._wake_w)

    def _start(self, job: _Job, now: float, due: float) -> None:
        key = job.key
        job.started.append(now)
        sock, err = tcp_connect(key.address, key.port)
        if err != errno.EINPROGRESS:
            self._finish(job, sock, err, due)
            return
        fd, check = sock.fileno(), next(self._seq)
        self._inflight[fd] = (job, sock, due, check)
        self._epoll.register(fd, select.EPOLLOUT | select.EPOLLERR)
        heapq.heappush(self._deadlines, (now + key.spec.timeout_s, check, fd))

    def _finish(self, job: _Job, sock: socket.socket, err: int | None, due: float) -> None:
        sock.close()
        if err is None:
            ok, reason = False, f"timeout after {job.key.spec.timeout_s} s"
        elif err:
            ok, reason = False, os.strerror(err)
        else:
            ok, reason = True, "connected"
        if job.active:
            self._complete(job, ok, reason)
            # The next start is one interval after this one was due (not after it started:
            # a late wake-up must not merge probes into one burst), or now if it overran.
            with self._lock:
                heapq.heappush(self._due, (max(due + job.key.spec.interval_s,
                                               time.monotonic()), next(self._seq), job))

    def _loop(self) -> None:
        batch_at = 0.0  # when checks were last started
        while self._running:
            now = time.monotonic()
            ready = []
            with self._lock:
                # Checks start in batches at most every _TICK_S: a little start jitter, far
                # fewer wake-ups than one per check.
                if now - batch_at >= _TICK_S:
                    while self._due and self._due[0][0] <= now:
                        due, _, job = heapq.heappop(self._due)
                        ready.append((due, job))
                    if ready:
                        batch_at = now
                next_due = self._due[0][0] if self._due else now + 1.0
                next_due = max(next_due, batch_at + _TICK_S)
            for due, job in ready:
                if job.active:
                    self._start(job, now, due)
            while self._deadlines and self._deadlines[0][0] <= now:
                _, check, fd = heapq.heappop(self._deadlines)
                entry = self._inflight.get(fd)
                if entry is not None and entry[3] == check:  # still that check: time it out
                    del self._inflight[fd]
                    self._epoll.unregister(fd)
                    self._finish(entry[0], entry[1], None, entry[2])
            wake = min(next_due, self._deadlines[0][0] if self._deadlines else next_due)
            for fd, _events in self._epoll.poll(max(0.0, wake - time.monotonic())):
                if fd == self._wake_r:
                    with contextlib.suppress(BlockingIOError):
                        os.read(self._wake_r, 4096)
                    continue
                entry = self._inflight.pop(fd, None)
                if entry is None:
                    continue
                job, sock, due, _check = entry
                self._epoll.unregister(fd)
                self._finish(job, sock, sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR),
                             due)


class Monitor:
    """Runs every probe on one event loop in a thread of its own; reports state changes to
    `on_change(targets, state, health)`, called in a worker thread so no probe waits on it."""

    def __init__(self, on_change: OnChange) -> None:
        self.on_change = on_change
        self._jobs: dict[ProbeKey, _Job] = {}
        self._by_target: dict[Target, ProbeKey] = {}
        self._lock = threading.Lock()
        self._phases = itertools.count()  # the n-th probe started gets phase n x golden ratio
        self._loop = uvloop.new_event_loop()  # libuv: a fraction of asyncio's per-check cost
        self._thread = threading.Thread(target=self._loop.run_forever, name="lb-health",
                                        daemon=True)
        self._thread.start()
        # State changes are applied one at a time, off the probing threads.
        self._apply = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lb-health-apply")
        self._tcp = _TcpProber(self._complete)

    def close(self) -> None:
        """Cancel every probe, wait for them to unwind, stop the loop."""
        with self._lock:
            for job in self._jobs.values():
                job.active = False
            self._jobs.clear()
            self._by_target.clear()

        async def _cancel_all() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        self._tcp.close()
        asyncio.run_coroutine_threadsafe(_cancel_all(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()
        self._apply.shutdown(wait=True)

    def health(self, target: Target) -> Health | None:
        """The health of a (VIP id, backend) pair; None when it is not checked."""
        with self._lock:
            key = self._by_target.get(target)
            return self._jobs[key].health if key else None

    def start_times(self) -> dict[ProbeKey, list[float]]:
        """The monotonic start times of each probe's last (up to 8) checks."""
        with self._lock:
            return {k: list(j.started) for k, j in self._jobs.items()}

    def sync(self, wanted: dict[Target, ProbeKey]) -> set[Target]:
        """Check exactly `wanted` (target -> what to probe): start new probes, stop probes no
        target needs. A target whose probe changed starts over from unknown. Returns the
        targets that joined a probe already running with a verdict (they have it at once)."""
        joined: set[Target] = set()
        with self._lock:
            self._by_target = {t: k for t, k in wanted.items() if k.spec.type != "none"}
            needed: dict[ProbeKey, set[Target]] = {}
            for target, key in self._by_target.items():
                needed.setdefault(key, set()).add(target)
            for key in list(self._jobs):
                if key not in needed:
                    self._stop(key)
            for key, targets in needed.items():
                job = self._jobs.get(key)
                if job is None:
                    # Phases n x golden ratio (mod 1) stay evenly spread for any n: however
                    # many probes start together, their checks never come in one burst.
                    phase = (next(self._phases) * _GOLDEN_RATIO) % 1.0
                    job = self._jobs[key] = _Job(key, targets, phase=phase)
                    if key.spec.type == "tcp":
                        self._tcp.add(job)
                    else:
                        asyncio.run_coroutine_threadsafe(self._run(job), self._loop)
                elif job.health.state != State.UNKNOWN:
                    joined |= targets - job.targets
                job.targets = targets
        return joined

    def _stop(self, key: ProbeKey) -> None:
        job = self._jobs.pop(key)
        job.active = False
        if job.task is not None:
            self._loop.call_soon_threadsafe(job.task.cancel)

    def _complete(self, job: _Job, ok: bool, reason: str) -> None:
        """Record a TCP check's result (prober thread); a change is applied by the worker."""
        key = job.key
        with self._lock:
            if not job.active:
                return
            changed = job.health.record(ok, reason, key.spec)
            targets = sorted(job.targets, key=lambda t: t[0])
        if changed is not None:
            log.info("health event=%s backend=%s port=%d check=%s vips=%s reason=%r",
                     changed, key.address, key.port, key.spec.type,
                     ",".join(str(t[0]) for t in targets), reason)
            self._apply.submit(self._apply_change, targets, changed, job.health, key.address)

    def _apply_change(self, targets: list[Target], changed: State, health: Health,
                      address: Address) -> None:
        try:
            self.on_change(targets, changed, health)
        except Exception:  # noqa: BLE001 (logged; the checks go on)
            log.exception("health: applying %s for %s failed", changed, address)

    async def _run(self, job: _Job) -> None:
        job.task = asyncio.current_task()
        if not job.active:  # stopped before it started
            return
        key, spec = job.key, job.key.spec
        await asyncio.sleep(spec.interval_s * job.phase)
        next_at = self._loop.time()
        while True:
            job.started.append(time.monotonic())
            ok, reason = await probe(key.address, key.port, spec)
            with self._lock:
                if not job.active:  # stopped meanwhile
                    return
                changed = job.health.record(ok, reason, spec)
                targets = sorted(job.targets, key=lambda t: t[0])
            if changed is not None:
                log.info("health event=%s backend=%s port=%d check=%s vips=%s reason=%r",
                         changed, key.address, key.port, spec.type,
                         ",".join(str(t[0]) for t in targets), reason)
                try:
                    await self._loop.run_in_executor(None, self.on_change, targets, changed,
                                                     job.health)
                except Exception:  # noqa: BLE001 (logged; the checks go on)
                    log.exception("health: applying %s for %s failed", changed, key.address)
            # The next start is one interval after this one; a check that overran its slot
            # (timeout > interval) is followed by one at once, never by a burst making up for
            # the slots it missed (that would count `rise` successes in less than rise x
            # interval).
            next_at = max(next_at + spec.interval_s, self._loop.time())
            await asyncio.sleep(next_at - self._loop.time())
