"""/api/v1/snapshots over a fleet state filled directly (no daemons), with a real database."""

from __future__ import annotations

import csv
import io
import json
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import msgspec
import pytest
import yaml
from aiohttp.test_utils import TestClient

from fleetd.api.keys import FLEET
from fleetd.config.model import PollSettings, RetentionSettings, Settings, SnapshotSettings
from fleetd.fleet.state import FleetState
from fleetd.runtime import Fleet
from fleetd.store import NotFleetdDatabase
from tests.harness import FleetClient, eventually
from tests.unit.opskit import Tokens
from tests.unit.snapshotkit import Clock, container, fleet
from tests.writes import poll_ok

Client = TestClient[Any, Any]
MakeClient = Callable[..., Awaitable[Client]]
TOKENS = Tokens(boss="admin", reader="viewer")
ADMIN = TOKENS.header("boss")
VIEWER = TOKENS.header("reader")


def settings(tmp_path: Path, **snapshots: Any) -> Settings:
    return Settings(
        path=tmp_path / "fleetd.yaml",
        poll=PollSettings(interval=30.0, timeout=1.0),
        snapshots=SnapshotSettings(**({"path": tmp_path / "fleetd.db", "interval": 3600.0} | snapshots)),
        auth=TOKENS.auth(),
    )


@pytest.fixture
async def make_client(tmp_path: Path) -> AsyncIterator[MakeClient]:
    clients: list[Client] = []

    async def make(state: FleetState | None = None, *, first: bool = True, **snapshots: Any) -> Client:
        runtime = Fleet(settings(tmp_path, **snapshots), state=state if state is not None else fleet(3, 4))
        client: Client = FleetClient(runtime)
        clients.append(client)
        await client.start_server()
        if first:  # the schedule takes one as soon as the fleet is ready: wait for it

            async def one_taken() -> bool:
                return bool((await (await client.get("/api/v1/snapshots", headers=VIEWER)).json())["total"] >= 1)

            await eventually(one_taken, timeout=5, interval=0.02, what="no scheduled snapshot at start")
        return client

    yield make
    for c in clients:
        await c.close()


async def take(client: Client) -> dict[str, Any]:
    resp = await client.post("/api/v1/snapshots", headers=VIEWER)
    assert resp.status == 201, await resp.text()
    body: dict[str, Any] = await resp.json()
    assert resp.headers["Location"] == f"/api/v1/snapshots/{body['id']}"
    return body


async def error(resp: Any, status: int) -> dict[str, Any]:
    assert resp.status == status, await resp.text()
    body: dict[str, Any] = (await resp.json())["error"]
    return body


async def test_a_scheduled_snapshot_at_start_then_one_on_demand(make_client: MakeClient) -> None:
    client = await make_client()
    listed = await (await client.get("/api/v1/snapshots", headers=VIEWER)).json()
    assert [(s["id"], s["trigger"]) for s in listed["snapshots"]] == [(1, "schedule")]
    taken = await take(client)
    assert taken["id"] == 2 and taken["trigger"] == "on-demand"
    assert taken["counts"] == {
        "hosts": 3, "hosts_up": 3, "hosts_failed": 0, "hosts_stale": 0, "containers": 12, "running": 12,
    }  # fmt: skip
    assert set(taken) == {"id", "taken_at", "trigger", "fleetd_version", "counts"}


async def test_a_snapshot_in_each_format(make_client: MakeClient) -> None:
    client = await make_client()
    resp = await client.get("/api/v1/snapshots/1", headers=VIEWER)
    assert resp.status == 200 and resp.content_type == "application/json"
    as_json = await resp.json()
    assert [h["name"] for h in as_json["hosts"]] == ["host0000", "host0001", "host0002"]
    assert len(as_json["hosts"][0]["containers"]) == 4

    resp = await client.get("/api/v1/snapshots/1?format=yaml", headers=VIEWER)
    assert resp.status == 200 and resp.content_type == "application/yaml" and resp.charset == "utf-8"
    assert yaml.safe_load(await resp.read()) == as_json
    assert resp.headers["Content-Disposition"] == 'inline; filename="fleetd-snapshot-1.yaml"'

    resp = await client.get("/api/v1/snapshots/latest?format=csv", headers=VIEWER)
    assert resp.status == 200 and resp.content_type == "text/csv"
    rows = list(csv.DictReader(io.StringIO(await resp.text(), newline="")))
    assert len(rows) == 12 and {r["snapshot_id"] for r in rows} == {"1"}
    assert json.loads(rows[0]["labels"]) == as_json["hosts"][0]["containers"][0]["labels"]


