"""Followed and merged logs against real dockerd: lines written after the follow started, two daemons
merged by label, and a client that leaves takes every upstream connection with it."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient

from fleetd.api.keys import FLEET
from fleetd.api.logs import LOG_STREAMS
from fleetd.logs import parse_timestamp
from tests.harness import eventually
from tests.integration.lab import BUSYBOX_IMAGE, Daemon, DockerLab
from tests.unit.opskit import Tokens, host, settings, start_client

pytestmark = pytest.mark.docker

TOKENS = Tokens(ci="operator")
OP = TOKENS.header("ci")
Client = TestClient[Any, Any]


@pytest.fixture
async def fleet(docker_lab: DockerLab, tmp_path: Path) -> AsyncIterator[Client]:
    d = docker_lab.daemons
    # Slow polls: what the streams pick up must come from the refresh the test asks for.
    hosts = [host(n, d[n].tcp_url, interval=30.0, timeout=5.0) for n in ("d1", "d2")]
    client = await start_client(settings(tmp_path, hosts, TOKENS.auth()))
    try:
        yield client
    finally:
        await client.close()


@pytest.fixture
def run(docker_lab: DockerLab) -> Iterator[Any]:
    made: list[tuple[Daemon, str]] = []

    def start(daemon_name: str, name: str, label: str) -> str:
        daemon = docker_lab.daemons[daemon_name]
        made.append((daemon, name))
        done = daemon.docker(
            "run", "-d", "--network", "none", "--name", name, "--label", label, BUSYBOX_IMAGE, "sleep", "1000"
        )
        return done.stdout.strip()

    yield start
    for daemon, name in made:
        if daemon.running:
            daemon.docker("rm", "--force", name, check=False)


def echo_into(daemon: Daemon, name: str, text: str, *, stderr: bool = False) -> None:
    """Write a line to the container's own stdout/stderr (its log), from outside, now."""
    fd = 2 if stderr else 1
    daemon.docker("exec", name, "sh", "-c", f"echo {text} > /proc/1/fd/{fd}")


async def next_line(resp: aiohttp.ClientResponse, timeout: float = 10.0) -> dict[str, Any]:
    async with asyncio.timeout(timeout):
        raw = await resp.content.readline()
    assert raw, "the stream ended"
    decoded: dict[str, Any] = json.loads(raw)
    return decoded


def established_to(port: int) -> set[int]:
    """Local ports of this process's ESTABLISHED TCP connections to 127.0.0.1:``port``."""
    inodes = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    found = set()
    with open("/proc/net/tcp") as table:
        for row in table.readlines()[1:]:
            cols = row.split()
            local, remote, st, inode = cols[1], cols[2], cols[3], cols[9]
            if st == "01" and inode in inodes and int(remote.split(":")[1], 16) == port:
                found.add(int(local.split(":")[1], 16))
    return found


async def test_a_followed_log_shows_a_line_written_after_the_follow_started(
    fleet: Client, docker_lab: DockerLab, run: Any
) -> None:
    d1 = docker_lab.daemons["d1"]
    name = f"logs-follow-{secrets.token_hex(4)}"
    cid = run("d1", name, "logs-test=follow")
    resp = await fleet.get(
        f"/api/v1/containers/d1/{name}/logs", params={"follow": "1", "tail": "all"}, headers=OP
    )
    assert resp.status == 200 and resp.headers["Content-Type"].startswith("application/x-ndjson")
    await asyncio.sleep(0.5)  # the follow is open upstream before anything is written
    await asyncio.to_thread(echo_into, d1, name, "hello-after-follow")
    await asyncio.to_thread(echo_into, d1, name, "oops", stderr=True)
    first, second = await next_line(resp), await next_line(resp)
    assert (first["host"], first["id"], first["container"]) == ("d1", cid, name)
    assert (first["stream"], first["line"]) == ("stdout", "hello-after-follow")
    assert (second["stream"], second["line"]) == ("stderr", "oops")
    t1, t2 = parse_timestamp(first["time"]), parse_timestamp(second["time"])
    assert t1 is not None and t2 is not None and t1 <= t2  # the daemon's stamps, stripped from the text
    await asyncio.to_thread(d1.docker, "kill", name)
    assert await next_line(resp) == {"reason": "container stopped", "end": True}


