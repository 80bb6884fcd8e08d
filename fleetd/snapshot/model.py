"""A snapshot: a consistent, point-in-time copy of the fleet aggregate, as typed records.

Taking one is two steps, so the event loop only pays for the first:

    capture = capture_fleet(state, Trigger.ON_DEMAND)  # in the loop: O(hosts), copies references
    snapshot = build_snapshot(capture)                  # anywhere (the database thread): O(containers)

The capture is consistent because the poller only mutates :class:`HostRecord` in the event loop and
containers, engine facts and settings are immutable records: copying references in one synchronous
pass is a point-in-time copy.

What is kept per host is split in two. :class:`HostContent` (url, labels, engine facts, containers) is
what changes rarely; the store keeps it once per distinct value. State, stale, last_seen and last_error
are volatile and stored per snapshot. Volatile container fields are left out: ``observed_at`` and
``stale`` equal the host's ``last_seen`` and ``stale``, and the relative time in the status text is
cut ("Up 3 hours (healthy)" → "Up (healthy)", "Exited (137) 2 days ago" → "Exited (137)"), which keeps
the exit code and pause/health markers but not a time that would be false as soon as it is read.

The records share their lists and dicts with the fleet's (immutable) records instead of copying them,
and are not tracked by the cyclic garbage collector (``gc=False``; they cannot form cycles): building
40,000 of them then allocates little and does not set off full collections, which would hold the GIL
and stall the event loop.
"""

from __future__ import annotations

import enum
import re
import threading
import time
from dataclasses import dataclass
from typing import Final

import msgspec

from fleetd.config.model import HostSettings
from fleetd.fleet.records import ContainerRecord, EngineFacts, HostStatus, PortRecord
from fleetd.fleet.state import FleetState
from fleetd.util.timefmt import rfc3339
from fleetd.util.version import fleetd_version

__all__ = [
    "FleetCapture",
    "HostCapture",
    "HostContent",
    "Snapshot",
    "SnapshotContainer",
    "SnapshotCounts",
    "SnapshotHost",
    "SnapshotInfo",
    "Trigger",
    "build_snapshot",
    "capture_fleet",
    "count_hosts",
    "fleetd_version",
    "snapshot_container",
    "strip_relative_time",
    "yield_gil",
]


class Trigger(enum.StrEnum):
    SCHEDULE = "schedule"
    ON_DEMAND = "on-demand"  # POST /api/v1/snapshots
    ONE_SHOT = "one-shot"  # `fleetd snapshot`, never stored


