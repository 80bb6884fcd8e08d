"""Snapshot storage: content-addressed host versions, one small row per host per snapshot.

Tables (migration 1, :mod:`fleetd.store.schema`)::

    snapshots       id (AUTOINCREMENT: only increases), taken_at, trigger, fleetd_version, counts
    host_versions   id, digest = sha256(body), name, containers, body = zlib(msgpack(HostContent))
    snapshot_hosts  (snapshot_id, position) → version_id, state, stale, last_seen, last_error

A host whose :class:`HostContent` (url, labels, engine facts, containers without volatile fields)
did not change since any earlier snapshot points at the existing version: an unchanged fleet adds one
``snapshots`` row and one ``snapshot_hosts`` row per host per snapshot, nothing else. A snapshot is
written in one transaction, so it is either stored completely or not listed at all.

Writes go through :meth:`Database.run` (the writer thread), reads through :meth:`Database.read`
(the reader thread), so a write in progress never holds up the API's reads.
"""

from __future__ import annotations

import hashlib
import sqlite3
import zlib
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import msgspec

from fleetd.fleet.records import HostStatus
from fleetd.snapshot.model import (
    FleetCapture,
    HostContent,
    Snapshot,
    SnapshotCounts,
    SnapshotHost,
    SnapshotInfo,
    Trigger,
    build_snapshot,
    yield_gil,
)
from fleetd.store.db import Database, read_transaction, transaction
from fleetd.store.retention import PruneResult, RetentionPolicy, delete_snapshots, prune
from fleetd.util.timefmt import parse_rfc3339, rfc3339

__all__ = ["ListQuery", "SnapshotPage", "SnapshotStore", "content_digest"]

_encoder = msgspec.msgpack.Encoder(order="deterministic")  # same content, same bytes, same digest
_decoder = msgspec.msgpack.Decoder(HostContent)
_COLUMNS = "id, taken_at, trigger, fleetd_version, hosts, hosts_up, hosts_failed, hosts_stale, containers, running"


def content_digest(content: HostContent) -> tuple[bytes, bytes]:
    """(encoded body, sha256 digest) of a host's non-volatile content."""
    body = _encoder.encode(content)
    return body, hashlib.sha256(body).digest()


@dataclass(frozen=True, slots=True)
class ListQuery:
    since: float | None = None  # taken_at >= since
    until: float | None = None  # taken_at < until
    before: int | None = None  # id < before (the cursor of the next page)
    limit: int = 100
    offset: int = 0


@dataclass(frozen=True, slots=True)
class SnapshotPage:
    items: list[SnapshotInfo]
    total: int  # matching since/until, regardless of paging


def _ts(text: str | None) -> float | None:
    return parse_rfc3339(text) if text else None


def _chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def _info(row: tuple[Any, ...]) -> SnapshotInfo:
    sid, taken_at, trigger, version, hosts, up, failed, stale, containers, running = row
    return SnapshotInfo(
        id=int(sid),
        taken_at=rfc3339(taken_at) or "",
        trigger=Trigger(trigger),
        fleetd_version=version,
        counts=SnapshotCounts(
            hosts=hosts,
            hosts_up=up,
            hosts_failed=failed,
            hosts_stale=stale,
            containers=containers,
            running=running,
        ),
    )


def _save(conn: sqlite3.Connection, snapshot: Snapshot) -> SnapshotInfo:
    prepared = []
    for h in snapshot.hosts:  # before the transaction: the write lock is held only for the inserts
        prepared.append((h, *content_digest(h.content())))
        yield_gil()
    c = snapshot.counts
    with transaction(conn):
        cur = conn.execute(
            "INSERT INTO snapshots (taken_at, trigger, fleetd_version, hosts, hosts_up, hosts_failed,"
            " hosts_stale, containers, running) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                parse_rfc3339(snapshot.taken_at),
                snapshot.trigger.value,
                snapshot.fleetd_version,
                c.hosts,
                c.hosts_up,
                c.hosts_failed,
                c.hosts_stale,
                c.containers,
                c.running,
            ),
        )
        sid = int(cur.lastrowid or 0)
        known: dict[bytes, int] = {}
        digests = list({d for _h, _b, d in prepared})
        for chunk in _chunks(digests, 500):
            marks = ",".join("?" * len(chunk))
            for digest, vid in conn.execute(
                f"SELECT digest, id FROM host_versions WHERE digest IN ({marks})", chunk
            ):
                known[bytes(digest)] = int(vid)
        rows = []
        for position, (host, body, digest) in enumerate(prepared):
            vid = known.get(digest)
            if vid is None:
                cur = conn.execute(
                    "INSERT INTO host_versions (digest, name, containers, body) VALUES (?, ?, ?, ?)",
                    (digest, host.name, len(host.containers), zlib.compress(body, 6)),
                )
                vid = known[digest] = int(cur.lastrowid or 0)
            rows.append(
                (sid, position, vid, host.state.value, int(host.stale), _ts(host.last_seen), host.last_error)
            )
        conn.executemany(
            "INSERT INTO snapshot_hosts (snapshot_id, position, version_id, state, stale, last_seen,"
            " last_error) VALUES (?, ?, ?, ?, ?, ?, ?)",
            rows,
        )
    return snapshot.info(sid)


def _save_capture(conn: sqlite3.Connection, capture: FleetCapture) -> SnapshotInfo:
    return _save(conn, build_snapshot(capture))


