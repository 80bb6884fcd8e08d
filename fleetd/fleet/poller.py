"""The poller: one :class:`HostLoop` per enabled host, one shared concurrency bound, reconciled on reload.

``start`` registers the inventory and starts every loop; ``reconcile`` applies a new inventory (hosts
that did not change keep their state, data and schedule); ``refresh`` polls one host now, for actions;
``poll_once`` polls every host exactly once without background tasks (``fleetd snapshot``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import heapq
import itertools
import random
import resource
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import structlog

from fleetd.config.model import HostSettings, PollSettings
from fleetd.dockerapi import DockerClient, EngineConnections
from fleetd.fleet.clients import ClientFactory, read_limits
from fleetd.fleet.first_round import FirstRound
from fleetd.fleet.host_loop import HostLoop, PollObserver, new_schedule
from fleetd.fleet.records import ContainerRecord, HostRecord
from fleetd.fleet.safety_net import SafetyNet
from fleetd.fleet.state import FleetState

log = structlog.get_logger("fleetd.poller")

OVERDUE_CHECK_EVERY = 1.0  # seconds
OVERDUE_GRACE = 1.0  # a poll not started timeout + this long after it was due is overdue


def poll_connection_budget() -> int:
    """Open files the polls may keep: half the soft limit (the API listener's share is the other half)."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return 1 << 30 if soft == resource.RLIM_INFINITY else soft // 2


__all__ = ["PollObserver", "Poller", "ReconcileReport"]


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
        self._loops: dict[str, HostLoop] = {}
        self._running = False
        self._watchdog: asyncio.Task[None] | None = None
        # (when it would be overdue, seq, the due time, its loop): the overdue watch looks only at
        # these, not at every host every second (a Python call per host: 35-127 ms a tick at 10,000)
        self._deadlines: list[tuple[float, int, float, HostLoop]] = []
        self._deadline_seq = itertools.count()
        self._one_connection = False  # see _plan_connections
        self._first_round = FirstRound()  # set by the host loops once every first poll ended
        self._nets: dict[str, SafetyNet] = {}  # event watchers, by host (see fleet/safety_net.py)

    # -- lifecycle ---------------------------------------------------------------

    async def start(self, hosts: Iterable[HostSettings]) -> None:
        """Register every host and start polling at once (bounded by concurrency)."""
        self._running = True
        self._first_round.began = time.monotonic()
        for settings in hosts:
            await self._add(settings)
        self._plan_connections()
        if self._watchdog is None:
            self._watchdog = asyncio.create_task(self._watch_overdue(), name="poll-watchdog")

    async def _watch_overdue(self) -> None:
        """Every second: a host whose poll is due but has not started (starved of a slot, a stuck
        loop) is logged once and counted (``fleetd_host_polls_overdue_total``)."""
        loop = asyncio.get_running_loop()
        deadlines = self._deadlines
        while True:
            await asyncio.sleep(OVERDUE_CHECK_EVERY)
            now = loop.time()
            while deadlines and deadlines[0][0] < now:
                _, _, due, host_loop = heapq.heappop(deadlines)
                if host_loop.due_at != due or self._loops.get(host_loop.name) is not host_loop:
                    continue  # polled since, or no longer polled
                host_loop.check_overdue(now)
                if not host_loop.overdue:  # its timeout grew meanwhile: look again then
                    self._note_due(host_loop, due)

    def _note_due(self, host_loop: HostLoop, due: float) -> None:
        late_after = due + host_loop.record.settings.timeout + OVERDUE_GRACE
        heapq.heappush(self._deadlines, (late_after, next(self._deadline_seq), due, host_loop))

    async def aclose(self) -> None:
        """Cancel every loop and wait for it; safe to call twice."""
        self._running = False
        if self._watchdog is not None:
            self._watchdog.cancel()
            await asyncio.gather(self._watchdog, return_exceptions=True)
            self._watchdog = None
        loops = list(self._loops.values())
        self._loops.clear()
        for loop in loops:
            await loop.stop()

    async def _add(self, settings: HostSettings, record: HostRecord | None = None) -> None:
        if record is None:
            record = self.state.add(settings)
        if not settings.enabled:
            return
        client = await self._clients.client_for(settings, self.poll.max_answer)
        loop = HostLoop(
            state=self.state,
            record=record,
            client=client,
            schedule=new_schedule(settings.interval, self.poll.jitter, self.poll.max_backoff, self._rng),
            slots=self._current_slots,
            observer=self._observer,
            images_every=self._images_every,
            one_connection=self._one_connection_per_host,
            first_round=self._first_round,
            net=functools.partial(self._nets.get, settings.name),
            # Watched hosts started together would otherwise all make their full poll (/info and
            # images) on the same round of polls, every images_every-th interval: spread them.
            images_phase=self._rng.randrange(1 << 16),
            on_due=self._note_due,
        )
        self._loops[settings.name] = loop
        if self._running:
            loop.start()

    def _current_slots(self) -> asyncio.Semaphore:
        return self._slots

    def _plan_connections(self) -> None:
        """A poll's two requests run at once on two keep-alive connections per host; when that many
        would not fit in the open-file budget (10,000 hosts under a 20,000 limit), they run one after
        the other on one connection per host."""
        tight = 2 * len(self._loops) > poll_connection_budget()
        if tight != self._one_connection:
            log.info(
                "one poll connection per host" if tight else "two poll connections per host",
                hosts=len(self._loops),
                open_file_budget=poll_connection_budget(),
            )
        self._one_connection = tight

    def _one_connection_per_host(self) -> bool:
        """Also during the start-up's first round when it queues (more hosts than poll slots): a
        host's first poll then asks /info and /containers/json one after the other on one connection,
        so the burst opens one connection per host instead of two (a connect costs the daemon and
        fleetd CPU, a TLS handshake on TLS hosts, where CPU, not the wait, decides how soon every host
        is up); a round that fits in the slots asks both at once, as every later poll does."""
        if self._one_connection:
            return True
        return not self._first_round.is_set() and len(self._loops) > self.poll.concurrency

    def _images_every(self) -> int:
        return self.poll.images_every

    # -- for actions -------------------------------------------------------------

    def client(self, name: str) -> DockerClient | None:
        """The Engine client of an enabled host, for explicit actions."""
        loop = self._loops.get(name)
        return loop.client if loop is not None else None

    async def refresh(self, name: str, *, images: bool = False) -> None:
        """Poll ``name`` now; any poll already in flight is discarded, not applied, so an
        action's effect cannot be overwritten by a poll that started before it.
        ``images``: that poll lists images too, whatever ``poll.images_every`` says."""
        loop = self._loops.get(name)
        if loop is not None:
            await loop.refresh(images=images)

    def attach(self, name: str, net: SafetyNet | None) -> None:
        """The host's event watcher (None: it has none any more): while its stream is healthy, the
        host's polls are lean (see fleet/safety_net.py)."""
        if net is None:
            self._nets.pop(name, None)
        else:
            self._nets[name] = net

    def learn(
        self, name: str, rows: Mapping[str, tuple[int, ContainerRecord] | None]
    ) -> tuple[ContainerRecord, ...] | None:
        """Rows an event refresh wrote, for the host's poll builder (ContainerRecords.learn): its
        records after (None: the host is not polled)."""
        loop = self._loops.get(name)
        return loop.containers.learn(rows) if loop is not None else None

    def want_info(self, name: str) -> None:
        """The host's next poll asks ``/info`` (its stream reconnected, its daemon reloaded)."""
        loop = self._loops.get(name)
        if loop is not None:
            loop.info_wanted = True

    def wake(self, name: str) -> None:
        """Poll ``name`` now without waiting for it (nothing in flight is discarded)."""
        loop = self._loops.get(name)
        if loop is not None:
            loop.wake.set()

    async def poll_once(self) -> None:
        """Poll every enabled host exactly once (the one-shot CLI), without background tasks."""

        async def one(loop: HostLoop) -> None:
            async with self._slots:
                await loop.poll()

        await asyncio.gather(*(one(loop) for loop in self._loops.values()))

    # -- reload ------------------------------------------------------------------

    async def prepare(self, hosts: Iterable[HostSettings]) -> list[str]:
        """Everything a reconcile to *hosts* needs that can fail (TLS contexts), built first;
        the problems, if any, and then nothing changed."""
        return await self._clients.prepare(hosts)

    async def reconcile(self, hosts: Iterable[HostSettings], poll: PollSettings) -> ReconcileReport:
        """Apply a new inventory: unchanged hosts keep their state, data and schedule."""
        new = {h.name: h for h in hosts}
        added: list[str] = []
        removed: list[str] = []
        reconnected: list[str] = []
        updated: list[str] = []
        unchanged: list[str] = []
        if poll.concurrency != self.poll.concurrency:
            # Loops holding a slot of the old bound release it there; new acquisitions use this one.
            self._slots = asyncio.Semaphore(poll.concurrency)
        if poll.max_answer != self.poll.max_answer:
            for running in self._loops.values():
                running.client.limits = read_limits(poll.max_answer)
        self.poll = poll
        for name in [r.name for r in self.state.records()]:
            if name not in new:
                await self._stop(name)
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
                self.state.update_settings(name, settings, announce=False)
                unchanged.append(name)
                continue
            if old.connection_key() != settings.connection_key() or old.enabled != settings.enabled:
                await self._stop(name)
                self.state.remove(name)
                await self._add(settings)
                reconnected.append(name)
            else:
                self.state.update_settings(name, settings)
                loop = self._loops.get(name)
                if loop is not None:
                    loop.schedule.interval = settings.interval
                updated.append(name)
        self.state.reorder(list(new))
        self._plan_connections()
        await self._clients.release_unused({h.url for h in new.values()}, tuple(new.values()))
        return ReconcileReport(
            tuple(added), tuple(removed), tuple(reconnected), tuple(updated), tuple(unchanged)
        )

    async def _stop(self, name: str) -> None:
        loop = self._loops.pop(name, None)
        if loop is not None:
            await loop.stop()
