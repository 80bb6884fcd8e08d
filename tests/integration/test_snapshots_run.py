"""``fleetd run`` as a process with snapshots on: scheduled snapshots survive a restart; a database that
is not fleetd's, or from a newer fleetd, stops it from starting (and ``check-config`` says so first)."""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp

from tests.fakes import FakeEngines
from tests.integration.lab import free_port


async def fleetd(*args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "fleetd", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip


def write_config(tmp_path: Path, port: int, hosts: dict[str, str], interval: str = "10s") -> Path:
    cfg = tmp_path / "fleetd.yaml"
    listed = "".join(f"  - {{name: {n}, url: '{u}'}}\n" for n, u in hosts.items())
    cfg.write_text(
        f"listen: 127.0.0.1:{port}\npoll: {{interval: 2s, timeout: 1s}}\n"
        f"snapshots: {{path: state/fleetd.db, interval: {interval}, keep: {{last: 50}}}}\n"
        f"hosts:\n{listed}"
    )
    (tmp_path / "state").mkdir(exist_ok=True)
    return cfg


async def get_json(http: aiohttp.ClientSession, url: str) -> Any:
    async with http.get(url) as resp:
        assert resp.status == 200, await resp.text()
        return await resp.json()


async def wait_for_snapshots(http: aiohttp.ClientSession, base: str, at_least: int) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 30
    while True:
        try:
            listed = await get_json(http, f"{base}/api/v1/snapshots")
            if listed["total"] >= at_least:
                snapshots: list[dict[str, Any]] = listed["snapshots"]
                return snapshots
        except aiohttp.ClientConnectionError:
            pass
        assert time.monotonic() < deadline, f"fewer than {at_least} snapshots after 30 s"
        await asyncio.sleep(0.1)


async def stop(proc: asyncio.subprocess.Process) -> str:
    proc.send_signal(signal.SIGTERM)
    _, err = await asyncio.wait_for(proc.communicate(), 20)
    assert proc.returncode == 0, err.decode()[-2000:]
    return err.decode()


async def test_scheduled_snapshots_across_a_restart(tmp_path: Path, fake_engine: FakeEngines) -> None:
    a = await fake_engine(containers=5, seed=1)
    b = await fake_engine(containers=3, seed=2)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    cfg = write_config(tmp_path, port, {"a": a.url, "b": b.url})
    proc = await fleetd("run", "--config", str(cfg))
    try:
        async with aiohttp.ClientSession() as http:
            first_run = await wait_for_snapshots(http, base, 1)  # due at once: the database is new
            assert {s["trigger"] for s in first_run} == {"schedule"}
            assert first_run[-1]["counts"]["hosts_up"] == 2  # the first waited for the fleet to be ready
            assert first_run[-1]["counts"]["containers"] == 8
            async with http.post(f"{base}/api/v1/snapshots") as resp:
                assert resp.status == 201
                taken = await resp.json()
    finally:
        if proc.returncode is None:
            await stop(proc)
    db = tmp_path / "state" / "fleetd.db"
    conn = sqlite3.connect(db)
    try:
        stored = [r[0] for r in conn.execute("SELECT id FROM snapshots ORDER BY id")]
    finally:
        conn.close()
    assert taken["id"] in stored and stored == list(range(1, len(stored) + 1))

    proc = await fleetd("run", "--config", str(cfg))
    try:
        async with aiohttp.ClientSession() as http:
            # Due one interval (10 s, the shortest allowed) after the newest stored snapshot.
            listed = await wait_for_snapshots(http, base, len(stored) + 1)
            assert listed[0]["id"] > max(stored)  # the history is still there and grows from it
            assert listed[0]["trigger"] == "schedule"
            latest = await get_json(http, f"{base}/api/v1/snapshots/{taken['id']}")
            assert {h["name"] for h in latest["hosts"]} == {"a", "b"}
    finally:
        if proc.returncode is None:
            await stop(proc)


async def refused(cfg: Path, db: Path, says: str) -> None:
    before = await asyncio.to_thread(db.read_bytes)
    check = await fleetd("check-config", "--config", str(cfg))
    _, err = await asyncio.wait_for(check.communicate(), 30)
    assert check.returncode == 2 and says in err.decode()
    proc = await fleetd("run", "--config", str(cfg))
    try:
        _, err = await asyncio.wait_for(proc.communicate(), 30)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 2
    assert "Traceback" not in err.decode()
    assert "fleetd cannot start: the snapshot database is unusable" in err.decode()
    assert says in err.decode()
    assert await asyncio.to_thread(db.read_bytes) == before  # left exactly as it was


async def test_a_database_that_is_not_fleetd_s_is_refused(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, free_port(), {})
    db = tmp_path / "state" / "fleetd.db"
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE invoices (id INTEGER PRIMARY KEY, total REAL)")
    conn.commit()
    conn.close()
    await refused(cfg, db, f"{db}: not a fleetd database (it has no fleetd application_id and holds tables: invoices)")


async def test_a_database_from_a_newer_fleetd_is_refused(tmp_path: Path) -> None:
    port = free_port()
    cfg = write_config(tmp_path, port, {}, interval="1h")
    proc = await fleetd("run", "--config", str(cfg))  # creates it
    try:
        async with aiohttp.ClientSession() as http:
            await wait_for_snapshots(http, f"http://127.0.0.1:{port}", 1)
    finally:
        await stop(proc)
    db = tmp_path / "state" / "fleetd.db"
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA user_version = 2")
    conn.commit()
    conn.close()
    await refused(cfg, db, "schema version 2 was written by a newer fleetd; this one knows versions up to 1")
