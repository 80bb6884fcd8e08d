"""The refresh half of a host's event watcher (:class:`~fleetd.fleet.watch.HostWatcher`): the rows
Engine events marked dirty, asked for with one targeted ``GET /containers/json?filters={"id":[...]}``.

The first dirty container starts a timer (``flush_delay``); every container marked until it fires
goes into the same request. On the kept connection (:class:`~fleetd.dockerapi.pinger.RawPinger`) the
request and its answer are callbacks, like the liveness pings: no task wakes for the timer, none for
the answer, which is applied as it is parsed (each wake-up of a task costs about as much as the
refresh's own work). Without a kept connection, before the API version is known, on podman (its list
tells no health: an inspect may follow) or when the raw answer is unusable, the refresh runs as a task
through the client, which says precisely what is wrong with an answer.

A ``die`` (or removal) whose row does not show it yet is asked again, ``flush_delay`` apart, a few
times (dockerd 20.10 publishes ``die`` before its listing says ``exited``; podman ``remove`` before
the row is gone). One refresh is under way at a time; a failed one is retried a second later.
"""

from __future__ import annotations

import asyncio
import functools
from typing import Final, TypeVar

import structlog

from fleetd.dockerapi import ContainerSummary, DockerClient, DockerError
from fleetd.dockerapi.exchange import Done
from fleetd.dockerapi.pinger import RawPinger, Result, id_query, list_by_id
from fleetd.fleet.builder import split_answer
from fleetd.fleet.watch_events import REMOVAL, Cause
from fleetd.fleet.watch_podman import PodmanHealth
from fleetd.fleet.watch_types import WatchObserver, WatchSettings, WatchTarget
from fleetd.util.grid import next_point

__all__ = ["RefreshSide"]

log = structlog.get_logger("fleetd.watch")

_DEATHS: Final = frozenset({"die", "oom", "kill", "stop"})
_SETTLE_TRIES: Final = 5
T = TypeVar("T")


