"""Helpers for the live-fleet tests: fleetd in-process with short timings, an SSE reader, raw Engine calls."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp.test_utils import TestClient

from fleetd.config.events import EventsSettings
from fleetd.config.model import HostSettings, PollSettings, Settings, SnapshotSettings
from fleetd.runtime import Fleet
from tests.harness import FleetClient
from tests.ssekit import Frame, SseReader

#: A long full poll: everything these tests see within seconds came from Engine events.
POLL = PollSettings(interval=60.0, timeout=2.0, liveness=2.0, max_backoff=5.0)


def host(name: str, url: str) -> HostSettings:
    return HostSettings(name=name, url=url, interval=POLL.interval, timeout=POLL.timeout)


@contextlib.asynccontextmanager
async def fleetd(tmp: Path, hosts: list[HostSettings], **events: Any) -> AsyncIterator[TestClient[Any, Any]]:
    settings = Settings(
        path=tmp / "fleetd.yaml",
        poll=POLL,
        hosts=tuple(hosts),
        snapshots=SnapshotSettings(enabled=False, path=tmp / "fleetd.db"),
        events=EventsSettings(**events),
    )
    client: TestClient[Any, Any] = FleetClient(Fleet(settings))
    await client.start_server()
    try:
        async with asyncio.timeout(30):
            for _ in range(600):
                if (await client.get("/readyz")).status == 200:
                    break
                await asyncio.sleep(0.05)
        yield client
    finally:
        await client.close()


class Watch:
    """One SSE connection and every frame it got, in order."""

    def __init__(self, resp: aiohttp.ClientResponse) -> None:
        self.resp = resp
        self.reader = SseReader(resp)
        self.frames: list[Frame] = []

    async def until(self, pred: Callable[[Frame], bool], timeout: float = 5.0, what: str = "frame") -> Frame:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        for f in self.frames:
            if pred(f):
                return f
        while True:
            left = deadline - loop.time()
            if left <= 0:
                raise AssertionError(
                    f"no {what} within {timeout}s; got {[(f.event, f.data.get('container', {}).get('name')) for f in self.frames[-10:]]}"
                )
            try:
                f = await self.reader.next(left)
            except TimeoutError:
                continue
            self.frames.append(f)
            if pred(f):
                return f

    async def drain(self, quiet: float = 0.5) -> list[Frame]:
        """Frames until none came for ``quiet`` seconds."""
        got: list[Frame] = []
        while True:
            try:
                f = await self.reader.next(quiet)
            except TimeoutError:
                return got
            self.frames.append(f)
            got.append(f)

    def close(self) -> None:
        self.resp.close()


async def watch(
    client: TestClient[Any, Any], query: str = "", headers: dict[str, str] | None = None
) -> Watch:
    resp = await client.get(f"/api/v1/events{query}", headers=headers or {})
    assert resp.status == 200, await resp.text()
    return Watch(resp)


def named(name: str, event: str | None = None, **data: Any) -> Callable[[Frame], bool]:
    def pred(f: Frame) -> bool:
        c = f.data.get("container") or {}
        if c.get("name") != name or (event is not None and f.event != event):
            return False
        return all((c.get(k) if k in ("state", "health") else f.data.get(k)) == v for k, v in data.items())

    return pred


async def containers(client: TestClient[Any, Any], host_name: str) -> dict[str, dict[str, Any]]:
    async with client.get(f"/api/v1/containers?host={host_name}") as resp:
        body = await resp.json()
    return {c["name"]: c for c in body["containers"]}