async def test_merged_logs_by_label_across_two_daemons_with_a_late_joiner(
    fleet: Client, docker_lab: DockerLab, run: Any
) -> None:
    d = docker_lab.daemons
    uid = secrets.token_hex(4)
    label = f"logs-merge={uid}"
    names = {"d1": f"m1-{uid}", "d2": f"m2-{uid}"}
    for daemon_name, name in names.items():
        run(daemon_name, name, label)
    run("d1", f"other-{uid}", "logs-merge=someone-else")
    await asyncio.gather(*(fleet.app[FLEET].poller.refresh(h) for h in ("d1", "d2")))
    resp = await fleet.get("/api/v1/logs", params={"label": label, "follow": "1", "tail": "0"}, headers=OP)
    assert resp.status == 200
    await asyncio.sleep(0.5)
    for i, (daemon_name, name) in enumerate([*names.items(), *names.items()]):
        await asyncio.to_thread(echo_into, d[daemon_name], name, f"line-{i}")
    got = [await next_line(resp) for _ in range(4)]
    assert [(x["host"], x["container"], x["line"]) for x in got] == [
        ("d1", names["d1"], "line-0"),
        ("d2", names["d2"], "line-1"),
        ("d1", names["d1"], "line-2"),
        ("d2", names["d2"], "line-3"),
    ]
    stamps = [parse_timestamp(x["time"]) or 0 for x in got]
    assert stamps == sorted(stamps)

    late = f"m3-{uid}"
    run("d2", late, label)
    await fleet.app[FLEET].poller.refresh("d2")  # the state learns of it; the merged stream follows it
    await asyncio.sleep(1.0)
    await asyncio.to_thread(echo_into, d["d2"], late, "late-joiner")
    joined = await next_line(resp)
    assert (joined["host"], joined["container"], joined["line"]) == ("d2", late, "late-joiner")


async def test_the_client_leaving_closes_every_upstream_connection(
    fleet: Client, docker_lab: DockerLab, run: Any
) -> None:
    d1 = docker_lab.daemons["d1"]
    uid = secrets.token_hex(4)
    label = f"logs-leave={uid}"
    run("d1", f"l1-{uid}", label)
    run("d1", f"l2-{uid}", label)
    await fleet.app[FLEET].poller.refresh("d1")
    resp = await fleet.get("/api/v1/logs", params={"label": label, "follow": "1"}, headers=OP)
    assert resp.status == 200
    await eventually(lambda: len(fleet.app[LOG_STREAMS]) == 1)
    await asyncio.sleep(1.0)  # both pumps have inspected their container and opened the follow
    during = established_to(d1.port)
    assert len(during) >= 2, during  # one follow per container (they may reuse pooled connections)
    resp.close()
    # Both follow connections are closed, not kept in the pool: two fewer than during the follow.
    await eventually(lambda: len(established_to(d1.port)) <= len(during) - 2, timeout=10.0)
    assert len(fleet.app[LOG_STREAMS]) == 0


@pytest.mark.podman
async def test_a_followed_log_on_podman(podman_daemon: Daemon, tmp_path: Path) -> None:
    name = f"plog-{secrets.token_hex(4)}"
    podman_daemon.podman("run", "-d", "--network", "none", "--name", name, BUSYBOX_IMAGE, "sleep", "1000")
    client = await start_client(
        settings(tmp_path, [host("podman", podman_daemon.tcp_url, timeout=5.0)], TOKENS.auth())
    )
    try:
        resp = await client.get(f"/api/v1/containers/podman/{name}/logs", params={"follow": "1"}, headers=OP)
        assert resp.status == 200, await resp.text()
        await asyncio.sleep(1.0)
        await asyncio.to_thread(
            podman_daemon.podman, "exec", name, "sh", "-c", "echo from-podman > /proc/1/fd/1"
        )
        line = await next_line(resp, timeout=15.0)
        assert (line["host"], line["container"], line["stream"], line["line"]) == (
            "podman",
            name,
            "stdout",
            "from-podman",
        )
        assert parse_timestamp(line["time"]) is not None
    finally:
        await client.close()
        podman_daemon.podman("rm", "--force", name, check=False)
