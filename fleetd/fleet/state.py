"""The fleet aggregate: the writer methods that are the only way to change it.

Every write goes through a method below, and each announces what it changed on :attr:`FleetState.changes`
(see fleet/changes.py). Writers: the poller (poll results, the inventory on reload), the findings watch,
and event watchers (container rows by id, host status). Readers (the API, snapshots, metrics) call the
read methods FleetState inherits from fleet/state_reads.py.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from fleetd.config.model import HostSettings
from fleetd.fleet.changes import (
    Change,
    ChangeHub,
    ContainerAdded,
    ContainerChanged,
    ContainerRemoved,
    FleetReady,
    HostAdded,
    HostChanged,
    HostRemoved,
    HostResynced,
    HostUpdated,
)
from fleetd.fleet.engine_ids import EngineIds
from fleetd.fleet.host_tally import HostTally
from fleetd.fleet.index import ContainerIndex
from fleetd.fleet.match import label_matches
from fleetd.fleet.poll_results import PollFailure, PollSuccess
from fleetd.fleet.queries import (
    AmbiguousContainer,
    ContainerCounts,
    ContainerQuery,
    FleetSummary,
    HostCounts,
)
from fleetd.fleet.records import (
    ContainerDiff,
    ContainerRecord,
    Finding,
    HostRecord,
    HostStatus,
    ImageRecord,
    changed_fields,
    diff_containers,
)
from fleetd.fleet.state_reads import FleetReads
from fleetd.fleet.watch_events import Cause
from fleetd.fleet.watch_rows import RowClock, semantic_fields

__all__ = [
    "AmbiguousContainer",
    "ContainerCounts",
    "ContainerQuery",
    "FleetState",
    "FleetSummary",
    "HostCounts",
    "PollFailure",
    "PollSuccess",
    "label_matches",
]


@dataclass(slots=True)
class FleetState(FleetReads):
    """All hosts by name, in inventory order; the single source of truth for readers."""

    clock: Callable[[], float] = time.time
    changes: ChangeHub = field(default_factory=ChangeHub)
    _hosts: dict[str, HostRecord] = field(default_factory=dict)
    _ready_once: bool = False
    # Enabled hosts whose first poll has not ended: readiness in O(1) per poll, not O(hosts).
    _pending: set[str] = field(default_factory=set)
    _engines: EngineIds = field(default_factory=EngineIds)  # engine ID → hosts (engine_twins)
    # Hosts whose containers another writer changed since their last poll: the poll's own diff
    # (against the previous poll) does not hold for them, so the next poll compares in full.
    _foreign: set[str] = field(default_factory=set)
    # Event watchers' ordering guard per host, and who judges what a poll found that no event told.
    _clocks: dict[str, RowClock] = field(default_factory=dict)
    # Per watched host: the rows its last poll wrote when they were exactly that poll's list (else None).
    _agreed: dict[str, tuple[ContainerRecord, ...] | None] = field(default_factory=dict)
    drift_judge: Callable[[str, tuple[str, ...], float], None] | None = None
    _index: ContainerIndex = field(default_factory=ContainerIndex)  # kept by _publish and sync below
    _tally: HostTally = field(default_factory=HostTally)  # host counts for the summary and host pages

    def _publish(self, changes: Iterable[Change]) -> None:
        batch = tuple(changes)
        self._index.apply(batch)
        self.changes.publish(batch)

    # -- inventory (start-up and reload) -------------------------------------------------

    def add(self, settings: HostSettings) -> HostRecord:
        record = HostRecord(settings=settings)
        if not settings.enabled:
            record.status = HostStatus.DISABLED
            record.first_poll_done = True
        else:
            self._pending.add(settings.name)
        self._hosts[settings.name] = record
        self._tally.added(record)
        self._publish((HostAdded(settings.name),))
        return record

    def remove(self, name: str) -> None:
        record = self._hosts.pop(name, None)
        self._foreign.discard(name)
        self._clocks.pop(name, None)
        self._agreed.pop(name, None)
        self._pending.discard(name)
        if record is not None:
            self._tally.removed(record)
            self._engines.move(name, record.facts.engine_id if record.facts else "", "")
            gone: list[Change] = [ContainerRemoved(name, c) for c in record.containers]
            gone.append(HostRemoved(name))
            self._publish(gone)
            self._check_ready()

    def update_settings(self, name: str, settings: HostSettings, *, announce: bool = True) -> None:
        """New settings that need no reconnect (labels, interval, ...): the data stays.
        ``announce=False``: nothing the user wrote changed (only where: its ``source``)."""
        record = self._hosts[name]
        if record.settings != settings:
            record.settings = settings
            self._tally.resettled(record)
            if announce:
                self._publish((HostUpdated(name),))

    def reorder(self, names: list[str]) -> None:
        """Inventory order after a reload."""
        self._hosts = {n: self._hosts[n] for n in names if n in self._hosts}

    # -- polls ----------------------------------------------------------------------------

    def poll_overdue(self, name: str) -> None:
        """The host's next poll is late (its loop starved of a slot, or the loop itself stuck)."""
        record = self._hosts.get(name)
        if record is not None:
            record.polls_overdue += 1

    def poll_started(self, name: str, at: float) -> None:
        record = self._hosts.get(name)
        if record is not None:
            record.last_attempt = at

    def poll_done(self, name: str, duration: float, result: PollSuccess | PollFailure | None) -> HostStatus:
        """Apply one poll (``None``: discarded, an action happened meanwhile); returns the status before."""
        record = self._hosts[name]
        previous = record.status
        record.poll_duration = duration
        record.polls += 1
        changes: list[Change] = []
        if isinstance(result, PollSuccess):
            self._succeed(record, result, changes)
        elif isinstance(result, PollFailure):
            record.consecutive_failures += 1
            record.last_error = result.message
            if record.status is not result.status:
                record.status = result.status
                record.changed_at = result.at
        if record.status is not previous:
            self._tally.moved(record, previous)
            changes.append(HostChanged(name, previous, record.status))
        if isinstance(result, PollSuccess):
            self._tally.seen(record)
        first = result is not None and not record.first_poll_done
        if first:
            record.first_poll_done = True
            self._pending.discard(name)
        ready = first and not self._ready_once and not self._pending and self.is_ready()
        if ready:
            changes.append(FleetReady())
        if changes:
            self._publish(changes)
        if isinstance(result, PollSuccess):
            self._index.sync(name, record.containers)
        if ready:
            self._index.compact()  # the start-up burst grew the posting sets' tables in steps
        return previous

    def _succeed(self, record: HostRecord, result: PollSuccess, changes: list[Change]) -> None:
        name = record.name
        diff = result.diff
        containers = result.containers
        clock = self._clocks.get(name)
        if clock is not None:
            agreed = record.containers is self._agreed.get(name)
            merged = clock.take_list(record.containers, containers, result.stamp, diff, agreed)
            containers = merged.records
            if merged.drifted and self.drift_judge is not None:
                self.drift_judge(name, merged.drifted, result.sent_at)
            self._agreed[name] = containers if containers is result.containers else None
        if name in self._foreign or containers is not result.containers:
            diff = diff_containers(record.containers, containers)
        if containers is result.containers:
            self._foreign.discard(name)
        else:  # rows kept that this list does not show: the builder's next diff is not against them
            self._foreign.add(name)
        record.containers = containers
        self._engines.move(name, record.facts.engine_id if record.facts else "", result.facts.engine_id)
        record.facts = result.facts
        record.info_raw = result.info_raw
        if result.images is not None:
            record.images = result.images
            record.images_seen = result.at
        record.last_seen = result.at
        record.consecutive_failures = 0
        record.last_error = None
        if record.status is not HostStatus.UP:
            record.status = HostStatus.UP
            record.changed_at = result.at
        if diff:
            _announce(name, diff, changes)

    def set_images(self, name: str, images: tuple[ImageRecord, ...], at: float) -> None:
        record = self._hosts.get(name)
        if record is not None:
            record.images = images
            record.images_seen = at

    # -- other writers ------------------------------------------------------------------------

    def set_findings(self, name: str, findings: tuple[Finding, ...]) -> None:
        record = self._hosts.get(name)
        if record is not None:
            self._tally.findings(name, record.findings, findings)
            record.findings = findings

    def set_host_status(self, name: str, status: HostStatus, error: str | None = None) -> None:
        """An event watcher's verdict on the host (its stream broke, or came back)."""
        record = self._hosts.get(name)
        if record is None or record.status is status:
            return
        previous = record.status
        record.status = status
        record.changed_at = self.clock()
        if status is not HostStatus.UP:
            record.last_error = error
        self._tally.moved(record, previous)
        self._publish((HostChanged(name, previous, status),))

    def upsert_containers(self, name: str, containers: Iterable[ContainerRecord]) -> None:
        """Replace (or add) the rows with these ids; the others stay as they are."""
        record = self._hosts.get(name)
        if record is None:
            return
        rows = {c.id: c for c in record.containers}
        changes: list[Change] = []
        for c in containers:
            old = rows.get(c.id)
            rows[c.id] = c
            if old is None:
                changes.append(ContainerAdded(name, c))
            elif fields := changed_fields(old, c):
                changes.append(ContainerChanged(name, c, fields))
        record.containers = tuple(sorted(rows.values(), key=lambda c: c.name))
        self._foreign.add(name)
        self._publish(changes)
        self._index.sync(name, record.containers)

    def remove_containers(self, name: str, ids: Iterable[str]) -> None:
        record = self._hosts.get(name)
        if record is None:
            return
        wanted = set(ids)
        gone = [c for c in record.containers if c.id in wanted]
        if gone:
            record.containers = tuple(c for c in record.containers if c.id not in wanted)
            self._foreign.add(name)
            self._publish([ContainerRemoved(name, c) for c in gone])
            self._index.sync(name, record.containers)

    def replace_containers(self, name: str, containers: Iterable[ContainerRecord], *, gap: bool) -> None:
        """The host's containers as a whole (after a resync); ``gap``: changes may have been missed."""
        record = self._hosts.get(name)
        if record is None:
            return
        new = tuple(sorted(containers, key=lambda c: c.name))
        changes: list[Change] = []
        _announce(name, diff_containers(record.containers, new), changes)
        record.containers = new
        self._foreign.add(name)
        changes.append(HostResynced(name, gap))
        self._publish(changes)
        self._index.sync(name, record.containers)

    # -- event watchers -------------------------------------------------------------------------

    def watch(self, name: str) -> None:
        """An event watcher starts writing this host's rows: from now on polls are stamped too."""
        self._clocks.setdefault(name, RowClock())

    def unwatch(self, name: str) -> None:
        self._clocks.pop(name, None)
        self._agreed.pop(name, None)

    def next_stamp(self, name: str) -> int:
        """A stamp for a request about to be sent whose answer will write this host's rows
        (0 for a host no watcher writes: its polls need no ordering guard)."""
        clock = self._clocks.get(name)
        return clock.next_stamp() if clock is not None else 0

    def refresh_rows(
        self,
        name: str,
        asked: Iterable[str],
        rows: Iterable[ContainerRecord],
        stamp: int,
        causes: Mapping[str, Cause] | None = None,
    ) -> tuple[tuple[str, ContainerRecord | None], ...]:
        """A targeted refresh sent at ``stamp``: ``rows`` replace the ``asked`` ids, and an asked id
        without a row is gone. Rows a newer observation wrote are left alone. Returns the ids it
        decided, each with the row now kept (None: gone)."""
        record = self._hosts.get(name)
        if record is None:
            return ()
        clock = self._clocks.setdefault(name, RowClock())
        merged = clock.merge_subset(record.containers, asked, rows, stamp)
        causes = causes or {}
        changes: list[Change] = []
        for cid, (old, new) in zip(merged.applied, merged.pairs, strict=True):
            cause = causes.get(cid)
            action, code = (cause.action, cause.exit_code) if cause is not None else (None, None)
            if old is None and new is not None:
                changes.append(ContainerAdded(name, new, action, code))
            elif old is not None and new is None:
                changes.append(ContainerRemoved(name, old, action, code))
            elif old is not None and new is not None and semantic_fields(old, new):
                changes.append(ContainerChanged(name, new, changed_fields(old, new), action, code))
        record.containers = merged.records
        self._foreign.add(name)
        if changes:
            self._publish(changes)
        if not merged.in_place or not self._index.replace(name, [new for _, new in merged.pairs if new is not None]):
            self._index.sync(name, record.containers)  # rows came, went or moved: the host's order anew
        return tuple(zip(merged.applied, [new for _, new in merged.pairs], strict=True))

    def agree(self, name: str, rows: tuple[ContainerRecord, ...]) -> None:
        """The host's poll builder learnt what a refresh wrote, and ``rows`` are its records now: when
        they are the host's rows, object for object, the next poll's diff is against the rows as
        they are, and a list that finds them unchanged only moves their stamps."""
        record = self._hosts.get(name)
        if record is None:
            return
        current = record.containers
        if len(rows) == len(current) and all(a is b for a, b in zip(rows, current, strict=True)):
            self._agreed[name] = current
            self._foreign.discard(name)

    def resynced(self, name: str, gap: bool) -> None:
        """The host's event stream is back; ``gap``: events were lost (a full list repaired the rows)."""
        if name in self._hosts:
            self._publish((HostResynced(name, gap),))

    # -- readiness ------------------------------------------------------------------------

    def is_ready(self) -> bool:
        """True once every enabled host finished its first poll attempt; stays true after."""
        if not self._ready_once:
            hosts = self._hosts
            self._pending = {n for n in self._pending if (r := hosts.get(n)) is not None and not r.first_poll_done}
            self._ready_once = not self._pending
        return self._ready_once

    def first_round_done(self) -> bool:
        """Cheap :meth:`is_ready` for the poll path: every enabled host's first poll has ended."""
        return self._ready_once or not self._pending

    async def wait_ready(self, timeout: float | None = None) -> bool:
        """Wait until :meth:`is_ready` (False when ``timeout`` seconds passed first)."""
        if self.is_ready():
            return True
        with self.changes.subscribe(maxsize=8) as sub:
            try:
                async with asyncio.timeout(timeout):
                    # first_round_done() first: O(1) per write, where is_ready() re-reads every host
                    # still pending (1.7 % of a 1,000-host start-up's samples, once per first poll)
                    while not (self.first_round_done() and self.is_ready()):
                        await sub.get()
            except TimeoutError:
                return self.is_ready()
        return True

    def _check_ready(self) -> None:
        if not self._ready_once and self.is_ready():
            self._publish((FleetReady(),))


def _announce(host: str, diff: ContainerDiff, changes: list[Change]) -> None:
    changes.extend(ContainerRemoved(host, c) for c in diff.removed)
    changes.extend(ContainerAdded(host, c) for c in diff.added)
    changes.extend(ContainerChanged(host, c, fields) for c, fields in diff.changed)