class RefreshSide:
    """Mixed into HostWatcher, which sets every attribute declared here (and calls
    :meth:`_init_refreshes` from its constructor)."""

    host: str
    client: DockerClient
    pinger: RawPinger | None
    target: WatchTarget
    settings: WatchSettings
    observer: WatchObserver
    podman: bool | None
    _stopped: bool
    _alive_at: float
    _tick: float  # the liveness wheel's
    _dirty: dict[str, Cause]
    _recent: dict[str, float]
    _podman_health: PodmanHealth

    def _init_refreshes(self) -> None:
        self._retries: dict[str, int] = {}  # container id → refreshes that still showed it running
        self._flush_at: asyncio.TimerHandle | None = None
        self._in_flight = 0  # the token of the refresh under way (0: none)
        self._tokens = 0
        self._refresh_task: asyncio.Task[None] | None = None
        self._refresh_timer: asyncio.TimerHandle | None = None  # the raw refresh's timeout

    def _dirtied(self) -> None:
        """Containers were marked dirty: refresh them ``flush_delay`` from now, with any that follow,
        at the next point of a grid of half the liveness wheel's tick (0.25 s by default): the
        refreshes of hosts whose events came close together go out in one turn of the loop, every
        other one with the liveness pings and the polls due then, their answers read together,
        rather than each waking the loop alone (a change shows ~0.12 s later on average)."""
        if self._flush_at is None and not self._in_flight and not self._stopped:
            loop = asyncio.get_running_loop()
            at = next_point(loop.time() + self.settings.flush_delay, self._tick / 2)
            self._flush_at = loop.call_at(at, self._flush)

    def _stop_refreshes(self) -> list[asyncio.Task[None]]:
        """The watcher stops: no timer stays armed; the refresh task under way, if any, to cancel."""
        for timer in (self._flush_at, self._refresh_timer):
            if timer is not None:
                timer.cancel()
        self._flush_at = self._refresh_timer = None
        self._in_flight = 0
        task, self._refresh_task = self._refresh_task, None
        return [task] if task is not None else []

    def _flush(self) -> None:
        self._flush_at = None
        if self._stopped or self._in_flight or not self._dirty:
            return
        dirty = self._dirty
        ids = list(dirty)[: self.settings.batch]
        batch = {cid: dirty.pop(cid) for cid in ids}
        self._tokens += 1
        token = self._in_flight = self._tokens
        stamp = self.target.next_stamp(self.host)  # taken as the request is sent: the ordering guard
        version = self.client.api_version
        if self.pinger is None or version is None or self.podman:
            self._refresh_task = asyncio.ensure_future(self._refresh_by_client(token, batch, stamp))
            return
        loop = asyncio.get_running_loop()
        done = functools.partial(self._answered_raw, token, batch, stamp)
        self._refresh_timer = loop.call_later(self.settings.timeout, self._timed_out, token, batch, done)
        path = f"/v{version}/containers/json?{id_query(ids)}".encode()
        self.pinger.send(path, self.client.limits.containers, done)

    def _timed_out(self, token: int, batch: dict[str, Cause], done: Done) -> None:
        self._refresh_timer = None
        if token != self._in_flight:
            return
        log.debug("event refresh got no answer in time; retrying", host=self.host)
        self._failed(batch)  # first: the EngineTimeout ``done`` hears below finds no refresh under way
        if self.pinger is not None:
            self.pinger.cancel(done)  # if the connection is stuck on it, the next exchange gets a new one

    def _answered_raw(self, token: int, batch: dict[str, Cause], stamp: int, result: Result) -> None:
        if token != self._in_flight:
            return  # timed out already, or the watcher stopped
        if self._refresh_timer is not None:
            self._refresh_timer.cancel()
            self._refresh_timer = None
        rows: list[ContainerSummary] | None = None
        keys: dict[str, int] = {}
        if not isinstance(result, DockerError) and result[0] == 200:
            rows, keys = self._decode_rows(result[1])
        if rows is None:  # the client asks again and says precisely what is wrong
            self._refresh_task = asyncio.ensure_future(self._refresh_by_client(token, batch, stamp))
            return
        try:
            self._refreshed(batch, rows, stamp, keys)
        except Exception as exc:  # a bug here must not break the connection's other exchanges
            asyncio.get_running_loop().call_exception_handler({"message": "event refresh failed", "exception": exc})
        self._finished(token)

    def _decode_rows(self, body: bytes) -> tuple[list[ContainerSummary] | None, dict[str, int]]:
        """The rows of a raw answer, each with the hash of its JSON element, which the host's poll
        builder keys its records by (fleet/builder.py): the next poll finds these rows known."""
        def decode(data: bytes, type_: type[T]) -> T:
            return self.client.decode(data, type_, "GET", "/containers/json")

        try:
            elements, keys = split_answer(body, decode)
            rows = [decode(e, ContainerSummary) for e in elements]
        except DockerError:
            return None, {}
        return rows, {r.Id: k for r, k in zip(rows, keys, strict=True)}

    async def _refresh_by_client(self, token: int, batch: dict[str, Cause], stamp: int) -> None:
        s = self.settings
        try:
            rows = await list_by_id(self.pinger, self.client, list(batch), timeout=s.timeout)
        except DockerError as exc:
            log.debug("event refresh failed; retrying", host=self.host, error=str(exc))
            if token == self._in_flight:
                self._failed(batch)
            return
        if self.podman:  # its list tells no health: ask for it where an event says it moved
            actions = {c: batch[c].action for c in batch}
            rows = await self._podman_health.fill(self.client, rows, actions, s.timeout)
        if token == self._in_flight:
            self._refreshed(batch, rows, stamp)
            self._finished(token)

    def _refreshed(
        self, batch: dict[str, Cause], rows: list[ContainerSummary], stamp: int, keys: dict[str, int] | None = None
    ) -> None:
        self._alive_at = asyncio.get_running_loop().time()
        self.observer.count(self.host, "refreshes")
        unsettled = self._unsettled(rows, batch)
        asked = frozenset(batch).difference(unsettled)
        if asked:
            self.target.apply_rows(self.host, asked, rows, stamp, {c: batch[c] for c in asked}, keys)

    def _finished(self, token: int) -> None:
        if token == self._in_flight:
            self._in_flight = 0
            self._refresh_task = None
        if len(self._recent) > 256:
            cutoff = asyncio.get_running_loop().time() - 10.0
            self._recent = {k: t for k, t in self._recent.items() if t > cutoff}
        if self._dirty:
            self._dirtied()

    def _failed(self, batch: dict[str, Cause]) -> None:
        """The refresh got no usable answer: its containers stay dirty and are asked again in a second."""
        for cid, cause in batch.items():
            self._dirty.setdefault(cid, cause)
        self._in_flight = 0
        self._refresh_task = None
        if self._flush_at is None and not self._stopped:
            delay = max(self.settings.flush_delay, 1.0)
            self._flush_at = asyncio.get_running_loop().call_later(delay, self._flush)

    def _unsettled(self, rows: list[ContainerSummary], batch: dict[str, Cause]) -> set[str]:
        """Containers whose ``die`` (or removal) arrived before their row says so. They are asked
        again shortly, the cause kept, up to a few times."""
        out: set[str] = set()
        for r in rows:
            cause = batch.get(r.Id)
            if cause is None:
                continue
            dead_but_running = cause.action in _DEATHS and r.State in ("running", "restarting")
            if not dead_but_running and cause.action not in REMOVAL:  # a removed container has no row
                self._retries.pop(r.Id, None)
                continue
            tries = self._retries.get(r.Id, 0)
            if tries >= _SETTLE_TRIES:
                self._retries.pop(r.Id, None)
                continue  # it really is running again (a restart policy): take the row as it is
            self._retries[r.Id] = tries + 1
            self._dirty.setdefault(r.Id, cause)  # a newer event (a restart's start) keeps its own cause
            out.add(r.Id)
        return out
