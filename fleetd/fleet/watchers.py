"""Every host's event watcher: started with the poller, reconciled on reload, closed with it.

A host is watched when events are enabled globally (``events:``) and for it (``events: false``
on a host turns it off), and it is enabled. Watchers share the poller's Engine clients (and so
its connection pools): the event stream takes one more connection per host.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Iterable

from fleetd.config.model import HostSettings, PollSettings
from fleetd.dockerapi import DockerClient
from fleetd.dockerapi.pinger import raw_pinger
from fleetd.fleet.liveness import LivenessWheel
from fleetd.fleet.watch import HostWatcher, WatchObserver, WatchSettings, WatchTarget
from fleetd.fleet.watch_liveness import liveness_tick

__all__ = ["Watchers", "watch_settings"]


def watch_settings(host: HostSettings, poll: PollSettings) -> WatchSettings:
    return WatchSettings(liveness=poll.liveness, timeout=host.timeout)


class Watchers:
    def __init__(
        self,
        target: WatchTarget,
        clients: Callable[[str], DockerClient | None],
        *,
        enabled: bool = True,
        observer: WatchObserver | None = None,
        watching: Callable[[str, bool], None] | None = None,
        rng: random.Random | None = None,
        ping_connection: bool = True,
    ) -> None:
        self.target = target
        self.ping_connection = ping_connection  # False: liveness pings through the client's pool
        self._watching = watching or (lambda _host, _on: None)
        self.enabled = enabled
        self._clients = clients
        self._observer = observer
        self._rng = rng or random.Random()
        self._watchers: dict[str, tuple[HostSettings, HostWatcher]] = {}
        self._wheel: LivenessWheel | None = None  # every watcher's liveness checks, one timer

    def _wheel_for(self, poll: PollSettings) -> LivenessWheel | None:
        if poll.liveness <= 0:
            return None
        tick = liveness_tick(poll.liveness)
        if self._wheel is None or self._wheel.tick != tick:
            self._wheel = LivenessWheel(tick)  # watchers of another liveness are all replaced
        return self._wheel

    def get(self, name: str) -> HostWatcher | None:
        found = self._watchers.get(name)
        return found[1] if found is not None else None

    def __len__(self) -> int:
        return len(self._watchers)

    def _wanted(self, host: HostSettings) -> bool:
        return self.enabled and host.enabled and host.events

    async def reconcile(
        self,
        hosts: Iterable[HostSettings],
        poll: PollSettings,
        *,
        enabled: bool | None = None,
        ping_connection: bool | None = None,
    ) -> None:
        """Start, stop or restart watchers so they match the inventory (call after the poller's)."""
        if enabled is not None:
            self.enabled = enabled
        if ping_connection is not None and ping_connection != self.ping_connection:
            self.ping_connection = ping_connection
            for name in list(self._watchers):  # restarted below with or without a raw pinger
                _settings, watcher = self._watchers.pop(name)
                self.target.attach(name, None)
                await watcher.aclose()
                self._watching(name, False)
        wanted = {h.name: h for h in hosts if self._wanted(h)}
        for name in list(self._watchers):
            settings, watcher = self._watchers[name]
            new = wanted.get(name)
            client = self._clients(name)
            if new is None or client is not watcher.client or watch_settings(new, poll) != watcher.settings:
                del self._watchers[name]
                self.target.attach(name, None)
                await watcher.aclose()
                self._watching(name, False)
        for name, settings in wanted.items():
            if name in self._watchers:
                self._watchers[name] = (settings, self._watchers[name][1])
                continue
            client = self._clients(name)
            if client is None:
                continue
            watcher = HostWatcher(
                name,
                client,
                self.target,
                watch_settings(settings, poll),
                observer=self._observer,
                rng=self._rng,  # one generator for all (a Random each was 2.5 KiB per host)
                pinger=raw_pinger(client) if self.ping_connection else None,
                wheel=self._wheel_for(poll),
            )
            self._watchers[name] = (settings, watcher)
            self._watching(name, True)  # polls sent from now on are stamped (ordering guard)
            self.target.attach(name, watcher)  # lean polls while its stream is healthy
            watcher.start()

    async def aclose(self) -> None:
        watchers = dict(self._watchers)
        self._watchers.clear()
        for name in watchers:
            self.target.attach(name, None)
        await asyncio.gather(*(w.aclose() for _s, w in watchers.values()))
        if self._wheel is not None:
            self._wheel.close()
            self._wheel = None
        for name in watchers:
            self._watching(name, False)
