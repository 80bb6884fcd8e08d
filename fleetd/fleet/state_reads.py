"""The read side of :class:`~fleetd.fleet.state.FleetState`: lookups, container and host pages,
the summary and engine twins.

The writer methods and the data they keep are in fleetd/fleet/state.py; this mixin only reads them, and
delegates container queries, lookups and the summary to fleet/queries.py.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

from fleetd.fleet import queries
from fleetd.fleet.changes import ChangeHub
from fleetd.fleet.engine_ids import EngineIds
from fleetd.fleet.host_tally import HostTally
from fleetd.fleet.index import ContainerIndex
from fleetd.fleet.queries import ContainerQuery, FleetSummary
from fleetd.fleet.records import ContainerRecord, HostRecord, HostStatus

__all__ = ["FleetReads"]


class FleetReads:
    """Mixed into FleetState, which holds (as its dataclass fields) every attribute declared here."""

    __slots__ = ()

    clock: Callable[[], float]
    changes: ChangeHub
    _hosts: dict[str, HostRecord]
    _engines: EngineIds
    _index: ContainerIndex
    _tally: HostTally

    @property
    def version(self) -> int:
        """Moves whenever a write changed something readers can see (the newest change's seq)."""
        return self.changes.seq

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
        raise NotImplementedError  # FleetState.is_ready: readiness is the writer's bookkeeping

    def duplicate_engine_ids(self) -> dict[str, list[str]]:
        """Engine IDs reported by more than one host (cloned VMs): both are kept, both flagged.
        Kept by the writer (fleet/engine_ids.py): O(duplicates), no scan of the fleet."""
        return self._engines.duplicates()

    def engine_twins(self, name: str) -> dict[str, list[str]]:
        """:meth:`duplicate_engine_ids` for this host's engine ID alone: O(twins)."""
        record = self._hosts.get(name)
        eid = record.facts.engine_id if record is not None and record.facts is not None else ""
        twins = self._engines.hosts_of(eid)
        return {eid: sorted(twins)} if len(twins) > 1 else {}

    def containers(self, query: ContainerQuery, now: float | None = None) -> list[ContainerRecord]:
        """Containers across the fleet, ordered by host then name."""
        return self.containers_page(query, now=now)[0]

    def containers_page(
        self, query: ContainerQuery, offset: int = 0, limit: int | None = None, now: float | None = None
    ) -> tuple[list[ContainerRecord], int]:
        """One page of :meth:`containers` and how many there are in all, answered from the index."""
        now = self.clock() if now is None else now
        return queries.containers_page(self._hosts, self._index, query, offset, limit, now)

    def find_container(self, host: str, ref: str) -> ContainerRecord | None:
        """By full id, unique id prefix, or name. Raises AmbiguousContainer for a shared prefix."""
        record = self._hosts.get(host)
        return None if record is None else queries.find_container(record, ref, self.clock())

    def summary(self, now: float | None = None) -> FleetSummary:
        now = self.clock() if now is None else now
        return queries.summary(self._hosts, self._index, self._tally, self._engines.shared, now, self.is_ready())

    def hosts_page(
        self, status: HostStatus | None = None, labels: Sequence[str] = (), offset: int = 0, limit: int | None = None
    ) -> tuple[list[HostRecord], int]:
        """One page of the hosts in inventory order, filtered by status and host labels, and the total."""
        return queries.hosts_page(self._hosts, self._tally, status, labels, offset, limit)

    def security_counts(self) -> dict[str, int]:
        """Hosts per finding code and how many have any (the summary's ``security``)."""
        return queries.security(self._tally)
