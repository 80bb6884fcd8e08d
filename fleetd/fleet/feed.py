"""The fleet's own event feed: every change of the state as a typed, numbered :class:`FleetEvent`.

One feed per fleetd process. Ids are ``<epoch>.<seq>``: the epoch is random per process, the
sequence grows by one per event, so an id from another process (or a restarted one) is
recognised and answered with a reset rather than with a wrong replay. The feed keeps the last
``size`` events, none older than ``max_age`` seconds, for resuming clients.

Subscribers (the SSE endpoint, webhooks) each get a bounded queue. The publisher never waits:
a subscriber whose queue is full misses events and is told so by a :class:`Lagged` item.

The feed is **quiet** until someone can observe it: until the first subscription, or the first id
handed out (:attr:`FleetFeed.head_id`, e.g. ``X-Fleet-Event-Id`` on a list answer), no event can be
delivered or resumed from, so the pump makes none (a start-up announces ~40 containers per host:
40,000 events at 1,000 hosts that nobody could ever read). From then on it is loud for good, so a
client holding an id gets every event after it (or a reset once the ring no longer reaches back).
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections import deque
from collections.abc import Callable
from typing import Any, Literal

import msgspec

from fleetd.fleet.records import ContainerRecord

__all__ = ["EVENT_TYPES", "FeedSubscription", "FleetEvent", "FleetFeed", "Lagged", "ResetReason"]

EVENT_TYPES = (
    "container.added",
    "container.changed",
    "container.removed",
    "host.changed",
    "host.resynced",
)
ResetReason = Literal["expired", "epoch", "malformed", "future"]


class FleetEvent(msgspec.Struct, frozen=True):
    id: str
    seq: int
    type: str
    host: str
    time: float  # unix seconds, fleetd's clock
    container: ContainerRecord | None = None
    fields: tuple[str, ...] = ()
    action: str | None = None  # the upstream Engine action, when an event caused the change
    exit_code: int | None = None
    before: str | None = None  # host.changed: HostStatus values
    after: str | None = None
    gap: bool | None = None  # host.resynced
    record: dict[str, Any] | None = None  # host.*: the item shape of GET /api/v1/hosts


class Lagged(msgspec.Struct, frozen=True):
    """The subscriber's queue was full: ``missed`` events were not delivered to it."""

    missed: int


_CLOSED = object()


class FeedSubscription:
    """An async iterator of :class:`FleetEvent` and :class:`Lagged`; ends after :meth:`close`."""

    def __init__(self, feed: FleetFeed, maxsize: int) -> None:
        self._feed = feed
        self._maxsize = maxsize
        self._items: deque[FleetEvent] = deque()
        self._missed = 0
        self._wake = asyncio.Event()
        self.closed = False

    def _offer(self, event: FleetEvent) -> None:
        if len(self._items) >= self._maxsize:
            self._missed += 1
        else:
            self._items.append(event)
        self._wake.set()

    def pending(self) -> int:
        return len(self._items)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._feed._subscribers.discard(self)
            self._wake.set()

    def get_nowait(self) -> FleetEvent | Lagged | None:
        if self._items:
            return self._items.popleft()
        if self._missed:
            missed, self._missed = self._missed, 0
            return Lagged(missed)
        return None

    async def get(self, timeout: float | None = None) -> FleetEvent | Lagged | None:
        """The next item; None when ``timeout`` passed first or the subscription is closed."""
        while True:
            item = self.get_nowait()
            if item is not None or self.closed:
                return item
            self._wake.clear()
            if timeout is None:
                await self._wake.wait()
            else:
                try:
                    async with asyncio.timeout(timeout):
                        await self._wake.wait()
                except TimeoutError:
                    return None

    def __aiter__(self) -> FeedSubscription:
        return self

    async def __anext__(self) -> FleetEvent | Lagged:
        item = await self.get()
        if item is None:
            raise StopAsyncIteration
        return item


class FleetFeed:
    def __init__(
        self,
        *,
        size: int = 10_000,
        max_age: float = 900.0,
        clock: Callable[[], float] = time.time,
        epoch: str | None = None,
    ) -> None:
        self.epoch = epoch or secrets.token_hex(4)
        self.size = size
        self.max_age = max_age
        self._clock = clock
        self._ring: deque[FleetEvent] = deque(maxlen=max(size, 1))
        self._seq = 0
        self._subscribers: set[FeedSubscription] = set()
        self._loud = False  # someone subscribed or was handed an id: events are made from now on

    @property
    def quiet(self) -> bool:
        """True while no event could ever reach anyone (no subscription yet, no id handed out):
        the pump makes none then. False for good after the first :meth:`subscribe` or :attr:`head_id`."""
        return not self._loud

    # -- writing ------------------------------------------------------------------------------

    def publish(self, type_: str, host: str, *, time: float | None = None, **fields: Any) -> FleetEvent:
        """Number and keep one event and hand it to every subscriber; never waits."""
        self._seq += 1
        now = self._clock()
        event = FleetEvent(
            id=f"{self.epoch}.{self._seq}",
            seq=self._seq,
            type=type_,
            host=host,
            time=now if time is None else time,
            **fields,
        )
        self._ring.append(event)
        cutoff = now - self.max_age
        while self._ring and self._ring[0].time < cutoff:
            self._ring.popleft()
        for sub in list(self._subscribers):
            sub._offer(event)
        return event

    # -- reading ------------------------------------------------------------------------------

    @property
    def head(self) -> int:
        self._loud = True
        return self._seq

    @property
    def head_id(self) -> str:
        """The id of the newest event (``<epoch>.0`` before the first). Whoever reads it may resume
        from it: the feed is loud from now on."""
        self._loud = True
        return f"{self.epoch}.{self._seq}"

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)

    def subscribe(self, maxsize: int = 1000) -> FeedSubscription:
        self._loud = True
        sub = FeedSubscription(self, maxsize)
        self._subscribers.add(sub)
        return sub

    def after(self, last_id: str) -> list[FleetEvent] | ResetReason:
        """The kept events after ``last_id``, or why resuming from it is impossible."""
        epoch, dot, raw = last_id.strip().rpartition(".")
        if not dot or not raw.isdigit():
            return "malformed"
        if epoch != self.epoch:
            return "epoch"
        seq = int(raw)
        if seq > self._seq:
            return "future"
        if seq == self._seq:
            return []
        oldest = self._ring[0].seq if self._ring else self._seq + 1
        if seq < oldest - 1:
            return "expired"
        return [e for e in self._ring if e.seq > seq]

    def open(
        self, last_id: str | None, maxsize: int
    ) -> tuple[FeedSubscription, list[FleetEvent], ResetReason | None]:
        """Subscribe and take the replay in one step (no event can fall between the two)."""
        replay: list[FleetEvent] = []
        reason: ResetReason | None = None
        if last_id is not None:
            found = self.after(last_id)
            if isinstance(found, str):
                reason = found
            else:
                replay = found
        return self.subscribe(maxsize), replay, reason

    def renew_epoch(self) -> None:
        """Events were lost before numbering: a new epoch, so every client that resumes gets a reset."""
        self.epoch = secrets.token_hex(4)
        self._ring.clear()
        self.close_all()

    def close_all(self) -> None:
        """Shutdown: every subscription ends."""
        for sub in list(self._subscribers):
            sub.close()
