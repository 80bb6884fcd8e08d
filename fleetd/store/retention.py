"""Retention of snapshots: by count and by age, deleted in short transactions.

Deleting a snapshot removes its ``snapshot_hosts`` rows, then every host version that no remaining
snapshot uses. Each batch is its own transaction on the writer thread, so a large prune lets other
writes (a scheduled snapshot, the audit log) in between, and readers, on their own WAL connection,
never wait at all. Freed pages are handed back to the file system afterwards
(``auto_vacuum=INCREMENTAL``), a bounded number of pages per step.

The newest snapshot is never deleted by age, so ``/snapshots/latest`` keeps answering after a long
pause in polling; it can still be deleted explicitly.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass

from fleetd.config.model import RetentionSettings
from fleetd.store.db import Database, transaction

__all__ = ["PruneResult", "RetentionPolicy", "delete_snapshots", "expired_ids", "prune", "reclaim_space"]

BATCH = 100  # snapshots per transaction
_ON_DEMAND = "on-demand"  # snapshots.trigger of POST /api/v1/snapshots (Trigger.ON_DEMAND)
VACUUM_PAGES = 2048  # pages freed per incremental_vacuum step (8 MiB at 4 KiB pages)


@dataclass(frozen=True, slots=True)
class RetentionPolicy:
    last: int | None = None  # keep at most this many (the newest)
    max_age: float | None = None  # seconds; older snapshots go (except the newest)
    # None: ``last`` counts every snapshot (an explicit prune). A number: ``last`` counts only the
    # scheduled ones and at most this many on-demand ones are kept, so those never push out the schedule.
    on_demand: int | None = None

    @classmethod
    def from_settings(cls, keep: RetentionSettings) -> RetentionPolicy:
        return cls(last=keep.last, max_age=keep.max_age, on_demand=keep.on_demand)


@dataclass(frozen=True, slots=True)
class PruneResult:
    deleted: int = 0  # snapshots
    versions_deleted: int = 0  # host versions no snapshot used any more
    remaining: int = 0  # snapshots left


def expired_ids(conn: sqlite3.Connection, policy: RetentionPolicy, now: float) -> list[int]:
    """Ids the policy removes, oldest first."""
    doomed: set[int] = set()
    if policy.last is not None and policy.on_demand is None:
        doomed.update(
            r[0]
            for r in conn.execute(
                "SELECT id FROM snapshots ORDER BY id DESC LIMIT -1 OFFSET ?", (max(0, policy.last),)
            )
        )
    elif policy.on_demand is not None:
        for keep, clause in ((policy.last, "trigger != ?"), (policy.on_demand, "trigger = ?")):
            if keep is None:
                continue
            doomed.update(
                r[0]
                for r in conn.execute(
                    f"SELECT id FROM snapshots WHERE {clause} ORDER BY id DESC LIMIT -1 OFFSET ?",
                    (_ON_DEMAND, max(0, keep)),
                )
            )
    if policy.max_age is not None:
        doomed.update(
            r[0]
            for r in conn.execute(
                "SELECT id FROM snapshots WHERE taken_at < ? AND id < (SELECT max(id) FROM snapshots)",
                (now - policy.max_age,),
            )
        )
    return sorted(doomed)


def _delete_batch(conn: sqlite3.Connection, ids: Sequence[int]) -> tuple[int, int]:
    marks = ",".join("?" * len(ids))
    with transaction(conn):
        candidates = [
            r[0]
            for r in conn.execute(
                f"SELECT DISTINCT version_id FROM snapshot_hosts WHERE snapshot_id IN ({marks})", ids
            )
        ]
        conn.execute(f"DELETE FROM snapshot_hosts WHERE snapshot_id IN ({marks})", ids)
        deleted = conn.execute(f"DELETE FROM snapshots WHERE id IN ({marks})", ids).rowcount
        versions = 0
        for i in range(0, len(candidates), 500):
            chunk = candidates[i : i + 500]
            vmarks = ",".join("?" * len(chunk))
            versions += conn.execute(
                f"DELETE FROM host_versions WHERE id IN ({vmarks}) AND NOT EXISTS"
                " (SELECT 1 FROM snapshot_hosts WHERE version_id = host_versions.id)",
                chunk,
            ).rowcount
    return deleted, versions


def _count(conn: sqlite3.Connection) -> int:
    return int(conn.execute("SELECT count(*) FROM snapshots").fetchone()[0])


def _vacuum_step(conn: sqlite3.Connection, pages: int) -> int:
    """Free up to ``pages`` pages; returns how many free pages are left."""
    conn.execute(f"PRAGMA incremental_vacuum({int(pages)})").fetchall()
    return int(conn.execute("PRAGMA freelist_count").fetchone()[0])


async def reclaim_space(db: Database, *, pages: int = VACUUM_PAGES) -> None:
    """Return free pages to the file system, a step at a time (other writes run in between)."""
    left = await db.run(_vacuum_step, pages)
    while left > 0:
        before, left = left, await db.run(_vacuum_step, pages)
        if left >= before:  # auto_vacuum is off for this file: nothing more to gain
            break


async def delete_snapshots(db: Database, ids: Sequence[int], *, batch: int = BATCH) -> PruneResult:
    deleted = versions = 0
    for i in range(0, len(ids), batch):
        d, v = await db.run(_delete_batch, list(ids[i : i + batch]))
        deleted += d
        versions += v
    if deleted:
        await reclaim_space(db)
    return PruneResult(deleted=deleted, versions_deleted=versions, remaining=await db.run(_count))


async def prune(db: Database, policy: RetentionPolicy, now: float, *, batch: int = BATCH) -> PruneResult:
    ids = await db.run(expired_ids, policy, now)
    return await delete_snapshots(db, ids, batch=batch)
