"""What changed between two snapshots: hosts added, removed or changed; containers per host.

Hosts are matched by name, containers by name within their host (Docker keeps names unique per
daemon), so a container re-created under its name shows as a change of ``id`` (and of whatever else
changed with it) rather than as one removal and one addition.

Compared per host: ``state``, ``url``, labels (one change per key, ``labels.KEY``) and the engine facts
(``engine.server_version`` …). Compared per container: :data:`CONTAINER_FIELDS` and labels per key.
Never compared: ``stale``, ``last_seen``, ``last_error`` and the container status text, which change
without anything having changed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

import msgspec

from fleetd.fleet.records import EngineFacts
from fleetd.snapshot.model import Snapshot, SnapshotContainer, SnapshotHost

__all__ = [
    "CONTAINER_FIELDS",
    "Change",
    "ContainerChanges",
    "ContainerRef",
    "DiffSide",
    "HostChanges",
    "HostContainers",
    "HostRef",
    "SnapshotDiff",
    "diff_snapshots",
]

CONTAINER_FIELDS: Final = ("id", "image", "image_id", "command", "state", "health", "ports")
_ENGINE_FIELDS: Final = tuple(f for f in EngineFacts.__struct_fields__)


class Change(msgspec.Struct, frozen=True):
    field: str
    old: Any
    new: Any


class HostRef(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    url: str
    state: str
    containers: int


class HostChanges(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    changes: tuple[Change, ...]


class ContainerRef(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    id: str
    image: str
    state: str


class ContainerChanges(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    id: str
    changes: tuple[Change, ...]


class HostContainers(msgspec.Struct, frozen=True, kw_only=True):
    host: str
    added: tuple[ContainerRef, ...] = ()
    removed: tuple[ContainerRef, ...] = ()
    changed: tuple[ContainerChanges, ...] = ()


class DiffSide(msgspec.Struct, frozen=True, kw_only=True):
    id: int | None
    taken_at: str


class SnapshotDiff(msgspec.Struct, frozen=True, kw_only=True):
    old: DiffSide
    new: DiffSide
    hosts_added: tuple[HostRef, ...]
    hosts_removed: tuple[HostRef, ...]
    hosts_changed: tuple[HostChanges, ...]
    containers: tuple[HostContainers, ...]  # only hosts with container changes

    @property
    def empty(self) -> bool:
        return not (self.hosts_added or self.hosts_removed or self.hosts_changed or self.containers)


def _labels(prefix: str, old: Mapping[str, str], new: Mapping[str, str]) -> list[Change]:
    if old == new:
        return []
    return [
        Change(f"{prefix}.{key}", old.get(key), new.get(key))
        for key in sorted(old.keys() | new.keys())
        if old.get(key) != new.get(key)
    ]


def _engine(old: EngineFacts | None, new: EngineFacts | None) -> list[Change]:
    if old == new:
        return []
    if old is None or new is None:
        return [Change("engine", old, new)]
    return [
        Change(f"engine.{f}", getattr(old, f), getattr(new, f))
        for f in _ENGINE_FIELDS
        if getattr(old, f) != getattr(new, f)
    ]


def _host_changes(old: SnapshotHost, new: SnapshotHost) -> list[Change]:
    changes: list[Change] = []
    if old.state != new.state:
        changes.append(Change("state", old.state.value, new.state.value))
    if old.url != new.url:
        changes.append(Change("url", old.url, new.url))
    changes += _labels("labels", old.labels, new.labels)
    changes += _engine(old.engine, new.engine)
    return changes


def _container_changes(old: SnapshotContainer, new: SnapshotContainer) -> list[Change]:
    changes = [
        Change(f, getattr(old, f), getattr(new, f))
        for f in CONTAINER_FIELDS
        if getattr(old, f) != getattr(new, f)
    ]
    return changes + _labels("labels", old.labels, new.labels)


def _ref(c: SnapshotContainer) -> ContainerRef:
    return ContainerRef(name=c.name, id=c.id, image=c.image, state=c.state)


def _containers(old: SnapshotHost, new: SnapshotHost) -> HostContainers | None:
    if old.containers is new.containers or old.containers == new.containers:
        return None  # the common case, and cheap: the store hands out one object per host version
    before = {c.name: c for c in old.containers}
    after = {c.name: c for c in new.containers}
    added = tuple(_ref(c) for name, c in after.items() if name not in before)
    removed = tuple(_ref(c) for name, c in before.items() if name not in after)
    changed = []
    for name, c in after.items():
        previous = before.get(name)
        if previous is not None and previous != c:
            found = _container_changes(previous, c)
            if found:
                changed.append(ContainerChanges(name=name, id=c.id, changes=tuple(found)))
    if not (added or removed or changed):
        return None  # only fields that are not compared (status text, created) differ
    return HostContainers(host=new.name, added=added, removed=removed, changed=tuple(changed))


def _host_ref(h: SnapshotHost) -> HostRef:
    return HostRef(name=h.name, url=h.url, state=h.state.value, containers=len(h.containers))


def diff_snapshots(old: Snapshot, new: Snapshot) -> SnapshotDiff:
    before = {h.name: h for h in old.hosts}
    after = {h.name: h for h in new.hosts}
    hosts_changed: list[HostChanges] = []
    containers: list[HostContainers] = []
    for name, host in after.items():
        previous = before.get(name)
        if previous is None:
            continue
        changes = _host_changes(previous, host)
        if changes:
            hosts_changed.append(HostChanges(name=name, changes=tuple(changes)))
        found = _containers(previous, host)
        if found is not None:
            containers.append(found)
    return SnapshotDiff(
        old=DiffSide(id=old.id, taken_at=old.taken_at),
        new=DiffSide(id=new.id, taken_at=new.taken_at),
        hosts_added=tuple(_host_ref(h) for n, h in after.items() if n not in before),
        hosts_removed=tuple(_host_ref(h) for n, h in before.items() if n not in after),
        hosts_changed=tuple(hosts_changed),
        containers=tuple(containers),
    )
