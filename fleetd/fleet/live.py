"""The live fleet as one part of the runtime: every host's event watcher and the feed pump.

    live = LiveFleet(state, poller, feed, settings, registry=metrics.registry)
    fleet.add_part(live)               # started after the poller, closed before it

On reload (:meth:`reconfigure`) watchers follow the inventory and ``events:``.
"""

from __future__ import annotations

import asyncio
import contextlib

from prometheus_client import CollectorRegistry, Counter

from fleetd.config.model import Settings
from fleetd.fleet.feed import FleetFeed
from fleetd.fleet.feed_pump import FeedPump
from fleetd.fleet.poller import Poller
from fleetd.fleet.state import FleetState
from fleetd.fleet.watch_target import StateTarget
from fleetd.fleet.watchers import Watchers

__all__ = ["LiveFleet", "WatchCounters"]


class WatchCounters:
    """``fleetd_events_drift_total{host}`` and ``fleetd_events_total{what}``."""

    def __init__(self, registry: CollectorRegistry | None) -> None:
        self._children: dict[str, Counter] = {}
        self.drift = Counter(
            "fleetd_events_drift",
            "Container rows a full poll found different with no Engine event to explain them",
            ["host"],
            registry=registry,
        )
        self.events = Counter(
            "fleetd_events",
            "Engine event watching, fleet-wide: events, duplicates, refreshes, stream_errors, "
            "resumed, resynced_gap, subscribed",
            ["what"],
            registry=registry,
        )

    def count(self, host: str, what: str, n: int = 1) -> None:
        if what == "drift":
            self.drift.labels(host).inc(n)
            return
        child = self._children.get(what)  # a handful of values, counted on every Engine event
        if child is None:
            child = self._children[what] = self.events.labels(what)
        child.inc(n)


class LiveFleet:
    def __init__(
        self,
        state: FleetState,
        poller: Poller,
        feed: FleetFeed,
        settings: Settings,
        *,
        registry: CollectorRegistry | None = None,
    ) -> None:
        self.state = state
        self.settings = settings
        self.counters = WatchCounters(registry)
        self.pump = FeedPump(state, feed)
        self.target = StateTarget(state, poller)
        self.pump.on_change = self.target.note
        self.watchers = Watchers(
            self.target,
            poller.client,
            enabled=settings.events.enabled,
            observer=self.counters,
            watching=self._watching,
            ping_connection=settings.events.ping_connection,
        )
        self._pump_task: asyncio.Task[None] | None = None
        state.drift_judge = self._judge_drift

    def _watching(self, host: str, on: bool) -> None:
        if on:
            self.state.watch(host)
        else:
            self.state.unwatch(host)

    def _judge_drift(self, host: str, ids: tuple[str, ...], sent_at: float) -> None:
        watcher = self.watchers.get(host)
        if watcher is not None:
            watcher.drift(ids, sent_at)

    async def start(self) -> None:
        if self._pump_task is None:
            self._pump_task = asyncio.create_task(self.pump.run(), name="fleet-feed")
        await self.watchers.reconcile(self.settings.hosts, self.settings.poll)

    async def reconfigure(self, settings: Settings) -> None:
        self.settings = settings
        await self.watchers.reconcile(
            settings.hosts,
            settings.poll,
            enabled=settings.events.enabled,
            ping_connection=settings.events.ping_connection,
        )

    async def aclose(self) -> None:
        await self.watchers.aclose()
        task, self._pump_task = self._pump_task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
