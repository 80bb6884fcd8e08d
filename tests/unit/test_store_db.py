"""fleetd.store.db: identity checks, migrations, threads, transactions, closing."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from pathlib import Path

import pytest

from fleetd.store import (
    APPLICATION_ID,
    Database,
    NotFleetdDatabase,
    SchemaTooNew,
    SchemaTooOld,
    StoreClosed,
    StoreError,
    StoreFailed,
    StoreInterrupted,
    StoreReplaced,
    transaction,
)
from fleetd.store.schema import MIGRATIONS, Migration


def pragma(path: Path, name: str) -> object:
    conn = sqlite3.connect(path)
    try:
        return conn.execute(f"PRAGMA {name}").fetchone()[0]
    finally:
        conn.close()


def tables(path: Path) -> set[str]:
    conn = sqlite3.connect(path)
    try:
        return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    finally:
        conn.close()


async def meta_count(db: Database, key: str) -> int:
    def count(conn: sqlite3.Connection) -> int:
        return int(conn.execute("SELECT count(*) FROM meta WHERE key = ?", (key,)).fetchone()[0])

    return await db.read(count)


async def test_a_new_database_is_created_migrated_and_marked_as_fleetd_s(tmp_path: Path) -> None:
    path = tmp_path / "fleetd.db"
    async with Database(path, created_by="fleetd test") as db:
        assert db.version == len(MIGRATIONS) == 1
        meta = dict(await db.read(lambda c: c.execute("SELECT key, value FROM meta").fetchall()))
        assert meta["application"] == "fleetd" and meta["created_by"] == "fleetd test"
        assert meta["schema_version"] == "1"
        assert meta["migration.1"].endswith("by fleetd test: snapshots and the audit log")
        assert await db.run(lambda c: c.execute("PRAGMA journal_mode").fetchone()[0]) == "wal"
        assert await db.run(lambda c: c.execute("PRAGMA synchronous").fetchone()[0]) == 2  # FULL
        assert await db.run(lambda c: c.execute("PRAGMA auto_vacuum").fetchone()[0]) == 2  # incremental
    assert pragma(path, "application_id") == APPLICATION_ID
    assert pragma(path, "user_version") == 1
    assert {"meta", "audit", "snapshots", "host_versions", "snapshot_hosts"} <= tables(path)


async def test_the_audit_table_has_the_agreed_columns_and_indexes(tmp_path: Path) -> None:
    async with Database(tmp_path / "fleetd.db") as db:
        cols = await db.read(lambda c: [r[1] for r in c.execute("PRAGMA table_info(audit)")])
        indexes = await db.read(lambda c: {r[1] for r in c.execute("PRAGMA index_list(audit)")})
    assert cols == [
        "id", "ts", "actor", "role", "action", "method", "path", "targets", "outcome", "status", "detail",
        "client",
    ]  # fmt: skip
    assert {"audit_ts", "audit_actor"} <= indexes


async def test_reopening_keeps_the_data_and_does_not_migrate_again(tmp_path: Path) -> None:
    path = tmp_path / "fleetd.db"
    async with Database(path) as db:
        await db.run(lambda c: c.execute("INSERT INTO meta VALUES ('marker', 'x')") and c.commit())
    async with Database(path) as db:
        assert await db.read(lambda c: c.execute("SELECT value FROM meta WHERE key='marker'").fetchone()) == (
            "x",
        )
        assert db.version == 1


async def test_another_program_s_database_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY)")
    conn.commit()
    conn.close()
    before = path.read_bytes()
    with pytest.raises(NotFleetdDatabase, match=r"not a fleetd database .*tables: customers"):
        await Database(path).open()
    assert path.read_bytes() == before  # not even switched to WAL


async def test_a_foreign_application_id_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA application_id = 1234")
    conn.commit()
    conn.close()
    with pytest.raises(NotFleetdDatabase, match="application_id is 0x4d2"):
        await Database(path).open()


async def test_a_file_that_is_not_sqlite_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "fleetd.db"
    path.write_bytes(b"this is a text file, not a database\n" * 200)
    with pytest.raises(NotFleetdDatabase, match="not an SQLite database"):
        await Database(path).open()


async def test_a_newer_schema_is_refused_with_what_to_do(tmp_path: Path) -> None:
    path = tmp_path / "fleetd.db"
    async with Database(path):
        pass
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA user_version = 7")
    conn.commit()
    conn.close()
    with pytest.raises(SchemaTooNew, match=r"schema version 7 .* newer fleetd; this one knows versions up to 1"):
        await Database(path).open()


async def test_a_missing_directory_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="does not exist"):
        await Database(tmp_path / "nope" / "fleetd.db").open()


async def test_a_failing_migration_leaves_the_previous_version(tmp_path: Path) -> None:
    path = tmp_path / "fleetd.db"
    async with Database(path):
        pass
    broken = (*MIGRATIONS, Migration(2, "broken", ("CREATE TABLE extra (a)", "THIS IS NOT SQL")))
    with pytest.raises(StoreError, match="syntax error"):
        await Database(path, migrations=broken).open()
    assert pragma(path, "user_version") == 1
    assert "extra" not in tables(path)
    good = (*MIGRATIONS, Migration(2, "extra table", ("CREATE TABLE extra (a)",)))
    async with Database(path, migrations=good) as db:
        assert db.version == 2
        meta = dict(await db.read(lambda c: c.execute("SELECT key, value FROM meta").fetchall()))
        assert meta["schema_version"] == "2" and "migration.1" in meta and "extra table" in meta["migration.2"]
    assert "extra" in tables(path)


async def test_calls_run_on_two_threads_off_the_event_loop(tmp_path: Path) -> None:
    async with Database(tmp_path / "fleetd.db") as db:
        writers = {await db.run(lambda _c: threading.get_ident()) for _ in range(5)}
        readers = {await db.read(lambda _c: threading.get_ident()) for _ in range(5)}
    assert len(writers) == 1 and len(readers) == 1
    assert writers.isdisjoint(readers)
    assert threading.get_ident() not in writers | readers


async def test_readers_are_not_held_up_by_a_long_write(tmp_path: Path) -> None:
    started = threading.Event()

    def long_write(conn: sqlite3.Connection) -> None:
        with transaction(conn):
            conn.execute("INSERT INTO meta VALUES ('slow', 'write')")
            started.set()
            time.sleep(1.0)

    async with Database(tmp_path / "fleetd.db") as db:
        writing = asyncio.ensure_future(db.run(long_write))
        await asyncio.to_thread(started.wait, 5)
        t0 = time.monotonic()
        seen = await meta_count(db, "slow")
        assert time.monotonic() - t0 < 0.5
        assert seen == 0  # the uncommitted write is invisible
        await writing
        assert await meta_count(db, "slow") == 1


async def test_the_reader_connection_cannot_write(tmp_path: Path) -> None:
    async with Database(tmp_path / "fleetd.db") as db:
        with pytest.raises(StoreFailed, match="readonly") as info:
            await db.read(lambda c: c.execute("INSERT INTO meta VALUES ('a', 'b')"))
        assert isinstance(info.value.cause, sqlite3.OperationalError)  # no sqlite3.Error leaves the store


async def test_a_function_leaving_a_transaction_open_is_rolled_back_and_reported(tmp_path: Path) -> None:
    async with Database(tmp_path / "fleetd.db") as db:
        with pytest.raises(StoreError, match="left a transaction open"):
            await db.run(lambda c: c.execute("INSERT INTO meta VALUES ('dangling', 'x')"))
        assert await meta_count(db, "dangling") == 0
        # and the connection still works
        await db.run(lambda c: c.execute("INSERT INTO meta VALUES ('ok', 'x')") and c.commit())


async def test_an_exception_rolls_back_and_propagates(tmp_path: Path) -> None:
    def failing(conn: sqlite3.Connection) -> None:
        with transaction(conn):
            conn.execute("INSERT INTO meta VALUES ('half', 'x')")
            raise ValueError("boom")

    async with Database(tmp_path / "fleetd.db") as db:
        with pytest.raises(ValueError, match="boom"):
            await db.run(failing)
        assert await meta_count(db, "half") == 0


async def test_aclose_waits_for_queued_writes_and_is_idempotent(tmp_path: Path) -> None:
    path = tmp_path / "fleetd.db"
    db = await Database(path).open()

    def slow_insert(conn: sqlite3.Connection, key: str) -> None:
        time.sleep(0.2)
        with transaction(conn):
            conn.execute("INSERT INTO meta VALUES (?, 'x')", (key,))

    queued = [asyncio.ensure_future(db.run(slow_insert, f"k{i}")) for i in range(3)]
    await asyncio.sleep(0)
    await db.aclose()
    await db.aclose()
    await asyncio.gather(*queued)
    with pytest.raises(StoreClosed):
        await db.run(lambda c: None)
    with pytest.raises(StoreClosed):
        await db.read(lambda c: None)
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT count(*) FROM meta WHERE key LIKE 'k%'").fetchone()[0] == 3
    conn.close()


async def test_interrupt_aborts_the_running_write(tmp_path: Path) -> None:
    async with Database(tmp_path / "fleetd.db") as db:
        endless = asyncio.ensure_future(
            db.run(
                lambda c: c.execute(
                    "WITH RECURSIVE r(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM r) SELECT count(*) FROM r"
                ).fetchone()
            )
        )
        await asyncio.sleep(0.2)
        db.interrupt()
        with pytest.raises(StoreInterrupted, match="interrupted"):
            await asyncio.wait_for(endless, 5)


async def test_read_only_open_never_writes_and_needs_a_current_schema(tmp_path: Path) -> None:
    path = tmp_path / "fleetd.db"
    with pytest.raises(StoreError, match="no such database file"):
        await Database(path, readonly=True).open()
    path.touch()
    with pytest.raises(SchemaTooOld, match="start `fleetd run` once"):
        await Database(path, readonly=True).open()
    path.unlink()
    async with Database(path):
        pass
    async with Database(path, readonly=True) as db:
        assert db.version == 1
        with pytest.raises(StoreError, match="read-only"):
            await db.run(lambda c: None)
        assert await db.read(lambda c: c.execute("SELECT count(*) FROM snapshots").fetchone()[0]) == 0


def _insert(conn: sqlite3.Connection) -> None:
    with conn:
        conn.execute("CREATE TABLE IF NOT EXISTS t (x)")
        conn.execute("INSERT INTO t VALUES (1)")


@pytest.mark.parametrize("how", ["deleted", "replaced by another file"])
async def test_a_file_deleted_or_replaced_while_open_refuses_every_later_write(tmp_path: Path, how: str) -> None:
    path = tmp_path / "fleetd.db"
    async with Database(path) as db:
        await db.run(_insert)
        if how == "deleted":
            remove_database_files(tmp_path)
        else:
            async with Database(tmp_path / "other.db"):
                pass
            (tmp_path / "other.db").rename(path)
        for _ in range(2):  # refused again, not only the first time
            with pytest.raises(StoreReplaced, match=f"was {how} while fleetd was running"):
                await db.run(_insert)
    if how == "deleted":
        assert not path.exists()  # nothing was written into a new file behind the user's back


def remove_database_files(directory: Path) -> None:
    for p in directory.glob("fleetd.db*"):  # the file, its -wal and -shm
        p.unlink()
