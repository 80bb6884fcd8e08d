"""A minimal in-memory target for HostWatcher tests: one host's rows, merged through a RowClock."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

from fleetd.dockerapi import ContainerSummary, DockerClient, DockerError
from fleetd.fleet.records import ContainerRecord, container_record
from fleetd.fleet.watch_events import Cause
from fleetd.fleet.watch_rows import RowClock


class MemoryTarget:
    def __init__(self, client: DockerClient) -> None:
        self.client = client
        self.clock = RowClock()
        self.rows: tuple[ContainerRecord, ...] = ()
        self.causes: list[tuple[str, Cause]] = []
        self.resyncs: list[bool] = []
        self.lost: list[str] = []
        self.full_refreshes = 0
        self.wakes = 0
        self.subset_refreshes = 0
        self.info_wanted = 0
        self.nets: dict[str, object] = {}
        self.changed = asyncio.Event()

    def by_name(self) -> dict[str, ContainerRecord]:
        return {r.name: r for r in self.rows}

    def next_stamp(self, host: str) -> int:
        return self.clock.next_stamp()

    def apply_rows(
        self,
        host: str,
        asked: frozenset[str],
        rows: list[ContainerSummary],
        stamp: int,
        causes: Mapping[str, Cause],
        keys: Mapping[str, int] | None = None,
    ) -> None:
        records = [container_record(host, r, None) for r in rows]
        self.rows = self.clock.merge_subset(self.rows, asked, records, stamp).records
        self.causes += list(causes.items())
        self.subset_refreshes += 1
        self.changed.set()

    async def full_refresh(self, host: str) -> int | None:
        stamp = self.clock.next_stamp()
        try:
            rows = await self.client.containers.list(all=True)
        except DockerError:
            return None
        merged = self.clock.merge_full(self.rows, [container_record(host, r, None) for r in rows], stamp)
        self.rows = merged.records
        self.full_refreshes += 1
        self.changed.set()
        return len(merged.drifted)

    async def first_poll(self, host: str) -> None:
        return None

    def wake(self, host: str) -> None:
        self.wakes += 1

    def stream_lost(self, host: str, error: DockerError) -> None:
        self.lost.append(str(error))
        self.changed.set()

    def resynced(self, host: str, gap: bool) -> None:
        self.resyncs.append(gap)
        self.changed.set()

    def want_info(self, host: str) -> None:
        self.info_wanted += 1

    def attach(self, host: str, net: object) -> None:
        self.nets[host] = net


async def eventually(check: object, timeout: float = 5.0, what: str = "condition") -> None:
    """Wait until ``check()`` is truthy (polling every 20 ms), or fail after ``timeout``."""
    assert callable(check)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not check():
        if loop.time() > deadline:
            raise AssertionError(f"{what} not reached within {timeout}s")
        await asyncio.sleep(0.02)
