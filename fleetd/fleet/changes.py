"""What changed in the fleet, announced by FleetState's writer to any number of subscribers.

    with state.changes.subscribe(maxsize=256) as sub:
        async for item in sub:
            if isinstance(item, Lagged):      # fell behind: the queue was dropped, re-read the state
                resync(state)
                continue
            for change in item.changes:       # a ChangeBatch: one write's changes, in order
                ...

The writer never waits for a subscriber: every subscription has its own bounded queue of batches,
and one that is full is emptied and told so (:class:`Lagged`) on its next read. ``seq`` numbers every
published batch, monotonic for the life of the process, so a consumer can say which batches an
answer reflects.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from types import TracebackType
from typing import Final

from fleetd.fleet.records import ContainerRecord, HostStatus

__all__ = [
    "DEFAULT_MAXSIZE",
    "Change",
    "ChangeBatch",
    "ChangeHub",
    "ContainerAdded",
    "ContainerChanged",
    "ContainerRemoved",
    "FleetReady",
    "HostAdded",
    "HostChanged",
    "HostRemoved",
    "HostResynced",
    "HostUpdated",
    "Lagged",
    "Subscription",
]

DEFAULT_MAXSIZE: Final = 1024  # batches per subscriber before it is told it lagged


@dataclass(frozen=True, slots=True)
class HostChanged:
    """The host's status changed (``up`` → ``down``, ``unknown`` → ``up``, ...)."""

    host: str
    before: HostStatus
    after: HostStatus


@dataclass(frozen=True, slots=True)
class HostAdded:
    """A host entered the inventory (start-up or reload)."""

    host: str


@dataclass(frozen=True, slots=True)
class HostRemoved:
    """A host left the inventory (its containers were announced as removed just before)."""

    host: str


@dataclass(frozen=True, slots=True)
class HostUpdated:
    """A host's settings changed on reload without reconnecting (labels, interval, TLS files...)."""

    host: str


@dataclass(frozen=True, slots=True)
class HostResynced:
    """The host's containers were replaced as a whole; ``gap``: changes may have been missed."""

    host: str
    gap: bool


@dataclass(frozen=True, slots=True)
class ContainerAdded:
    host: str
    container: ContainerRecord
    action: str | None = None  # the upstream Engine action, when an event caused the change
    exit_code: int | None = None


@dataclass(frozen=True, slots=True)
class ContainerChanged:
    host: str
    container: ContainerRecord  # the new record
    fields: tuple[str, ...]  # which ContainerRecord fields differ from the previous record
    action: str | None = None
    exit_code: int | None = None


@dataclass(frozen=True, slots=True)
class ContainerRemoved:
    host: str
    container: ContainerRecord  # the last record known
    action: str | None = None
    exit_code: int | None = None


@dataclass(frozen=True, slots=True)
class FleetReady:
    """Every enabled host finished its first poll attempt (published once)."""


Change = (
    HostChanged
    | HostAdded
    | HostRemoved
    | HostUpdated
    | HostResynced
    | ContainerAdded
    | ContainerChanged
    | ContainerRemoved
    | FleetReady
)


@dataclass(frozen=True, slots=True)
class ChangeBatch:
    """The changes of one write, in order."""

    seq: int
    time: float  # wall clock of the write
    changes: tuple[Change, ...]


@dataclass(frozen=True, slots=True)
class Lagged:
    """The subscriber fell behind: ``dropped`` batches up to ``seq`` were discarded; re-read the state."""

    seq: int
    dropped: int


class Subscription:
    """One subscriber's bounded queue; close it (``with`` or :meth:`close`) when done."""

    __slots__ = ("_dropped", "_hub", "_items", "_last_dropped", "_waiter", "closed", "maxsize", "wants")

    def __init__(self, hub: ChangeHub, maxsize: int, wants: Callable[[Change], bool] | None = None) -> None:
        if maxsize < 1:
            raise ValueError("maxsize must be at least 1")
        self._hub = hub
        self.maxsize = maxsize
        self.wants = wants
        self._items: deque[ChangeBatch] = deque()
        self._dropped = 0
        self._last_dropped = 0
        self._waiter: asyncio.Future[None] | None = None
        self.closed = False

    def _offer(self, batch: ChangeBatch) -> None:
        if len(self._items) >= self.maxsize:
            self._dropped += len(self._items) + 1
            self._last_dropped = batch.seq
            self._items.clear()
        elif self._dropped:
            self._dropped += 1
            self._last_dropped = batch.seq
        else:
            self._items.append(batch)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def get_nowait(self) -> ChangeBatch | Lagged | None:
        """The next item, or None when there is nothing queued."""
        if self._dropped:
            lagged = Lagged(self._last_dropped, self._dropped)
            self._dropped = 0
            return lagged
        if self._items:
            return self._items.popleft()
        return None

    async def get(self) -> ChangeBatch | Lagged:
        """Wait for the next batch (or the news that some were dropped)."""
        while True:
            item = self.get_nowait()
            if item is not None:
                return item
            if self.closed:
                raise RuntimeError("the subscription is closed")
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None

    def pending(self) -> int:
        return len(self._items)

    def close(self) -> None:
        """Unsubscribe; safe to call twice."""
        if not self.closed:
            self.closed = True
            self._hub._remove(self)
            if self._waiter is not None and not self._waiter.done():
                self._waiter.set_result(None)

    def __enter__(self) -> Subscription:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> ChangeBatch | Lagged:
        if self.closed:
            raise StopAsyncIteration
        try:
            return await self.get()
        except RuntimeError:
            raise StopAsyncIteration from None


class ChangeHub:
    """Fans published batches out to the subscriptions; publishing never blocks or awaits."""

    __slots__ = ("_subs", "clock", "seq")

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._subs: list[Subscription] = []
        self.seq = 0  # the seq of the newest published batch (0: none yet)
        self.clock = clock

    def subscribe(self, maxsize: int = DEFAULT_MAXSIZE, wants: Callable[[Change], bool] | None = None) -> Subscription:
        """A bounded queue of every batch published from now on; with ``wants``, only of the
        batches holding a change it wants (the others never wake the subscriber)."""
        sub = Subscription(self, maxsize, wants)
        self._subs.append(sub)
        return sub

    def _remove(self, sub: Subscription) -> None:
        with contextlib.suppress(ValueError):
            self._subs.remove(sub)

    @property
    def subscribers(self) -> int:
        return len(self._subs)

    def publish(self, changes: Iterable[Change]) -> int:
        """Publish one batch (nothing when empty); returns the seq it got (or the current one)."""
        batch_changes = tuple(changes)
        if not batch_changes:
            return self.seq
        self.seq += 1
        batch = ChangeBatch(self.seq, self.clock(), batch_changes)
        for sub in self._subs:
            wants = sub.wants
            if wants is None or any(wants(c) for c in batch_changes):
                sub._offer(batch)
        return self.seq
