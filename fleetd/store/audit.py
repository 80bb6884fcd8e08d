"""The ``audit`` table of fleetd's database: insert, query, retention.

Plain functions of a :class:`sqlite3.Connection`, meant to run in the database's threads
(``await db.run(insert_entry, entry)``, ``await db.read(query_entries, q)``), never on the event
loop. The table itself is created by the database's migration 1::

    audit(id INTEGER PRIMARY KEY, ts REAL NOT NULL, actor TEXT NOT NULL, role TEXT,
          action TEXT NOT NULL, method TEXT, path TEXT, targets TEXT /*JSON*/,
          outcome TEXT NOT NULL, status INTEGER, detail TEXT /*JSON*/, client TEXT)
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import msgspec

__all__ = [
    "AuditEntry",
    "AuditQuery",
    "AuditTarget",
    "SqlRunner",
    "insert_entry",
    "prune_entries",
    "query_entries",
]

T = TypeVar("T")


class SqlRunner(Protocol):
    """What the audit log needs of fleetd's database (:class:`fleetd.store.db.Database`):
    ``run`` calls ``fn(conn, *args)`` on its writer thread, ``read`` on its reader thread."""

    async def run(self, fn: Callable[..., T], /, *args: Any) -> T: ...

    async def read(self, fn: Callable[..., T], /, *args: Any) -> T: ...


class AuditTarget(msgspec.Struct, frozen=True, omit_defaults=True):
    host: str
    id: str | None = None
    name: str | None = None


class AuditEntry(msgspec.Struct, frozen=True):
    ts: float
    actor: str  # token name or "anonymous"; never the token
    role: str | None
    action: str
    method: str | None
    path: str | None
    targets: list[AuditTarget]
    outcome: str  # ok | partial | failed | denied | cancelled
    status: int | None
    detail: dict[str, Any] | None
    client: str | None
    id: int | None = None


@dataclass(frozen=True, slots=True)
class AuditQuery:
    since: float | None = None
    until: float | None = None
    actor: str | None = None
    host: str | None = None
    action: str | None = None
    limit: int = 100
    offset: int = 0


_targets_encoder = msgspec.json.Encoder()
_targets_decoder = msgspec.json.Decoder(list[AuditTarget])
_detail_decoder = msgspec.json.Decoder(dict[str, Any])

_COLUMNS = "id, ts, actor, role, action, method, path, targets, outcome, status, detail, client"


def insert_entry(conn: sqlite3.Connection, entry: AuditEntry) -> int:
    with conn:
        cur = conn.execute(
            "INSERT INTO audit (ts, actor, role, action, method, path, targets, outcome, status, detail,"
            " client) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                entry.ts,
                entry.actor,
                entry.role,
                entry.action,
                entry.method,
                entry.path,
                _targets_encoder.encode(entry.targets).decode(),
                entry.outcome,
                entry.status,
                _targets_encoder.encode(entry.detail).decode() if entry.detail is not None else None,
                entry.client,
            ),
        )
    return int(cur.lastrowid or 0)


def _where(q: AuditQuery) -> tuple[str, list[object]]:
    clauses: list[str] = []
    args: list[object] = []
    if q.since is not None:
        clauses.append("ts >= ?")
        args.append(q.since)
    if q.until is not None:
        clauses.append("ts <= ?")
        args.append(q.until)
    if q.actor is not None:
        clauses.append("actor = ?")
        args.append(q.actor)
    if q.action is not None:
        # "container.start", or its last part alone ("start"), which would otherwise find nothing
        clauses.append("(action = ? OR (instr(?, '.') = 0 AND action LIKE '%.' || ? ESCAPE '\\'))")
        last = q.action.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        args.extend((q.action, q.action, last))
    if q.host is not None:
        clauses.append(
            "EXISTS (SELECT 1 FROM json_each(audit.targets) AS t WHERE json_extract(t.value, '$.host') = ?)"
        )
        args.append(q.host)
    return (" WHERE " + " AND ".join(clauses)) if clauses else "", args


def _row(row: tuple[Any, ...]) -> AuditEntry:
    (id_, ts, actor, role, action, method, path, targets, outcome, status, detail, client) = row
    return AuditEntry(
        id=id_,
        ts=ts,
        actor=actor,
        role=role,
        action=action,
        method=method,
        path=path,
        targets=_targets_decoder.decode(targets) if targets else [],
        outcome=outcome,
        status=status,
        detail=_detail_decoder.decode(detail) if detail else None,
        client=client,
    )


def query_entries(conn: sqlite3.Connection, q: AuditQuery) -> tuple[list[AuditEntry], int]:
    """Matching entries newest first (a page of them) and how many match in all."""
    where, args = _where(q)
    total = conn.execute(f"SELECT count(*) FROM audit{where}", args).fetchone()[0]
    rows = conn.execute(
        f"SELECT {_COLUMNS} FROM audit{where} ORDER BY id DESC LIMIT ? OFFSET ?", [*args, q.limit, q.offset]
    ).fetchall()
    return [_row(r) for r in rows], int(total)


def prune_entries(conn: sqlite3.Connection, before: float | None, keep_last: int | None) -> int:
    """Delete entries older than ``before`` and all but the newest ``keep_last``; returns how many."""
    deleted = 0
    with conn:
        if before is not None:
            deleted += conn.execute("DELETE FROM audit WHERE ts < ?", (before,)).rowcount
        if keep_last is not None:
            deleted += conn.execute(
                "DELETE FROM audit WHERE id <= (SELECT id FROM audit ORDER BY id DESC LIMIT 1 OFFSET ?)",
                (keep_last,),
            ).rowcount
    return deleted
