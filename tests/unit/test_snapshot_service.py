"""The snapshot service and schedule: writes in flight at shutdown, timing from the last snapshot."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from fleetd.config.model import RetentionSettings, SnapshotSettings
from fleetd.ops.snapshot_schedule import run_schedule
from fleetd.ops.snapshots import SnapshotService, SnapshotServiceClosed
from fleetd.snapshot.model import SnapshotCounts, SnapshotInfo, Trigger
from fleetd.store import Database, ListQuery, PruneResult, RetentionPolicy, SnapshotStore, StoreInterrupted
from tests.unit.snapshotkit import fleet


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    async with Database(tmp_path / "fleetd.db") as database:
        yield database


async def slow_down_writes(db: Database, seconds_per_host: float) -> None:
    """Every host row written sleeps inside SQLite, i.e. inside the snapshot's transaction."""

    def install(conn: sqlite3.Connection) -> None:
        conn.create_function("test_sleep", 1, time.sleep)
        conn.execute(
            "CREATE TEMP TRIGGER slow AFTER INSERT ON snapshot_hosts"
            f" BEGIN SELECT test_sleep({seconds_per_host}); END"
        )

    await db.run(install)


async def test_shutdown_waits_for_the_snapshot_being_written(db: Database) -> None:
    service = SnapshotService(fleet(40, 2), SnapshotStore(db))
    await slow_down_writes(db, 0.02)  # about 0.8 s for the snapshot
    taking = asyncio.ensure_future(service.take(Trigger.ON_DEMAND))
    await asyncio.sleep(0.1)
    assert service.inflight == 1
    taking.cancel()  # the request that asked for it goes away: the write goes on
    started = time.monotonic()
    await service.aclose(grace=10.0)
    assert 0.3 < time.monotonic() - started < 5
    page = await service.store.list(ListQuery())
    assert [s.counts.hosts for s in page.items] == [40]
    with pytest.raises(SnapshotServiceClosed):
        await service.take(Trigger.ON_DEMAND)


async def test_after_the_grace_period_the_write_is_rolled_back_not_half_stored(db: Database) -> None:
    service = SnapshotService(fleet(200, 1), SnapshotStore(db))
    await slow_down_writes(db, 0.05)  # 10 s: far longer than the grace period
    taking = asyncio.ensure_future(service.take(Trigger.ON_DEMAND))
    await asyncio.sleep(0.2)
    started = time.monotonic()
    await service.aclose(grace=0.3)
    assert time.monotonic() - started < 3
    with pytest.raises(StoreInterrupted, match="interrupted"):
        await taking
    counts = await db.read(
        lambda c: [c.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in ("snapshots", "snapshot_hosts")]
    )
    assert counts == [0, 0]
    await db.run(lambda c: c.execute("DROP TRIGGER temp.slow"))
    service2 = SnapshotService(fleet(2, 1), SnapshotStore(db))  # the database keeps working
    assert (await service2.take(Trigger.ON_DEMAND)).id == 1  # the rolled-back id was never handed out


class Recorder:
    def __init__(self) -> None:
        self.taken: list[float] = []
        self.pruned: list[RetentionPolicy] = []

    async def take(self, trigger: Trigger) -> SnapshotInfo:
        assert trigger is Trigger.SCHEDULE
        self.taken.append(time.monotonic())
        counts = SnapshotCounts(hosts=0, hosts_up=0, hosts_failed=0, hosts_stale=0, containers=0, running=0)
        return SnapshotInfo(id=len(self.taken), taken_at="", trigger=trigger, fleetd_version="", counts=counts)

    async def prune(self, policy: RetentionPolicy) -> PruneResult:
        self.pruned.append(policy)
        return PruneResult()


async def _ready(ready: bool, limit: float) -> bool:
    if not ready:
        await asyncio.sleep(limit)  # FleetState.wait_ready gives up after ``limit`` seconds
    return ready


async def schedule_for(
    seconds: float,
    *,
    interval: float,
    last_taken_at: float | None,
    ready: bool = True,
) -> tuple[Recorder, float]:
    rec = Recorder()
    snapshots = SnapshotSettings(interval=interval, keep=RetentionSettings(last=7, max_age=60.0))
    started = time.monotonic()
    task = asyncio.ensure_future(
        run_schedule(
            settings=lambda: snapshots,
            take=rec.take,
            prune=rec.prune,
            last_taken_at=last_taken_at,
            wait_ready=lambda limit: _ready(ready, limit),
        )
    )
    await asyncio.sleep(seconds)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    return rec, started


async def test_the_first_snapshot_is_due_one_interval_after_the_last_stored_one() -> None:
    rec, started = await schedule_for(1.1, interval=0.6, last_taken_at=time.time() - 0.3)
    assert len(rec.taken) == 2
    assert 0.2 < rec.taken[0] - started < 0.55  # 0.3 s left of the interval
    assert 0.5 < rec.taken[1] - rec.taken[0] < 0.85
    assert rec.pruned == [RetentionPolicy(last=7, max_age=60.0, on_demand=100)] * 2


async def test_without_any_snapshot_one_is_taken_at_once() -> None:
    rec, started = await schedule_for(0.2, interval=3600, last_taken_at=None)
    assert len(rec.taken) == 1 and rec.taken[0] - started < 0.1


async def test_a_recent_snapshot_defers_the_first() -> None:
    rec, _ = await schedule_for(0.3, interval=3600, last_taken_at=time.time() - 60)
    assert rec.taken == []


async def test_the_schedule_waits_for_the_fleet_but_not_forever() -> None:
    rec, started = await schedule_for(1.6, interval=1.0, last_taken_at=None, ready=False)
    assert len(rec.taken) == 1
    assert 0.9 < rec.taken[0] - started < 1.45  # gave up waiting for readiness after one interval
