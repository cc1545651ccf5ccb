"""`lb run`'s decision to take an interface's XDP hook, and whose a program is (no root)."""

from __future__ import annotations

import pytest

from lb.control.coexist import ForeignProgram, takeover
from lb.xdp.types import XdpMode
from lb.xdp.xdpinfo import AttachedProgram, ProgramInfo, is_ours


def _attached(name: str, map_ids: tuple[int, ...] = (7,)) -> AttachedProgram:
    return AttachedProgram(ProgramInfo(id=42, name=name, tag="00" * 8, map_ids=map_ids),
                           XdpMode.NATIVE)


def test_an_empty_hook_is_claimed_with_nothing_to_replace() -> None:
    assert takeover("eth0", None, ours=False, replace_foreign=False) is None


def test_our_own_program_is_replaced_by_its_id() -> None:
    assert takeover("eth0", _attached("xdp_balancer"), ours=True, replace_foreign=False) == 42


def test_a_foreign_program_is_refused_with_its_id_name_mode_and_the_ways_on() -> None:
    with pytest.raises(ForeignProgram) as refused:
        takeover("eth0", _attached("xdp_filter"), ours=False, replace_foreign=False)
    message = str(refused.value)
    for words in ("eth0", "id 42", "'xdp_filter'", "native mode", "--replace-foreign",
                  "LB_REPLACE_FOREIGN", "xdp off", "chain_slot"):
        assert words in message, message


def test_replace_foreign_takes_a_foreign_program_over() -> None:
    assert takeover("eth0", _attached("xdp_filter"), ours=False, replace_foreign=True) == 42


def test_ours_needs_our_name_and_our_pinned_maps() -> None:
    assert is_ours(_attached("xdp_balancer", (3, 7)).program, {7})
    assert is_ours(_attached("xdp_lb_root", (9,)).program, {9})
    assert not is_ours(_attached("xdp_balancer", (3,)).program, {7}), "another lb's pins"
    assert not is_ours(_attached("xdp_filter", (7,)).program, {7}), "shares our map, not ours"


def test_a_program_with_our_name_but_not_our_maps_is_explained() -> None:
    with pytest.raises(ForeignProgram) as refused:
        takeover("eth0", _attached("xdp_balancer", (3,)), ours=False, replace_foreign=False)
    assert "another lb instance" in str(refused.value)
