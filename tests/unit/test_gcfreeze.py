"""Start-up objects are frozen for the cyclic collector once the fleet is ready, not before."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Iterator

import pytest

from fleetd.config.model import HostSettings
from fleetd.fleet.records import HostStatus
from fleetd.fleet.state import FleetState, PollFailure
from fleetd.service.gcfreeze import freeze_when_ready


@pytest.fixture
def unfrozen() -> Iterator[None]:
    gc.unfreeze()
    yield
    gc.unfreeze()


async def test_objects_are_frozen_once_every_host_had_its_first_poll(unfrozen: None) -> None:
    state = FleetState()
    state.add(HostSettings(name="a", url="tcp://127.0.0.1:1", interval=10.0, timeout=1.0))
    task = asyncio.create_task(freeze_when_ready(state, timeout=10, settle=0.3))
    await asyncio.sleep(0.05)
    assert not task.done() and gc.get_freeze_count() == 0  # the fleet is not ready yet
    state.poll_done("a", 0.01, PollFailure(0.0, HostStatus.DOWN, "refused"))  # the first attempt
    await asyncio.sleep(0.1)
    # ready, but the collection waits: the first complete answer is not held back by it
    assert not task.done() and gc.get_freeze_count() == 0
    await asyncio.wait_for(task, 5)
    assert gc.get_freeze_count() > 0


async def test_nothing_is_frozen_when_the_fleet_is_not_ready_in_time(unfrozen: None) -> None:
    state = FleetState()
    state.add(HostSettings(name="a", url="tcp://127.0.0.1:1", interval=10.0, timeout=1.0))
    await freeze_when_ready(state, timeout=0.05)
    assert gc.get_freeze_count() == 0
