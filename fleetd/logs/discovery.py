"""When a merged log stream should look at the fleet again: on the state's change signal, not a timer.

A stream with a selection subscribes to :attr:`FleetState.changes`; a batch with a container added,
changed or removed on a selected host, a host whose status changed or that was resynced, or a lagged
subscription (changes were dropped) marks the stream *pending* and wakes it. The stream then re-reads
the matching containers once, however many changes came meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib

from fleetd.fleet.changes import (
    Change,
    ContainerAdded,
    ContainerChanged,
    ContainerRemoved,
    HostChanged,
    HostResynced,
    Lagged,
    Subscription,
)
from fleetd.fleet.state import FleetState

__all__ = ["ChangeWatch"]

_RELEVANT = (ContainerAdded, ContainerChanged, ContainerRemoved, HostChanged, HostResynced)


class ChangeWatch:
    def __init__(self, state: FleetState, hosts: tuple[str, ...], wake: asyncio.Event) -> None:
        self._state = state
        self._hosts = frozenset(hosts)
        self._wake = wake
        self._sub: Subscription | None = None
        self._task: asyncio.Task[None] | None = None
        self.pending = False

    def start(self) -> None:
        if self._sub is None:
            self._sub = self._state.changes.subscribe(maxsize=64)
            self._task = asyncio.create_task(self._run(), name="logs:discovery")

    def _relevant(self, change: Change) -> bool:
        if isinstance(change, _RELEVANT):
            return not self._hosts or change.host in self._hosts
        return False

    async def _run(self) -> None:
        assert self._sub is not None
        async for item in self._sub:
            if isinstance(item, Lagged) or any(self._relevant(c) for c in item.changes):
                self.pending = True
                self._wake.set()

    def take(self) -> bool:
        """True once after the fleet changed in a way that may change the stream's containers."""
        pending, self.pending = self.pending, False
        return pending

    async def aclose(self) -> None:
        if self._sub is not None:
            self._sub.close()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