class SnapshotContainer(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    id: str
    name: str
    names: list[str]
    image: str
    image_id: str
    command: str
    state: str
    status: str  # without its relative time, see the module docstring
    health: str
    created: str | None
    labels: dict[str, str]
    ports: list[PortRecord]


class HostContent(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """The non-volatile part of a host; its digest decides whether the host "changed"."""

    name: str
    url: str
    labels: dict[str, str]
    engine: EngineFacts | None
    containers: tuple[SnapshotContainer, ...]


class SnapshotHost(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    name: str
    url: str
    labels: dict[str, str]
    state: HostStatus
    stale: bool
    last_seen: str | None
    last_error: str | None
    engine: EngineFacts | None
    containers: tuple[SnapshotContainer, ...]

    def content(self) -> HostContent:
        return HostContent(
            name=self.name, url=self.url, labels=self.labels, engine=self.engine, containers=self.containers
        )

    @classmethod
    def from_content(
        cls,
        content: HostContent,
        *,
        state: HostStatus,
        stale: bool,
        last_seen: str | None,
        last_error: str | None,
    ) -> SnapshotHost:
        return cls(
            name=content.name,
            url=content.url,
            labels=content.labels,
            state=state,
            stale=stale,
            last_seen=last_seen,
            last_error=last_error,
            engine=content.engine,
            containers=content.containers,
        )

    @property
    def running(self) -> int:
        return sum(1 for c in self.containers if c.state == "running")


class SnapshotCounts(msgspec.Struct, frozen=True, kw_only=True):
    hosts: int
    hosts_up: int
    hosts_failed: int  # down or error at the time
    hosts_stale: int
    containers: int
    running: int


class SnapshotInfo(msgspec.Struct, frozen=True, kw_only=True):
    """One line of the snapshot list."""

    id: int
    taken_at: str
    trigger: Trigger
    fleetd_version: str
    counts: SnapshotCounts


class Snapshot(msgspec.Struct, frozen=True, kw_only=True):
    id: int | None  # None until stored (and for one-shot snapshots, which never are)
    taken_at: str
    trigger: Trigger
    fleetd_version: str
    counts: SnapshotCounts
    hosts: tuple[SnapshotHost, ...]

    def info(self, snapshot_id: int | None = None) -> SnapshotInfo:
        sid = snapshot_id if snapshot_id is not None else self.id
        if sid is None:
            raise ValueError("a snapshot that was not stored has no id")
        return SnapshotInfo(
            id=sid,
            taken_at=self.taken_at,
            trigger=self.trigger,
            fleetd_version=self.fleetd_version,
            counts=self.counts,
        )


YIELD_EVERY: Final = 0.001  # seconds of work between two GIL hand-overs in a worker thread
YIELD_FOR: Final = 0.00005  # a real sleep: time.sleep(0) often takes the GIL straight back
_last_yield = threading.local()


def yield_gil() -> None:
    """Hand the GIL to a thread waiting for it (the event loop), if this thread held it for a while.

    CPU-bound loops that run in a worker thread (building, hashing, decoding, encoding snapshots) call
    this between hosts. Without it the event loop, woken by a poll answer or a request, waits up to the
    interpreter's switch interval (5 ms) each time; with it, about a millisecond at most. Handing over
    after every host instead would let a busy loop starve the worker (measured: a snapshot 10 times
    slower); every millisecond keeps both. Figures in bench/RESULTS-snapshots.md.
    """
    now = time.perf_counter()
    if now - getattr(_last_yield, "at", 0.0) >= YIELD_EVERY:
        time.sleep(YIELD_FOR)
        _last_yield.at = time.perf_counter()


# The relative times dockerd (go-units HumanDuration) and podman put in the status text.
_RELATIVE_TIME = re.compile(
    r"\s*(?:Less than a second|About an? (?:minute|hour)|an? (?:second|minute|hour|day|week|month|year)"
    r"|\d+ (?:second|minute|hour|day|week|month|year)s?)(?: ago)?"
)


def strip_relative_time(status: str) -> str:
    """``"Exited (0) 3 hours ago"`` → ``"Exited (0)"``; text without a relative time is unchanged."""
    return _RELATIVE_TIME.sub("", status).strip()


def snapshot_container(c: ContainerRecord) -> SnapshotContainer:
    return SnapshotContainer(
        id=c.id,
        name=c.name,
        names=c.names,  # shared with the (immutable) record: no copy
        image=c.image,
        image_id=c.image_id,
        command=c.command,
        state=c.state,
        status=strip_relative_time(c.status),
        health=c.health,
        created=c.created,
        labels=c.labels,
        ports=c.ports,
    )


@dataclass(frozen=True, slots=True)
class HostCapture:
    settings: HostSettings
    status: HostStatus
    stale: bool
    last_seen: float | None
    last_error: str | None
    facts: EngineFacts | None
    containers: tuple[ContainerRecord, ...]


@dataclass(frozen=True, slots=True)
class FleetCapture:
    taken_at: float
    trigger: Trigger
    fleetd_version: str
    hosts: tuple[HostCapture, ...]


def capture_fleet(state: FleetState, trigger: Trigger, *, version: str | None = None) -> FleetCapture:
    """The cheap, synchronous half: call it in the event loop (no await may split it)."""
    now = state.clock()
    hosts = tuple(
        HostCapture(
            settings=r.settings,
            status=r.status,
            stale=r.is_stale(now),
            last_seen=r.last_seen,
            last_error=r.last_error,
            facts=r.facts,
            containers=r.containers,
        )
        for r in state.sorted_records()
    )
    return FleetCapture(taken_at=now, trigger=trigger, fleetd_version=version or fleetd_version(), hosts=hosts)


def count_hosts(hosts: tuple[SnapshotHost, ...]) -> SnapshotCounts:
    return SnapshotCounts(
        hosts=len(hosts),
        hosts_up=sum(1 for h in hosts if h.state is HostStatus.UP),
        hosts_failed=sum(1 for h in hosts if h.state in (HostStatus.DOWN, HostStatus.ERROR)),
        hosts_stale=sum(1 for h in hosts if h.stale),
        containers=sum(len(h.containers) for h in hosts),
        running=sum(h.running for h in hosts),
    )


def _host(h: HostCapture) -> SnapshotHost:
    s = h.settings
    return SnapshotHost(
        name=s.name,
        url=s.url,
        labels=dict(s.labels),
        state=h.status,
        stale=h.stale,
        last_seen=rfc3339(h.last_seen),
        last_error=h.last_error,
        engine=h.facts,
        containers=tuple(snapshot_container(c) for c in h.containers),
    )


def build_snapshot(capture: FleetCapture, snapshot_id: int | None = None) -> Snapshot:
    """The expensive half, pure: safe to run in a worker thread (it yields the GIL between hosts)."""
    built = []
    for h in capture.hosts:
        built.append(_host(h))
        yield_gil()
    hosts = tuple(built)
    return Snapshot(
        id=snapshot_id,
        taken_at=rfc3339(capture.taken_at) or "",
        trigger=capture.trigger,
        fleetd_version=capture.fleetd_version,
        counts=count_hosts(hosts),
        hosts=hosts,
    )
