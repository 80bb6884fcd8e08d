"""Fleet operations against real daemons, each effect checked by asking the daemon itself (docker CLI)."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from fleetd.config.model import HostSettings, TLSSettings
from tests.harness import eventually
from tests.integration.lab import BUSYBOX_IMAGE, Daemon, DockerLab
from tests.unit.opskit import Tokens, host, settings, start_client

pytestmark = pytest.mark.docker

TOKENS = Tokens(ci="operator", watcher="viewer")
OP = TOKENS.header("ci")

Client = TestClient[Any, Any]


def lab_host(daemon: Daemon, *, unix: bool = False) -> HostSettings:
    tls = None
    if daemon.tls_paths is not None:
        t = daemon.tls_paths
        tls = TLSSettings(ca=t.ca, cert=t.cert, key=t.key)
    url = daemon.unix_url if unix and daemon.unix_url else daemon.tcp_url
    # Slow polling: every operation re-polls its host itself, so what the tests see comes from that.
    # (It also keeps polls from being in flight when the app closes: a cancelled TLS request leaves
    # its connection in a graceful TLS shutdown that can outlive the test's event loop.)
    return host(daemon.name, url, tls=tls, interval=30.0, timeout=5.0)


@pytest.fixture
async def fleet(docker_lab: DockerLab, tmp_path: Path) -> AsyncIterator[Client]:
    d = docker_lab.daemons
    hosts = [lab_host(d["d1"]), lab_host(d["d2"], unix=True), lab_host(d["tls"])]
    client = await start_client(settings(tmp_path, hosts, TOKENS.auth()))
    try:
        yield client
    finally:
        await client.close()


@pytest.fixture
def uid() -> str:
    return secrets.token_hex(4)


@pytest.fixture
def cleanup(docker_lab: DockerLab) -> Iterator[list[tuple[str, str]]]:
    """(daemon, container name) pairs to remove after the test, whatever happened."""
    made: list[tuple[str, str]] = []
    yield made
    for daemon_name, name in made:
        daemon = docker_lab.daemons[daemon_name]
        if daemon.running:
            daemon.docker("rm", "--force", name, check=False)


def state_of(daemon: Daemon, name: str) -> str:
    done = daemon.docker("inspect", "--format", "{{.State.Status}}", name, check=False)
    return done.stdout.strip() if done.returncode == 0 else "absent"


async def fleet_view(client: Client, name: str) -> list[dict[str, Any]]:
    resp = await client.get("/api/v1/containers", params={"name": name}, headers=OP)
    return [c for c in (await resp.json())["containers"] if c["name"] == name]


@pytest.mark.parametrize("daemon_name", ["d1", "tls"])
async def test_create_start_stop_remove_verified_by_the_daemon(
    fleet: Client, docker_lab: DockerLab, uid: str, cleanup: list[tuple[str, str]], daemon_name: str
) -> None:
    daemon = docker_lab.daemons[daemon_name]
    name = f"ops-life-{uid}"
    cleanup.append((daemon_name, name))
    body = {
        "Image": BUSYBOX_IMAGE,
        "Cmd": ["sh", "-c", "echo to-stdout; echo to-stderr >&2; exec sleep 1000"],
        "Labels": {"ops-test": uid},
        "HostConfig": {"NetworkMode": "none"},
        "StopTimeout": 1,
    }
    resp = await fleet.post(
        f"/api/v1/hosts/{daemon_name}/containers", params={"name": name}, json=body, headers=OP
    )
    created = await resp.json()
    assert resp.status == 201, created
    assert state_of(daemon, name) == "created"
    assert [c["state"] for c in await fleet_view(fleet, name)] == ["created"]

    resp = await fleet.post(f"/api/v1/containers/{daemon_name}/{name}/start", headers=OP)
    assert resp.status == 200 and (await resp.json())["changed"] is True
    assert state_of(daemon, name) == "running"
    assert [c["state"] for c in await fleet_view(fleet, name)] == ["running"]  # at once, not after a poll

    await eventually(lambda: "to-stderr" in daemon.docker("logs", name).stderr, timeout=10)
    resp = await fleet.get(f"/api/v1/containers/{daemon_name}/{name}/logs", headers=OP)
    logs = await resp.json()
    assert resp.status == 200, logs
    assert {"stream": "stdout", "line": "to-stdout"} in logs["lines"]
    assert {"stream": "stderr", "line": "to-stderr"} in logs["lines"]  # demultiplexed on API 1.41

    resp = await fleet.post(f"/api/v1/containers/{daemon_name}/{name}/stop", params={"t": "1"}, headers=OP)
    assert resp.status == 200, await resp.text()
    assert state_of(daemon, name) == "exited"
    assert [c["state"] for c in await fleet_view(fleet, name)] == ["exited"]

    resp = await fleet.delete(f"/api/v1/containers/{daemon_name}/{created['id']}", headers=OP)
    assert resp.status == 200, await resp.text()
    assert state_of(daemon, name) == "absent"
    assert await fleet_view(fleet, name) == []


async def test_real_daemon_errors_keep_their_meaning(fleet: Client, docker_lab: DockerLab) -> None:
    d1 = docker_lab.daemons["d1"]
    resp = await fleet.post("/api/v1/containers/d1/no-such-container/start", headers=OP)
    err = (await resp.json())["error"]
    assert resp.status == 404 and err["host"] == "d1" and "No such container" in err["message"]
    before = d1.docker("ps", "--all", "--quiet").stdout.split()
    resp = await fleet.post("/api/v1/hosts/d1/containers", json={}, headers=OP)
    err = (await resp.json())["error"]
    assert resp.status == 400 and "Config cannot be empty" in err["message"]
    bad = {"Image": BUSYBOX_IMAGE, "HostConfig": {"Memory": 5, "NetworkMode": "none"}}
    resp = await fleet.post("/api/v1/hosts/d1/containers", json=bad, headers=OP)
    err = (await resp.json())["error"]
    assert resp.status == 400 and "Minimum memory limit" in err["message"], err
    assert d1.docker("ps", "--all", "--quiet").stdout.split() == before
    resp = await fleet.post(
        "/api/v1/hosts/d1/containers",
        params={"name": "web1"},
        json={"Image": BUSYBOX_IMAGE, "Cmd": ["true"]},
        headers=OP,
    )
    err = (await resp.json())["error"]
    assert resp.status == 409 and "already in use" in err["message"]
    resp = await fleet.delete("/api/v1/containers/d1/web1", headers=OP)
    assert resp.status == 409 and "running container" in (await resp.json())["error"]["message"]
    assert state_of(d1, "web1") == "running"


async def test_pull_and_search_without_a_registry_say_so(fleet: Client, docker_lab: DockerLab) -> None:
    resp = await fleet.post("/api/v1/hosts/d1/images/pull", params={"image": "busybox:1.36"}, headers=OP)
    err = (await resp.json())["error"]
    assert resp.status in (404, 502), err
    assert err["host"] == "d1" and err["code"] in (
        "registry_unreachable",
        "image_not_found",
        "registry_error",
    )
    assert "busybox" in err["message"]
    resp = await fleet.get("/api/v1/images/search", params={"term": "busybox", "host": "d2"}, headers=OP)
    err = (await resp.json())["error"]
    assert resp.status == 502 and err["code"] == "registry_unreachable", err
    assert err["message"].startswith("host d2 has no registry access")
    listed = docker_lab.daemons["d1"].docker("images", "--format", "{{.Repository}}:{{.Tag}}").stdout.split()
    assert "busybox:1.36" not in listed


async def test_batch_stop_over_two_daemons_with_one_down(
    fleet: Client, docker_lab: DockerLab, uid: str, cleanup: list[tuple[str, str]]
) -> None:
    d1, d2 = docker_lab.daemons["d1"], docker_lab.daemons["d2"]
    label = f"ops-batch={uid}"
    mine = {"d1": [f"b1-{uid}", f"b2-{uid}"], "d2": [f"b3-{uid}", f"b4-{uid}"]}
    bystander = f"b5-{uid}"  # same daemon, other label: must not be touched
    planned = [(h, n, {"ops-batch": uid}) for h, names in mine.items() for n in names]
    for daemon_name, name, labels in [*planned, ("d1", bystander, {"ops-other": uid})]:
        cleanup.append((daemon_name, name))
        body = {"Image": BUSYBOX_IMAGE, "Cmd": ["sleep", "1000"], "Labels": labels, "StopTimeout": 1,
                "HostConfig": {"NetworkMode": "none"}}  # fmt: skip
        resp = await fleet.post(
            f"/api/v1/hosts/{daemon_name}/containers", params={"name": name}, json=body, headers=OP
        )
        assert resp.status == 201, await resp.text()
        assert (await fleet.post(f"/api/v1/containers/{daemon_name}/{name}/start", headers=OP)).status == 200
    resp = await fleet.get("/api/v1/containers", params={"label": label, "state": "running"}, headers=OP)
    assert (await resp.json())["total"] == 4
    assert all(state_of(docker_lab.daemons[h], n) == "running" for h, n, _ in planned)

    async with d2.outage():
        body = {"action": "stop", "selector": {"label": [label]}, "t": 1}
        resp = await fleet.post("/api/v1/actions", json=body, headers=OP)
        data = await resp.json()
        assert resp.status == 200, data
        outcome = {t["name"]: t for t in data["targets"]}
        assert set(outcome) == set(mine["d1"] + mine["d2"])
        for name in mine["d1"]:
            assert outcome[name]["outcome"] == "ok" and outcome[name]["host"] == "d1"
            assert state_of(d1, name) == "exited"
        for name in mine["d2"]:
            assert outcome[name]["outcome"] == "failed"
            assert outcome[name]["error"]["code"] == "engine_unreachable", outcome[name]
            assert "host d2" in outcome[name]["error"]["message"]
        assert data["summary"] == {"targets": 4, "ok": 2, "failed": 2}
        assert state_of(d1, bystander) == "running"


async def test_load_a_docker_save_tarball_onto_another_daemon(
    fleet: Client, docker_lab: DockerLab, uid: str, tmp_path: Path
) -> None:
    d1, d2 = docker_lab.daemons["d1"], docker_lab.daemons["d2"]
    ref = f"fleet/ops-load:{uid}"
    await d1.adocker("tag", BUSYBOX_IMAGE, ref)
    tarball = tmp_path / "image.tar"
    try:
        await d1.adocker("save", "--output", str(tarball), ref)
        size = tarball.stat().st_size

        async def chunks() -> AsyncIterator[bytes]:
            with tarball.open("rb") as f:
                while chunk := await asyncio.to_thread(f.read, 256 * 1024):
                    yield chunk

        resp = await fleet.post("/api/v1/hosts/d2/images/load", data=chunks(), headers=OP)
        data = await resp.json()
        assert resp.status == 200, data
        assert data["loaded"] == [ref] and data["bytes"] == size
        assert d2.docker("image", "inspect", "--format", "{{.Id}}", ref).stdout.strip()
        resp = await fleet.get("/api/v1/images", params={"reference": ref}, headers=OP)
        [image] = (await resp.json())["images"]
        assert "d2" in image["hosts"] and ref in image["tags"]
    finally:
        for daemon in (d1, d2):
            await daemon.adocker("rmi", ref, check=False)


@pytest.mark.podman
async def test_create_start_logs_stop_remove_on_podman(
    podman_daemon: Daemon, tmp_path: Path, uid: str
) -> None:
    client = await start_client(settings(tmp_path, [lab_host(podman_daemon)], TOKENS.auth()))
    name = f"ops-pod-{uid}"
    try:
        body = {
            "Image": BUSYBOX_IMAGE,
            "Cmd": ["sh", "-c", "echo to-stdout; echo to-stderr >&2; exec sleep 1000"],
            "HostConfig": {"NetworkMode": "none"},
        }
        resp = await client.post(
            "/api/v1/hosts/podman/containers", params={"name": name}, json=body, headers=OP
        )
        assert resp.status == 201, await resp.text()
        assert (await client.post(f"/api/v1/containers/podman/{name}/start", headers=OP)).status == 200
        assert state_of(podman_daemon, name) == "running"
        assert [c["state"] for c in await fleet_view(client, name)] == ["running"]
        await eventually(
            lambda: "to-stderr" in podman_daemon.docker("logs", name, tcp=True).stderr, timeout=10
        )
        logs = await (await client.get(f"/api/v1/containers/podman/{name}/logs", headers=OP)).json()
        assert {"stream": "stdout", "line": "to-stdout"} in logs["lines"], logs
        assert {"stream": "stderr", "line": "to-stderr"} in logs["lines"], logs
        resp = await client.post(f"/api/v1/containers/podman/{name}/stop", params={"t": "1"}, headers=OP)
        assert resp.status == 200, await resp.text()
        assert state_of(podman_daemon, name) == "exited"
        resp = await client.delete(f"/api/v1/containers/podman/{name}", headers=OP)
        assert resp.status == 200, await resp.text()
        assert state_of(podman_daemon, name) == "absent"
    finally:
        await client.close()
        podman_daemon.docker("rm", "--force", name, check=False, tcp=True)
