"""fleetd's SQLite database: one file, one writer thread, one reader thread, nothing on the event loop.

    async with Database(path, created_by="fleetd 0.1.0") as db:
        entry_id = await db.run(insert_entry, entry)   # insert_entry(conn, entry) on the writer thread
        page = await db.read(query_entries, query)     # query_entries(conn, query) on the reader thread

``run(fn, *args, **kwargs)`` calls ``fn(conn, *args, **kwargs)`` on the **writer** thread, which owns
the only connection that writes; calls run one at a time, in the order they were made. ``read`` does the
same on the **reader** thread with a second connection (``query_only``): in WAL mode it sees the last
committed state and is never held up by a long write or a prune in progress. A ``fn`` must not keep
the connection or its cursors beyond its return.

Transactions: connections use Python's default handling, so ``with conn:`` commits (or rolls back)
and a data-changing statement opens a transaction implicitly. For several statements that must be
atomic, use :func:`transaction` (``BEGIN IMMEDIATE``). A ``fn`` that returns with a transaction still
open is a bug: the transaction is rolled back and :class:`StoreError` raised.

Opening checks the file is fleetd's (:mod:`fleetd.store.schema`), then applies pending migrations.
Durability: ``journal_mode=WAL`` and ``synchronous=FULL``. WAL with NORMAL already survives a killed
process; FULL also fsyncs the WAL at each commit, so a snapshot or an audit entry reported as stored
survives a power cut too. Commits are rare (one per snapshot, one per audited call), so the fsync
costs next to nothing.

:meth:`Database.aclose` waits for calls already queued, closes both connections and is safe to call
twice; :meth:`Database.interrupt` makes the call running on the writer fail and roll back (shutdown
after the grace period).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import sqlite3
import threading
import urllib.parse
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import structlog

from fleetd.store.errors import StoreClosed, StoreError, StoreFailed, StoreInterrupted, StoreReplaced
from fleetd.store.schema import MIGRATIONS, Migration, check_identity, migrate, require_current

__all__ = ["Database", "read_transaction", "transaction"]

T = TypeVar("T")

log = structlog.get_logger("fleetd.store")


PROGRESS_STEPS = 1000  # SQLite VM steps between two checks of the abort flag


class _WriterConnection(sqlite3.Connection):
    """The writer's connection, which :meth:`Database.interrupt` can tell to give up.

    ``sqlite3_interrupt`` alone only stops a statement that is running at that instant; a write made
    of many short statements (or Python work between them) would carry on. The flag stays set until
    the current call returns: the progress handler fails every statement meanwhile, and
    :func:`transaction` refuses to commit.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.abort = threading.Event()
        self.set_progress_handler(self._should_abort, PROGRESS_STEPS)

    def _should_abort(self) -> int:
        return 1 if self.abort.is_set() else 0


def _aborted(conn: sqlite3.Connection) -> bool:
    return isinstance(conn, _WriterConnection) and conn.abort.is_set()


