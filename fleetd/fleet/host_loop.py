"""One host's polling loop: wait for its turn (schedule or wake-up), fetch, hand the result to the state.

There is one loop per enabled host, so never more than one poll in flight per host. A loop waits for
a slot of the poller's shared semaphore before it sends anything, so request timeouts measure the
daemon, not the queue. Actions bump ``epoch``: a poll that started before an action is discarded, not
applied, so the action's effect cannot be overwritten by older data.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

import structlog

from fleetd.dockerapi import DockerClient, DockerError
from fleetd.fleet.builder import ContainerRecords
from fleetd.fleet.fetch import Answer, Failed, fetch, fetch_kept, fetch_lean
from fleetd.fleet.first_round import FirstRound
from fleetd.fleet.lean_poll import Begun, LeanPoll
from fleetd.fleet.records import (
    ContainerDiff,
    ContainerRecord,
    EngineFacts,
    HostRecord,
    HostStatus,
    image_record,
)
from fleetd.fleet.safety_net import SafetyNet
from fleetd.fleet.schedule import Schedule
from fleetd.fleet.state import FleetState, PollFailure, PollSuccess
from fleetd.util.grid import grid_tick, next_point
from fleetd.util.timefmt import rfc3339
from fleetd.util.wakeup import Wakeup

__all__ = ["HostLoop", "PollObserver"]

log = structlog.get_logger("fleetd.poller")
T = TypeVar("T")


class PollObserver(Protocol):
    def observe_poll(self, host: str, seconds: float, ok: bool) -> None: ...


@dataclass(slots=True, eq=False)
class HostLoop:
    state: FleetState
    record: HostRecord
    client: DockerClient
    schedule: Schedule
    slots: Callable[[], asyncio.Semaphore]  # the poller's current bound (replaced on reload)
    observer: PollObserver
    images_every: Callable[[], int]
    one_connection: Callable[[], bool] = lambda: False  # the poller's connection plan
    first_round: FirstRound | None = None  # the poller's "every first poll ended" (image listings wait)
    on_due: Callable[[HostLoop, float], None] | None = None  # told each next due time (the overdue watch)
    net: Callable[[], SafetyNet | None] = lambda: None  # the host's event watcher, when it has one
    info_wanted: bool = False  # the next poll asks /info even when the event stream would allow a lean one
    images_phase: int = 0  # with events on: which of every images_every polls is a full one
    wake: Wakeup = field(default_factory=Wakeup)
    epoch: int = 0  # bumped by every action; a poll started in an older epoch is discarded
    waiters: list[asyncio.Future[None]] = field(default_factory=list)
    task: asyncio.Task[None] | None = None
    images_wanted: bool = False  # an image action happened: list images on the next poll
    containers: ContainerRecords = field(default_factory=ContainerRecords)
    due_at: float | None = None  # loop time the next poll is due; None while one is under way
    overdue: bool = False  # reported late once; cleared when the poll starts
    round_woke: bool = False  # the wake-up was set only to end the wait for the first round
    timer: asyncio.TimerHandle | None = None  # the next poll's, armed while the task waits
    lean_poll: LeanPoll | None = None  # a lean poll by callback under way (fleet/lean_poll.py)

    @property
    def name(self) -> str:
        return self.record.name

    def start(self) -> None:
        self.task = asyncio.create_task(self.run(), name=f"poll:{self.name}")

    async def stop(self) -> None:
        """Cancel the loop and wait for it; callers waiting for a refresh are cancelled too."""
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
        self._disarm()
        await self.client.aclose()  # cancels a pending version negotiation; pools are shared
        for fut in self.waiters:
            if not fut.done():
                fut.cancel()

    async def refresh(self, *, images: bool = False) -> None:
        """Poll now; a poll already in flight is discarded. Returns when that poll is done."""
        self.images_wanted = self.images_wanted or images
        self.epoch += 1
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.waiters.append(fut)
        self.wake.set()
        await asyncio.shield(fut)

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        structlog.contextvars.bind_contextvars(host=self.name)
        while True:
            waiters, self.waiters = self.waiters, []
            self.wake.clear()
            async with self.slots():
                await self.poll()
            record = self.record
            if (
                record.images is None
                and record.status is HostStatus.UP
                and not self.images_wanted
                and await self._after_first_round()
            ):
                async with self.slots():
                    await self.list_images()
            for fut in waiters:
                if not fut.done():
                    fut.set_result(None)
            if self.waiters:
                continue  # an action arrived during the poll: poll again at once
            regular_due = self.schedule.due
            if waiters and regular_due is not None and not self.record.consecutive_failures:
                # An extra poll for an action: the regular schedule stays where it was, so actions
                # can never push a host's next regular poll back (and leave it silently stale).
                due = regular_due
            else:
                due = self.schedule.next_due(loop.time(), self.record.consecutive_failures)
            self._arm(due)
            try:
                await self.wake.wait()
            finally:
                self._disarm()

    # -- the timer, and lean polls by callback --------------------------------------------------

    def _arm(self, due: float) -> None:
        """The next poll is due at loop time ``due``, put off to the next tick of the host's poll grid
        (fleetd/util/grid.py): hosts due within one tick poll in one turn of the loop, their requests
        sent together, as the liveness pings are (fleet/liveness.py), rather than each waking the
        loop, and the daemons, alone. A timer rather than asyncio.timeout: no exception and no
        reference cycle per poll for the garbage collector to clean up."""
        due = next_point(due, grid_tick(self.record.settings.interval))
        self.due_at = due
        if self.on_due is not None:
            self.on_due(self, due)
        self.timer = asyncio.get_running_loop().call_at(due, self._due)

    def _disarm(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.lean_poll is not None:
            self.lean_poll.abandon()

    def _due(self) -> None:
        """The timer: a lean poll goes out by callback when it can (fleet/lean_poll.py), else the task polls."""
        self.timer = None
        if self.wake.is_set() or not self._send_lean():
            self.wake.set()

    def _send_lean(self) -> bool:
        if self.waiters or self.record.images is None or self.slots().locked():
            return False  # an action to answer, images to list, or polls queue for slots: the task's
        net, _want_images, _healthy, lean = self._plan()
        if not lean or net is None:
            return False
        begun = self._begin()
        poll = LeanPoll(self, net, begun, self.record.settings.timeout, self.client.url)
        self.lean_poll = poll
        if not poll.send():
            self.lean_poll = None
            return False
        return True

    def polled_by_callback(self) -> None:
        """A lean poll by callback was applied: the next one is due as after any poll."""
        loop = asyncio.get_running_loop()
        self._arm(self.schedule.next_due(loop.time(), self.record.consecutive_failures))

    def hand_to_task(self) -> None:
        self.wake.set()

    async def _after_first_round(self) -> bool:
        """Image listings wait until every host's first poll has ended, so they never compete with
        the start-up burst (the complete view comes sooner). An action's wake-up ends the wait
        early: False, and the images are listed after a later poll."""
        ready = self.first_round
        if ready is None or ready.is_set():
            return True
        if self.state.first_round_done():
            ready.set()
            return True
        ready.waiting.add(self)
        try:
            await self.wake.wait()
        finally:
            ready.waiting.discard(self)
        if self.round_woke:  # not a reason to poll again
            self.round_woke = False
            self.wake.clear()
        return ready.is_set()

    def end_of_round(self) -> None:
        """Every first poll has ended: end this loop's wait for it (see :class:`FirstRound`)."""
        if not self.wake.is_set():
            self.round_woke = True
            self.wake.set()

    async def list_images(self) -> None:
        """Images alone, once, after a host's first successful poll."""
        try:
            images = await self.client.images.list()
        except DockerError as exc:
            self.images_wanted = True  # the next regular poll lists them, and judges a failure
            log.debug("image listing deferred", host=self.name, error=str(exc))
            return
        self.state.set_images(self.name, tuple(image_record(i) for i in images), time.time())

    def check_overdue(self, now: float) -> None:
        """Log once, and count, when the poll due at ``due_at`` has not started ``timeout`` + 1 s later."""
        due = self.due_at
        if due is None or self.overdue or now <= due + self.record.settings.timeout + 1.0:
            return
        self.overdue = True
        self.state.poll_overdue(self.name)
        log.warning(
            "poll overdue",
            host=self.name,
            late_seconds=round(now - due, 1),
            interval=self.record.settings.interval,
            timeout=self.record.settings.timeout,
        )

    async def poll(self) -> None:
        net, want_images, healthy, lean = self._plan()
        begun = self._begin()
        timeout = self.record.settings.timeout
        name = self.name
        if lean and net is not None:
            got = await fetch_lean(self.client, net, name, timeout=timeout)
        elif healthy and net is not None:  # /info and images too, on the watcher's kept connection
            self.info_wanted = False
            got = await fetch_kept(self.client, net, name, images=want_images, timeout=timeout)
        else:
            self.info_wanted = False
            got = await fetch(self.client, name, images=want_images, one_connection=self.one_connection())
        self.complete(got, begun, net)

    def _plan(self) -> tuple[SafetyNet | None, bool, bool, bool]:
        """The next poll's (watcher, list images?, stream healthy?, lean?)."""
        record = self.record
        polls = record.polls
        net = self.net()
        # The first poll leaves images out so the complete view comes sooner; run() lists
        # them right after it, queued behind every other host's first poll.
        # A watched host's full polls (images and /info) come on its own phase of images_every, so
        # hosts started together do not all ask on the same round of polls.
        phase = self.images_phase if net is not None else 0
        want_images = self.images_wanted or (polls > 0 and (polls + phase) % max(1, self.images_every()) == 0)
        healthy = (  # the event stream is live and synced: the poll is the safety net
            net is not None
            and record.facts is not None
            and record.info_raw is not None
            and record.status is HostStatus.UP
            and net.lean()
        )
        return net, want_images, healthy, healthy and not want_images and not self.info_wanted

    def _begin(self) -> Begun:
        if self.overdue:
            log.info("poll on time again", host=self.name)
        self.due_at = None
        self.overdue = False
        name = self.name
        started = time.monotonic()
        self.state.poll_started(name, time.time())
        stamp = self.state.next_stamp(name)  # rows written by newer event refreshes win over this poll
        return Begun(self.epoch, started, stamp, asyncio.get_running_loop().time())

    def complete(self, got: Answer | Failed, begun: Begun, net: SafetyNet | None) -> None:
        """Apply what a poll sent at ``begun`` got (the task's or a lean poll's by callback)."""
        name = self.name
        duration = time.monotonic() - begun.started
        if begun.epoch != self.epoch:
            self.state.poll_done(name, duration, None)  # an action happened meanwhile; polled again next
            return
        now = time.time()
        built: tuple[tuple[ContainerRecord, ...], ContainerDiff] | None = None
        if isinstance(got, Answer):
            try:  # only what changed since the last poll is decoded
                built = self.containers.build_body(name, got.containers, rfc3339(now), self._decode)
            except DockerError as exc:  # invalid JSON or the wrong shape: an unusable answer
                got = Failed(HostStatus.ERROR, str(exc))
        self.observer.observe_poll(name, duration, not isinstance(got, Failed))
        if isinstance(got, Failed):
            self._failed(got, duration)
        elif built is not None:
            self._answered(got, built, now, duration, begun.stamp, begun.sent_at)
            if net is not None:
                net.answered()
        if self.first_round is not None and not self.first_round.is_set() and self.state.first_round_done():
            self.first_round.set()

    def _decode(self, body: bytes, type_: type[T]) -> T:
        return self.client.decode(body, type_, "GET", "/containers/json")

    def _answered(
        self,
        got: Answer,
        built: tuple[tuple[ContainerRecord, ...], ContainerDiff],
        now: float,
        duration: float,
        stamp: int = 0,
        sent_at: float = 0.0,
    ) -> None:
        name = self.name
        if got.images is not None:
            self.images_wanted = False
        records, diff = built
        api_version = self.client.api_version
        record = self.record
        if got.info is not None and got.info_raw is not None:
            facts = EngineFacts.from_info(got.info, api_version or "", volatile_id=self.client.is_podman)
            info_raw = got.info_raw
        else:  # a lean poll: the facts of the last /info stay (see fleet/safety_net.py)
            assert record.facts is not None and record.info_raw is not None  # a lean poll needs them
            facts, info_raw = record.facts, record.info_raw
        result = PollSuccess(
            at=now,
            facts=facts,
            info_raw=info_raw,
            containers=records,
            diff=diff,
            images=tuple(image_record(i) for i in got.images) if got.images is not None else None,
            stamp=stamp,
            sent_at=sent_at,
        )
        failures = self.record.consecutive_failures
        previous = self.state.poll_done(name, duration, result)
        first_round = self.first_round
        if previous is HostStatus.UNKNOWN and first_round is not None and not first_round.is_set():
            first_round.host_up(facts.server_version)  # one line for the round: FirstRound
        elif previous is HostStatus.UNKNOWN:
            log.info(
                "host up",
                host=name,
                server_version=facts.server_version,
                api_version=api_version,
                containers=len(records),
            )
        elif previous is not HostStatus.UP:
            log.info("host recovered", host=name, was=previous.value, after_failures=failures)

    def _failed(self, got: Failed, duration: float) -> None:
        if got.status is HostStatus.DOWN:
            self.client.forget_version()  # it may come back as a different daemon version
        previous = self.state.poll_done(name := self.name, duration, PollFailure(time.time(), got.status, got.message))
        first_round = self.first_round
        if previous is HostStatus.UNKNOWN and first_round is not None and not first_round.is_set():
            first_round.failed[got.status.value] += 1
        if previous is not got.status:
            log.warning(f"host {got.status.value}", host=name, was=previous.value, error=got.message)


def new_schedule(interval: float, jitter: float, max_backoff: float, rng: random.Random) -> Schedule:
    """Every host's schedule draws from the poller's one generator (a ``random.Random`` of its own
    per host was 2.5 KiB of Mersenne Twister state each)."""
    return Schedule(interval, jitter, max_backoff, rng)
