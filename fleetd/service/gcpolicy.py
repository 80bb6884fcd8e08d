"""The cyclic garbage collector, paced by fleetd once the fleet is up (``gc:`` in the config).

Why: at 10,000 hosts CPython's automatic collector stopped the event loop for 20-180 ms several
times a minute (young passes) and 100-880 ms now and then (middle and full passes), while the
cyclic garbage fleetd makes is about one object per poll (bench/RESULTS-scale.md): nearly all of a
pass's work is walking objects that are alive. Each poll keeps a few dozen tracked objects until
the host's next poll (the kept connection's parser and stream, timers, header tuples); they die by
reference counting, but having lived longer than a young pass they are promoted and walked again by
every older pass. And the automatic trigger counts allocations *minus* deallocations: with every
poll's objects replacing the previous poll's, the count hardly grows, so the young generation piles
up for seconds (25,000-200,000 objects) before a pass walks it.

What this part does (:class:`CollectorPolicy`, started by the service runner):

* Start-up: CPython's automatic collector (threshold 10,000, set by the runner) until the fleet is
  ready; ``settle`` seconds later one full collection frees what start-up left behind and
  ``gc.freeze()`` moves the survivors to the permanent generation.
* Then, with ``young_every`` > 0: automatic collection off; every ``young_every`` seconds a young
  collection (``gc.collect(0)``) walks what was allocated since the last one and is still alive,
  and its survivors are frozen at once. A pass's length is bounded by that period's allocations
  (at 10,000 hosts, half a second of polls: 10-35 ms), and no object is walked twice: there are no middle or full
  passes over the live heap. With ``young_every: 0`` CPython's automatic collector runs as it would
  (only start-up's objects frozen).
* Every ``full_every`` seconds (and not at all with 0): ``gc.unfreeze()``, a full collection and
  ``gc.freeze()`` again. Frozen objects are freed by reference counting like any other; only a
  reference cycle among objects that died frozen waits for this collection. It walks the whole heap
  (about 1 s at 10,000 hosts) and logs how many unreachable objects it found: that count is how much
  the freezing held back (``fleetd_gc_frozen_garbage_objects_total``).
* The same full collection also runs early when the process's resident memory has grown by
  :data:`GROWTH` (and at least :data:`GROWTH_MIN` bytes) since the last one: cycles hidden among frozen
  objects (a timed-out request leaves ~80, measured) can then never cost more than that share of
  memory, however many hosts hang. Read from ``/proc/self/statm`` after each young pass (a few µs);
  where it is missing, only the period applies.

Every collection pass (automatic or not) is timed by a ``gc.callbacks`` hook into plain counters,
exported at scrape time as ``fleetd_gc_pause_seconds`` (histogram by generation) and
``fleetd_gc_collected_objects_total``; no lock is taken inside the hook.
"""

from __future__ import annotations

import asyncio
import gc
import os
import time
from collections.abc import Callable, Iterable
from typing import Any

import structlog
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from fleetd.config.gc import GcSettings
from fleetd.config.model import Settings
from fleetd.fleet.state import FleetState
from fleetd.util.wakeup import Wakeup

__all__ = ["GROWTH", "GROWTH_MIN", "CollectorPolicy", "GcPauses", "resident_bytes"]

log = structlog.get_logger("fleetd.service")

GROWTH = 0.25  # a full collection once resident memory grew by this share since the last one ...
GROWTH_MIN = 32 * 1024 * 1024  # ... and by at least this much

PAUSE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class GcPauses(Collector):
    """Every collection pass, timed from ``gc.callbacks``: counts per bucket, per generation."""

    def __init__(self) -> None:
        self._buckets = [[0] * (len(PAUSE_BUCKETS) + 1) for _ in range(3)]
        self._sums = [0.0, 0.0, 0.0]
        self._collected = [0, 0, 0]
        self._started = 0.0
        self.frozen_garbage = 0  # unreachable objects the periodic full collections found

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
            return
        seconds = time.perf_counter() - self._started
        generation = info["generation"]
        i = 0
        while i < len(PAUSE_BUCKETS) and seconds > PAUSE_BUCKETS[i]:
            i += 1
        self._buckets[generation][i] += 1
        self._sums[generation] += seconds
        self._collected[generation] += info["collected"]

    def passes(self, generation: int) -> int:
        return sum(self._buckets[generation])

    def collect(self) -> Iterable[Any]:
        pauses = HistogramMetricFamily(
            "fleetd_gc_pause_seconds", "Cyclic garbage collector passes (the event loop stops)", labels=["generation"]
        )
        collected = CounterMetricFamily(
            "fleetd_gc_collected_objects", "Unreachable objects the collector freed", labels=["generation"]
        )
        for generation in range(3):
            cumulative, running = [], 0
            for bound, count in zip((*PAUSE_BUCKETS, float("inf")), self._buckets[generation], strict=True):
                running += count
                cumulative.append((_bucket_label(bound), running))
            pauses.add_metric([str(generation)], cumulative, self._sums[generation])
            collected.add_metric([str(generation)], self._collected[generation])
        yield pauses
        yield collected
        yield CounterMetricFamily(
            "fleetd_gc_frozen_garbage_objects",
            "Unreachable objects found among frozen ones by the periodic full collections (gc.full_every)",
            value=self.frozen_garbage,
        )