async def test_bad_input_answers_400_and_unknown_ids_404(make_client: MakeClient) -> None:
    client = await make_client()
    get = client.get
    assert (await error(await get("/api/v1/snapshots/99", headers=VIEWER), 404))["code"] == "unknown_snapshot"
    e = await error(await get("/api/v1/snapshots/1?format=xml", headers=VIEWER), 400)
    assert "'format' must be one of csv, json, yaml" in e["message"]
    e = await error(await get("/api/v1/snapshots/abc", headers=VIEWER), 400)
    assert e["code"] == "bad_snapshot_id" and "'latest'" in e["message"]
    e = await error(await get("/api/v1/snapshots?since=yesterday", headers=VIEWER), 400)
    assert "RFC 3339" in e["message"]
    e = await error(
        await get("/api/v1/snapshots?since=2025-12-02T00:00:00Z&until=2025-12-01T00:00:00Z", headers=VIEWER), 400
    )
    assert "after" in e["message"]
    await error(await get("/api/v1/snapshots?limit=0", headers=VIEWER), 400)
    await error(await get("/api/v1/snapshots?color=red", headers=VIEWER), 400)
    e = await error(await get("/api/v1/snapshots/1/diff?against=x", headers=VIEWER), 400)
    assert "'against'" in e["message"]
    await error(await get("/api/v1/snapshots/1/diff?against=77", headers=VIEWER), 404)
    e = await error(await get("/api/v1/snapshots/1/diff", headers=VIEWER), 404)
    assert e["code"] == "no_earlier_snapshot"


async def test_the_list_pages_newest_first_and_filters_by_time(make_client: MakeClient) -> None:
    clock = Clock()
    client = await make_client(fleet(2, 1, clock=clock))
    for i in range(1, 6):
        clock.now += 60 * i
        await take(client)
    first = await (await client.get("/api/v1/snapshots?limit=4", headers=VIEWER)).json()
    assert [s["id"] for s in first["snapshots"]] == [6, 5, 4, 3] and first["total"] == 6
    assert first["next"] == "/api/v1/snapshots?before=3&limit=4"
    second = await (await client.get(first["next"], headers=VIEWER)).json()
    assert [s["id"] for s in second["snapshots"]] == [2, 1] and second["next"] is None
    times = {s["id"]: s["taken_at"] for s in first["snapshots"] + second["snapshots"]}
    window = await (
        await client.get(
            "/api/v1/snapshots", params={"since": times[3], "until": times[5]}, headers=VIEWER
        )
    ).json()
    assert [s["id"] for s in window["snapshots"]] == [4, 3] and window["total"] == 2


async def test_diff_against_the_previous_one_by_default(make_client: MakeClient) -> None:
    state = fleet(2, 2)
    client = await make_client(state)
    record = state.get("host0001")
    assert record is not None
    poll_ok(state, "host0001", (*record.containers, container("host0001", "new-9")), facts=record.facts)
    await take(client)
    diff = await (await client.get("/api/v1/snapshots/latest/diff", headers=VIEWER)).json()
    assert diff["old"]["id"] == 1 and diff["new"]["id"] == 2
    assert [(h["host"], [c["name"] for c in h["added"]]) for h in diff["containers"]] == [("host0001", ["new-9"])]
    reverse = await (await client.get("/api/v1/snapshots/1/diff?against=2", headers=VIEWER)).json()
    assert [c["name"] for c in reverse["containers"][0]["removed"]] == ["new-9"]


async def test_delete_and_prune_are_for_admins(make_client: MakeClient) -> None:
    client = await make_client()
    for _ in range(4):
        await take(client)
    await error(await client.delete("/api/v1/snapshots/2", headers=VIEWER), 403)
    await error(await client.post("/api/v1/snapshots/prune", headers=VIEWER), 403)
    resp = await client.delete("/api/v1/snapshots/2", headers=ADMIN)
    assert resp.status == 200 and await resp.json() == {"deleted": 2}
    await error(await client.get("/api/v1/snapshots/2", headers=VIEWER), 404)
    await error(await client.delete("/api/v1/snapshots/2", headers=ADMIN), 404)
    await error(await client.delete("/api/v1/snapshots/latest", headers=ADMIN), 400)
    resp = await client.post("/api/v1/snapshots/prune?last=2", headers=ADMIN)
    body = await resp.json()
    assert resp.status == 200 and (body["deleted"], body["remaining"]) == (2, 2)
    listed = await (await client.get("/api/v1/snapshots", headers=VIEWER)).json()
    assert [s["id"] for s in listed["snapshots"]] == [5, 4]
    await error(await client.post("/api/v1/snapshots/prune?max_age=soon", headers=ADMIN), 400)


async def test_taking_a_snapshot_is_audited_in_the_same_database(make_client: MakeClient) -> None:
    client = await make_client()
    db = client.app[FLEET].database
    assert client.app[FLEET].auditor.database is db
    await take(client)

    def actions(conn: sqlite3.Connection) -> list[tuple[str, str]]:
        return conn.execute("SELECT actor, action FROM audit ORDER BY id").fetchall()

    async def audited() -> bool:
        return ("reader", "snapshot.take") in await db.read(actions)

    await eventually(audited, timeout=5, interval=0.02, what="the snapshot was not audited")