@contextlib.contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """``BEGIN IMMEDIATE`` … ``COMMIT``; rolled back if the block raises or the writer was interrupted."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
        if _aborted(conn):
            raise sqlite3.OperationalError("interrupted")
    except BaseException:
        conn.rollback()
        raise
    conn.commit()


@contextlib.contextmanager
def read_transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """A deferred ``BEGIN``: every statement inside sees the same committed state (WAL)."""
    conn.execute("BEGIN")
    try:
        yield conn
    finally:
        conn.rollback()  # nothing was written; this only ends the read


class _Owner:
    """One thread and the one connection it opened; nothing else touches that connection."""

    def __init__(self, path: Path, name: str) -> None:
        self.path = path
        self.conn: sqlite3.Connection | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
        self._shut = False
        self.identity: tuple[int, int] | None = None  # (st_dev, st_ino) when writes check the file

    async def submit(self, fn: Callable[[], T]) -> T:
        loop = asyncio.get_running_loop()
        try:
            future = loop.run_in_executor(self._executor, fn)
        except RuntimeError:  # the executor was shut down
            raise StoreClosed(self.path) from None
        return await future

    async def connect(self, opener: Callable[[], tuple[sqlite3.Connection, int]]) -> int:
        def attach() -> int:
            conn, version = opener()
            self.conn = conn
            return version

        return await self.submit(attach)

    async def call(self, fn: Callable[..., T], args: tuple[Any, ...], kwargs: dict[str, Any]) -> T:
        return await self.submit(functools.partial(self._call, fn, args, kwargs))

    def _call(self, fn: Callable[..., T], args: tuple[Any, ...], kwargs: dict[str, Any]) -> T:
        conn = self.conn
        if conn is None:
            raise StoreClosed(self.path)
        if self.identity is not None:
            self._check_identity(self.identity)
        try:
            result = fn(conn, *args, **kwargs)
        except sqlite3.Error as exc:
            if conn.in_transaction:
                conn.rollback()
            if isinstance(exc, sqlite3.OperationalError) and str(exc) == "interrupted":
                raise StoreInterrupted(self.path, exc) from exc
            raise StoreFailed(self.path, exc) from exc
        except BaseException:
            if conn.in_transaction:
                conn.rollback()
            raise
        finally:
            if isinstance(conn, _WriterConnection):
                conn.abort.clear()  # an interrupt ends with the call it interrupted
        if conn.in_transaction:
            conn.rollback()
            name = getattr(fn, "__qualname__", repr(fn))
            raise StoreError(f"{self.path}: {name} left a transaction open; it was rolled back")
        return result

    def watch_identity(self) -> None:
        """From now on every call first checks that the path still names the file that was opened."""
        st = os.stat(self.path)
        self.identity = (st.st_dev, st.st_ino)

    def _check_identity(self, identity: tuple[int, int]) -> None:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            raise StoreReplaced(self.path, "deleted") from None
        if (st.st_dev, st.st_ino) != identity:
            raise StoreReplaced(self.path, "replaced by another file")

    def interrupt(self) -> None:
        conn = self.conn
        if isinstance(conn, _WriterConnection):
            conn.abort.set()
            conn.interrupt()  # documented as safe to call from another thread

    async def close(self) -> None:
        if self._shut:
            return
        self._shut = True

        def close_conn() -> None:
            if self.conn is not None:
                self.conn.close()
                self.conn = None

        try:
            await asyncio.get_running_loop().run_in_executor(self._executor, close_conn)
        finally:
            self._executor.shutdown(wait=False)  # idle by now: its last job just ran


def _wrap(path: Path, exc: sqlite3.Error) -> StoreError:
    return StoreError(f"{path}: {exc}")


def _open_writer(
    path: Path, busy_timeout: float, migrations: tuple[Migration, ...], created_by: str
) -> tuple[sqlite3.Connection, int]:
    if not path.parent.is_dir():
        raise StoreError(f"{path}: directory {path.parent} does not exist")
    try:
        conn = sqlite3.connect(path, timeout=busy_timeout, factory=_WriterConnection)
    except sqlite3.Error as exc:
        raise _wrap(path, exc) from None
    try:
        found = check_identity(conn, path, migrations)  # before anything is written to the file
        if found == 0:
            conn.execute("PRAGMA auto_vacuum = INCREMENTAL")  # only takes effect before the first table
        mode = str(conn.execute("PRAGMA journal_mode = WAL").fetchone()[0])
        if mode.lower() != "wal":
            raise StoreError(f"{path}: SQLite refused WAL mode (journal_mode is {mode}); use a local disk")
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("PRAGMA foreign_keys = ON")
        migrate(conn, found, created_by=created_by, migrations=migrations)
        version = int(conn.execute("PRAGMA user_version").fetchone()[0])
    except sqlite3.Error as exc:
        conn.close()
        raise _wrap(path, exc) from None
    except BaseException:
        conn.close()
        raise
    return conn, version


def _open_reader(
    path: Path, busy_timeout: float, readonly: bool, migrations: tuple[Migration, ...]
) -> tuple[sqlite3.Connection, int]:
    if readonly and not path.is_file():
        raise StoreError(f"{path}: no such database file")
    try:
        if readonly:
            uri = f"file:{urllib.parse.quote(str(path))}?mode=ro"
            conn = sqlite3.connect(uri, uri=True, timeout=busy_timeout)
        else:
            conn = sqlite3.connect(path, timeout=busy_timeout)
    except sqlite3.Error as exc:
        raise _wrap(path, exc) from None
    try:
        version = check_identity(conn, path, migrations)
        if readonly:
            require_current(version, path, migrations)
        conn.execute("PRAGMA query_only = ON")
        conn.execute("PRAGMA foreign_keys = ON")
    except sqlite3.Error as exc:
        conn.close()
        raise _wrap(path, exc) from None
    except BaseException:
        conn.close()
        raise
    return conn, version


class Database:
    """See the module docstring. ``readonly=True`` (the CLI) never writes, never migrates."""

    def __init__(
        self,
        path: Path,
        *,
        readonly: bool = False,
        created_by: str = "fleetd",
        busy_timeout: float = 5.0,
        migrations: tuple[Migration, ...] = MIGRATIONS,
    ) -> None:
        self.path = path
        self.readonly = readonly
        self.created_by = created_by
        self.busy_timeout = busy_timeout
        self.migrations = migrations
        self.version: int | None = None  # the schema version once open
        self._writer: _Owner | None = None
        self._reader: _Owner | None = None
        self._closed = False
        self._replaced: StoreReplaced | None = None  # logged once, then every write refused with it

    @property
    def is_open(self) -> bool:
        return self.version is not None and not self._closed

    async def open(self) -> Database:
        """Check, migrate and connect; raises :class:`StoreError` saying why the file is unusable."""
        if self._writer is not None or self._reader is not None or self._closed:
            raise RuntimeError("Database.open() may be called once")
        try:
            if not self.readonly:
                self._writer = _Owner(self.path, "fleetd-db-writer")
                self.version = await self._writer.connect(
                    functools.partial(
                        _open_writer, self.path, self.busy_timeout, self.migrations, self.created_by
                    )
                )
                await self._writer.submit(self._writer.watch_identity)
            self._reader = _Owner(self.path, "fleetd-db-reader")
            version = await self._reader.connect(
                functools.partial(_open_reader, self.path, self.busy_timeout, self.readonly, self.migrations)
            )
            self.version = version if self.version is None else self.version
        except BaseException:
            await self.aclose()
            raise
        return self

    async def run(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        """``fn(conn, *args, **kwargs)`` on the writer thread."""
        if self._closed or self._writer is None:
            if self.readonly and not self._closed:
                raise StoreError(f"{self.path}: opened read-only")
            raise StoreClosed(self.path)
        if self._replaced is not None:
            raise self._replaced
        try:
            return await self._writer.call(fn, args, kwargs)
        except StoreReplaced as exc:
            self._replaced = exc
            log.error("database file lost", path=str(self.path), what=exc.what, error=str(exc))
            raise

    async def read(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        """``fn(conn, *args, **kwargs)`` on the reader thread (a ``query_only`` connection)."""
        if self._closed or self._reader is None:
            raise StoreClosed(self.path)
        return await self._reader.call(fn, args, kwargs)

    def interrupt(self) -> None:
        """Make the writer's current call fail with ``OperationalError("interrupted")`` and roll back."""
        if self._writer is not None:
            self._writer.interrupt()

    async def aclose(self) -> None:
        """Let queued calls finish, then close both connections; safe to call twice."""
        if self._closed:
            return
        self._closed = True
        for owner in (self._writer, self._reader):
            if owner is not None:
                await owner.close()

    async def __aenter__(self) -> Database:
        return await self.open()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
