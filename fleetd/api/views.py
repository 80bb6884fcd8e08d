"""Typed answers of the API (msgspec Structs): one shape per resource, encoded without dict building.

``HostView`` is one host of ``GET /api/v1/hosts`` (``HostDetailView`` adds the engine facts and the raw
``/info`` for ``GET /api/v1/hosts/{host}``); ``SummaryView`` is ``GET /api/v1/summary``; ``ContainerPage``
is ``GET /api/v1/containers`` (its rows are :class:`~fleetd.fleet.records.ContainerRecord`); ``BatchTarget``
and ``BatchError`` are the per-target results of ``POST /api/v1/actions``.
"""

from __future__ import annotations

import msgspec

from fleetd.fleet.queries import ContainerCounts, FleetSummary, HostCounts
from fleetd.fleet.records import ContainerRecord, EngineFacts, Finding, HostRecord
from fleetd.ops.selector import Selector
from fleetd.util.timefmt import rfc3339

__all__ = [
    "BatchAnswer",
    "BatchError",
    "BatchSummary",
    "BatchTarget",
    "ContainerPage",
    "HostDetailView",
    "HostList",
    "HostView",
    "SummaryView",
]


class HostView(msgspec.Struct, frozen=True):
    name: str
    url: str
    labels: dict[str, str]
    enabled: bool
    state: str
    stale: bool
    last_seen: str | None
    last_attempt: str | None
    last_error: str | None
    state_since: str | None
    consecutive_failures: int
    last_poll_duration: float | None
    engine_id: str | None
    engine_id_volatile: bool  # podman: a new ID on every /info, so none is shown or compared
    server_version: str | None
    api_version: str | None
    containers: int
    running: int
    duplicate_engine_id: bool
    duplicate_of: list[str]
    interval: float
    timeout: float
    findings: tuple[Finding, ...]
    insecure_transport: bool

    @classmethod
    def fields_of(cls, r: HostRecord, now: float, duplicates: dict[str, list[str]]) -> dict[str, object]:
        facts = r.facts
        engine_id = facts.engine_id if facts else None
        dup_with = [n for n in duplicates.get(engine_id or "", []) if n != r.name]
        s = r.settings
        return {
            "name": r.name,
            "url": s.url,
            "labels": dict(s.labels),
            "enabled": s.enabled,
            "state": r.status.value,
            "stale": r.is_stale(now),
            "last_seen": rfc3339(r.last_seen),
            "last_attempt": rfc3339(r.last_attempt),
            "last_error": r.last_error,
            "state_since": rfc3339(r.changed_at),
            "consecutive_failures": r.consecutive_failures,
            "last_poll_duration": round(r.poll_duration, 6) if r.poll_duration is not None else None,
            "engine_id": engine_id or None,
            "engine_id_volatile": bool(facts and facts.engine_id_volatile),
            "server_version": facts.server_version if facts else None,
            "api_version": facts.api_version if facts else None,
            "containers": len(r.containers),
            "running": r.running,
            "duplicate_engine_id": bool(dup_with),
            "duplicate_of": dup_with,
            "interval": s.interval,
            "timeout": s.timeout,
            "findings": r.findings,
            "insecure_transport": r.insecure_transport,
        }

    @classmethod
    def of(cls, r: HostRecord, now: float, duplicates: dict[str, list[str]]) -> HostView:
        return cls(**cls.fields_of(r, now, duplicates))  # type: ignore[arg-type]


class HostList(msgspec.Struct, frozen=True):
    """One page of the hosts (inventory order) and how many match."""

    hosts: list[HostView]
    total: int
    offset: int = 0
    limit: int | None = None


class HostDetailView(HostView, frozen=True):
    engine: EngineFacts | None
    images: int | None
    images_seen: str | None
    info: msgspec.Raw | None

    @classmethod
    def detail(cls, r: HostRecord, now: float, duplicates: dict[str, list[str]]) -> HostDetailView:
        return cls(
            **HostView.fields_of(r, now, duplicates),  # type: ignore[arg-type]
            engine=r.facts,
            images=len(r.images) if r.images is not None else None,
            images_seen=rfc3339(r.images_seen),
            info=r.info_raw,
        )


class SummaryView(msgspec.Struct, frozen=True):
    hosts: HostCounts
    containers: ContainerCounts
    images: dict[str, int]
    ready: bool
    generated_at: str  # RFC 3339
    security: dict[str, int]  # hosts per finding code, and hosts_flagged

    @classmethod
    def of(cls, s: FleetSummary, security: dict[str, int]) -> SummaryView:
        return cls(
            hosts=s.hosts,
            containers=s.containers,
            images=s.images,
            ready=s.ready,
            generated_at=rfc3339(s.generated_at) or "",
            security=security,
        )


class BatchError(msgspec.Struct, frozen=True):
    code: str
    message: str
    status: int


class BatchTarget(msgspec.Struct, frozen=True, omit_defaults=True):
    """One target of a batch: who, and (when it ran) how it went."""

    host: str
    id: str
    name: str
    state: str
    stale: bool
    outcome: str | None = None  # ok | failed; absent in a dry run
    changed: bool | None = None
    error: BatchError | None = None
    attempted: bool | None = None


class BatchSummary(msgspec.Struct, frozen=True, omit_defaults=True):
    targets: int
    ok: int | None = None  # absent in a dry run
    failed: int | None = None


class BatchAnswer(msgspec.Struct, frozen=True):
    action: str
    dry_run: bool
    selector: Selector
    targets: list[BatchTarget]
    summary: BatchSummary


class ContainerPage(msgspec.Struct, frozen=True):
    """One page of the fleet's containers (host, then name, unless ``?sort=``) and how many match."""

    containers: list[ContainerRecord]
    total: int
    offset: int
    limit: int | None
