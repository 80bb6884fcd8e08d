"""The database's identity and schema: ``PRAGMA application_id``, ``PRAGMA user_version``, migrations.

A fleetd database carries :data:`APPLICATION_ID` in its header and its schema version in
``user_version``; both are set inside the migration's transaction, so a crash mid-migration leaves the
previous version intact. Migration N takes the schema from version N-1 to N and is never edited once
released: a schema change is a new migration appended to :data:`MIGRATIONS`.

Identity checks, before anything is written to the file:

- not SQLite at all, or ``application_id`` of another program → :class:`NotFleetdDatabase`
- ``application_id`` 0 but tables present (someone else's database) → :class:`NotFleetdDatabase`
- ``user_version`` above what this fleetd knows → :class:`SchemaTooNew`
"""

from __future__ import annotations

import sqlite3
import time
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from fleetd.store.errors import NotFleetdDatabase, SchemaTooNew, SchemaTooOld, StoreError
from fleetd.util.timefmt import rfc3339

__all__ = [
    "APPLICATION_ID",
    "MIGRATIONS",
    "Migration",
    "check_identity",
    "current_version",
    "file_problem",
    "migrate",
    "require_current",
]

#: "FLTD" in ASCII; what `file(1)` and `sqlite3 db 'PRAGMA application_id'` show for fleetd's databases.
APPLICATION_ID: Final = 0x464C5444


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    description: str
    statements: tuple[str, ...]


_V1: Final = (
    # Free-form facts about the file itself (who created it, when).
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID",
    # The audit log (fleetd.store.audit): one row per mutating API call.
    """CREATE TABLE audit (
        id INTEGER PRIMARY KEY,
        ts REAL NOT NULL,
        actor TEXT NOT NULL,
        role TEXT,
        action TEXT NOT NULL,
        method TEXT,
        path TEXT,
        targets TEXT,  -- JSON
        outcome TEXT NOT NULL,
        status INTEGER,
        detail TEXT,  -- JSON
        client TEXT
    )""",
    "CREATE INDEX audit_ts ON audit (ts)",
    "CREATE INDEX audit_actor ON audit (actor, ts)",
    # Snapshots (fleetd.store.snapshots): one row per snapshot with its counts ...
    """CREATE TABLE snapshots (
        id INTEGER PRIMARY KEY AUTOINCREMENT,  -- never reused, so ids only increase
        taken_at REAL NOT NULL,
        trigger TEXT NOT NULL,
        fleetd_version TEXT NOT NULL,
        hosts INTEGER NOT NULL,
        hosts_up INTEGER NOT NULL,
        hosts_failed INTEGER NOT NULL,
        hosts_stale INTEGER NOT NULL,
        containers INTEGER NOT NULL,
        running INTEGER NOT NULL
    )""",
    "CREATE INDEX snapshots_taken_at ON snapshots (taken_at)",
    # ... immutable per-host contents, shared by every snapshot in which the host looked the same ...
    """CREATE TABLE host_versions (
        id INTEGER PRIMARY KEY AUTOINCREMENT,  -- never reused: readers may cache decoded bodies by id
        digest BLOB NOT NULL UNIQUE,  -- sha256 of the body before compression
        name TEXT NOT NULL,
        containers INTEGER NOT NULL,
        body BLOB NOT NULL  -- zlib(msgpack(HostContent))
    )""",
    # ... and one small row per host per snapshot: which content, plus the volatile fields.
    """CREATE TABLE snapshot_hosts (
        snapshot_id INTEGER NOT NULL REFERENCES snapshots (id),
        position INTEGER NOT NULL,
        version_id INTEGER NOT NULL REFERENCES host_versions (id),
        state TEXT NOT NULL,
        stale INTEGER NOT NULL,
        last_seen REAL,
        last_error TEXT,
        PRIMARY KEY (snapshot_id, position)
    ) WITHOUT ROWID""",
    "CREATE INDEX snapshot_hosts_version ON snapshot_hosts (version_id)",
)

MIGRATIONS: Final[tuple[Migration, ...]] = (Migration(1, "snapshots and the audit log", _V1),)


def current_version(migrations: tuple[Migration, ...] = MIGRATIONS) -> int:
    return migrations[-1].version if migrations else 0


def _pragma_int(conn: sqlite3.Connection, name: str) -> int:
    row = conn.execute(f"PRAGMA {name}").fetchone()
    return int(row[0])


def check_identity(
    conn: sqlite3.Connection, path: Path, migrations: tuple[Migration, ...] = MIGRATIONS
) -> int:
    """The schema version of a fleetd database (0: empty, to be created); raises if not fleetd's."""
    try:
        app_id = _pragma_int(conn, "application_id")
        version = _pragma_int(conn, "user_version")
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
    except sqlite3.DatabaseError as exc:
        raise NotFleetdDatabase(path, f"not an SQLite database: {exc}") from None
    if app_id != APPLICATION_ID:
        if app_id != 0:
            raise NotFleetdDatabase(path, f"its application_id is {app_id:#x}, fleetd's is {APPLICATION_ID:#x}")
        if tables or version:
            shown = ", ".join(sorted(tables)[:5]) or "none"
            raise NotFleetdDatabase(path, f"it has no fleetd application_id and holds tables: {shown}")
        return 0
    known = current_version(migrations)
    if version > known:
        raise SchemaTooNew(path, version, known)
    return version


def file_problem(path: Path, migrations: tuple[Migration, ...] = MIGRATIONS) -> str | None:
    """Why fleetd could not use the database file at ``path``, or None (also when it does not exist yet).

    Synchronous and read-only (``fleetd check-config``): it never creates, migrates or converts the file.
    """
    if not path.parent.is_dir():
        return f"{path}: directory {path.parent} does not exist"
    if not path.exists():
        return None
    try:
        conn = sqlite3.connect(f"file:{urllib.parse.quote(str(path))}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        return f"{path}: {exc}"
    try:
        check_identity(conn, path, migrations)
    except StoreError as exc:
        return str(exc)
    except sqlite3.Error as exc:
        return f"{path}: {exc}"
    finally:
        conn.close()
    return None


def require_current(version: int, path: Path, migrations: tuple[Migration, ...] = MIGRATIONS) -> None:
    """For read-only opens, which never migrate."""
    known = current_version(migrations)
    if version < known:
        raise SchemaTooOld(path, version, known)


def migrate(
    conn: sqlite3.Connection,
    found: int,
    *,
    created_by: str,
    migrations: tuple[Migration, ...] = MIGRATIONS,
) -> list[int]:
    """Apply every migration above ``found``, each in its own transaction; returns the versions applied."""
    applied: list[int] = []
    for m in migrations:
        if m.version <= found:
            continue
        conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in m.statements:
                conn.execute(statement)
            if found == 0 and not applied:
                conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
                conn.executemany(
                    "INSERT INTO meta (key, value) VALUES (?, ?)",
                    [("application", "fleetd"), ("created_by", created_by), ("created_at", rfc3339(time.time()) or "")],
                )
            conn.execute(f"PRAGMA user_version = {int(m.version)}")
            conn.executemany(  # for people reading the file with sqlite3; the PRAGMA is what counts
                "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                [
                    ("schema_version", str(m.version)),
                    (f"migration.{m.version}", f"{rfc3339(time.time())} by {created_by}: {m.description}"),
                ],
            )
            conn.commit()
        except BaseException:
            conn.rollback()
            raise
        applied.append(m.version)
    return applied