class _ContentCache:
    """Decoded host versions by id (ids are never reused); used on the reader thread only."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._items: OrderedDict[int, HostContent] = OrderedDict()

    def get(self, vid: int) -> HostContent | None:
        found = self._items.get(vid)
        if found is not None:
            self._items.move_to_end(vid)
        return found

    def put(self, vid: int, content: HostContent) -> None:
        self._items[vid] = content
        if len(self._items) > self.size:
            self._items.popitem(last=False)


class SnapshotStore:
    """Async façade over the snapshot tables of a :class:`Database`."""

    def __init__(self, db: Database, *, cache_size: int = 2048) -> None:
        self.db = db
        self._cache = _ContentCache(cache_size)

    # -- writes (writer thread) ----------------------------------------------------------------

    async def save(self, capture: FleetCapture) -> SnapshotInfo:
        """Build the snapshot from a capture and store it, both on the writer thread."""
        return await self.db.run(_save_capture, capture)

    async def delete(self, snapshot_id: int) -> bool:
        """Delete one snapshot (and the host versions only it used); False if there was none."""
        result = await delete_snapshots(self.db, [snapshot_id])
        return result.deleted == 1

    async def prune(self, policy: RetentionPolicy, now: float) -> PruneResult:
        """Apply retention in short transactions; readers are never locked out (WAL)."""
        return await prune(self.db, policy, now)

    # -- reads (reader thread) ------------------------------------------------------------------

    async def list(self, query: ListQuery) -> SnapshotPage:
        return await self.db.read(self._list, query)

    async def get(self, snapshot_id: int) -> Snapshot | None:
        return await self.db.read(self._load, snapshot_id)

    async def pair(self, old: int, new: int) -> tuple[Snapshot | None, Snapshot | None]:
        """Both snapshots from one read transaction."""
        return await self.db.read(self._pair, old, new)

    async def latest_id(self) -> int | None:
        return await self.db.read(_scalar_id, "SELECT max(id) FROM snapshots")

    async def previous_id(self, snapshot_id: int) -> int | None:
        return await self.db.read(_scalar_id, "SELECT max(id) FROM snapshots WHERE id < ?", snapshot_id)

    async def latest_taken_at(self) -> float | None:
        def q(conn: sqlite3.Connection) -> float | None:
            row = conn.execute("SELECT taken_at FROM snapshots ORDER BY id DESC LIMIT 1").fetchone()
            return float(row[0]) if row else None

        return await self.db.read(q)

    # -- on the reader thread ------------------------------------------------------------------------

    def _list(self, conn: sqlite3.Connection, q: ListQuery) -> SnapshotPage:
        clauses: list[str] = []
        args: list[object] = []
        if q.since is not None:
            clauses.append("taken_at >= ?")
            args.append(q.since)
        if q.until is not None:
            clauses.append("taken_at < ?")
            args.append(q.until)
        where = " AND ".join(clauses)
        page_where = " AND ".join([*clauses, "id < ?"]) if q.before is not None else where
        page_args = [*args, q.before] if q.before is not None else args
        with read_transaction(conn):
            total = conn.execute(
                "SELECT count(*) FROM snapshots" + (f" WHERE {where}" if where else ""), args
            ).fetchone()[0]
            rows = conn.execute(
                f"SELECT {_COLUMNS} FROM snapshots"
                + (f" WHERE {page_where}" if page_where else "")
                + " ORDER BY id DESC LIMIT ? OFFSET ?",
                [*page_args, q.limit, q.offset],
            ).fetchall()
        return SnapshotPage(items=[_info(r) for r in rows], total=int(total))

    def _load_one(self, conn: sqlite3.Connection, snapshot_id: int) -> Snapshot | None:
        row = conn.execute(f"SELECT {_COLUMNS} FROM snapshots WHERE id = ?", (snapshot_id,)).fetchone()
        if row is None:
            return None
        info = _info(row)
        hosts: list[SnapshotHost] = []
        for vid, state, stale, last_seen, last_error in conn.execute(
            "SELECT h.version_id, h.state, h.stale, h.last_seen, h.last_error FROM snapshot_hosts AS h"
            " WHERE h.snapshot_id = ? ORDER BY h.position",
            (snapshot_id,),
        ):
            content = self._cache.get(vid)
            if content is None:
                body = conn.execute("SELECT body FROM host_versions WHERE id = ?", (vid,)).fetchone()[0]
                content = _decoder.decode(zlib.decompress(body))
                self._cache.put(vid, content)
                yield_gil()
            hosts.append(
                SnapshotHost.from_content(
                    content,
                    state=HostStatus(state),
                    stale=bool(stale),
                    last_seen=rfc3339(last_seen),
                    last_error=last_error,
                )
            )
        return Snapshot(
            id=info.id,
            taken_at=info.taken_at,
            trigger=info.trigger,
            fleetd_version=info.fleetd_version,
            counts=info.counts,
            hosts=tuple(hosts),
        )

    def _load(self, conn: sqlite3.Connection, snapshot_id: int) -> Snapshot | None:
        with read_transaction(conn):
            return self._load_one(conn, snapshot_id)

    def _pair(
        self, conn: sqlite3.Connection, old: int, new: int
    ) -> tuple[Snapshot | None, Snapshot | None]:
        with read_transaction(conn):
            return self._load_one(conn, old), self._load_one(conn, new)


def _scalar_id(conn: sqlite3.Connection, sql: str, *args: object) -> int | None:
    row = conn.execute(sql, args).fetchone()
    return int(row[0]) if row and row[0] is not None else None
