"""The ordering guard between full polls and event refreshes of one host's container rows.

Every observation of a host's containers (a full poll, or a targeted event refresh) takes a
*stamp* from the host's :class:`RowClock` when its request is **sent**. A row, or the absence of
a row, is applied only when its observation is at least as new as the one that last wrote that
row, so a slow poll sent before a ``die`` event can never put the container back to ``running``.
Removed containers keep their stamp (a tombstone) until a full poll sent later confirms them gone.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import msgspec

from fleetd.fleet.records import ContainerDiff, ContainerRecord, places_of

__all__ = ["FullMerge", "RowClock", "SubsetMerge", "drift_of", "keep_health", "semantic_fields"]


def keep_health(old: ContainerRecord | None, new: ContainerRecord) -> ContainerRecord:
    """``new`` as listed, but with the health ``old`` knew when the list tells none for a container
    that kept running: podman 4.3's list never reports health (fleetd learns it from its health
    events and an inspect, :mod:`fleetd.fleet.watch_podman`), and a running container's health
    check cannot go away without the container being replaced. dockerd always lists the health
    of a running health-checked container, so for it this changes nothing."""
    if (
        old is not None
        and new.health == "none"
        and old.health != "none"
        and new.state == "running"
        and old.state == "running"
    ):
        return msgspec.structs.replace(new, health=old.health)
    return new


def semantic_fields(a: ContainerRecord, b: ContainerRecord) -> list[str]:
    """The fields in which two records of one container differ, ignoring what only time moves
    (``status`` like "Up 3 minutes", ``observed_at``, ``stale``)."""
    out: list[str] = []
    if a.state != b.state:
        out.append("state")
    if a.health != b.health:
        out.append("health")
    if a.names != b.names:
        out.append("names")
    if a.image != b.image or a.image_id != b.image_id:
        out.append("image")
    if a.labels != b.labels:
        out.append("labels")
    if a.ports != b.ports:
        out.append("ports")
    if a.status != b.status and (a.status.split(" ", 1)[0] != b.status.split(" ", 1)[0]):
        out.append("status")
    return out


def drift_of(diff: ContainerDiff, before: Iterable[ContainerRecord]) -> tuple[str, ...]:
    """What :meth:`RowClock.merge_full` counts as drift, from a poll builder's diff against the rows
    as they were (``before``): containers found, gone, or changed in a way that matters."""
    out = [c.id for c in diff.added]
    if diff.changed:
        old = {c.id: c for c in before}
        out.extend(c.id for c, _ in diff.changed if (o := old.get(c.id)) is None or semantic_fields(o, c))
    out.extend(c.id for c in diff.removed)
    return tuple(out)


@dataclass(frozen=True, slots=True)
class FullMerge:
    records: tuple[ContainerRecord, ...]
    #: Containers the poll found different from what the rows said (state, health, names, ...),
    #: including rows it found that were missing and rows it found gone. Rows a newer event
    #: refresh wrote are not compared.
    drifted: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class SubsetMerge:
    records: tuple[ContainerRecord, ...]
    applied: tuple[str, ...]  # ids whose row (or absence) this observation decided
    #: For each applied id, in order: its row before and after (None: no row).
    pairs: tuple[tuple[ContainerRecord | None, ContainerRecord | None], ...] = ()
    #: Every applied row took the place of a row of the same id and name: the ids and their order
    #: are those of ``current`` (a state change, the usual refresh).
    in_place: bool = False


_replace = msgspec.structs.replace


def _by_name(c: ContainerRecord) -> str:
    return c.name


def _stamped(rows: list[ContainerRecord] | tuple[ContainerRecord, ...], stamp: int) -> dict[str, int] | None:
    """Every row's id at ``stamp``: the stamps of a list that decided every row; None when the
    list names a container twice (only the general merge sorts that out)."""
    stamps = dict.fromkeys([r.id for r in rows], stamp)
    return stamps if len(stamps) == len(rows) else None


def _health_to_keep(current: Iterable[ContainerRecord], diff: ContainerDiff) -> bool:
    """A changed row whose health :func:`keep_health` would keep (a podman list): the list is not
    the rows as listed then, and the general merge applies it."""
    if not diff.changed:
        return False
    old = {c.id: c for c in current}
    return any(keep_health(old.get(r.id), r) is not r for r, _ in diff.changed)


class RowClock:
    """Stamps of one host's rows. Not thread-safe; used from the event loop only."""

    __slots__ = ("_counter", "_stamps")

    def __init__(self) -> None:
        self._counter = 0
        self._stamps: dict[str, int] = {}  # container id → stamp of the observation that wrote it

    def next_stamp(self) -> int:
        """Take this just before sending the request whose answer will be merged."""
        self._counter += 1
        return self._counter

    def stamp_of(self, container_id: str) -> int:
        return self._stamps.get(container_id, 0)

    def newest(self) -> int:
        """The stamp of the newest observation that wrote a row (0: none)."""
        return max(self._stamps.values(), default=0)

    def take_list(
        self,
        current: tuple[ContainerRecord, ...],
        fresh: tuple[ContainerRecord, ...],
        stamp: int,
        diff: ContainerDiff,
        agreed: bool,
    ) -> FullMerge:
        """A watched host's full list sent at ``stamp``. ``agreed``: ``current`` are the poll
        builder's own records, so its ``diff`` is against the rows as they are. Then an empty diff
        only moves the stamps, and a list no newer observation contradicts is the rows as listed,
        its drift read off the diff. Anything else is :meth:`merge_full`'s. The rows are ``fresh``
        itself whenever the list decided every row as it is."""
        if agreed and not diff:
            self.confirm(fresh, stamp)
            return FullMerge(fresh, ())
        if agreed and self.newest() <= stamp and not _health_to_keep(current, diff) and self.reset(fresh, stamp):
            return FullMerge(fresh, drift_of(diff, current))
        merged = self.merge_full(current, fresh, stamp)
        if len(merged.records) == len(fresh) and all(a is b for a, b in zip(merged.records, fresh, strict=True)):
            return FullMerge(fresh, merged.drifted)
        return merged

    def reset(self, rows: Iterable[ContainerRecord], stamp: int) -> bool:
        """A full list sent at ``stamp``, no older than any row's observation, decided every row:
        as :meth:`merge_full` leaves the stamps then (every row this list's, no tombstone). False,
        nothing changed, when the list names a container twice."""
        stamps = _stamped(list(rows), stamp)
        if stamps is None:
            return False
        self._stamps = stamps
        return True

    def merge_full(
        self, current: Iterable[ContainerRecord], fresh: Iterable[ContainerRecord], stamp: int
    ) -> FullMerge:
        """A full list sent at ``stamp``: it decides every row no newer observation decided."""
        stamps = self._stamps
        if not stamps or max(stamps.values()) <= stamp:
            merged = self._merge_all(current, fresh, stamp)
            if merged is not None:
                return merged
        return self._merge_some(current, fresh, stamp)

    def _merge_some(
        self, current: Iterable[ContainerRecord], fresh: Iterable[ContainerRecord], stamp: int
    ) -> FullMerge:
        stamps = self._stamps
        cur = {c.id: c for c in current}
        out: dict[str, ContainerRecord] = {}
        drifted: list[str] = []
        seen: set[str] = set()
        for r in fresh:
            seen.add(r.id)
            if stamps.get(r.id, 0) > stamp:  # a newer refresh wrote (or removed) this row
                if r.id in cur:
                    out[r.id] = cur[r.id]
                continue
            stamps[r.id] = stamp
            old = cur.get(r.id)
            r = keep_health(old, r)
            # the same but for observed_at (compared in C): no field to look at
            if old is None or (_replace(old, observed_at=r.observed_at) != r and semantic_fields(old, r)):
                drifted.append(r.id)
            out[r.id] = r
        for cid, c in cur.items():
            if cid in seen:
                continue
            if stamps.get(cid, 0) > stamp:  # created after this list was sent
                out[cid] = c
            else:
                drifted.append(cid)
        # Tombstones this list confirms (or knows nothing newer about) are not needed any more.
        for cid in [cid for cid, s in stamps.items() if s <= stamp and cid not in out]:
            del stamps[cid]
        return FullMerge(tuple(sorted(out.values(), key=_by_name)), tuple(drifted))

    def _merge_all(
        self, current: Iterable[ContainerRecord], fresh: Iterable[ContainerRecord], stamp: int
    ) -> FullMerge | None:
        """:meth:`merge_full` when no observation sent after this list wrote a row (the usual
        case): the list decides every row, so it is the result, as it is (None: the list names
        a container twice, which only the general merge sorts out)."""
        cur = {c.id: c for c in current}
        out: list[ContainerRecord] = []
        drifted: list[str] = []
        for r in fresh:
            old = cur.pop(r.id, None)
            if old is None:
                drifted.append(r.id)
            else:
                r = keep_health(old, r)
                if _replace(old, observed_at=r.observed_at) != r and semantic_fields(old, r):
                    drifted.append(r.id)
            out.append(r)
        drifted.extend(cur)  # rows the list found gone
        stamps = _stamped(out, stamp)
        if stamps is None:
            return None
        self._stamps = stamps
        return FullMerge(tuple(sorted(out, key=_by_name)), tuple(drifted))

    def confirm(self, fresh: Iterable[ContainerRecord], stamp: int) -> None:
        """A full list sent at ``stamp`` that found exactly the rows the previous full list decided,
        with no other observation in between: :meth:`merge_full` would keep them all, so only their
        stamps move (added by the poll path, which knows when this holds)."""
        stamps = self._stamps
        for r in fresh:
            if stamps.get(r.id, 0) < stamp:
                stamps[r.id] = stamp

    def merge_subset(
        self,
        current: Iterable[ContainerRecord],
        asked: Iterable[str],
        fresh: Iterable[ContainerRecord],
        stamp: int,
    ) -> SubsetMerge:
        """A targeted list of the ``asked`` ids sent at ``stamp``: an asked id missing from the
        answer was removed."""
        stamps = self._stamps
        cur = current if isinstance(current, tuple) else tuple(current)
        got = {r.id: r for r in fresh}
        applied: list[str] = []
        for cid in asked:
            if stamps.get(cid, 0) > stamp:
                continue
            stamps[cid] = stamp
            applied.append(cid)
        if not applied:
            return SubsetMerge(cur, (), (), True)
        pairs: list[tuple[ContainerRecord | None, ContainerRecord | None]] = []
        at = places_of(cur, [(cid, got.get(cid)) for cid in applied])
        if at is not None:  # every row in the place of its old self: the order holds, no sort
            out = list(cur)
            for i, cid in zip(at, applied, strict=True):
                out[i] = keep_health(cur[i], got[cid])
                pairs.append((cur[i], out[i]))
            return SubsetMerge(tuple(out), tuple(applied), tuple(pairs), True)
        # added, removed or renamed (or an id twice): the general way
        rows = {c.id: c for c in cur}
        pairs = []
        for cid in applied:
            old, row = rows.get(cid), got.get(cid)
            if row is not None:
                row = rows[cid] = keep_health(old, row)
            else:
                rows.pop(cid, None)
            pairs.append((old, row))
        return SubsetMerge(tuple(sorted(rows.values(), key=_by_name)), tuple(applied), tuple(pairs))
