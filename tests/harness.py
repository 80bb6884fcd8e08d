"""What every API test needs: a running Fleet behind a test client, and one way to wait for a condition.

    async with FleetClient(Fleet(settings)) as client:     # starts the fleet, then the server
        await client.get("/api/v1/hosts")
                                                           # close(): the server, then the fleet
    await eventually(lambda: record.status is HostStatus.UP, timeout=5)
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from fleetd.api.app import create_app
from fleetd.fleet.records import HostStatus
from fleetd.runtime import Fleet

__all__ = ["FleetClient", "eventually", "fleet_client"]


class FleetClient(TestClient[web.Request, web.Application]):
    """A test client over ``create_app(fleet)`` that owns the fleet: started first, closed last."""

    def __init__(self, fleet: Fleet) -> None:
        super().__init__(TestServer(create_app(fleet)))
        self.fleet = fleet
        self._fleet_started = False

    async def start_server(self, **kwargs: Any) -> None:
        if not self._fleet_started:
            self._fleet_started = True
            await self.fleet.start()
        await super().start_server(**kwargs)

    async def close(self) -> None:
        try:
            await super().close()
        finally:
            await self.fleet.aclose()


async def fleet_client(fleet: Fleet, *, ready: bool = False, timeout: float = 10.0) -> FleetClient:
    """A started client; ``ready``: once ``/readyz`` answers 200 (asked over HTTP, as a user would) and
    every host that is up had its first image listing."""
    client = FleetClient(fleet)
    await client.start_server()
    try:
        if ready:

            async def answers_ready() -> bool:
                return (await client.get("/readyz")).status == 200

            await eventually(answers_ready, timeout=timeout, interval=0.02, what="fleetd never became ready")

            # A host's images are listed right after its first poll, queued behind the other hosts'
            # first polls: tests that count the requests a daemon got start counting after that.
            def images_listed() -> bool:
                return all(r.images is not None for r in fleet.state.records() if r.status is HostStatus.UP)

            await eventually(images_listed, timeout=timeout, what="first image listings not done")
    except BaseException:
        await client.close()
        raise
    return client


async def eventually(
    condition: Callable[[], bool | Awaitable[bool]],
    *,
    timeout: float = 5.0,
    interval: float = 0.01,
    what: str = "condition not reached in time",
) -> None:
    """Wait until ``condition()`` (a function or a coroutine function) is true; fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} (within {timeout} s)")
        await asyncio.sleep(interval)
