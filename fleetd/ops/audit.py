"""The audit trail of mutating calls: one structlog event and one database row per call.

:class:`Auditor` writes entries (the log always, the ``audit`` table when fleetd has a database)
and keeps the in-flight calls, so shutdown can let them finish and be audited within the grace
period instead of abandoning them half-done.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

import structlog

from fleetd.store.audit import (
    AuditEntry,
    AuditQuery,
    SqlRunner,
    insert_entry,
    prune_entries,
    query_entries,
)
from fleetd.util.ratelimit import ClientBuckets
from fleetd.util.tasks import InflightTasks, every

__all__ = ["AuditRetention", "AuditUnavailable", "Auditor"]

log = structlog.get_logger("fleetd.audit")

T = TypeVar("T")


class AuditUnavailable(Exception):
    """fleetd runs without a database: the audit trail exists only in the log."""


@dataclass(frozen=True, slots=True)
class AuditRetention:
    max_age: float = 365 * 86400.0
    keep_last: int = 1_000_000
    every: float = 3600.0  # how often old entries are pruned


class Auditor:
    def __init__(
        self,
        database: SqlRunner | None = None,
        *,
        retention: AuditRetention | None = None,
        denied_budget: ClientBuckets | None = None,
    ) -> None:
        self.database = database  # attached at start-up when snapshots.enabled (the shared database)
        self.retention = retention or AuditRetention()
        # Refused calls cost the caller nothing, so they get a budget per address: a flood of them
        # is counted, not stored row by row.
        self.denied_budget = denied_budget if denied_budget is not None else ClientBuckets(burst=60, per_minute=60.0)
        # ... and all addresses together another, so a flood from many addresses is bounded too.
        self.denied_total = ClientBuckets(burst=120, per_minute=120.0, max_clients=1)
        self.suppressed = 0  # refused calls not stored, since start
        self._unstored = 0  # ... since the last stored note saying how many
        self._inflight: InflightTasks[Any] = InflightTasks()

    # -- entries -----------------------------------------------------------------------------

    async def record(self, entry: AuditEntry) -> None:
        """Log the entry and store it; a storage failure is logged, never raised (the call happened)."""
        log.info(
            "audit",
            actor=entry.actor,
            role=entry.role,
            action=entry.action,
            method=entry.method,
            path=entry.path,
            targets=[f"{t.host}/{t.name or t.id}" if (t.name or t.id) else t.host for t in entry.targets],
            outcome=entry.outcome,
            status=entry.status,
            client=entry.client,
        )
        db = self.database
        if db is None:
            return
        try:
            await db.run(insert_entry, entry)
        except Exception as exc:  # the database is full, locked, gone: the log still has it
            log.error("audit entry not stored", action=entry.action, error=str(exc))

    def admit_denied(self, client: str) -> bool:
        """Whether a refused call from ``client`` is recorded (False once its budget, or the budget of
        every address together, is spent). The first call stored after a gap is preceded by an entry
        ``audit.not_stored`` saying how many were left out."""
        if self.denied_budget.retry_after(client) is not None or self.denied_total.retry_after("*") is not None:
            self.suppressed += 1
            self._unstored += 1
            return False
        if self.denied_budget.spend(client):
            log.warning("too many refused calls; recording no more of them for a while", client=client)
        if self.denied_total.spend("*"):
            log.warning("too many refused calls from all clients; recording no more of them for a while")
        if self._unstored:
            gap, self._unstored = self._unstored, 0
            log.warning("refused calls not stored in the audit log", count=gap)
            note = AuditEntry(
                ts=time.time(),
                actor="fleetd",
                role=None,
                action="audit.not_stored",
                method=None,
                path=None,
                targets=[],
                outcome="denied",
                status=None,
                detail={"not_stored": gap, "reason": "refused calls over the audit budget"},
                client=None,
            )
            self.start(self.record(note))
        return True

    async def query(self, q: AuditQuery) -> tuple[list[AuditEntry], int]:
        db = self.database
        if db is None:
            raise AuditUnavailable(
                "the audit log is not stored: fleetd runs without a database (snapshots.enabled is "
                "false), so audit events go to fleetd's log only"
            )
        return await db.read(query_entries, q)

    async def prune(self, now: float | None = None) -> int:
        db = self.database
        if db is None:
            return 0
        now = time.time() if now is None else now
        r = self.retention
        deleted = await db.run(prune_entries, now - r.max_age, r.keep_last)
        if deleted:
            log.info("audit entries pruned", deleted=deleted)
        return deleted

    async def prune_forever(self) -> None:
        await every(lambda: self.retention.every, self.prune, what="pruning the audit log", logger_name="fleetd.audit")

    # -- in-flight calls -----------------------------------------------------------------------

    def start(self, coro: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
        """Run ``coro`` as a task that outlives its request's cancellation until :meth:`drain`."""
        return self._inflight.start(coro)

    @property
    def inflight(self) -> int:
        return len(self._inflight)

    async def drain(self, grace: float) -> int:
        """Wait up to ``grace`` seconds for in-flight calls, then cancel the rest; returns how many."""
        if self._inflight:
            log.info("waiting for in-flight operations", count=len(self._inflight), grace=grace)
            still = await self._inflight.wait(grace)
            for task in still:
                task.cancel()
            if still:
                log.warning("in-flight operations cancelled at shutdown", count=len(still))
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(2.0):  # let them audit their cancellation
                        await asyncio.gather(*still, return_exceptions=True)
            return len(still)
        return 0
