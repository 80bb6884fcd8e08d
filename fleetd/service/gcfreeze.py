"""The cyclic garbage collector after start-up: what the first complete view built is frozen.

A full collection walks every object the collector tracks. With 1,000 hosts, start-up leaves about
350,000 of them (connections, watchers, tasks, the records' lists), and each full collection then
stops the event loop for about 250 ms (bench/RESULTS-query.md), every time enough new long-lived
objects have piled up: every API request waiting meanwhile answers that much later. Once every
enabled host had its first poll, one collection frees what start-up left behind and ``gc.freeze()``
moves the survivors to the permanent generation: later full collections walk only what was allocated
since. Frozen objects that die later are still freed by reference counting; only a reference cycle
among them would stay (at most what existed at the freeze, never more).

The collection waits ``settle`` seconds after the fleet became ready: it stops the loop for 0.2-0.5 s
with 1,000 hosts, and right at readiness it would hold back the first complete answer; meanwhile the
first round's follow-ups (image listings, event watchers subscribing) create the rest of start-up's
long-lived objects, which are frozen with it.
"""

from __future__ import annotations

import asyncio
import gc

import structlog

from fleetd.fleet.state import FleetState

__all__ = ["freeze_when_ready"]

log = structlog.get_logger("fleetd.service")


async def freeze_when_ready(state: FleetState, timeout: float | None = None, settle: float = 2.0) -> None:
    """Wait until the fleet is ready (at most ``timeout`` seconds) and ``settle`` seconds more, then
    collect and freeze."""
    if not await state.wait_ready(timeout):
        log.info("fleet not ready: start-up objects not frozen", timeout=timeout)
        return
    await asyncio.sleep(settle)
    gc.collect()
    gc.freeze()
    log.info("start-up objects frozen for the garbage collector", objects=gc.get_freeze_count())
