"""Whether `lb run` may take an interface's XDP hook: never clobber a program that is not ours.

The decision is pure (`takeover`): given what is attached (lb.xdp.xdpinfo), whether it is ours
and whether the operator said `replace_foreign`, it returns the program id the attach must
replace (an expected-fd replace, so a program attached meanwhile is not replaced) or raises
ForeignProgram with the message `lb run` prints before exiting with EXIT_FOREIGN.
"""

from __future__ import annotations

from lb.xdp.xdpinfo import BALANCER_NAME, ROOT_NAME, AttachedProgram

# `lb run`'s exit status when it refuses an interface that has someone else's XDP program.
EXIT_FOREIGN = 5


class ForeignProgram(RuntimeError):
    """The interface has an XDP program that is not ours, and replace_foreign is off."""

    def __init__(self, message: str, attached: AttachedProgram) -> None:
        super().__init__(message)
        self.attached = attached


def refusal(interface: str, attached: AttachedProgram) -> str:
    """What `lb run` says when it leaves `attached` in place: what it is, and how to proceed."""
    hint = ""
    if attached.name in (BALANCER_NAME, ROOT_NAME):
        hint = (" It has lb's name but does not use the maps pinned in this pin_dir: another "
                "lb instance, or one whose pins were removed.")
    return (f"interface {interface} has an XDP program that is not this lb's: "
            f"{attached.describe()}.{hint} lb run left it attached and did not start. To "
            f"proceed, either run the balancer after it in a chain (chain_slot; the other "
            f"program tail-calls the next slot instead of returning XDP_PASS, see "
            f"lb/xdp/chain.h), or remove it (ip link set dev {interface} xdp off), or take "
            f"the interface over: lb run --replace-foreign (LB_REPLACE_FOREIGN=1, "
            f"replace_foreign = true).")


def takeover(interface: str, attached: AttachedProgram | None, ours: bool,
             replace_foreign: bool) -> int | None:
    """The program id the attach must replace (None: the hook must still be empty).

    Raises ForeignProgram when `attached` is not ours and `replace_foreign` is off.
    """
    if attached is None:
        return None
    if not ours and not replace_foreign:
        raise ForeignProgram(refusal(interface, attached), attached)
    return attached.id
