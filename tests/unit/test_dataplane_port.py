"""The data plane's port cannot drift: lb.xdp.maps.Dataplane, the unit tests' fake and
lb.control.dataplane.DataplanePort have the same members, with the same signatures, and the
port names exactly what the control plane calls."""

from __future__ import annotations

import ast
import inspect
import textwrap
from pathlib import Path

import pytest
from fakes import TEST_ONLY, FailingDataplane, RecordingDataplane

from lb.control.dataplane import DataplanePort
from lb.xdp.config import Sizes
from lb.xdp.maps import Dataplane

CONTROL = Path(__file__).resolve().parents[2] / "lb" / "control"
# How the control plane's code names a data plane (Balancer.dp, the adopted one, a local).
DATAPLANE_NAMES = {"self.dp", "self.balancer.dp", "balancer.dp", "dataplane", "dp"}


def _methods(cls: type) -> set[str]:
    """Public methods of `cls` and of its own bases (Dataplane is assembled from mixins)."""
    return {n for c in cls.__mro__ if c.__module__ not in ("builtins", "typing")
            for n, v in vars(c).items() if callable(v) and not n.startswith("_")}


PORT_METHODS = sorted(_methods(DataplanePort))
PORT_ATTRIBUTES = sorted(set(DataplanePort.__annotations__) - set(PORT_METHODS))
FAKES = [RecordingDataplane, FailingDataplane]


def _signature(cls: type, name: str) -> inspect.Signature:
    """The signature of `cls.name`, annotations evaluated in the defining module (so that two
    spellings of one type compare equal and a changed type does not)."""
    return inspect.signature(getattr(cls, name), eval_str=True)


def _differences(port: inspect.Signature, impl: inspect.Signature) -> list[str]:
    """How `impl` differs from the port's signature. A port default of `...` asks for a
    default of the implementation's own choosing; any other default must be equal."""
    out = []
    if port.return_annotation != impl.return_annotation:
        out.append(f"returns {impl.return_annotation}, port says {port.return_annotation}")
    ports, impls = list(port.parameters.values()), list(impl.parameters.values())
    if [p.name for p in ports] != [p.name for p in impls]:
        return [*out, f"parameters {[p.name for p in impls]}, port says "
                      f"{[p.name for p in ports]}"]
    for p, i in zip(ports, impls, strict=True):
        if p.kind != i.kind:
            out.append(f"{p.name}: {i.kind.description}, port says {p.kind.description}")
        if p.annotation != i.annotation:
            out.append(f"{p.name}: {i.annotation}, port says {p.annotation}")
        if p.default is Ellipsis:
            if i.default is inspect.Parameter.empty:
                out.append(f"{p.name}: no default, port says it has one")
        elif p.default != i.default:
            out.append(f"{p.name}: default {i.default!r}, port says {p.default!r}")
    return out


def _init_attributes(cls: type) -> set[str]:
    """The attributes `cls.__init__` assigns on self (Dataplane's need a loaded program)."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(cls.__init__)))
    return {t.attr for node in ast.walk(tree) if isinstance(node, ast.Assign | ast.AnnAssign)
            for t in (node.targets if isinstance(node, ast.Assign) else [node.target])
            if isinstance(t, ast.Attribute) and ast.unparse(t.value) == "self"}


@pytest.mark.parametrize("name", PORT_METHODS)
def test_dataplane_provides_the_port_method_with_its_signature(name: str) -> None:
    assert name in _methods(Dataplane), f"Dataplane has no {name}"
    assert _differences(_signature(DataplanePort, name), _signature(Dataplane, name)) == []


@pytest.mark.parametrize("fake", FAKES, ids=lambda c: c.__name__)
@pytest.mark.parametrize("name", PORT_METHODS)
def test_fake_provides_the_port_method_with_its_signature(fake: type, name: str) -> None:
    assert callable(getattr(fake, name, None)), f"{fake.__name__} has no {name}"
    assert _differences(_signature(DataplanePort, name), _signature(fake, name)) == []


@pytest.mark.parametrize("fake", FAKES, ids=lambda c: c.__name__)
def test_fake_has_no_method_the_real_dataplane_lacks(fake: type) -> None:
    """A fake method the kernel side does not have would let a test pass on a call that
    fails in production; those beyond the port (e.g. `backend`) have Dataplane's signature."""
    own = {n for c in fake.__mro__[:-1] for n in _methods(c)} - TEST_ONLY
    assert own - _methods(Dataplane) == set()
    for name in sorted(own - set(PORT_METHODS)):
        impl, real = _signature(fake, name), _signature(Dataplane, name)
        assert _differences(real, impl) == [], name


def test_both_sides_have_the_port_attributes() -> None:
    assert PORT_ATTRIBUTES == ["sizes"]
    fake = RecordingDataplane(Sizes())
    for name in PORT_ATTRIBUTES:
        assert hasattr(fake, name), name
        assert name in _init_attributes(Dataplane), f"Dataplane.__init__ sets no {name}"


def test_the_port_names_exactly_what_the_control_plane_calls() -> None:
    """Every member used on a data plane anywhere in lb/control is in the port, and the port
    has nothing the control plane does not use."""
    used: dict[str, str] = {}
    for path in sorted(CONTROL.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and ast.unparse(node.value) in DATAPLANE_NAMES:
                used.setdefault(node.attr, f"{path.name}:{node.lineno}")
    assert set(used) - {*PORT_METHODS, *PORT_ATTRIBUTES} == set(), used
    assert {*PORT_METHODS, *PORT_ATTRIBUTES} - set(used) == set()
