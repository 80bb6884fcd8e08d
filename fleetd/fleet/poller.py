"""Polls every host on its own schedule, bounded by one concurrency limit, into FleetState.

Each enabled host has one worker task, so there is never more than one poll in flight per
host. A poll fetches ``/info`` and ``/containers/json?all=1`` (and every Nth time
``/images/json``) concurrently. A worker waits for a slot of the shared semaphore before
it sends anything, so request timeouts measure the daemon, not the queue.
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Protocol

import msgspec
import structlog

from fleetd.config.model import HostSettings, PollSettings
from fleetd.dockerapi import (
    ContainerSummary,
    DockerClient,
    DockerError,
    EngineConnections,
    EngineTimeout,
    EngineUnreachable,
    ImageSummary,
    SystemInfo,
)
from fleetd.fleet.clients import ClientFactory, read_limits
from fleetd.fleet.models import ContainerRecords, EngineFacts, HostRecord, HostStatus, image_record
from fleetd.fleet.schedule import Schedule
from fleetd.fleet.state import FleetState
from fleetd.timefmt import rfc3339

__all__ = ["PollObserver", "Poller", "ReconcileReport"]

log = structlog.get_logger("fleetd.poller")


class PollObserver(Protocol):
    def observe_poll(self, host: str, seconds: float, ok: bool) -> None: ...


class _NoObserver:
    def observe_poll(self, host: str, seconds: float, ok: bool) -> None:
        return None


@dataclass(frozen=True, slots=True)
class ReconcileReport:
    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    reconnected: tuple[str, ...] = ()
    updated: tuple[str, ...] = ()
    unchanged: tuple[str, ...] = ()


@dataclass(slots=True, eq=False)
class _Worker:
    record: HostRecord
    client: DockerClient
    schedule: Schedule
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    epoch: int = 0  # bumped by every action; a poll started in an older epoch is discarded
    waiters: list[asyncio.Future[None]] = field(default_factory=list)
    task: asyncio.Task[None] | None = None
    images_due: bool = False  # an image action happened: list images on the next poll
    containers: ContainerRecords = field(default_factory=ContainerRecords)


def _failure_status(errors: list[DockerError]) -> HostStatus:
    if any(isinstance(e, (EngineUnreachable, EngineTimeout)) for e in errors):
        return HostStatus.DOWN
    return HostStatus.ERROR


class Poller:
    def __init__(
        self,
        state: FleetState,
        poll: PollSettings,
        connections: EngineConnections,
        *,
        observer: PollObserver | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.state = state
        self.poll = poll
        self._clients = ClientFactory(connections, connect_timeout=poll.connect_timeout)
        self._observer: PollObserver = observer or _NoObserver()
        self._rng = rng or random.Random()
        self._slots = asyncio.Semaphore(poll.concurrency)
        self._workers: dict[str, _Worker] = {}
        self._running = False

    # -- lifecycle ---------------------------------------------------------------

    async def start(self, hosts: Iterable[HostSettings]) -> None:
        """Register every host and start polling at once (bounded by concurrency)."""
        self._running = True
        for settings in hosts:
            await self._add(settings)

    async def aclose(self) -> None:
        """Cancel every worker and wait for it; safe to call twice."""
        self._running = False
        workers = list(self._workers.values())
        self._workers.clear()
        await self._stop_workers(workers)

    async def _stop_workers(self, workers: list[_Worker]) -> None:
        tasks = [w.task for w in workers if w.task is not None]
        for t in tasks:
            t.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        for w in workers:
            await w.client.aclose()  # cancels a pending version negotiation; pools are shared
            for fut in w.waiters:
                if not fut.done():
                    fut.cancel()

    async def _add(self, settings: HostSettings, record: HostRecord | None = None) -> None:
        if record is None:
            record = self.state.add(settings)
        if not settings.enabled:
            return
        client = await self._clients.client_for(settings, self.poll.max_answer)
        worker = _Worker(
            record=record,
            client=client,
            schedule=Schedule(
                settings.interval, self.poll.jitter, self.poll.max_backoff, random.Random(self._rng.random())
            ),
        )
        self._workers[settings.name] = worker
        if self._running:
            worker.task = asyncio.create_task(self._run(worker), name=f"poll:{settings.name}")

    # -- the API's needs ---------------------------------------------------------

    def client(self, name: str) -> DockerClient | None:
        """The Engine client of an enabled host, for explicit actions."""
        worker = self._workers.get(name)
        return worker.client if worker is not None else None

    async def refresh(self, name: str, *, images: bool = False) -> None:
        """Poll ``name`` now; any poll already in flight is discarded, not applied, so an
        action's effect cannot be overwritten by a poll that started before it.
        ``images``: that poll lists images too, whatever ``poll.images_every`` says."""
        worker = self._workers.get(name)
        if worker is None:
            return
        worker.images_due = worker.images_due or images
        worker.epoch += 1
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        worker.waiters.append(fut)
        worker.wake.set()
        await asyncio.shield(fut)

    async def poll_once(self) -> None:
        """Poll every enabled host exactly once (the one-shot CLI), without background tasks."""

        async def one(w: _Worker) -> None:
            async with self._slots:
                await self._poll(w)

        await asyncio.gather(*(one(w) for w in self._workers.values()))

    # -- reload ------------------------------------------------------------------

    async def reconcile(self, hosts: Iterable[HostSettings], poll: PollSettings) -> ReconcileReport:
        """Apply a new inventory: unchanged hosts keep their state, data and schedule."""
        new = {h.name: h for h in hosts}
        added: list[str] = []
        removed: list[str] = []
        reconnected: list[str] = []
        updated: list[str] = []
        unchanged: list[str] = []
        if poll.concurrency != self.poll.concurrency:
            self._slots = asyncio.Semaphore(poll.concurrency)
        if poll.max_answer != self.poll.max_answer:
            for running in self._workers.values():
                running.client.limits = read_limits(poll.max_answer)
        self.poll = poll
        for name in [r.name for r in self.state.records()]:
            if name not in new:
                worker = self._workers.pop(name, None)
                if worker is not None:
                    await self._stop_workers([worker])
                self.state.remove(name)
                removed.append(name)
        for name, settings in new.items():
            record = self.state.get(name)
            if record is None:
                await self._add(settings)
                added.append(name)
                continue
            old = record.settings
            if dataclasses.replace(settings, source=old.source) == old:
                # What the user wrote is the same; only where (a line moved) may differ.
                record.settings = settings
                unchanged.append(name)
                continue
            if old.connection_key() != settings.connection_key() or old.enabled != settings.enabled:
                worker = self._workers.pop(name, None)
                if worker is not None:
                    await self._stop_workers([worker])
                self.state.remove(name)
                await self._add(settings)
                reconnected.append(name)
            else:
                record.settings = settings
                worker = self._workers.get(name)
                if worker is not None:
                    worker.schedule.interval = settings.interval
                updated.append(name)
        self.state.reorder(list(new))
        await self._clients.release_unused({h.url for h in new.values()}, tuple(new.values()))
        self.state.touch()
        return ReconcileReport(
            tuple(added), tuple(removed), tuple(reconnected), tuple(updated), tuple(unchanged)
        )

    # -- polling -----------------------------------------------------------------

    async def _run(self, worker: _Worker) -> None:
        loop = asyncio.get_running_loop()
        structlog.contextvars.bind_contextvars(host=worker.record.name)
        while True:
            waiters, worker.waiters = worker.waiters, []
            worker.wake.clear()
            async with self._slots:
                await self._poll(worker)
            if (
                worker.record.images is None
                and worker.record.status is HostStatus.UP
                and not worker.images_due
            ):
                async with self._slots:  # FIFO: after the first polls already waiting
                    await self._list_images(worker)
            for fut in waiters:
                if not fut.done():
                    fut.set_result(None)
            if worker.waiters:
                continue  # an action arrived during the poll: poll again at once
            regular_due = worker.schedule.due
            if waiters and regular_due is not None and not worker.record.consecutive_failures:
                # An extra poll for an action: the regular schedule stays where it was, so actions
                # can never push a host's next regular poll back (and leave it silently stale).
                due = regular_due
            else:
                due = worker.schedule.next_due(loop.time(), worker.record.consecutive_failures)
            # A timer that sets the event, rather than asyncio.timeout: no exception and
            # no reference cycle per poll for the garbage collector to clean up.
            timer = loop.call_at(due, worker.wake.set)
            try:
                await worker.wake.wait()
            finally:
                timer.cancel()

    async def _list_images(self, worker: _Worker) -> None:
        """Images alone, once, after a host's first successful poll."""
        try:
            images = await worker.client.images.list()
        except DockerError as exc:
            worker.images_due = True  # the next regular poll lists them, and judges a failure
            log.debug("image listing deferred", host=worker.record.name, error=str(exc))
            return
        worker.record.images = tuple(image_record(i) for i in images)
        worker.record.images_seen = time.time()
        self.state.touch()

    async def _poll(self, worker: _Worker) -> None:
        record = worker.record
        client = worker.client
        epoch = worker.epoch
        started = time.monotonic()
        record.last_attempt = time.time()
        # The first poll leaves images out so the complete view comes sooner; _run lists
        # them right after it, queued behind every other host's first poll.
        want_images = worker.images_due or (
            record.polls > 0 and record.polls % max(1, self.poll.images_every) == 0
        )
        info_r: tuple[SystemInfo, msgspec.Raw] | BaseException
        cont_r: list[ContainerSummary] | BaseException
        img_r: list[ImageSummary] | BaseException | None = None
        if want_images:
            # /images/json follows /info on the connection /info just freed: a poll needs two
            # connections per host instead of three (a third fewer connects at start-up).
            async def info_then_images() -> tuple[SystemInfo, msgspec.Raw]:
                nonlocal img_r
                info = await client.system.info_raw()
                try:
                    img_r = await client.images.list()
                except Exception as exc:  # judged below with the other answers
                    img_r = exc
                return info

            info_r, cont_r = await asyncio.gather(
                info_then_images(), client.containers.list(all=True), return_exceptions=True
            )
        else:
            info_r, cont_r = await asyncio.gather(
                client.system.info_raw(), client.containers.list(all=True), return_exceptions=True
            )
        duration = time.monotonic() - started
        record.poll_duration = duration
        record.polls += 1
        if epoch != worker.epoch:
            return  # an action happened meanwhile; the next poll is already due
        errors: list[DockerError] = []
        for r in (info_r, cont_r, img_r):
            if isinstance(r, DockerError):
                errors.append(r)
            elif isinstance(r, asyncio.CancelledError):
                raise r
            elif isinstance(r, BaseException):
                log.error("poll failed unexpectedly", host=record.name, exc_info=r)
                errors.append(DockerError(f"internal error while polling: {r!r}"))
        self._observer.observe_poll(record.name, duration, not errors)
        if errors:
            self._fail(record, client, errors)
        elif not isinstance(info_r, BaseException) and not isinstance(cont_r, BaseException):
            images = img_r if isinstance(img_r, list) else None
            if images is not None:
                worker.images_due = False
            self._succeed(record, client, info_r[0], info_r[1], cont_r, images, worker.containers)
        record.first_poll_done = True
        self.state.touch()

    def _succeed(
        self,
        record: HostRecord,
        client: DockerClient,
        info: SystemInfo,
        raw: msgspec.Raw,
        containers: list[ContainerSummary],
        images: list[ImageSummary] | None,
        builder: ContainerRecords,
    ) -> None:
        now = time.time()
        observed = rfc3339(now)
        name = record.name
        record.containers = builder.build(name, containers, observed)
        record.facts = EngineFacts.from_info(info, client.api_version or "")
        record.info_raw = raw
        if images is not None:
            record.images = tuple(image_record(i) for i in images)
            record.images_seen = now
        record.last_seen = now
        previous = record.status
        failures = record.consecutive_failures
        record.consecutive_failures = 0
        record.last_error = None
        if previous is not HostStatus.UP:
            record.status = HostStatus.UP
            record.changed_at = now
            if previous is HostStatus.UNKNOWN:
                log.info(
                    "host up",
                    host=name,
                    server_version=info.ServerVersion,
                    api_version=client.api_version,
                    containers=len(record.containers),
                )
            else:
                log.info("host recovered", host=name, was=previous.value, after_failures=failures)

    def _fail(self, record: HostRecord, client: DockerClient, errors: list[DockerError]) -> None:
        status = _failure_status(errors)
        message = str(errors[0])
        if status is HostStatus.DOWN:
            client.forget_version()  # it may come back as a different daemon version
            message = next(str(e) for e in errors if isinstance(e, (EngineUnreachable, EngineTimeout)))
        record.consecutive_failures += 1
        record.last_error = message
        if record.status is not status:
            previous = record.status
            record.status = status
            record.changed_at = time.time()
            log.warning(f"host {status.value}", host=record.name, was=previous.value, error=message)
