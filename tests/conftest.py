"""Fixtures shared by every test: fake Docker Engines on loopback ports.

The repository root is put on ``sys.path`` so tests import helpers as ``tests.fakes`` (``tests`` has no
``__init__.py`` and the editable install only maps the ``fleetd`` package).
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

_ROOT = str(Path(__file__).resolve().parent.parent)
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from tests.fakes import FakeEngines  # noqa: E402


@pytest.fixture
async def fake_engine() -> AsyncIterator[FakeEngines]:
    """Factory of started fake Engines, all closed after the test.

    ``eng = await fake_engine()``, ``await fake_engine(docker_29(), latency=0.1)``,
    ``await fake_engine(unix_path=tmp_path / "d.sock")``.
    """
    engines = FakeEngines()
    try:
        yield engines
    finally:
        await engines.aclose()
