"""``fleetd run`` over real daemons: every mutating endpoint refused without a token, with a wrong one and
with a viewer's, and nothing changes on the daemons; the tokens never reach fleetd's log."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import json
import re
import secrets
import signal
import socket
import sqlite3
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from fleetd.api.app import route_index
from fleetd.api.routes import Access, template_key
from tests.integration.lab import BUSYBOX_IMAGE, Daemon, DockerLab

POLICY = route_index().policy

pytestmark = pytest.mark.docker


@dataclass
class Fleetd:
    base: str
    tokens: dict[str, str]  # name → token
    process: asyncio.subprocess.Process
    log: str = ""

    def auth(self, name: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[name]}"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _host_line(daemon: Daemon, url: str) -> str:
    line = f"  - {{name: {daemon.name}, url: '{url}'"
    if daemon.tls_paths is not None:
        t = daemon.tls_paths
        line += f", tls: {{ca: '{t.ca}', cert: '{t.cert}', key: '{t.key}'}}"
    return line + "}\n"


@pytest.fixture
async def fleetd(docker_lab: DockerLab, tmp_path: Path) -> AsyncIterator[Fleetd]:
    tokens = {name: secrets.token_urlsafe(32) for name in ("root", "ci-bot", "dashboard")}
    (tmp_path / "root.token").write_text(tokens["root"] + "\n")
    d = docker_lab.daemons
    port = _free_port()
    config = tmp_path / "fleetd.yaml"
    config.write_text(
        f"listen: 127.0.0.1:{port}\nlog: {{level: debug, format: json}}\n"
        f"poll: {{interval: 30s, timeout: 5s}}\n"
        f"snapshots: {{enabled: true, path: '{tmp_path / 'fleetd.db'}'}}\n"
        "auth:\n  tokens:\n"
        f"    - {{name: root, role: admin, token_file: '{tmp_path / 'root.token'}'}}\n"
        f"    - {{name: ci-bot, role: operator, token_sha256: {hashlib.sha256(tokens['ci-bot'].encode()).hexdigest()}}}\n"
        f"    - {{name: dashboard, role: viewer, token_sha256: {hashlib.sha256(tokens['dashboard'].encode()).hexdigest()}}}\n"
        "hosts:\n"
        + _host_line(d["d1"], d["d1"].tcp_url)
        + _host_line(d["d2"], str(d["d2"].unix_url))
        + _host_line(d["tls"], d["tls"].tcp_url)
    )  # fmt: skip
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "fleetd", "run", "--config", str(config),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    running = Fleetd(f"http://127.0.0.1:{port}", tokens, proc)
    try:
        async with aiohttp.ClientSession() as http:
            deadline = time.monotonic() + 30
            while True:
                try:
                    async with http.get(f"{running.base}/readyz") as resp:
                        if resp.status == 200:
                            break
                except aiohttp.ClientError:
                    pass
                assert proc.returncode is None, "fleetd exited"
                assert time.monotonic() < deadline, "fleetd did not become ready"
                await asyncio.sleep(0.1)
        yield running
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        out, err = await asyncio.wait_for(proc.communicate(), 30)
        running.log = out.decode() + err.decode()


def _template(method: str, path: str) -> str:
    """The route template of the policy table that a concrete path of this test hits."""
    path = path.partition("?")[0]
    for m, template in POLICY:
        pattern = re.sub(r"\\\{[^}]*\\\}", "[^/]+", re.escape(template))
        if m == method and re.fullmatch(pattern, path):
            return template
    raise AssertionError(f"no route for {method} {path}")


def _daemon_state(daemon: Daemon) -> tuple[list[str], list[str]]:
    containers = daemon.docker(
        "ps", "--all", "--no-trunc", "--format", "{{.ID}} {{.Names}} {{.State}}"
    ).stdout
    images = daemon.docker(
        "images", "--all", "--no-trunc", "--format", "{{.ID}} {{.Repository}}:{{.Tag}}"
    ).stdout
    return sorted(containers.splitlines()), sorted(images.splitlines())


async def test_every_mutating_endpoint_refuses_and_nothing_changes(
    fleetd: Fleetd, docker_lab: DockerLab, tmp_path: Path
) -> None:
    d1, d2 = docker_lab.daemons["d1"], docker_lab.daemons["d2"]
    ref = f"fleet/intruder:{secrets.token_hex(3)}"
    await d1.adocker("tag", BUSYBOX_IMAGE, ref)
    await d1.adocker("save", "--output", str(tmp_path / "intruder.tar"), ref)
    await d1.adocker("rmi", ref)
    tarball = (tmp_path / "intruder.tar").read_bytes()
    before = {d.name: await asyncio.to_thread(_daemon_state, d) for d in docker_lab.docker_daemons()}

    create = {"Image": BUSYBOX_IMAGE, "Cmd": ["sleep", "1000"], "HostConfig": {"NetworkMode": "none"}}
    calls: list[tuple[str, str, dict[str, Any]]] = [
        ("POST", "/api/v1/hosts/d1/containers?name=intruder", {"json": create}),
        ("POST", "/api/v1/containers/d1/job1/start", {}),
        ("POST", "/api/v1/containers/d1/web1/stop?t=1", {}),
        ("POST", "/api/v1/containers/d2/web2/restart?t=1", {}),
        ("POST", "/api/v1/containers/tls/tls1/kill", {}),
        ("DELETE", "/api/v1/containers/d2/db2?force=true", {}),
        ("POST", "/api/v1/hosts/d1/images/pull?image=busybox", {}),
        ("POST", "/api/v1/hosts/d2/images/load", {"data": tarball}),  # sent as a fresh BytesIO each time
        (
            "POST",
            "/api/v1/actions",
            {"json": {"action": "remove", "selector": {"label": ["app=web"]}, "force": True}},
        ),
        ("DELETE", "/api/v1/snapshots/1", {}),
        ("POST", "/api/v1/snapshots/prune?last=1", {}),
        ("POST", "/api/v1/reload", {}),
    ]
    # Every mutating route above viewer level is tried (taking a snapshot is a viewer's right).
    operations = {
        template_key(m, t) for (m, t), r in POLICY.items() if m != "GET" and r.access > Access.VIEWER
    }
    assert {template_key(m, _template(m, p)) for m, p, _ in calls} == operations
    wrong = {"Authorization": "Bearer " + secrets.token_urlsafe(32)}
    # Wrong tokens last: after ten of them the address is blocked (429), whatever token it presents.
    rounds = [("none", {}, 401), ("viewer", fleetd.auth("dashboard"), 403), ("wrong", wrong, 401)]
    guesses = 0
    async with aiohttp.ClientSession() as http:
        # The operator could: a dry run lists the targets the refused batch names.
        batch = {"action": "remove", "selector": {"label": ["app=web"]}, "dry_run": True}
        async with http.post(
            f"{fleetd.base}/api/v1/actions", json=batch, headers=fleetd.auth("ci-bot")
        ) as resp:
            names = sorted(t["name"] for t in (await resp.json())["targets"])
        assert names == ["tls1", "web1", "web2"]
        for who, headers, status in rounds:
            for method, path, kwargs in calls:
                if "data" in kwargs:
                    kwargs = {"data": io.BytesIO(tarball)}
                if who == "wrong":
                    guesses += 1
                    status = 401 if guesses <= 10 else 429
                async with http.request(method, fleetd.base + path, headers=headers, **kwargs) as resp:
                    body = await resp.json()
                    assert resp.status == status, (who, method, path, body)
                    if status == 401:
                        assert resp.headers["WWW-Authenticate"].startswith("Bearer")
                    if status == 429:
                        assert int(resp.headers["Retry-After"]) >= 1
    assert guesses == len(calls) > 10

    after = {d.name: await asyncio.to_thread(_daemon_state, d) for d in docker_lab.docker_daemons()}
    assert after == before
    assert not any(ref in line for line in after["d2"][1])
    assert d1.docker("inspect", "--format", "{{.State.Status}}", "web1").stdout.strip() == "running"
    assert d2.docker("inspect", "--format", "{{.State.Status}}", "db2").stdout.strip() == "running"

    fleetd.process.send_signal(signal.SIGTERM)
    out, err = await asyncio.wait_for(fleetd.process.communicate(), 30)
    fleetd.log = out.decode() + err.decode()
    assert fleetd.process.returncode == 0
    with contextlib.closing(sqlite3.connect(tmp_path / "fleetd.db")) as db:  # what fleetd stored
        rows = db.execute("SELECT actor, outcome, status FROM audit ORDER BY id").fetchall()
    refused = [r for r in rows if r[1] == "denied"]
    assert len(refused) == 3 * len(calls) - (guesses - 10)  # 429 answers are not stored
    assert {r[0] for r in refused} == {"anonymous", "dashboard"}
    assert rows[0] == ("ci-bot", "ok", 200)  # the dry run
    events = [json.loads(line) for line in fleetd.log.splitlines() if line.startswith("{")]
    assert sum(1 for e in events if e.get("event") == "audit") == len(rows)
    secrets_seen = [*fleetd.tokens.values(), wrong["Authorization"].split()[1]]
    secrets_seen += [hashlib.sha256(t.encode()).hexdigest() for t in fleetd.tokens.values()]
    for secret in secrets_seen:
        assert secret not in fleetd.log
        assert secret[:12] not in fleetd.log
