"""Snapshots of real daemons (the session's docker lab): diffs name exactly what changed, exports agree."""

from __future__ import annotations

import asyncio
import secrets
import socket
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
import yaml
from aiohttp.test_utils import TestClient

from fleetd.config.model import HostSettings, PollSettings, Settings, SnapshotSettings, TLSSettings
from fleetd.runtime import Fleet
from fleetd.snapshot.export import loads
from fleetd.snapshot.model import Snapshot
from tests.harness import FleetClient
from tests.integration.lab import BUSYBOX_IMAGE, Daemon, DockerLab

pytestmark = pytest.mark.docker

Client = TestClient[Any, Any]


def host_settings(daemon: Daemon) -> HostSettings:
    tls = None
    if daemon.tls_paths is not None:
        t = daemon.tls_paths
        tls = TLSSettings(ca=t.ca, cert=t.cert, key=t.key)
    return HostSettings(name=daemon.name, url=daemon.tcp_url, tls=tls, interval=30.0, timeout=10.0)


@pytest.fixture
async def client(docker_lab: DockerLab, tmp_path: Path) -> AsyncIterator[Client]:
    settings = Settings(
        path=tmp_path / "fleetd.yaml",
        poll=PollSettings(interval=30.0, timeout=10.0),
        hosts=tuple(host_settings(d) for d in docker_lab.daemons.values()),
        snapshots=SnapshotSettings(path=tmp_path / "fleetd.db", interval=3600.0),
    )
    c: Client = FleetClient(Fleet(settings))
    await c.start_server()
    try:
        deadline = time.monotonic() + 30
        while (await c.get("/readyz")).status != 200:
            assert time.monotonic() < deadline, "fleetd never became ready"
            await asyncio.sleep(0.05)
        yield c
    finally:
        await c.close()


async def take(client: Client) -> int:
    resp = await client.post("/api/v1/snapshots")
    assert resp.status == 201, await resp.text()
    sid: int = (await resp.json())["id"]
    return sid


async def test_the_diff_names_exactly_the_containers_that_changed(docker_lab: DockerLab, client: Client) -> None:
    d1 = docker_lab.daemons["d1"]
    suffix = secrets.token_hex(3)
    started, doomed = f"snap-run-{suffix}", f"snap-gone-{suffix}"
    try:
        await d1.adocker(
            "run", "-d", "--network", "none", "--name", started, "--label", "app=snapshots",
            BUSYBOX_IMAGE, "sleep", "100000",
        )  # fmt: skip
        await d1.adocker("create", "--network", "none", "--name", doomed, BUSYBOX_IMAGE, "sleep", "1")
        await client.fleet.poller.refresh("d1")
        first = await take(client)
        before = await (await client.get(f"/api/v1/snapshots/{first}")).json()
        d1_before = next(h for h in before["hosts"] if h["name"] == "d1")
        states = {c["name"]: c["state"] for c in d1_before["containers"]}
        assert (states[started], states[doomed]) == ("running", "created")
        assert next(c for c in d1_before["containers"] if c["name"] == started)["status"] == "Up"

        await d1.adocker("stop", "--time", "1", started)
        await d1.adocker("rm", doomed)
        await client.fleet.poller.refresh("d1")
        second = await take(client)

        resp = await client.get(f"/api/v1/snapshots/{second}/diff", params={"against": str(first)})
        assert resp.status == 200, await resp.text()
        diff = await resp.json()
        assert (diff["old"]["id"], diff["new"]["id"]) == (first, second)
        assert diff["hosts_added"] == diff["hosts_removed"] == diff["hosts_changed"] == []
        assert len(diff["containers"]) == 1, diff["containers"]
        (d1_diff,) = diff["containers"]
        assert d1_diff["host"] == "d1" and d1_diff["added"] == []
        assert [(c["name"], c["state"], c["image"]) for c in d1_diff["removed"]] == [
            (doomed, "created", BUSYBOX_IMAGE)
        ]
        assert [(c["name"], c["changes"]) for c in d1_diff["changed"]] == [
            (started, [{"field": "state", "old": "running", "new": "exited"}])
        ]
        after = await (await client.get(f"/api/v1/snapshots/{second}")).json()
        stopped = next(c for h in after["hosts"] if h["name"] == "d1" for c in h["containers"] if c["name"] == started)
        assert stopped["status"].startswith("Exited (") and "ago" not in stopped["status"]
    finally:
        await d1.adocker("rm", "--force", started, doomed, check=False)


