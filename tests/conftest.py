"""Shared by every test directory: which tests need root, and skipping them without it.

Tests under the directories in ROOT_DIRS load the real program into the kernel and build
network namespaces: they are marked `root` (`pytest -m "not root"` runs the rest) and skipped,
with the reason, when not running as root. `make test` runs as root, so none is skipped there.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
# Test directories whose every test needs root (bpf(), network namespaces).
ROOT_DIRS = frozenset({"packet", "integration", "api", "health", "share"})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        path = Path(str(item.fspath)).resolve()
        if path.is_relative_to(HERE) and path.relative_to(HERE).parts[0] in ROOT_DIRS:
            item.add_marker(pytest.mark.root)


@pytest.fixture(autouse=True)
def _needs_root(request: pytest.FixtureRequest) -> None:
    """Autouse: a `root` test is skipped, saying why, unless running as root."""
    if request.node.get_closest_marker("root") and os.geteuid() != 0:
        pytest.skip("needs root (bpf(), network namespaces)")
