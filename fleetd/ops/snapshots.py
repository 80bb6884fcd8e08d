"""The snapshot service: takes snapshots (on demand and on schedule) and owns the writes in flight.

    service = SnapshotService(state, SnapshotStore(db))
    info = await service.take(Trigger.ON_DEMAND)    # capture in the loop, build + write in the db thread
    service.start_schedule(settings=lambda: live.current.snapshots, last_taken_at=None)
    ...
    await service.aclose(grace=10.0)                # waits for a write in progress, at most ``grace``

A write runs as a task of its own, shielded from its caller: a request that is cancelled (client gone,
server stopping) does not abandon a half-taken snapshot. :meth:`aclose` waits for those tasks, and
only when the grace period is over interrupts the statement running on the writer, which rolls the
snapshot back: it is then not stored at all, never half.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import structlog

from fleetd.config.model import SnapshotSettings
from fleetd.fleet.state import FleetState
from fleetd.ops.snapshot_schedule import run_schedule
from fleetd.snapshot.model import FleetCapture, SnapshotInfo, Trigger, capture_fleet
from fleetd.store.retention import PruneResult, RetentionPolicy
from fleetd.store.snapshots import SnapshotStore
from fleetd.util.ratelimit import ClientBuckets
from fleetd.util.tasks import InflightTasks

__all__ = ["SnapshotService", "SnapshotServiceClosed"]

log = structlog.get_logger("fleetd.snapshots")

INTERRUPTED_WAIT = 5.0  # after interrupting the writer, how long to wait for it to give up


class SnapshotServiceClosed(RuntimeError):
    def __init__(self) -> None:
        super().__init__("fleetd is shutting down: no new snapshots are taken")


class SnapshotService:
    def __init__(self, state: FleetState, store: SnapshotStore, *, enabled: bool = True) -> None:
        self.state = state
        self.store = store
        self.enabled = enabled
        self._inflight: InflightTasks[SnapshotInfo] = InflightTasks()
        self._schedule: asyncio.Task[None] | None = None
        self._closing = False
        # On-demand snapshots by callers below operator: 10 at once, then one a minute each, so a
        # viewer cannot fill the disk or the writer (retention counts them apart from the schedule).
        self.on_demand_budget = ClientBuckets(burst=10, per_minute=1.0)

    def on_demand_wait(self, caller: str) -> float | None:
        """Seconds ``caller`` must wait before its next on-demand snapshot; None: go (and spent)."""
        wait = self.on_demand_budget.retry_after(caller)
        if wait is None:
            self.on_demand_budget.spend(caller)
        return wait

    @property
    def inflight(self) -> int:
        return len(self._inflight)

    async def take(self, trigger: Trigger) -> SnapshotInfo:
        if self._closing:
            raise SnapshotServiceClosed()
        started = time.perf_counter()
        capture = capture_fleet(self.state, trigger)  # synchronous: a consistent point in time
        in_loop = time.perf_counter() - started
        return await asyncio.shield(self._inflight.start(self._write(capture, in_loop)))

    async def _write(self, capture: FleetCapture, in_loop: float) -> SnapshotInfo:
        started = time.monotonic()
        try:
            info = await self.store.save(capture)
        except Exception as exc:
            log.error("snapshot not stored", trigger=capture.trigger.value, error=str(exc) or repr(exc))
            raise
        log.info(
            "snapshot stored",
            id=info.id,
            trigger=capture.trigger.value,
            hosts=info.counts.hosts,
            containers=info.counts.containers,
            seconds=round(time.monotonic() - started, 3),
            capture_ms=round(in_loop * 1000, 2),  # the part that ran in the event loop
        )
        return info

    async def prune(self, policy: RetentionPolicy) -> PruneResult:
        result = await self.store.prune(policy, self.state.clock())  # the clock taken_at comes from
        if result.deleted:
            log.info(
                "snapshots pruned",
                deleted=result.deleted,
                versions_deleted=result.versions_deleted,
                remaining=result.remaining,
            )
        return result

    def start_schedule(
        self,
        *,
        settings: Callable[[], SnapshotSettings],
        last_taken_at: float | None,
        config_changed: Callable[[], Awaitable[object]] | None = None,
    ) -> None:
        if self._schedule is not None:
            raise RuntimeError("the snapshot schedule is already running")
        self._schedule = asyncio.get_running_loop().create_task(
            run_schedule(
                settings=settings,
                take=self.take,
                prune=self.prune,
                last_taken_at=last_taken_at,
                wait_ready=self.state.wait_ready,
                config_changed=config_changed,
                clock=self.state.clock,
            ),
            name="snapshot-schedule",
        )

    async def aclose(self, grace: float) -> None:
        """Stop the schedule, wait up to ``grace`` for writes in flight; safe to call twice."""
        self._closing = True
        if self._schedule is not None:
            self._schedule.cancel()
            await asyncio.gather(self._schedule, return_exceptions=True)
        if not self._inflight:
            return
        log.info("waiting for the snapshot being written", grace=grace)
        try:
            still = await self._inflight.wait(grace)
        except asyncio.CancelledError:
            self.store.db.interrupt()  # shutdown ran out of time elsewhere: roll the write back
            raise
        if still:
            log.warning("snapshot not finished within the grace period: rolled back, not stored", grace=grace)
            self.store.db.interrupt()
            await asyncio.wait(still, timeout=INTERRUPTED_WAIT)