async def test_scheduled_snapshots_apply_retention(make_client: MakeClient, tmp_path: Path) -> None:
    client = await make_client(interval=0.2, keep=RetentionSettings(last=3))
    listed: dict[str, Any] = {}

    async def six_taken() -> bool:
        listed.update(await (await client.get("/api/v1/snapshots", headers=VIEWER)).json())
        return bool(listed["snapshots"][0]["id"] >= 6)

    await eventually(six_taken, timeout=10, interval=0.05)
    assert listed["total"] <= 4  # three kept, at most one taken since the last prune
    assert {s["trigger"] for s in listed["snapshots"]} == {"schedule"}


async def test_disabled_snapshots_answer_503_saying_how_to_enable_them(
    make_client: MakeClient, tmp_path: Path
) -> None:
    client = await make_client(enabled=False, first=False)
    for method, path in (("GET", "/api/v1/snapshots"), ("POST", "/api/v1/snapshots"), ("GET", "/api/v1/snapshots/1")):
        e = await error(await client.request(method, path, headers=VIEWER), 503)
        assert e["code"] == "snapshots_disabled"
        assert "snapshots: {enabled: true}" in e["message"] and str(tmp_path / "fleetd.yaml") in e["message"]
    # fleetd's database still holds the audit log; it just has no snapshots.
    assert (tmp_path / "fleetd.db").exists()


async def test_a_database_that_is_not_fleetd_s_stops_the_start(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "fleetd.db")
    conn.execute("CREATE TABLE mine (x)")
    conn.commit()
    conn.close()
    runtime = Fleet(settings(tmp_path), state=fleet(1, 1))
    with pytest.raises(NotFleetdDatabase, match="not a fleetd database"):
        await runtime.start()
    await runtime.aclose()


async def test_a_snapshot_is_consistent_with_the_state_at_request_time(make_client: MakeClient) -> None:
    state = fleet(5, 3)
    client = await make_client(state)
    taken = await take(client)
    for r in state.records():  # changes after the answer are not in it
        poll_ok(state, r.name, (), facts=r.facts)
    body = await (await client.get(f"/api/v1/snapshots/{taken['id']}", headers=VIEWER)).read()
    stored = msgspec.json.decode(body)
    assert sum(len(h["containers"]) for h in stored["hosts"]) == 15 == stored["counts"]["containers"]


async def test_a_database_deleted_under_a_running_fleetd_refuses_snapshots_with_the_reason(
    make_client: MakeClient, tmp_path: Path
) -> None:
    client = await make_client()
    remove_database_files(tmp_path)
    for _ in range(2):
        body = await error(await client.post("/api/v1/snapshots", headers=ADMIN), 503)
        assert "was deleted while fleetd was running" in body["message"]
    assert not (tmp_path / "fleetd.db").exists()



@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/snapshots?offset=1234567890123456789012345",
        "/api/v1/snapshots?before=1234567890123456789012345",
        "/api/v1/snapshots/1234567890123456789012345",
        "/api/v1/snapshots/9223372036854775808/diff",
        "/api/v1/snapshots?limit=%D9%A3",  # ARABIC-INDIC DIGIT THREE: int() would read it as 3
        "/api/v1/snapshots?limit=1_0",
        "/api/v1/snapshots?limit=%205",
        "/api/v1/snapshots?offset=-1",
    ],
)
async def test_numbers_are_ascii_digits_in_range_or_a_400_naming_the_range(make_client: MakeClient, path: str) -> None:
    client = await make_client(first=False)
    body = await error(await client.get(path, headers=VIEWER), 400)
    assert body["code"] in ("bad_parameter", "bad_snapshot_id")
    assert "between" in body["message"] or "positive integer" in body["message"]


def remove_database_files(directory: Path) -> None:
    for p in directory.glob("fleetd.db*"):  # the file, its -wal and -shm
        p.unlink()


async def test_on_demand_snapshots_below_operator_have_a_budget(make_client: MakeClient) -> None:
    client = await make_client()
    statuses = [(await client.post("/api/v1/snapshots", headers=VIEWER)).status for _ in range(12)]
    assert statuses == [201] * 10 + [429, 429]
    resp = await client.post("/api/v1/snapshots", headers=VIEWER)
    body = await error(resp, 429)
    assert body["code"] == "snapshot_budget" and "operators have no such limit" in body["message"]
    assert int(body["retry_after"]) >= 1
    assert (await client.post("/api/v1/snapshots", headers=ADMIN)).status == 201  # operators and admins: none
