"""Fixtures shared by every test: fake Docker Engines on loopback ports.

Tests import helpers as ``tests.fakes``: ``tests`` has no ``__init__.py`` and the editable install only
maps the ``fleetd`` package, so pyproject.toml's ``pythonpath = ["."]`` puts the repository root on
``sys.path``.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator

import pytest

from tests.fakes import FakeEngines
from tests.writes import guard_records

guard_records()  # a HostRecord field written around FleetState's writer fails the test (tests/writes.py)

if os.environ.get("FLEETD_TEST_LOOP") == "uvloop":  # make test runs the transport tests on uvloop as well
    import uvloop

    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


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
