"""The Docker endpoint over fake Engines, driven by the real docker CLI and docker-py: a mixed fleet
where one host refuses anything below API 1.44, read-only mode, tokens, pulls and the audit log."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from structlog.testing import capture_logs

from fleetd.api.app import create_app
from fleetd.api.keys import FLEET
from fleetd.config.docker_api import DockerAPISettings
from fleetd.config.model import Settings
from fleetd.dockercompat import DockerListener
from fleetd.dockercompat.upstream import FleetAccess
from fleetd.runtime import Fleet
from tests.fakes import FakeEngine, docker_20_10, docker_29
from tests.integration.docker_endpoint import DOCKER_CLIS
from tests.unit.opskit import Tokens, host, settings

TOKENS = Tokens(ci="operator", watcher="viewer")

needs_cli = pytest.mark.skipif(
    not DOCKER_CLIS and not os.environ.get("FLEETD_REQUIRE_DOCKER"), reason="no docker CLI on this machine"
)


@dataclass
class Stack:
    url: str
    old: FakeEngine
    new: FakeEngine
    app: web.Application
    listener: DockerListener
    root: Path
    api_url: str = ""  # fleetd's REST API on the same fleet

    def env(self, token: str | None = None) -> dict[str, str]:
        config = self.root / f"cli-{token or 'none'}"
        config.mkdir(exist_ok=True)
        if token is not None:
            (config / "config.json").write_text(json.dumps({"HttpHeaders": {"Authorization": f"Bearer {token}"}}))
        env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")}
        env.update(DOCKER_HOST=self.url, DOCKER_CONFIG=str(config))
        return env

    async def cli(self, *args: str, token: str | None = None, cli: str | None = None) -> subprocess.CompletedProcess[str]:
        proc = await asyncio.create_subprocess_exec(
            cli or DOCKER_CLIS[0], *args, env=self.env(token),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, err = await asyncio.wait_for(proc.communicate(), 30)
        assert proc.returncode is not None
        return subprocess.CompletedProcess(args, proc.returncode, out.decode(), err.decode())


@contextlib.asynccontextmanager
async def _stack(tmp_path: Path, docker_api: DockerAPISettings, with_tokens: bool) -> AsyncIterator[Stack]:
    async with FakeEngine(docker_20_10(containers=3, seed=11)) as old, FakeEngine(docker_29(containers=3, seed=12)) as new:
        cfg: Settings = settings(
            tmp_path, [host("old", old.url), host("new", new.url)], TOKENS.auth() if with_tokens else None
        )
        runtime = Fleet(cfg)
        await runtime.start()
        app = create_app(runtime)
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        api_url = f"http://127.0.0.1:{runner.addresses[0][1]}"
        fleet = FleetAccess(
            runtime.state, runtime.poller, runtime.connections, lambda: runtime.settings, runtime.auditor,
            runtime.auth_failures,
        )
        listener = DockerListener(fleet, docker_api)
        try:
            await listener.start()
            url = listener.url
            for _ in range(200):
                if all(r.status.value == "up" and r.images is not None for r in runtime.state.records()):
                    break
                await asyncio.sleep(0.02)
            yield Stack(url, old, new, app, listener, tmp_path, api_url)
        finally:
            await listener.aclose()
            await runner.cleanup()
            await runtime.aclose()


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[Stack]:
    async with _stack(tmp_path, DockerAPISettings(host="127.0.0.1", port=0), with_tokens=False) as s:
        yield s


@pytest.fixture
async def guarded(tmp_path: Path) -> AsyncIterator[Stack]:
    async with _stack(tmp_path, DockerAPISettings(host="127.0.0.1", port=0, read_only=True), with_tokens=True) as s:
        yield s


def _names(stack: Stack, host_name: str) -> list[str]:
    record = stack.app[FLEET].state.get(host_name)
    assert record is not None
    return [c.name for c in record.containers]


@needs_cli
@pytest.mark.parametrize("cli", DOCKER_CLIS)
async def test_mixed_fleet_each_host_gets_a_version_in_its_window(stack: Stack, cli: str) -> None:
    done = await stack.cli("ps", "-a", "--format", "{{.Names}}", cli=cli)
    assert done.returncode == 0, done.stderr
    listed = set(done.stdout.split())
    assert {f"old/{n}" for n in _names(stack, "old")} | {f"new/{n}" for n in _names(stack, "new")} == listed
    target = _names(stack, "new")[0]
    done = await stack.cli("inspect", "-f", "{{.Node.Name}}", f"new/{target}", cli=cli)
    assert (done.returncode, done.stdout.strip()) == (0, "new"), done.stderr
    done = await stack.cli("stop", "-t", "0", f"new/{target}", cli=cli)
    assert done.returncode == 0, done.stderr
    older = _names(stack, "old")[0]
    done = await stack.cli("inspect", "-f", "{{.Node.Name}}", f"old/{older}", cli=cli)
    assert done.stdout.strip() == "old", done.stderr
    # The client speaks 1.41 (the lowest host maximum); the 29 host was asked in 1.44, the 20.10 host in 1.41.
    # (fleetd's own polls: /v1.51/containers/json, and its first one unversioned: Docker 29 answers
    # that at 1.52, so it was sent again at 1.51)
    polls = ("/v1.51/containers/json", "/containers/json")
    new_calls = [p for p in stack.new.paths() if "/containers/" in p and p.split("?")[0] not in polls]
    assert new_calls and all(p.startswith("/v1.44/") for p in new_calls), new_calls
    assert any(p.endswith("/stop?t=0") for p in new_calls)
    old_calls = [p for p in stack.old.paths() if "/json" in p and "/containers/" in p and "containers/json" not in p]
    assert old_calls and all(p.startswith("/v1.41/") for p in old_calls), old_calls


async def test_docker_py_on_the_mixed_fleet(stack: Stack) -> None:
    docker = pytest.importorskip("docker")

    def use() -> tuple[str, list[str], str]:
        client = docker.DockerClient(base_url=stack.url, timeout=30)
        try:
            names = [c.attrs["Names"][0] for c in client.containers.list(all=True, sparse=True)]
            one = client.containers.get(f"new/{_names(stack, 'new')[0]}")
            return client.version()["ApiVersion"], names, one.attrs["Node"]["Name"]
        finally:
            client.close()

    api, names, node = await asyncio.to_thread(use)
    assert api == "1.41" and node == "new"
    assert len(names) == 6 and all(n.startswith(("/old/", "/new/")) for n in names)


async def _raw(stack: Stack, method: str, path: str, token: str | None = None, **kw: Any) -> tuple[int, str, bytes]:
    import aiohttp

    headers = {"Authorization": f"Bearer {token}"} if token else {}
    headers.update(kw.pop("headers", {}))
    async with aiohttp.ClientSession() as http, http.request(
        method, stack.url.replace("tcp://", "http://") + path, headers=headers, **kw
    ) as resp:
        return resp.status, resp.headers.get("Content-Type", ""), await resp.read()


@needs_cli
async def test_read_only_and_tokens(guarded: Stack) -> None:
    s = guarded
    target = f"old/{_names(s, 'old')[0]}"
    done = await s.cli("ps")
    assert done.returncode != 0 and "needs a bearer token" in done.stderr
    done = await s.cli("ps", "-a", "--format", "{{.Names}}", token=TOKENS.by_name["watcher"])
    assert done.returncode == 0 and len(done.stdout.split()) == 6, done.stderr
    done = await s.cli("stop", target, token=TOKENS.by_name["ci"])
    assert done.returncode != 0 and "read-only" in done.stderr
    for method, path in (
        ("GET", f"/v1.41/containers/{target}/archive?path=/"),
        ("HEAD", f"/containers/{target}/archive?path=/etc"),
        ("GET", f"/v1.41/containers/{target.replace('/', '%2F')}/export"),
        ("GET", "/v1.41/images/get?names=busybox"),
        ("GET", "/images/busybox/get"),
        ("POST", f"/v1.41/containers/{target}/exec"),
        ("POST", f"/v1.41/containers/{target}/attach?stream=1"),
        ("POST", "/v1.41/exec/abc/start"),
        ("POST", "/v1.41/build"),
        ("DELETE", f"/v1.41/containers/{target}"),
    ):
        status, ctype, body = await _raw(s, method, path, TOKENS.by_name["ci"])
        assert status == 403 and ctype == "application/json", (method, path, status, body)
        if method != "HEAD":
            assert b"read-only" in body
    status, _, _ = await _raw(s, "GET", "/v1.41/info", "wrong-token")
    assert status == 401


async def test_viewer_cannot_change_anything(tmp_path: Path) -> None:
    async with _stack(tmp_path, DockerAPISettings(host="127.0.0.1", port=0), with_tokens=True) as s:
        target = f"old/{_names(s, 'old')[0]}"
        status, _, body = await _raw(s, "POST", f"/v1.41/containers/{target}/stop", TOKENS.by_name["watcher"])
        assert status == 403 and b"needs operator" in body
        # logs follow container_logs.role (default operator), as on the main API
        status, _, body = await _raw(s, "GET", f"/v1.41/containers/{target}/logs?stdout=1", TOKENS.by_name["watcher"])
        assert status == 403 and b"needs operator" in body
        status, _, body = await _raw(s, "POST", f"/v1.41/containers/{target}/stop?t=0", TOKENS.by_name["ci"])
        assert status in (204, 304), body  # stopped now, or already


async def test_wrong_tokens_are_limited_but_never_lock_out_a_proven_token(tmp_path: Path) -> None:
    async with _stack(tmp_path, DockerAPISettings(host="127.0.0.1", port=0), with_tokens=True) as s:
        ci = TOKENS.by_name["ci"]
        assert (await _raw(s, "GET", "/v1.41/info", ci))[0] == 200  # proven from 127.0.0.1
        statuses = [(await _raw(s, "GET", "/v1.41/info", f"guess-{i}"))[0] for i in range(12)]
        assert statuses[:10] == [401] * 10 and statuses[10:] == [429, 429]
        status, ctype, body = await _raw(s, "GET", "/v1.41/info", "guess-again")
        assert status == 429 and ctype == "application/json" and b"retry in" in body
        # the address is blocked for guesses, never for the token already proven there
        for _ in range(3):
            assert (await _raw(s, "GET", "/v1.41/info", ci))[0] == 200
        # a valid token not yet proven from this address cannot learn that it is right while blocked
        assert (await _raw(s, "GET", "/v1.41/info", TOKENS.by_name["watcher"]))[0] == 429


async def test_guessing_on_one_listener_blocks_guessing_on_the_other(tmp_path: Path) -> None:
    import aiohttp

    async with _stack(tmp_path, DockerAPISettings(host="127.0.0.1", port=0), with_tokens=True) as s:
        ci = TOKENS.by_name["ci"]
        assert (await _raw(s, "GET", "/v1.41/info", ci))[0] == 200  # proven from 127.0.0.1 (both listeners)
        async with aiohttp.ClientSession() as http:
            for i in range(10):  # ten guesses on the REST API ...
                headers = {"Authorization": f"Bearer guess-{i}"}
                async with http.get(f"{s.api_url}/api/v1/hosts", headers=headers) as wrong:
                    assert wrong.status == 401
        # ... leave no guesses for the Docker endpoint from that address; the proven token still works
        assert (await _raw(s, "GET", "/v1.41/info", "guess-10"))[0] == 429
        assert (await _raw(s, "GET", "/v1.41/info", ci))[0] == 200


async def test_pull_goes_to_one_host_with_registry_auth_passed_and_never_logged(stack: Stack) -> None:
    secret = base64.urlsafe_b64encode(json.dumps({"username": "u", "password": "hunter2-pw"}).encode()).decode()
    with capture_logs() as logs:
        status, _, body = await _raw(
            stack, "POST", "/v1.41/images/create?fromImage=library/alpine&tag=3.20", headers={"X-Registry-Auth": secret}
        )
        assert status == 200, body
        for _ in range(100):  # the call is audited once the host was re-read after the pull
            if any(e.get("action") == "image.pull" for e in logs):
                break
            await asyncio.sleep(0.02)
    pulls = [p for e in (stack.old, stack.new) for p in e.paths() if p.split("?")[0].endswith("/images/create")]
    assert len(pulls) == 1 and "fromImage=library" in pulls[0]
    assert stack.old.registry_auths + stack.new.registry_auths == [secret]
    assert "hunter2" not in repr(logs) and secret not in repr(logs)
    audited = [e for e in logs if e.get("action") == "image.pull"]
    assert [(e["status"], e["targets"]) for e in audited] == [(200, ["new/library/alpine:3.20"])] or [
        (e["status"], e["targets"]) for e in audited
    ] == [(200, ["old/library/alpine:3.20"])]


async def test_the_first_list_right_after_start_is_the_whole_fleet(tmp_path: Path) -> None:
    """Before every host answered its first poll, a list waits for it (bounded) instead of being empty."""
    async with FakeEngine(docker_20_10(containers=3, seed=5, latency=0.4)) as slow:
        runtime = Fleet(settings(tmp_path, [host("slow", slow.url)]))
        listener = DockerListener.for_fleet(runtime, DockerAPISettings(host="127.0.0.1", port=0))
        runtime.add_part(listener)
        await runtime.start()
        try:
            assert not runtime.state.is_ready()
            stack = Stack(listener.url, slow, slow, web.Application(), listener, tmp_path)
            status, _, body = await _raw(stack, "GET", "/v1.41/containers/json?all=1")
            assert status == 200 and len(json.loads(body)) == 3
        finally:
            await runtime.aclose()
