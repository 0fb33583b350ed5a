"""The embedded node as a fixture; the shared phantoms live in tests/conftest.py."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import free_port
from tests.integration.support import NodeProcess
from tests.series import SyntheticSeries, make_series

__all__ = ["SyntheticSeries", "make_series"]


@pytest.fixture
def node(tmp_path: Path) -> Iterator[NodeProcess]:
    """The node with its embedded database, queue and worker (the zero-setup default)."""
    process = NodeProcess(tmp_path / "data", free_port()).start()
    yield process
    process.stop()