async def test_csv_and_yaml_of_a_real_fleet_read_back_as_the_json(docker_lab: DockerLab, client: Client) -> None:
    sid = await take(client)
    bodies = {}
    for fmt in ("json", "yaml", "csv"):
        resp = await client.get(f"/api/v1/snapshots/{sid}", params={"format": fmt})
        assert resp.status == 200, await resp.text()
        bodies[fmt] = await resp.read()
    as_json = loads(bodies["json"], "json")
    assert {h.name for h in as_json.hosts} == set(docker_lab.daemons)
    assert all(h.state == "up" and h.engine is not None for h in as_json.hosts)
    names = {h.name: {c.name for c in h.containers} for h in as_json.hosts}
    for daemon in docker_lab.daemons.values():
        assert set(daemon.containers) <= names[daemon.name]
    assert loads(bodies["yaml"], "yaml") == as_json
    assert loads(bodies["csv"], "csv") == as_json
    assert yaml.safe_load(bodies["yaml"]) == msgspec.json.decode(bodies["json"])


def _dead_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _config(tmp_path: Path, hosts: list[HostSettings]) -> Path:
    lines = ["snapshots: {path: never.db}", "poll: {timeout: 10s}", "hosts:"]
    for h in hosts:
        lines.append(f"  - name: {h.name}")
        lines.append(f"    url: '{h.url}'")
        if h.tls is not None:
            lines.append(f"    tls: {{ca: '{h.tls.ca}', cert: '{h.tls.cert}', key: '{h.tls.key}'}}")
    path = tmp_path / "fleetd.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


async def run_cli(*args: str, cwd: Path) -> tuple[int, bytes, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "fleetd", *args, cwd=cwd,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode is not None
    return proc.returncode, out, err.decode()


async def test_the_one_shot_command_against_the_lab(docker_lab: DockerLab, tmp_path: Path) -> None:
    hosts = [host_settings(d) for d in docker_lab.daemons.values()]
    rc, out, err = await run_cli("snapshot", "--config", str(_config(tmp_path, hosts)), cwd=tmp_path)
    assert rc == 0, err
    snap: Snapshot = loads(out, "json")
    assert {h.name for h in snap.hosts} == set(docker_lab.daemons)
    assert {c.name for c in next(h for h in snap.hosts if h.name == "d1").containers} >= {"web1", "job1"}

    hosts.append(HostSettings(name="unplugged", url=f"tcp://127.0.0.1:{_dead_port()}"))
    config = _config(tmp_path, hosts)
    rc, out, err = await run_cli("snapshot", "-c", str(config), "-f", "csv", cwd=tmp_path)
    assert rc == 1 and "unplugged (tcp://127.0.0.1:" in err
    assert {h.name for h in loads(out, "csv").hosts} == {*docker_lab.daemons, "unplugged"}
    assert not (tmp_path / "never.db").exists()


@pytest.mark.podman
async def test_an_unchanged_podman_host_diffs_as_unchanged(podman_daemon: Daemon, tmp_path: Path) -> None:
    """podman's /info ID is new on every call: two one-shot snapshots of an unchanged host are equal."""
    host = HostSettings(name="podman", url=podman_daemon.tcp_url, interval=30.0, timeout=20.0)
    config = _config(tmp_path, [host])
    files = []
    for n in (1, 2):
        rc, out, err = await run_cli("snapshot", "--config", str(config), cwd=tmp_path)
        assert rc == 0, err
        snap: Snapshot = loads(out, "json")
        [h] = snap.hosts
        assert h.engine is not None and h.engine.engine_id == "" and h.engine.engine_id_volatile, h.engine
        (tmp_path / f"s{n}.json").write_bytes(out)
        files.append(str(tmp_path / f"s{n}.json"))
    rc, out, err = await run_cli("diff", *files, cwd=tmp_path)
    assert rc == 0, out.decode() + err
