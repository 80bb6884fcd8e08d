"""Fleet-wide host counts kept by the state's writer, so the summary and host pages are not O(hosts).

``GET /api/v1/summary`` counted every host's status, staleness, findings and engine ID on each call
(15 ms of the event loop per call at 10,000 hosts, 20 calls a second in the scale bench's mix), and a
page of ``GET /api/v1/hosts?state=up`` tested every host. The writer tells this tally what it changed
(:meth:`moved` for a status, :meth:`seen` for a successful poll, :meth:`findings`, :meth:`resettled`
for new settings); readers get counts in O(1), the hosts of one status as a set, and the stale hosts
in O(stale).

Staleness is a matter of time (``now - last_seen > stale_after``), so it cannot be counted ahead: the
healthy hosts with data are kept per ``stale_after`` in the order of their last successful poll (a
success moves its host to the end; wall-clock times of successive polls only grow unless the clock is
set back, which marks the group for one sort). The stale ones are then a prefix of each group, walked
until the first fresh host. Hosts that are not up but have data are always stale (``is_stale``): they
are kept as a set.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Mapping

from fleetd.fleet.records import Finding, HostRecord, HostStatus

__all__ = ["HostTally"]


class HostTally:
    __slots__ = ("_fresh", "_group", "_tail", "_unordered", "by_status", "finding_codes", "flagged", "stale_data")

    def __init__(self) -> None:
        self.by_status: dict[HostStatus, set[str]] = {s: set() for s in HostStatus}
        self.stale_data: set[str] = set()  # not up, with data from an earlier success: stale
        self.finding_codes: Counter[str] = Counter()  # hosts per finding code
        self.flagged = 0  # hosts with at least one finding
        # stale_after → up hosts with data, in the order of their last success (dicts as ordered sets)
        self._fresh: dict[float, dict[str, None]] = {}
        self._group: dict[str, float] = {}  # host → its group in _fresh
        self._tail: dict[float, float] = {}  # group → last_seen of its last host
        self._unordered: set[float] = set()

    # -- the writer --------------------------------------------------------------------------------

    def added(self, record: HostRecord) -> None:
        self.by_status[record.status].add(record.name)
        self.findings(record.name, (), record.findings)
        self._place(record)

    def removed(self, record: HostRecord) -> None:
        name = record.name
        self.by_status[record.status].discard(name)
        self.stale_data.discard(name)
        self.findings(name, record.findings, ())
        self._leave(name)

    def moved(self, record: HostRecord, before: HostStatus) -> None:
        """The record's status was ``before`` (its last_seen already written)."""
        if record.status is before:
            return
        name = record.name
        self.by_status[before].discard(name)
        self.by_status[record.status].add(name)
        self._place(record)

    def seen(self, record: HostRecord) -> None:
        """A successful poll wrote ``last_seen`` (the record is up)."""
        self._leave(record.name)
        self._place(record)

    def resettled(self, record: HostRecord) -> None:
        """New settings (``stale_after`` may have moved)."""
        if record.name in self._group and self._group[record.name] != record.stale_after():
            self._leave(record.name)
            self._place(record)

    def findings(self, name: str, before: tuple[Finding, ...], after: tuple[Finding, ...]) -> None:
        del name  # counted per host: the codes are enough
        self.finding_codes.subtract({f.code for f in before})
        self.finding_codes.update({f.code for f in after})
        self.flagged += bool(after) - bool(before)

    def _place(self, record: HostRecord) -> None:
        name = record.name
        if record.status is HostStatus.UP or record.last_seen is None:
            self.stale_data.discard(name)
        else:
            self.stale_data.add(name)
        if record.status is not HostStatus.UP or record.last_seen is None:
            self._leave(name)
            return
        if name in self._group:
            return  # already placed (its last success has not moved)
        after = record.stale_after()
        group = self._fresh.setdefault(after, {})
        tail = self._tail.get(after)
        if group and tail is not None and record.last_seen < tail:
            self._unordered.add(after)  # the wall clock went back, or an older host joined
        group[name] = None
        self._group[name] = after
        self._tail[after] = record.last_seen if tail is None else max(tail, record.last_seen)

    def _leave(self, name: str) -> None:
        after = self._group.pop(name, None)
        if after is not None:
            group = self._fresh[after]
            del group[name]
            if not group:
                del self._fresh[after]
                self._tail.pop(after, None)
                self._unordered.discard(after)

    # -- readers ------------------------------------------------------------------------------------

    def stale_hosts(self, hosts: Mapping[str, HostRecord], now: float) -> Iterator[HostRecord]:
        """Every host :meth:`HostRecord.is_stale` at ``now``, in no particular order: O(stale)."""
        for name in self.stale_data:
            yield hosts[name]
        for after, group in self._fresh.items():
            if after in self._unordered:
                order = sorted(group, key=lambda n: hosts[n].last_seen or 0.0)
                group.clear()
                group.update(dict.fromkeys(order))
                self._unordered.discard(after)
            for name in group:
                record = hosts[name]
                seen = record.last_seen
                assert seen is not None  # only hosts with data are placed
                if now - seen > after:
                    yield record
                else:
                    break  # the rest were seen later: fresh too
