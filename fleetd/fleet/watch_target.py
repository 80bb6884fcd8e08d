"""What event watchers write through: the fleet state's writer methods, and the poller for full lists."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Mapping

from fleetd.dockerapi import ContainerSummary, DockerError
from fleetd.fleet.changes import Change, FleetReady, HostChanged
from fleetd.fleet.poller import Poller
from fleetd.fleet.records import ContainerRecord, HostStatus, container_record
from fleetd.fleet.safety_net import SafetyNet
from fleetd.fleet.state import FleetState
from fleetd.fleet.watch_events import Cause
from fleetd.fleet.watch_rows import semantic_fields
from fleetd.util.timefmt import rfc3339

__all__ = ["StateTarget", "rows_changed"]

STAGGER = 0.001  # seconds between two watchers' first connects after the start-up's first round
STAGGER_SPAN = 2.0  # ... spread over this long at most


def rows_changed(before: tuple[ContainerRecord, ...], after: tuple[ContainerRecord, ...]) -> int:
    """How many containers appeared, vanished or changed in a way that matters (not "Up 3 minutes")."""
    old = {c.id: c for c in before}
    changed = 0
    for c in after:
        prev = old.pop(c.id, None)
        if prev is None or (prev is not c and semantic_fields(prev, c)):
            changed += 1
    return changed + len(old)


class StateTarget:
    """:class:`~fleetd.fleet.watch.WatchTarget` over one :class:`FleetState` and its :class:`Poller`."""

    def __init__(self, state: FleetState, poller: Poller) -> None:
        self.state = state
        self.poller = poller
        self._first: dict[str, asyncio.Event] = {}
        self._first_round = asyncio.Event()  # FleetReady seen: every enabled host's first poll ended
        self._woken = 0  # watchers woken by the first round's end so far

    async def first_poll(self, host: str, timeout: float = 60.0) -> None:
        """Until the host's first poll is done and the start-up's first round has ended (every
        enabled host's first poll), or ``timeout``: watchers connect after it, so the first polls,
        and the complete view, do not queue behind a thousand streams and lists (each watcher opens
        ``/events`` and lists every container at once). Hosts added later wait for their own poll."""
        record = self.state.get(host)
        if record is None:
            return
        # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow a cancellation that
        # arrives as the event is set, and the watcher then never stops (seen at shutdown).
        round_ended = False
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                if not record.first_poll_done:
                    await self._first.setdefault(host, asyncio.Event()).wait()
                if not self.state.first_round_done():
                    await self._first_round.wait()
                    round_ended = True
        if round_ended:
            # The round's end wakes every watcher at once: a thousand streams opened in one turn of
            # the loop held the API's first answers back (7 % of a 1,000-host start-up's samples fell
            # between the last first poll and the first complete summary). One every STAGGER seconds,
            # over STAGGER_SPAN at most (more hosts: several per slot); each lists after subscribing.
            self._woken += 1
            await asyncio.sleep((self._woken * STAGGER) % STAGGER_SPAN)

    def note(self, change: Change) -> None:
        """Every change of the state, in order (from the feed pump)."""
        if isinstance(change, HostChanged) and change.before is HostStatus.UNKNOWN:
            event = self._first.pop(change.host, None)
            if event is not None:
                event.set()
        elif isinstance(change, FleetReady):
            self._first_round.set()

    def next_stamp(self, host: str) -> int:
        return self.state.next_stamp(host)

    def apply_rows(
        self,
        host: str,
        asked: frozenset[str],
        rows: list[ContainerSummary],
        stamp: int,
        causes: Mapping[str, Cause],
        keys: Mapping[str, int] | None = None,
    ) -> None:
        observed = rfc3339(time.time())
        # dockerd's id filter matches prefixes: keep only the rows that were asked for.
        records = [container_record(host, r, observed) for r in rows if r.Id in asked]
        decided = self.state.refresh_rows(host, asked, records, stamp, causes)
        if keys is None or not decided or any(row is not None and cid not in keys for cid, row in decided):
            return
        # The host's poll builder learns the rows as the state keeps them: when its records are
        # then the host's rows, the next poll compares against them directly (FleetState.agree).
        built = self.poller.learn(host, {cid: None if row is None else (keys[cid], row) for cid, row in decided})
        if built is not None:
            self.state.agree(host, built)

    async def full_refresh(self, host: str) -> int | None:
        """One stamped ``GET /containers/json?all=1`` applied as a refresh of every row: the list
        after the subscription. It leaves the poller alone (no poll is discarded or added)."""
        client = self.poller.client(host)
        record = self.state.get(host)
        if client is None or record is None:
            return None
        stamp = self.state.next_stamp(host)
        try:
            rows = await client.containers.list(all=True)
        except DockerError:
            return None
        record = self.state.get(host)
        if record is None:
            return None
        before = record.containers
        observed = rfc3339(time.time())
        records = [container_record(host, r, observed) for r in rows]
        asked = {c.id for c in before} | {r.id for r in records}
        self.state.refresh_rows(host, asked, records, stamp)
        return rows_changed(before, record.containers)

    def wake(self, host: str) -> None:
        """Poll the host soon (it answered again): the poll brings its status and facts up."""
        self.poller.wake(host)

    def want_info(self, host: str) -> None:
        self.poller.want_info(host)

    def attach(self, host: str, net: SafetyNet | None) -> None:
        self.poller.attach(host, net)

    def stream_lost(self, host: str, error: DockerError) -> None:
        self.state.set_host_status(host, HostStatus.DOWN, f"event stream lost, and then: {error}")

    def resynced(self, host: str, gap: bool) -> None:
        self.state.resynced(host, gap)
