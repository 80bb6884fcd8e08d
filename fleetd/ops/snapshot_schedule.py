"""Periodic snapshots: every ``snapshots.interval``, counted from the last stored one.

A restart does not reset the period: the first snapshot is due one interval after the newest in the
database (at once when there is none or it is older than that), but never before the fleet finished its
first polls (``FleetState.wait_ready``, woken by the state's change signal), waiting at most one interval
for that. After each scheduled snapshot, retention is applied. The interval and retention are read from
the settings in force at each step: a reload (``config_changed``) wakes the schedule at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import Final

import structlog

from fleetd.config.model import SnapshotSettings
from fleetd.snapshot.model import SnapshotInfo, Trigger
from fleetd.store.retention import PruneResult, RetentionPolicy

__all__ = ["RECHECK", "run_schedule"]

log = structlog.get_logger("fleetd.snapshots")

RECHECK: Final = 3600.0  # longest sleep before the interval is read again without a reload signal


async def _sleep_or_changed(delay: float, changed: Callable[[], Awaitable[object]] | None) -> None:
    if changed is None:
        await asyncio.sleep(delay)
        return
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(delay):
            await changed()


async def run_schedule(
    *,
    settings: Callable[[], SnapshotSettings],
    take: Callable[[Trigger], Awaitable[SnapshotInfo]],
    prune: Callable[[RetentionPolicy], Awaitable[PruneResult]],
    last_taken_at: float | None,
    wait_ready: Callable[[float], Awaitable[bool]],
    config_changed: Callable[[], Awaitable[object]] | None = None,
    clock: Callable[[], float] = time.time,
) -> None:
    """Runs until cancelled; a failed snapshot or prune is logged and tried again next period."""
    loop = asyncio.get_running_loop()
    interval = settings().interval
    if last_taken_at is None:
        anchor = loop.time() - interval  # due now
    else:
        elapsed = min(max(clock() - last_taken_at, 0.0), interval)  # a clock set back: wait one interval
        anchor = loop.time() - elapsed
    while True:
        current = settings()
        delay = anchor + current.interval - loop.time()
        if delay > 0:
            await _sleep_or_changed(min(delay, RECHECK), config_changed)
            continue
        await wait_ready(current.interval)
        anchor = loop.time()
        try:
            await take(Trigger.SCHEDULE)
        except Exception:
            continue  # logged where it failed; the next period tries again
        try:
            await prune(RetentionPolicy.from_settings(current.keep))
        except Exception as exc:
            log.error("pruning snapshots failed", error=str(exc) or repr(exc))
