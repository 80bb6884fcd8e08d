"""`fleetd snapshot` and `fleetd diff` as commands, against fake Engines on loopback."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import socket
import sys
import textwrap
from pathlib import Path

import yaml

from fleetd.cli.snapshots import one_shot
from fleetd.config import load_config
from fleetd.fleet.records import HostStatus
from fleetd.snapshot.export import dumps, loads
from fleetd.snapshot.model import Trigger, build_snapshot, capture_fleet
from fleetd.store import Database, SnapshotStore
from tests.fakes import FakeEngines
from tests.fakes.behaviour import docker_20_10
from tests.unit.snapshotkit import fleet
from tests.writes import poll_ok


def dead_port() -> int:
    """A loopback port nothing listens on (connection refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_config(tmp_path: Path, urls: dict[str, str]) -> Path:
    hosts = "\n".join(f"  - {{name: {name}, url: '{url}'}}" for name, url in urls.items())
    path = tmp_path / "fleetd.yaml"
    path.write_text(
        textwrap.dedent(
            """\
            poll: {timeout: 2s, connect_timeout: 1s}
            snapshots: {path: snaps.db}
            hosts:
            """
        )
        + hosts
        + "\n"
    )
    return path


async def fleetd(*args: str, cwd: Path) -> tuple[int, bytes, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "fleetd", *args, cwd=cwd,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out, err.decode()


async def test_one_shot_polls_every_host_once(tmp_path: Path, fake_engine: FakeEngines) -> None:
    a = await fake_engine(docker_20_10(containers=3, seed=1))
    b = await fake_engine(containers=2, seed=2)
    settings = load_config(write_config(tmp_path, {"a": a.url, "b": b.url, "gone": f"tcp://127.0.0.1:{dead_port()}"}))
    snap = await one_shot(settings)
    assert snap.id is None and snap.trigger is Trigger.ONE_SHOT
    by_name = {h.name: h for h in snap.hosts}
    assert [len(by_name[n].containers) for n in ("a", "b", "gone")] == [3, 2, 0]
    assert by_name["a"].engine is not None and by_name["a"].engine.api_version == "1.41"
    assert by_name["gone"].state is HostStatus.DOWN and by_name["gone"].last_error
    assert sum(1 for _m, p in a.requests if "/containers/json" in p) == 1  # exactly once
    assert not (tmp_path / "snaps.db").exists()  # the one-shot never touches the database


async def test_the_snapshot_command_exit_status_and_outputs(tmp_path: Path, fake_engine: FakeEngines) -> None:
    a = await fake_engine(containers=4, seed=1)
    good = write_config(tmp_path, {"a": a.url})
    rc, out, err = await fleetd("snapshot", "--config", str(good), "--format", "yaml", cwd=tmp_path)
    assert rc == 0, err
    data = yaml.safe_load(out)
    assert data["trigger"] == "one-shot" and len(data["hosts"][0]["containers"]) == 4
    assert "1 of 1 hosts answered" in err

    broken = write_config(tmp_path, {"a": a.url, "gone": f"tcp://127.0.0.1:{dead_port()}"})
    rc, out, err = await fleetd("snapshot", "-c", str(broken), "-o", str(tmp_path / "fleet.csv"), cwd=tmp_path)
    assert rc == 1 and out == b""
    assert "1 of 2 hosts answered" in err and "gone (tcp://127.0.0.1:" in err
    rows = list(csv.DictReader(io.StringIO((tmp_path / "fleet.csv").read_text(), newline="")))
    assert len(rows) == 5  # four containers of a, one row for the host without any
    gone = [r for r in rows if r["host"] == "gone"]
    assert gone[0]["host_state"] == "down" and gone[0]["host_last_error"]
    assert not (tmp_path / "snaps.db").exists()

    rc, _, err = await fleetd("snapshot", "-c", str(tmp_path / "missing.yaml"), cwd=tmp_path)
    assert rc == 2 and "missing.yaml" in err


async def test_diff_of_files_prints_a_table_or_json(tmp_path: Path) -> None:
    state = fleet(2, 2)
    before = build_snapshot(capture_fleet(state, Trigger.ONE_SHOT))
    record = state.get("host0001")
    assert record is not None
    poll_ok(state, "host0001", record.containers[:1], facts=record.facts)
    after = build_snapshot(capture_fleet(state, Trigger.ONE_SHOT))
    (tmp_path / "before.json").write_bytes(dumps(before, "json"))
    (tmp_path / "after.csv").write_bytes(dumps(after, "csv"))
    (tmp_path / "same.yaml").write_bytes(dumps(before, "yaml"))

    rc, out, err = await fleetd("diff", "before.json", "after.csv", cwd=tmp_path)
    assert rc == 1, err
    lines = out.decode().splitlines()
    assert lines[1].split() == ["HOST", "CONTAINER", "CHANGE", "FIELD", "OLD", "NEW"]
    assert lines[2].split() == ["host0001", "app1-1", "removed", "nginx:1.27", "running"]
    assert len(lines) == 3

    rc, out, _ = await fleetd("diff", "before.json", "after.csv", "--json", cwd=tmp_path)
    assert rc == 1
    assert json.loads(out)["containers"][0]["removed"][0]["name"] == "app1-1"

    rc, out, _ = await fleetd("diff", "before.json", "same.yaml", cwd=tmp_path)
    assert rc == 0 and b"no changes" in out

    (tmp_path / "junk.json").write_text("[1, 2]")
    rc, _, err = await fleetd("diff", "before.json", "junk.json", cwd=tmp_path)
    assert rc == 2 and "junk.json: not a fleetd snapshot in JSON" in err
    rc, _, err = await fleetd("diff", "before.json", "nope", cwd=tmp_path)
    assert rc == 2 and "no such file, and not a snapshot id" in err


async def test_diff_of_ids_reads_the_configured_database(tmp_path: Path) -> None:
    config = write_config(tmp_path, {})
    state = fleet(3, 1)
    async with Database(tmp_path / "snaps.db") as db:
        store = SnapshotStore(db)
        await store.save(capture_fleet(state, Trigger.SCHEDULE))
        state.remove("host0002")
        await store.save(capture_fleet(state, Trigger.SCHEDULE))
        rc, out, err = await fleetd("diff", "1", "latest", "--config", str(config), "--json", cwd=tmp_path)
        assert rc == 1, err
        diff = json.loads(out)
        assert (diff["old"]["id"], diff["new"]["id"]) == (1, 2)
        assert [h["name"] for h in diff["hosts_removed"]] == ["host0002"]
        rc, _, err = await fleetd("diff", "1", "9", "--config", str(config), cwd=tmp_path)
        assert rc == 2 and "no snapshot 9" in err
    # and what the database holds reads back like a file would
    async with Database(tmp_path / "snaps.db", readonly=True) as db:
        snap = await SnapshotStore(db).get(1)
    assert snap is not None and loads(dumps(snap, "csv"), "csv") == snap
