"""fleetd.store.snapshots and retention: dedup by content, reading back, paging, deleting, pruning."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import msgspec
import pytest

from fleetd.config.model import RetentionSettings
from fleetd.fleet.records import HostStatus
from fleetd.fleet.state import FleetState
from fleetd.snapshot.model import Trigger, build_snapshot, capture_fleet
from fleetd.store import Database, ListQuery, RetentionPolicy, SnapshotStore
from tests.unit.snapshotkit import NOW, Clock, add_host, container, fleet, repoll
from tests.writes import poll_failed, poll_ok


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SnapshotStore]:
    async with Database(tmp_path / "fleetd.db") as db:
        yield SnapshotStore(db)


def counts(db_path: Path) -> dict[str, int]:
    conn = sqlite3.connect(db_path)
    try:
        return {
            t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
            for t in ("snapshots", "host_versions", "snapshot_hosts")
        }
    finally:
        conn.close()


async def take(store: SnapshotStore, state: FleetState, trigger: Trigger = Trigger.SCHEDULE) -> int:
    return (await store.save(capture_fleet(state, trigger))).id


async def test_a_stored_snapshot_reads_back_equal_to_what_was_built(store: SnapshotStore) -> None:
    state = fleet(3, 4)
    add_host(state, "down1", [], status=HostStatus.DOWN, index=9, last_error="connection refused")
    capture = capture_fleet(state, Trigger.ON_DEMAND)
    info = await store.save(capture)
    loaded = await store.get(info.id)
    assert loaded is not None
    assert loaded == msgspec.structs.replace(build_snapshot(capture), id=info.id)
    assert info.counts.hosts == 4 and info.counts.containers == 12 and info.counts.hosts_failed == 1
    assert await store.get(info.id + 1) is None


async def test_an_unchanged_fleet_adds_only_one_row_per_host(store: SnapshotStore, tmp_path: Path) -> None:
    clock = Clock()
    state = fleet(20, 10, clock=clock)
    await take(store, state)
    assert counts(tmp_path / "fleetd.db") == {"snapshots": 1, "host_versions": 20, "snapshot_hosts": 20}
    for step in range(1, 6):
        clock.now = NOW + 60 * step
        repoll(state, now=clock.now)  # new observed_at, last_seen and "Up 4 hours" status text
        await take(store, state)
    assert counts(tmp_path / "fleetd.db") == {"snapshots": 6, "host_versions": 20, "snapshot_hosts": 120}
    latest = await store.get(6)
    assert latest is not None
    assert latest.hosts[0].last_seen == "2025-11-30T10:05:00Z"  # the volatile fields are per snapshot


async def test_a_change_on_one_host_stores_one_new_version(store: SnapshotStore, tmp_path: Path) -> None:
    state = fleet(10, 5)
    await take(store, state)
    record = state.get("host0003")
    assert record is not None
    rows = (
        msgspec.structs.replace(record.containers[0], state="exited", status="Exited (137) 2 seconds ago"),
        *record.containers[1:],
    )
    poll_ok(state, "host0003", rows, facts=record.facts)
    await take(store, state)
    assert counts(tmp_path / "fleetd.db")["host_versions"] == 11
    second = await store.get(2)
    assert second is not None
    changed = next(h for h in second.hosts if h.name == "host0003")
    assert changed.containers[0].state == "exited"
    assert changed.containers[0].status == "Exited (137)"


async def test_state_alone_does_not_make_a_new_version(store: SnapshotStore, tmp_path: Path) -> None:
    state = fleet(2, 3)
    await take(store, state)
    poll_failed(state, "host0001", "connection refused")
    await take(store, state)
    assert counts(tmp_path / "fleetd.db")["host_versions"] == 2
    second = await store.get(2)
    assert second is not None
    down = second.hosts[1]
    assert (down.state, down.stale, down.last_error) == (HostStatus.DOWN, True, "connection refused")
    assert len(down.containers) == 3  # the last known containers, kept


async def test_list_is_newest_first_with_paging_and_time_filters(store: SnapshotStore) -> None:
    clock = Clock()
    state = fleet(2, 1, clock=clock)
    for i in range(10):
        clock.now = NOW + 300 * i
        await take(store, state, Trigger.SCHEDULE if i % 2 else Trigger.ON_DEMAND)
    page = await store.list(ListQuery(limit=3))
    assert [s.id for s in page.items] == [10, 9, 8] and page.total == 10
    assert page.items[0].taken_at == "2025-11-30T10:45:00Z"
    assert page.items[0].trigger is Trigger.SCHEDULE and page.items[1].trigger is Trigger.ON_DEMAND
    assert [s.id for s in (await store.list(ListQuery(limit=3, offset=3))).items] == [7, 6, 5]
    assert [s.id for s in (await store.list(ListQuery(limit=3, before=5))).items] == [4, 3, 2]
    window = await store.list(ListQuery(since=NOW + 600, until=NOW + 1500))
    assert [s.id for s in window.items] == [5, 4, 3] and window.total == 3  # since inclusive, until not


async def test_delete_removes_versions_nothing_else_uses(store: SnapshotStore, tmp_path: Path) -> None:
    state = fleet(3, 2)
    await take(store, state)
    record = state.get("host0000")
    assert record is not None
    poll_ok(state, "host0000", (container("host0000", "extra-1"),), facts=record.facts)
    await take(store, state)
    assert counts(tmp_path / "fleetd.db")["host_versions"] == 4
    assert await store.delete(2)
    assert counts(tmp_path / "fleetd.db") == {"snapshots": 1, "host_versions": 3, "snapshot_hosts": 3}
    assert not await store.delete(2)
    assert await store.get(1) is not None
    assert await take(store, state) == 3  # ids are never reused


async def test_prune_by_count_and_age_keeps_the_newest(store: SnapshotStore, tmp_path: Path) -> None:
    clock = Clock()
    state = fleet(2, 2, clock=clock)
    for i in range(8):
        clock.now = NOW + 3600 * i
        await take(store, state)
    result = await store.prune(RetentionPolicy(last=5), now=clock.now)
    assert (result.deleted, result.remaining) == (3, 5)
    assert [s.id for s in (await store.list(ListQuery())).items] == [8, 7, 6, 5, 4]
    result = await store.prune(RetentionPolicy(max_age=2.5 * 3600), now=clock.now)
    assert [s.id for s in (await store.list(ListQuery())).items] == [8, 7, 6]
    # a long pause: age alone never removes the newest snapshot
    result = await store.prune(RetentionPolicy(max_age=3600), now=clock.now + 86400 * 365)
    assert [s.id for s in (await store.list(ListQuery())).items] == [8]
    assert counts(tmp_path / "fleetd.db")["host_versions"] == 2  # still in use by snapshot 8


async def test_on_demand_snapshots_never_push_scheduled_ones_out(store: SnapshotStore) -> None:
    clock = Clock()
    state = fleet(2, 2, clock=clock)
    scheduled = [await take(store, state) for _ in range(5)]
    on_demand = [await take(store, state, Trigger.ON_DEMAND) for _ in range(40)]  # a viewer's flood
    policy = RetentionPolicy.from_settings(RetentionSettings(last=5, on_demand=3))
    result = await store.prune(policy, now=clock.now)
    kept = [s.id for s in (await store.list(ListQuery(limit=100))).items]
    assert sorted(kept) == scheduled + on_demand[-3:]
    assert (result.deleted, result.remaining) == (37, 8)
    # an explicit prune (no on-demand count) still counts every snapshot, as before
    await store.prune(RetentionPolicy(last=2), now=clock.now)
    assert [s.id for s in (await store.list(ListQuery())).items] == on_demand[-2:][::-1]


async def test_pruning_hands_space_back(tmp_path: Path) -> None:
    path = tmp_path / "fleetd.db"
    async with Database(path) as db:
        store = SnapshotStore(db)
        clock = Clock()
        state = fleet(50, 20, clock=clock)
        for i in range(10):
            clock.now = NOW + i
            for r in state.records():  # every host changes every time: 50 new versions each
                rows = [msgspec.structs.replace(c, image=f"nginx:{i}") for c in r.containers]
                poll_ok(state, r.name, rows, facts=r.facts)
            await take(store, state)
        await db.run(lambda c: c.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall())
        big = path.stat().st_size
        await store.prune(RetentionPolicy(last=1), now=clock.now)
        await db.run(lambda c: c.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall())
        assert path.stat().st_size < big / 3
        assert await db.read(lambda c: c.execute("PRAGMA freelist_count").fetchone()[0]) == 0


async def test_latest_and_previous_ids(store: SnapshotStore) -> None:
    assert await store.latest_id() is None
    state = fleet(1, 1)
    for _ in range(3):
        await take(store, state)
    await store.delete(2)
    assert await store.latest_id() == 3
    assert await store.previous_id(3) == 1
    assert await store.previous_id(1) is None