def _bucket_label(bound: float) -> str:
    return "+Inf" if bound == float("inf") else repr(bound)


class CollectorPolicy:
    """A fleet part: freeze start-up's survivors when the fleet is ready, then pace the collector."""

    def __init__(
        self,
        state: FleetState,
        settings: GcSettings,
        *,
        settle: float = 2.0,
        resident: Callable[[], int | None] | None = None,
    ) -> None:
        self._state = state
        self._resident = resident or resident_bytes
        self._resident_after_full: int | None = None
        self._settings = settings
        self._settle = settle
        self.pauses = GcPauses()
        self._task: asyncio.Task[None] | None = None
        self._changed = Wakeup()
        self._was_enabled = gc.isenabled()
        self.frozen = False
        self.full_passes = 0  # periodic or early full collections made

    async def start(self) -> None:
        if self._task is None:
            gc.callbacks.append(self.pauses)
            self._task = asyncio.get_running_loop().create_task(self._run(), name="gc-policy")

    async def reconfigure(self, settings: Settings) -> None:
        if settings.gc != self._settings:
            self._settings = settings.gc
            self._changed.set()

    async def aclose(self) -> None:
        task, self._task = self._task, None
        if task is None:
            return
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        if self.pauses in gc.callbacks:
            gc.callbacks.remove(self.pauses)
        if self._was_enabled:
            gc.enable()

    async def _run(self) -> None:
        await self._state.wait_ready(None)
        await asyncio.sleep(self._settle)  # not at readiness: it would hold back the first complete answer
        started = time.perf_counter()
        found = gc.collect()
        gc.freeze()
        self.frozen = True
        self._resident_after_full = self._resident()
        log.info(
            "start-up objects frozen for the garbage collector",
            objects=gc.get_freeze_count(),
            unreachable=found,
            ms=round((time.perf_counter() - started) * 1000, 1),
        )
        loop = asyncio.get_running_loop()
        full_at = loop.time() + self._settings.full_every
        while True:
            settings = self._settings
            paced = settings.young_every > 0
            if paced:
                gc.disable()
            elif self._was_enabled:
                gc.enable()
            due = [full_at - loop.time()] if settings.full_every else []
            if paced:
                due.append(settings.young_every)
            if await self._reconfigured(max(0.0, min(due)) if due else None):
                full_at = loop.time() + self._settings.full_every  # a new period from now
                continue
            if settings.full_every and loop.time() >= full_at:
                self._full()
                full_at = loop.time() + settings.full_every
            elif paced:
                gc.collect(0)
                gc.freeze()  # the survivors: no older pass walks them again
                if self._grown():
                    self._full(reason="memory grew")
                    full_at = loop.time() + settings.full_every

    async def _reconfigured(self, timeout: float | None) -> bool:
        self._changed.clear()
        try:
            async with asyncio.timeout(timeout):
                await self._changed.wait()
        except TimeoutError:
            return False
        return True

    def _grown(self) -> bool:
        before = self._resident_after_full
        now = self._resident()
        if before is None or now is None:
            return False
        return now - before >= max(GROWTH_MIN, before * GROWTH)

    def _full(self, reason: str = "period") -> None:
        """Everything collected, the frozen objects too; what survives is frozen again."""
        started = time.perf_counter()
        gc.unfreeze()
        found = gc.collect()
        gc.freeze()
        self.pauses.frozen_garbage += found
        self.full_passes += 1
        self._resident_after_full = self._resident()
        log.info(
            "full garbage collection",
            reason=reason,
            unreachable=found,
            frozen=gc.get_freeze_count(),
            ms=round((time.perf_counter() - started) * 1000, 1),
        )



_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def resident_bytes() -> int | None:
    """This process's resident memory (Linux ``/proc/self/statm``), or None where it cannot be read."""
    try:
        with open("/proc/self/statm", "rb") as f:  # procfs: no disk behind it, never blocks
            return int(f.read().split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        return None
