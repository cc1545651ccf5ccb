"""Network namespaces by name (/run/netns/<name>): run a thread, or the whole process, inside one.

`setns` is per thread: `in_netns()` moves only the calling thread and moves it back (it saves
/proc/thread-self, not /proc/self, keeps no global stack and never creates a namespace).
Threads started inside inherit the namespace; a socket stays in the namespace it was created in.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

NETNS_DIR = Path("/run/netns")
_CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


def _setns(fd: int) -> None:
    if _libc.setns(fd, _CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


def enter(name: str) -> None:
    """Move the calling thread into namespace `name` for good (the daemon does this in its
    main thread before starting any other, so every thread it starts is there too)."""
    fd = os.open(NETNS_DIR / name, os.O_RDONLY)
    try:
        _setns(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def in_netns(name: str) -> Iterator[None]:
    """Run the body with this thread in network namespace `name`, then switch back.

    Raises FileNotFoundError if the namespace does not exist; it is never created here.
    """
    target = os.open(NETNS_DIR / name, os.O_RDONLY)
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        _setns(target)
        try:
            yield
        finally:
            _setns(home)
    finally:
        os.close(target)
        os.close(home)


def run_in_netns(name: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Call `fn(*args, **kwargs)` with this thread in namespace `name`; returns what it returns."""
    with in_netns(name):
        return fn(*args, **kwargs)
