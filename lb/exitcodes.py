"""The exit codes of the `lb` command, each with its meaning: the one table scripts rely on.

`lb run` and `lb detach` exit OK or USAGE (bad settings); the commands that talk to the API
use them all (lb.client_cli maps each client error to one). `lb doctor` exits 0, or 1 if a
check failed. `help_text()` is the table `--help` prints.
"""

from __future__ import annotations

import enum


class ExitCode(enum.IntEnum):
    """An exit status and what it means (`meaning`, one line for --help)."""

    meaning: str

    def __new__(cls, value: int, meaning: str) -> ExitCode:
        member = int.__new__(cls, value)
        member._value_ = value
        member.meaning = meaning
        return member

    OK = 0, "done"
    REFUSED = 1, "the API refused (4xx): its message is printed, one line per field at fault"
    USAGE = 2, "usage error (bad arguments or settings, FILE unreadable or not JSON)"
    UNREACHABLE = 3, "cannot reach the API (is `lb run` running? --api, LB_API)"
    SERVER = 4, "the API failed (5xx), or `lb status`: the daemon is not ready"


def help_text() -> str:
    """The `exit codes:` section of an epilog, one line per code."""
    return "exit codes:\n" + "".join(f"  {c.value}  {c.meaning}\n" for c in ExitCode)
