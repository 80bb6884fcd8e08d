"""The read side of the fleet aggregate: container queries and pages, lookups, the fleet summary.

Functions over the state's hosts (by name, in inventory order) and its container index; FleetState
(fleet/state.py, the writer) delegates its read methods here, so readers keep calling the state.
Nothing here changes a record: stale copies of containers are new structs.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from itertools import islice

import msgspec

from fleetd.fleet.host_tally import HostTally
from fleetd.fleet.index import ContainerIndex
from fleetd.fleet.match import label_matches
from fleetd.fleet.records import ContainerRecord, HostRecord, HostStatus

__all__ = [
    "AmbiguousContainer",
    "ContainerCounts",
    "ContainerQuery",
    "FleetSummary",
    "HostCounts",
    "containers_page",
    "find_container",
    "hosts_page",
    "security",
    "summary",
]


class AmbiguousContainer(LookupError):
    def __init__(self, ref: str, matches: list[str]) -> None:
        super().__init__(f"container reference {ref!r} matches {len(matches)} containers")
        self.ref = ref
        self.matches = matches


@dataclass(frozen=True, slots=True)
class ContainerQuery:
    hosts: tuple[str, ...] = ()
    state: str | None = None
    health: str | None = None
    stale: bool | None = None
    labels: tuple[str, ...] = ()
    image: str | None = None
    name: str | None = None  # exact or a glob (fleet.match.container_name_matches)


class HostCounts(msgspec.Struct, frozen=True):
    total: int
    by_state: dict[str, int]
    stale: int
    duplicate_engine_id: int


class ContainerCounts(msgspec.Struct, frozen=True):
    total: int
    by_state: dict[str, int]
    stale: int


class FleetSummary(msgspec.Struct, frozen=True):
    """Fleet totals at ``generated_at`` (wall clock), from the writer's counts: O(stale hosts)."""

    hosts: HostCounts
    containers: ContainerCounts
    images: dict[str, int]  # containers per image reference, most used first
    ready: bool
    generated_at: float


def stale_copy(c: ContainerRecord) -> ContainerRecord:
    return msgspec.structs.replace(c, stale=True)


def containers_page(
    hosts: Mapping[str, HostRecord],
    index: ContainerIndex,
    query: ContainerQuery,
    offset: int,
    limit: int | None,
    now: float,
) -> tuple[list[ContainerRecord], int]:
    """One page of the containers matching ``query``, ordered by host then name, and how many there
    are in all, answered from the index."""
    if query.hosts:
        pool: Collection[HostRecord] = [r for h in query.hosts if (r := hosts.get(h)) is not None]
    names: list[str] | None = list(query.hosts) if query.hosts else None
    if query.stale is not None:
        names = [r.name for r in (pool if query.hosts else hosts.values()) if r.is_stale(now) is query.stale]
        if not query.hosts and len(names) == len(hosts):
            names = None  # every host qualifies: no host set to unite
    gids = index.select(
        hosts=names,
        state=query.state,
        health=query.health,
        labels=query.labels,
        image=query.image,
        name=query.name,
    )
    if gids is None:  # no predicate at all: every container, in order
        page, total = index.page_all(offset, limit)
    else:
        total = len(gids)
        page = index.ordered(gids, offset, limit)
    stale = {h for h in {c.host for c in page} if (r := hosts.get(h)) is not None and r.is_stale(now)}
    if stale:
        page = [stale_copy(c) if c.host in stale else c for c in page]
    return page, total


def hosts_page(
    hosts: Mapping[str, HostRecord],
    tally: HostTally,
    status: HostStatus | None,
    labels: Sequence[str],
    offset: int,
    limit: int | None,
) -> tuple[list[HostRecord], int]:
    """One page of the hosts (inventory order) in ``status`` carrying every label selector, and how
    many there are. Without labels: O(offset + page) (a status's hosts are a set the writer keeps,
    tested in C while the inventory is walked); with labels every host is tested."""
    end = None if limit is None else offset + limit
    if labels:
        found = [
            r
            for r in hosts.values()
            if (status is None or r.status is status) and label_matches(dict(r.settings.labels), labels)
        ]
        return found[offset:end], len(found)
    if status is None:
        return list(islice(hosts.values(), offset, end)), len(hosts)
    members = tally.by_status[status]
    names = islice(filter(members.__contains__, hosts), offset, end)
    return [hosts[n] for n in names], len(members)


def find_container(record: HostRecord, ref: str, now: float) -> ContainerRecord | None:
    """By full id, unique id prefix, or name. Raises AmbiguousContainer for a shared prefix."""
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
    return stale_copy(chosen) if record.is_stale(now) else chosen


def summary(
    hosts: Mapping[str, HostRecord],
    index: ContainerIndex,
    tally: HostTally,
    duplicates: int,
    now: float,
    ready: bool,
) -> FleetSummary:
    """Container counts from the index, host counts from the tally (both kept by the writer); only
    the stale hosts are visited."""
    stale = list(tally.stale_hosts(hosts, now))
    total, by_state, by_image = index.counts()
    return FleetSummary(
        hosts=HostCounts(
            total=len(hosts),
            by_state={s.value: len(tally.by_status[s]) for s in HostStatus},
            stale=len(stale),
            duplicate_engine_id=duplicates,
        ),
        containers=ContainerCounts(
            total=total, by_state=by_state, stale=sum(len(r.containers) for r in stale)
        ),
        images=by_image,
        ready=ready,
        generated_at=now,
    )


def security(tally: HostTally) -> dict[str, int]:
    """Hosts per finding code (the summary's ``security``), as findings.security_summary counts them."""
    counts = {"insecure_transport": 0, "tls_verify_disabled": 0, "tls_cert_expiring": 0, "hosts_flagged": 0}
    counts.update((code, n) for code, n in tally.finding_codes.items() if n > 0)
    counts["hosts_flagged"] = tally.flagged
    return counts
