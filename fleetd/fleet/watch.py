"""One host's Engine event watcher: the daemon's ``/events`` turned into targeted row refreshes.

The order of things (engine-events.md §4):

1. **Subscribe, then list.** The stream is live at its headers; only then is a full list asked
   for, so nothing happens unseen between the two. Events that arrive meanwhile are applied
   after it (the ordering guard of :mod:`fleetd.fleet.watch_rows` keeps the newer one).
2. **The read loop only touches memory**: dedupe, the cursor, marking containers dirty. A
   timer then sends one ``GET /containers/json?all=1&filters={"id":[...]}`` per batch of dirty
   containers, so a slow refresh never makes the daemon drop events (E7); over the pinger's kept
   connection, answered by callback, when there is one (:mod:`fleetd.fleet.watch_flush`).
3. **Cursor on the daemon's clock**: the newest ``timeNano`` seen, and that event (the witness).
   A reconnect asks ``since=cursor-1s``; the witness showing up in the replay proves nothing was
   lost. If it does not (ring overflow, daemon restart, podman rotation) a full list repairs
   the rows and the host reports ``gap: true``.
4. **Liveness**: a stream that ends or breaks is judged at once by one ``/_ping``: no answer
   means the host is down now, not at the next poll. A ``/_ping`` once the daemon has said
   nothing (no event, no answer) for ``liveness`` seconds catches a daemon frozen while its
   kernel still holds the TCP connections (``kill -STOP``): down within liveness + timeout of
   its last sign of life.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Mapping
from typing import Any, Final

import structlog

from fleetd.dockerapi import (
    DockerClient,
    DockerError,
    EngineUnreachable,
)
from fleetd.dockerapi.events import EngineEvent, EventStream, event_params
from fleetd.dockerapi.pinger import RawPinger
from fleetd.dockerapi.raw_events import RawEventStream
from fleetd.fleet.liveness import LivenessWheel
from fleetd.fleet.watch_events import Cause, Dedupe, Effect, classify, merge_cause
from fleetd.fleet.watch_flush import RefreshSide
from fleetd.fleet.watch_liveness import LivenessChecks, liveness_tick
from fleetd.fleet.watch_net import NetSide
from fleetd.fleet.watch_podman import PodmanHealth
from fleetd.fleet.watch_types import NoObserver, WatchObserver, WatchSettings, WatchTarget
from fleetd.util.wakeup import Wakeup

__all__ = ["FILTERS", "HostWatcher", "WatchObserver", "WatchSettings", "WatchTarget"]

log = structlog.get_logger("fleetd.watch")

#: Filters apply after dockerd's ring, so they save bandwidth, not ring slots. podman refuses
#: unknown filter values, and matches only its own action names: filter by type only (P2).
#: ``daemon``: a ``reload`` may change the engine's labels and settings (``/info``).
FILTERS: Final[Mapping[str, list[str]]] = {"type": ["container", "daemon"]}
#: podman also reports its event log's rotations (Type "system"), which can lose events (P5).
PODMAN_FILTERS: Final[Mapping[str, list[str]]] = {"type": ["container", "system"]}
_SECOND: Final = 1_000_000_000


class HostWatcher(LivenessChecks, NetSide, RefreshSide):
    """Owns one task (and its flusher subtask); ``aclose()`` cancels and awaits it. Its liveness
    checks run from a :class:`~fleetd.fleet.liveness.LivenessWheel` (the fleet's, or its own); what
    the host's poll asks of it is in :class:`~fleetd.fleet.watch_net.NetSide`."""

    def __init__(
        self,
        host: str,
        client: DockerClient,
        target: WatchTarget,
        settings: WatchSettings | None = None,
        *,
        observer: WatchObserver | None = None,
        rng: random.Random | None = None,
        pinger: RawPinger | None = None,
        wheel: LivenessWheel | None = None,
    ) -> None:
        self.host = host
        self._wheel = wheel
        self._ping_seq = 0
        self._ping_sent: float | None = None  # loop time the ping under way was sent
        self._ping_task: asyncio.Task[None] | None = None  # a ping through the client (no pinger)
        self._stopped = False
        self.pinger = pinger  # a cheap liveness ping; None: client.system.ping()
        self.client = client
        self.target = target
        self.settings = settings or WatchSettings()
        self.observer: WatchObserver = observer or NoObserver()
        self._rng = rng or random.Random()
        self.cursor: int | None = None  # newest timeNano seen (daemon clock)
        self.witness: tuple[int, str, str, str] | None = None  # key of that event
        self.connected = False
        self.connected_since: float | None = None  # loop time the current stream went live
        self.synced_at: float | None = None  # loop time its replay was proven or its list applied
        self.sessions = 0
        self.reported_down = False
        self._dedupe = Dedupe()
        self._dirty: dict[str, Cause] = {}
        self._recent: dict[str, float] = {}  # container id → loop time of its last event
        self._kick = Wakeup()
        self._alive_at = -1e9  # loop time the daemon last showed it runs (an event, an answer)
        self._liveness_factor = self._rng.uniform(0.9, 1.0)  # spreads the fleet's pings
        self._relist = Wakeup()  # podman rotated its event log: some events may be gone
        self.podman: bool | None = None  # from /_ping's Server header, on the first connect
        self._podman_health = PodmanHealth()
        self._verdict: asyncio.Future[bool] | None = None
        self._expect: tuple[tuple[int, str, str, str], int] | None = None
        self._task: asyncio.Task[None] | None = None
        self._tick = liveness_tick(self.settings.liveness) if self.settings.liveness > 0 else 0.5
        self._init_refreshes()

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._main(), name=f"watch:{self.host}")

    async def aclose(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            # Cancel until it ends: a cancellation swallowed somewhere inside (a library, or a
            # race in the interpreter's own helpers) must not leave the watcher running.
            while not task.done():
                task.cancel()
                await asyncio.wait({task}, timeout=1.0)
            await asyncio.gather(task, return_exceptions=True)
        if self.pinger is not None:
            self.pinger.close()

    def reconnect(self) -> None:
        """Drop the stream and resume it (drift found, or the host answered again)."""
        self._kick.set()

    # -- the task ---------------------------------------------------------------------------

    async def _main(self) -> None:
        structlog.contextvars.bind_contextvars(host=self.host)
        helpers: list[asyncio.Task[None]] = []
        own_wheel: LivenessWheel | None = None
        if self.settings.liveness > 0:
            wheel = self._wheel
            if wheel is None:
                wheel = own_wheel = LivenessWheel(tick=liveness_tick(self.settings.liveness))
            self._tick = wheel.tick
            wheel.add(self, asyncio.get_running_loop().time() + self._period())
        try:
            await self.target.first_poll(self.host)
            await self._connect_loop()
        finally:
            self._stopped = True
            helpers.extend(self._stop_refreshes())
            if own_wheel is not None:
                own_wheel.close()
            if self._ping_task is not None:
                helpers.append(self._ping_task)
            for t in helpers:
                t.cancel()
            await asyncio.gather(*helpers, return_exceptions=True)

    def _backoff(self, failures: int) -> float:
        s = self.settings
        base = min(s.backoff_min * 2.0 ** (failures - 1), s.backoff_max)
        return base * self._rng.uniform(0.5, 1.0)

    async def _connect_loop(self) -> None:
        failures = 0
        while True:
            self._kick.clear()
            try:
                await self._session()
                failures = 0
            except DockerError as exc:
                failures += 1
                await self._judge(exc)
            if failures:
                await asyncio.sleep(self._backoff(failures))

    async def _judge(self, exc: DockerError) -> None:
        """A stream that broke: is it the daemon (down now) or just this connection?"""
        self.observer.count(self.host, "stream_errors")
        if self.reported_down:
            return
        try:
            await self.client.system.ping(timeout=self.settings.timeout)
        except DockerError as ping_exc:
            self.reported_down = True
            log.info("event stream lost and the daemon does not answer", host=self.host, error=str(exc))
            self.target.stream_lost(self.host, ping_exc)
            return
        log.info("event stream broke; the daemon answers: resuming", host=self.host, error=str(exc))

    async def _session(self) -> None:
        loop = asyncio.get_running_loop()
        s = self.settings
        resume = self.cursor is not None and self.witness is not None
        since = self.cursor - _SECOND if resume and self.cursor is not None else None
        if self.podman is None:  # known from the client's version negotiation; else ask once
            if self.client.server is None:
                self.podman = (await self.client.system.ping(timeout=s.timeout)).is_podman
            else:
                self.podman = self.client.is_podman
        filters = PODMAN_FILTERS if self.podman else FILTERS
        stream: EventStream | RawEventStream
        if self.pinger is not None and self.client.api_version is not None and not self.podman:
            # its own connection, events handed to _on_event by the connection's callback (no task)
            stream = RawEventStream(self.pinger, self.client, event_params(since, None, filters), open_timeout=s.timeout)
        else:
            stream = self.client.system.events(since=since, filters=filters, open_timeout=s.timeout)
        async with stream:
            self.sessions += 1
            self.connected, self.connected_since = True, loop.time()
            self._alive_at = loop.time()
            if resume and self.witness is not None and self.cursor is not None:
                self._verdict = loop.create_future()
                self._expect = (self.witness, self.cursor)
            reader: asyncio.Future[None]
            if isinstance(stream, RawEventStream):
                reader = stream.begin(self._on_event)
            else:
                reader = asyncio.create_task(self._read(stream), name=f"watch-read:{self.host}")
            try:
                await self._sync(resume, reader)
                end = loop.time() + s.max_age * self._rng.uniform(0.8, 1.2)
                while not reader.done() and not self._kick.is_set() and loop.time() < end:
                    waits: set[asyncio.Future[Any]] = {
                        asyncio.ensure_future(self._kick.wait()),
                        asyncio.ensure_future(self._relist.wait()),
                    }
                    try:
                        await asyncio.wait(
                            {reader, *waits}, timeout=end - loop.time(), return_when=asyncio.FIRST_COMPLETED
                        )
                    finally:
                        for t in waits:
                            t.cancel()
                    if self._relist.is_set() and not reader.done():
                        self._relist.clear()
                        changed = await self._list_until_it_answers(reader)
                        self.observer.count(self.host, "resynced_gap" if changed else "resumed")
                        self.target.resynced(self.host, changed > 0)
                if reader.done():
                    reader.result()  # the stream's error, if it broke
            finally:
                self.connected = False
                self.synced_at = None
                self._verdict = None
                reader.cancel()
                with contextlib.suppress(asyncio.CancelledError, DockerError):
                    await reader

    async def _sync(self, resume: bool, reader: asyncio.Future[None]) -> None:
        """After the stream is live: prove continuity, or list everything."""
        self.synced_at = None
        try:
            await self._prove_or_list(resume, reader)
        finally:
            self.synced_at = asyncio.get_running_loop().time()

    async def _prove_or_list(self, resume: bool, reader: asyncio.Future[None]) -> None:
        first = self.sessions == 1
        if not first:  # the daemon may have restarted (another version, other settings): ask /info again
            self.target.want_info(self.host)
        was_down, self.reported_down = self.reported_down, False
        if was_down:
            self.target.wake(self.host)  # the poll brings the host's status and facts back up
        proven = False
        if resume and self._verdict is not None:
            waiting: set[asyncio.Future[object]] = {self._verdict, reader}  # type: ignore[arg-type]
            done, _ = await asyncio.wait(
                waiting,
                timeout=self.settings.resume_window,
                return_when=asyncio.FIRST_COMPLETED,
            )
            if reader in done:
                reader.result()
            proven = self._verdict.done() and self._verdict.result()
        if proven and not was_down:
            self.observer.count(self.host, "resumed")
            self.target.resynced(self.host, False)
            return
        changed = await self._list_until_it_answers(reader)
        if first:
            self.observer.count(self.host, "subscribed")
            return
        # Without a witness (nothing ever happened on this host) only the list can tell.
        gap = not proven if resume else changed > 0
        self.observer.count(self.host, "resynced_gap" if gap else "resumed")
        log.info("event stream back", host=self.host, gap=gap, proven=proven, rows_changed=changed)
        self.target.resynced(self.host, gap)

    async def _list_until_it_answers(self, reader: asyncio.Future[None]) -> int:
        """The full list the stream needs; a failed one (the poll said why) is retried while the
        stream stays up, so a slow first answer cannot leave the rows empty until the next poll."""
        failures = 0
        while True:
            changed = await self.target.full_refresh(self.host)
            if changed is not None:
                return changed
            failures += 1
            await asyncio.wait({reader}, timeout=self._backoff(failures))
            if reader.done():
                reader.result()  # the stream broke too: the connect loop judges it
                raise EngineUnreachable(f"{self.client.url} ended its event stream", url=self.client.url)

    async def _read(self, stream: EventStream) -> None:
        async for event in stream:
            self._on_event(event)

    def _on_event(self, event: EngineEvent) -> None:
        """Memory only: never awaits (a slow reader makes the daemon drop events)."""
        tn = event.time_nano
        verdict = self._verdict
        if verdict is not None and not verdict.done() and self._expect is not None:
            witness, cursor = self._expect
            if event.key() == witness:
                verdict.set_result(True)
            elif tn > cursor + _SECOND // 20:  # newer than the witness, which never came: lost
                verdict.set_result(False)
        if self._dedupe.seen(event):
            self.observer.count(self.host, "duplicates")
            return
        self.observer.count(self.host, "events")
        self._alive_at = asyncio.get_running_loop().time()
        if self.cursor is None or tn > self.cursor:
            self.cursor, self.witness = tn, event.key()
        if event.Type == "system":
            if event.action == "log-rotation":
                self._relist.set()
            return
        if event.Type == "daemon":
            if event.action == "reload":
                self.target.want_info(self.host)
            return
        if self.podman and (ended := self._podman_health.probe_ended(event)) is not None:
            # podman's probe is over: its result can be asked for now (health_status came first)
            self._dirty.setdefault(ended, Cause("health_status", None, tn))
            self._dirtied()
            return
        effect, cid = classify(event)
        if effect is Effect.NONE:
            return
        self._dirty[cid] = merge_cause(self._dirty.get(cid), event)
        self._recent[cid] = asyncio.get_running_loop().time()
        self._dirtied()
