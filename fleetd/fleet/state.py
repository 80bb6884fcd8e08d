"""The fleet aggregate and its queries. The poller writes; the API, store and metrics read."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

import msgspec

from fleetd.config.model import HostSettings
from fleetd.fleet.models import ContainerRecord, HostRecord, HostStatus

__all__ = ["AmbiguousContainer", "ContainerQuery", "FleetState", "label_matches"]


class AmbiguousContainer(LookupError):
    def __init__(self, ref: str, matches: list[str]) -> None:
        super().__init__(f"container reference {ref!r} matches {len(matches)} containers")
        self.ref = ref
        self.matches = matches


def label_matches(labels: dict[str, str], selectors: Iterable[str]) -> bool:
    """``k`` means the label exists; ``k=v`` means it has that value; all must hold."""
    for sel in selectors:
        key, eq, value = sel.partition("=")
        if key not in labels or (eq and labels[key] != value):
            return False
    return True


def _image_matches(c: ContainerRecord, ref: str) -> bool:
    if c.image == ref or c.image_id == ref:
        return True
    if c.image.rpartition(":")[0] == ref and "/" not in c.image.rpartition(":")[2]:
        return True  # "nginx" matches "nginx:1.27"
    short = ref.removeprefix("sha256:")
    return len(short) >= 12 and c.image_id.removeprefix("sha256:").startswith(short)


@dataclass(frozen=True, slots=True)
class ContainerQuery:
    hosts: tuple[str, ...] = ()
    state: str | None = None
    health: str | None = None
    stale: bool | None = None
    labels: tuple[str, ...] = ()
    image: str | None = None
    name: str | None = None  # substring


@dataclass(slots=True)
class FleetState:
    """All hosts by name, in inventory order; the single source of truth for readers."""

    clock: Callable[[], float] = time.time
    _hosts: dict[str, HostRecord] = field(default_factory=dict)
    _ready_once: bool = False
    version: int = 0  # bumped on every write, so readers can cache derived views

    # -- writes (poller and reload only) -----------------------------------------

    def add(self, settings: HostSettings) -> HostRecord:
        record = HostRecord(settings=settings)
        if not settings.enabled:
            record.status = HostStatus.DISABLED
            record.first_poll_done = True
        self._hosts[settings.name] = record
        self.touch()
        return record

    def remove(self, name: str) -> None:
        if self._hosts.pop(name, None) is not None:
            self.touch()

    def reorder(self, names: list[str]) -> None:
        """Inventory order after a reload."""
        self._hosts = {n: self._hosts[n] for n in names if n in self._hosts}

    def touch(self) -> None:
        self.version += 1

    # -- reads ----------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._hosts)

    def __contains__(self, name: object) -> bool:
        return name in self._hosts

    def get(self, name: str) -> HostRecord | None:
        return self._hosts.get(name)

    def records(self) -> Iterator[HostRecord]:
        return iter(list(self._hosts.values()))

    def sorted_records(self) -> list[HostRecord]:
        return sorted(self._hosts.values(), key=lambda r: r.name)

    def is_ready(self) -> bool:
        """True once every enabled host finished its first poll attempt; stays true after."""
        if not self._ready_once and all(r.first_poll_done for r in self._hosts.values()):
            self._ready_once = True
        return self._ready_once

    def duplicate_engine_ids(self) -> dict[str, list[str]]:
        """Engine IDs reported by more than one host (cloned VMs): both are kept, both flagged."""
        by_id: dict[str, list[str]] = {}
        for r in self._hosts.values():
            if r.facts is not None and r.facts.engine_id:
                by_id.setdefault(r.facts.engine_id, []).append(r.name)
        return {k: sorted(v) for k, v in by_id.items() if len(v) > 1}

    def host_containers(self, record: HostRecord, now: float) -> list[ContainerRecord]:
        if record.is_stale(now):
            return [msgspec.structs.replace(c, stale=True) for c in record.containers]
        return list(record.containers)

    def containers(self, query: ContainerQuery, now: float | None = None) -> list[ContainerRecord]:
        """Containers across the fleet, ordered by host then name."""
        now = self.clock() if now is None else now
        wanted = set(query.hosts)
        out: list[ContainerRecord] = []
        for record in self.sorted_records():
            if wanted and record.name not in wanted:
                continue
            stale = record.is_stale(now)
            if query.stale is not None and query.stale != stale:
                continue
            for c in record.containers:
                if query.state is not None and c.state != query.state:
                    continue
                if query.health is not None and c.health != query.health:
                    continue
                if query.name is not None and not any(query.name in n for n in c.names or [c.name]):
                    continue
                if query.labels and not label_matches(c.labels, query.labels):
                    continue
                if query.image is not None and not _image_matches(c, query.image):
                    continue
                out.append(msgspec.structs.replace(c, stale=True) if stale else c)
        return out

    def find_container(self, host: str, ref: str) -> ContainerRecord | None:
        """By full id, unique id prefix, or name. Raises AmbiguousContainer for a shared prefix."""
        record = self._hosts.get(host)
        if record is None:
            return None
        now = self.clock()
        name = ref.lstrip("/")
        by_name = [c for c in record.containers if name in c.names]
        if by_name:
            chosen = by_name[0]
        else:
            matches = [c for c in record.containers if c.id.startswith(ref)]
            if not matches:
                return None
            if len(matches) > 1:
                raise AmbiguousContainer(ref, [c.id[:12] for c in matches])
            chosen = matches[0]
        return msgspec.structs.replace(chosen, stale=True) if record.is_stale(now) else chosen

    def summary(self, now: float | None = None) -> dict[str, object]:
        now = self.clock() if now is None else now
        hosts_by_state: Counter[str] = Counter({s.value: 0 for s in HostStatus})
        containers_by_state: Counter[str] = Counter()
        per_image: Counter[str] = Counter()
        stale_hosts = 0
        stale_containers = 0
        total = 0
        for r in self._hosts.values():
            hosts_by_state[r.status.value] += 1
            stale = r.is_stale(now)
            stale_hosts += stale
            tally = r.tally()  # per host, so a summary costs O(hosts), not O(containers)
            containers_by_state.update(tally.by_state)
            per_image.update(tally.by_image)
            total += len(r.containers)
            stale_containers += stale * len(r.containers)
        duplicates = self.duplicate_engine_ids()
        return {
            "hosts": {
                "total": len(self._hosts),
                "by_state": dict(hosts_by_state),
                "stale": stale_hosts,
                "duplicate_engine_id": sum(len(v) for v in duplicates.values()),
            },
            "containers": {
                "total": total,
                "by_state": dict(sorted(containers_by_state.items())),
                "stale": stale_containers,
            },
            "images": dict(sorted(per_image.items(), key=lambda kv: (-kv[1], kv[0]))),
            "ready": self.is_ready(),
            "generated_at": now,
        }
