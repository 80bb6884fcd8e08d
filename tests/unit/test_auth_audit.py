"""The audit trail: a row per mutating call (refused ones too), GET /api/v1/audit, retention, shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from fleetd.api.keys import FLEET
from fleetd.config.model import SnapshotSettings
from fleetd.ops.audit import Auditor, AuditRetention
from fleetd.store.audit import AuditEntry, AuditQuery, AuditTarget, insert_entry, query_entries
from fleetd.util.ratelimit import ClientBuckets
from tests.fakes import FakeEngines
from tests.fakes.behaviour import Fault
from tests.harness import eventually
from tests.unit.opskit import ThreadDatabase, Tokens, host, settings, start_client


@pytest.fixture
def db(tmp_path: Path) -> Iterator[ThreadDatabase]:
    database = ThreadDatabase(tmp_path / "audit.db")
    yield database
    database.close()


def _entry(ts: float, actor: str, hosts: list[str], action: str = "container.stop") -> AuditEntry:
    return AuditEntry(
        ts=ts,
        actor=actor,
        role="operator",
        action=action,
        method="POST",
        path="/x",
        targets=[AuditTarget(host=h, id="abc", name="web") for h in hosts],
        outcome="ok",
        status=200,
        detail={"n": 1},
        client="127.0.0.1",
    )


async def test_store_query_filters_and_retention(db: ThreadDatabase) -> None:
    for i, (actor, hosts) in enumerate([("ci", ["h1"]), ("ops", ["h2"]), ("ci", ["h1", "h2"]), ("ci", [])]):
        await db.run(insert_entry, _entry(1000.0 + i, actor, hosts))
    entries, total = await db.read(query_entries, AuditQuery())
    assert total == 4 and [e.ts for e in entries] == [1003.0, 1002.0, 1001.0, 1000.0]
    assert entries[1].targets == [AuditTarget("h1", "abc", "web"), AuditTarget("h2", "abc", "web")]
    assert entries[1].detail == {"n": 1}
    _, total = await db.read(query_entries, AuditQuery(actor="ci"))
    assert total == 3
    found, total = await db.read(query_entries, AuditQuery(host="h2"))
    assert total == 2 and {e.actor for e in found} == {"ops", "ci"}
    found, total = await db.read(query_entries, AuditQuery(since=1001.0, until=1002.0))
    assert [e.ts for e in found] == [1002.0, 1001.0]
    found, total = await db.read(query_entries, AuditQuery(limit=1, offset=1))
    assert total == 4 and [e.ts for e in found] == [1002.0]
    auditor = Auditor(db, retention=AuditRetention(max_age=1.5, keep_last=10))
    assert await auditor.prune(now=1003.0) == 2  # older than 1001.5
    auditor.retention = AuditRetention(max_age=1e9, keep_last=1)
    assert await auditor.prune(now=1003.0) == 1
    assert [r["ts"] for r in db.rows()] == [1003.0]


async def test_every_mutating_call_is_audited_with_who_and_what(
    tmp_path: Path, db: ThreadDatabase, fake_engine: FakeEngines
) -> None:
    eng = await fake_engine(containers=4, seed=3)
    target = next(c for c in eng.state.containers.values() if c.running)
    tokens = Tokens(watcher="viewer", ci="operator", root="admin")
    client = await start_client(settings(tmp_path, [host("h1", eng.url)], tokens.auth()), db=db)
    try:
        stop = f"/api/v1/containers/h1/{target.name}/stop"
        assert (await client.post(stop)).status == 401
        assert (await client.post(stop, headers={"Authorization": "Bearer guess"})).status == 401
        assert (await client.post(stop, headers=tokens.header("watcher"))).status == 403
        assert (await client.get("/api/v1/hosts", headers=tokens.header("watcher"))).status == 200
        assert (await client.post(stop, headers=tokens.header("ci"))).status == 200
        assert (
            await client.post("/api/v1/containers/h1/nope/start", headers=tokens.header("ci"))
        ).status == 404
        rows = db.rows()
        assert [(r["actor"], r["outcome"], r["status"]) for r in rows] == [
            ("anonymous", "denied", 401),
            ("anonymous", "denied", 401),
            ("watcher", "denied", 403),
            ("ci", "ok", 200),
            ("ci", "failed", 404),
        ]
        ok = rows[3]
        assert ok["action"] == "container.stop" and ok["role"] == "operator" and ok["client"] == "127.0.0.1"
        assert target.id in ok["targets"] and "h1" in ok["targets"]

        resp = await client.get("/api/v1/audit", params={"actor": "ci"}, headers=tokens.header("root"))
        body = await resp.json()
        assert resp.status == 200 and body["total"] == 2
        assert body["entries"][0]["status"] == 404 and "nope" in body["entries"][0]["detail"]["error"]
        assert body["entries"][1]["targets"] == [{"host": "h1", "id": target.id, "name": target.name}]
        resp = await client.get(
            "/api/v1/audit", params={"host": "h1", "limit": "1"}, headers=tokens.header("root")
        )
        body = await resp.json()
        assert body["total"] == 5 and len(body["entries"]) == 1  # the denied ones name their target too
        since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 60))
        resp = await client.get("/api/v1/audit", params={"since": since}, headers=tokens.header("root"))
        assert (await resp.json())["total"] == 0
        resp = await client.get("/api/v1/audit", params={"since": "yesterday"}, headers=tokens.header("root"))
        assert resp.status == 400
    finally:
        await client.close()


async def test_shutdown_lets_an_inflight_action_finish_and_be_audited(
    tmp_path: Path, db: ThreadDatabase, fake_engine: FakeEngines
) -> None:
    eng = await fake_engine(containers=4, seed=5, slow_seconds=0.8)
    target = next(c for c in eng.state.containers.values() if c.running)
    eng.behaviour.faults["stop"] = Fault.SLOW
    tokens = Tokens(ci="operator")
    cfg = settings(tmp_path, [host("h1", eng.url, timeout=2.0)], tokens.auth(), shutdown_grace=5.0)
    client = await start_client(cfg, db=db)
    request = asyncio.create_task(
        client.post(f"/api/v1/containers/h1/{target.id}/stop", headers=tokens.header("ci"))
    )
    await eventually(lambda: any(p.endswith("/stop") for p in eng.paths()))
    assert client.app is not None and client.app[FLEET].auditor.inflight == 1
    started = time.monotonic()
    await client.close()  # the client goes away and the server shuts down mid-stop
    assert time.monotonic() - started < 4.0
    request.cancel()
    await asyncio.gather(request, return_exceptions=True)
    assert not target.running  # the stop completed
    rows = db.rows()
    assert [(r["action"], r["actor"], r["outcome"]) for r in rows] == [("container.stop", "ci", "ok")]


async def test_shutdown_grace_bounds_the_wait_and_the_cancellation_is_audited(
    tmp_path: Path, db: ThreadDatabase, fake_engine: FakeEngines
) -> None:
    eng = await fake_engine(containers=2, seed=6)
    target = next(iter(eng.state.containers.values()))
    eng.behaviour.faults["start"] = Fault.HANG
    tokens = Tokens(ci="operator")
    cfg = settings(tmp_path, [host("h1", eng.url, timeout=30.0)], tokens.auth(), shutdown_grace=0.5)
    client = await start_client(cfg, db=db)
    request = asyncio.create_task(
        client.post(f"/api/v1/containers/h1/{target.id}/start", headers=tokens.header("ci"))
    )
    await eventually(lambda: any(p.endswith("/start") for p in eng.paths()))
    started = time.monotonic()
    await client.close()
    assert time.monotonic() - started < 4.0
    request.cancel()
    await asyncio.gather(request, return_exceptions=True)
    assert [(r["action"], r["outcome"]) for r in db.rows()] == [("container.start", "cancelled")]


async def test_with_snapshots_disabled_the_audit_log_is_still_stored(tmp_path: Path) -> None:
    tokens = Tokens(root="admin")
    cfg = settings(tmp_path, [], tokens.auth())
    assert cfg.snapshots.enabled is False
    client = await start_client(cfg)
    try:
        assert (await client.post("/api/v1/snapshots", headers=tokens.header("root"))).status == 503
        resp = await client.get("/api/v1/audit?action=snapshot.take", headers=tokens.header("root"))
        assert resp.status == 200, await resp.text()
        entries = (await resp.json())["entries"]
        assert [(e["actor"], e["action"], e["status"]) for e in entries] == [("root", "snapshot.take", 503)]
    finally:
        await client.close()


async def test_audit_lives_in_fleetds_database_and_snapshot_roles(tmp_path: Path) -> None:
    tokens = Tokens(watcher="viewer", ci="operator", root="admin")
    cfg = dataclasses.replace(
        settings(tmp_path, [], tokens.auth()),
        snapshots=SnapshotSettings(enabled=True, path=tmp_path / "fleetd.db"),
    )
    client = await start_client(cfg)
    try:
        resp = await client.post("/api/v1/snapshots", headers=tokens.header("watcher"))
        assert resp.status == 201  # taking a snapshot is a viewer's right
        assert (await client.post("/api/v1/snapshots/prune", headers=tokens.header("ci"))).status == 403
        assert (await client.post("/api/v1/snapshots/prune", headers=tokens.header("root"))).status == 200
        resp = await client.get("/api/v1/audit", headers=tokens.header("root"))
        body = await resp.json()
        assert resp.status == 200
        assert [(e["action"], e["actor"], e["outcome"]) for e in body["entries"]] == [
            ("snapshots.prune", "root", "ok"),
            ("snapshots.prune", "ci", "denied"),
            ("snapshot.take", "watcher", "ok"),
        ]
    finally:
        await client.close()
    with contextlib.closing(sqlite3.connect(tmp_path / "fleetd.db")) as conn:  # stored, not only served
        assert conn.execute("SELECT count(*) FROM audit").fetchone()[0] == 3


async def test_a_flood_of_refused_calls_is_counted_not_stored_row_by_row(
    tmp_path: Path, db: ThreadDatabase
) -> None:
    tokens = Tokens(ci="operator")
    client = await start_client(settings(tmp_path, [], tokens.auth()), db=db)
    try:
        assert client.app is not None
        auditor = client.app[FLEET].auditor
        auditor.denied_budget = ClientBuckets(burst=5, per_minute=1.0)
        for _ in range(20):
            assert (await client.post("/api/v1/actions", json={})).status == 401
        assert (await client.post("/api/v1/actions", json={}, headers=tokens.header("ci"))).status == 400
    finally:
        await client.close()
    rows = db.rows()
    assert [r["outcome"] for r in rows] == ["denied"] * 5 + ["failed"]  # operators are always recorded
    assert auditor.suppressed == 15


async def test_refused_calls_from_many_addresses_are_bounded_and_the_gap_is_stored(
    db: ThreadDatabase,
) -> None:
    now = [1000.0]
    auditor = Auditor(db)
    auditor.denied_total = ClientBuckets(burst=120, per_minute=120.0, max_clients=1, clock=lambda: now[0])
    auditor.denied_budget = ClientBuckets(burst=60, per_minute=60.0, clock=lambda: now[0])
    admitted = sum(auditor.admit_denied(f"127.0.0.{i % 40 + 1}") for i in range(2400))  # 40 addresses
    assert admitted == 120 and auditor.suppressed == 2280  # was 2,400 rows: 60 for each address
    now[0] += 1.0  # the budget of every address together refills
    assert auditor.admit_denied("127.0.0.99")
    assert await auditor.drain(2.0) == 0  # the note is written by a task of its own
    [note] = [r for r in db.rows() if r["action"] == "audit.not_stored"]
    assert '"not_stored":2280' in note["detail"].replace(" ", "")
