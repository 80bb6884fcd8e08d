"""Per-host container operations against fake Engines: the lifecycle, error mapping, logs."""

from __future__ import annotations

import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from fleetd.config.model import HostSettings
from tests.fakes import FakeEngines
from tests.fakes.behaviour import Fault
from tests.unit.opskit import ScriptedEngine, Tokens, host, settings, start_client

TOKENS = Tokens(ci="operator")
OP = TOKENS.header("ci")

Client = TestClient[Any, Any]
MakeClient = Callable[..., Awaitable[Client]]


@pytest.fixture
async def make_client(tmp_path: Path) -> AsyncIterator[MakeClient]:
    clients: list[Client] = []

    async def make(*hosts: HostSettings) -> Client:
        client = await start_client(settings(tmp_path, list(hosts), TOKENS.auth()))
        clients.append(client)
        return client

    yield make
    for c in clients:
        await c.close()


async def _containers(client: Client, **params: str) -> list[dict[str, Any]]:
    resp = await client.get("/api/v1/containers", params=params, headers=OP)
    assert resp.status == 200
    return list((await resp.json())["containers"])


async def test_create_start_stop_remove_each_visible_at_once(
    make_client: MakeClient, fake_engine: FakeEngines
) -> None:
    eng = await fake_engine(containers=2)
    client = await make_client(host("h1", eng.url))  # polls every 30 s: only the refresh can show changes
    body = {"Image": "fleet/busybox:test", "Cmd": ["sleep", "1000"], "Labels": {"app": "probe"}}
    resp = await client.post("/api/v1/hosts/h1/containers", params={"name": "probe"}, json=body, headers=OP)
    assert resp.status == 201
    created = await resp.json()
    assert created["host"] == "h1" and created["warnings"] == [] and created["refreshed"] is True
    cid = created["id"]
    assert eng.state.containers[cid].name == "probe"
    [seen] = await _containers(client, name="probe")
    assert seen["id"] == cid and seen["state"] == "created" and seen["labels"] == {"app": "probe"}

    resp = await client.post(f"/api/v1/containers/h1/{cid}/start", headers=OP)
    assert resp.status == 200 and (await resp.json())["changed"] is True
    assert eng.state.containers[cid].state == "running"
    assert (await _containers(client, name="probe"))[0]["state"] == "running"
    resp = await client.post("/api/v1/containers/h1/probe/start", headers=OP)  # by name; already running
    assert resp.status == 200 and (await resp.json())["changed"] is False

    resp = await client.post("/api/v1/containers/h1/probe/stop", params={"t": "3"}, headers=OP)
    assert resp.status == 200 and (await resp.json())["id"] == cid
    assert any(p.endswith("/containers/probe/stop?t=3") for p in eng.paths())
    assert (await _containers(client, name="probe"))[0]["state"] == "exited"

    resp = await client.delete(f"/api/v1/containers/h1/{cid[:12]}", params={"v": "true"}, headers=OP)
    assert resp.status == 200
    assert cid not in eng.state.containers
    assert await _containers(client, name="probe") == []


async def test_restart_and_kill(make_client: MakeClient, fake_engine: FakeEngines) -> None:
    eng = await fake_engine(containers=4, seed=9)
    running = next(c for c in eng.state.containers.values() if c.running)
    client = await make_client(host("h1", eng.url))
    resp = await client.post(
        f"/api/v1/containers/h1/{running.name}/kill", params={"signal": "SIGKILL"}, headers=OP
    )
    assert resp.status == 200 and running.state == "exited" and running.exit_code == 137
    resp = await client.post(f"/api/v1/containers/h1/{running.name}/kill", headers=OP)
    assert resp.status == 409  # not running any more
    resp = await client.post(f"/api/v1/containers/h1/{running.name}/restart", headers=OP)
    assert resp.status == 200 and running.state == "running"
    resp = await client.post(
        f"/api/v1/containers/h1/{running.name}/kill", params={"signal": "x;y"}, headers=OP
    )
    assert resp.status == 400


@pytest.mark.parametrize(
    ("fault_on", "fault", "call", "status", "code"),
    [
        (None, None, ("POST", "/api/v1/containers/h1/no-such/start", None), 404, "engine_not_found"),
        (None, None, ("POST", "/api/v1/hosts/h1/containers", {"Cmd": ["true"]}), 400, "engine_rejected"),
        (None, None, ("POST", "/api/v1/hosts/h1/containers", {"Image": "nope:1"}), 404, "engine_not_found"),
        ("stop", Fault.STATUS_500, ("POST", "/api/v1/containers/h1/{id}/stop", None), 502, "engine_error"),
        ("create", Fault.INVALID_JSON, ("POST", "/api/v1/hosts/h1/containers", {"Image": "redis:7.4"}), 502,
         "engine_bad_answer"),
        ("kill", Fault.HANG, ("POST", "/api/v1/containers/h1/{id}/kill", None), 504, "engine_timeout"),
        ("remove", Fault.CLOSE_CONNECTION, ("DELETE", "/api/v1/containers/h1/{id}", None), 503,
         "engine_unreachable"),
    ],
)  # fmt: skip
async def test_engine_errors_keep_their_meaning_and_name_the_host(
    make_client: MakeClient,
    fake_engine: FakeEngines,
    fault_on: Any,
    fault: Fault | None,
    call: tuple[str, str, Any],
    status: int,
    code: str,
) -> None:
    eng = await fake_engine(containers=3, seed=4)
    running = next(c for c in eng.state.containers.values() if c.running)
    client = await make_client(host("h1", eng.url, timeout=0.5))
    if fault_on is not None:
        eng.behaviour.faults[fault_on] = fault
    method, path, body = call
    resp = await client.request(method, path.format(id=running.id), json=body, headers=OP)
    err = (await resp.json())["error"]
    assert (resp.status, err["code"], err["host"]) == (status, code, "h1"), err
    assert err["message"].startswith("host h1: ")


async def test_create_conflict_and_daemon_message(make_client: MakeClient, fake_engine: FakeEngines) -> None:
    eng = await fake_engine(containers=1, seed=2)
    existing = next(iter(eng.state.containers.values()))
    client = await make_client(host("h1", eng.url))
    resp = await client.post(
        "/api/v1/hosts/h1/containers", params={"name": existing.name}, json={"Image": "redis:7.4"}, headers=OP
    )
    assert resp.status == 409
    assert "is already in use" in (await resp.json())["error"]["message"]
    resp = await client.post("/api/v1/hosts/h1/containers", json={"Cmd": ["true"]}, headers=OP)
    assert "Config cannot be empty" in (await resp.json())["error"]["message"]


async def test_host_and_reference_problems(make_client: MakeClient, fake_engine: FakeEngines) -> None:
    eng = await fake_engine(containers=1)
    client = await make_client(host("h1", eng.url), host("off", eng.url, enabled=False))
    before = [r for r in eng.requests if r[0] != "GET"]  # the event watcher reads in the background
    resp = await client.post("/api/v1/containers/ghost/web/start", headers=OP)
    assert resp.status == 404 and (await resp.json())["error"]["code"] == "unknown_host"
    resp = await client.post("/api/v1/containers/off/web/start", headers=OP)
    err = (await resp.json())["error"]
    assert resp.status == 409 and err["code"] == "host_disabled" and "enabled: false" in err["message"]
    resp = await client.post("/api/v1/containers/h1/a%3Fforce=1/start", headers=OP)
    assert resp.status == 400 and (await resp.json())["error"]["code"] == "bad_reference"
    resp = await client.post("/api/v1/hosts/h1/containers", data=b"[1, 2]", headers=OP)
    assert resp.status == 400
    resp = await client.post("/api/v1/hosts/h1/containers", data=b"{not json", headers=OP)
    assert resp.status == 400
    resp = await client.post("/api/v1/containers/h1/web/stop", params={"t": "-1"}, headers=OP)
    assert resp.status == 400
    assert [r for r in eng.requests if r[0] != "GET"] == before  # none of these reached the daemon


def _frame(stream: int, data: bytes) -> bytes:
    return struct.pack(">BxxxL", stream, len(data)) + data


def _logs_engine(engine: ScriptedEngine, *, tty: bool, content_type: str, body: bytes) -> None:
    async def inspect(request: web.Request) -> web.StreamResponse:
        if "/containers/web/" not in request.path:
            return web.json_response({"message": "No such container"}, status=404)
        return web.json_response({"Id": "ab" * 32, "Name": "/web", "Config": {"Tty": tty}})

    async def logs(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": content_type})
        await response.prepare(request)
        for i in range(0, len(body), 7):  # frames split across chunks
            await response.write(body[i : i + 7])
        await response.write_eof()
        return response

    engine.on("GET", r"/containers/[^/]+/json", inspect)
    engine.on("GET", r"/containers/[^/]+/logs", logs)


async def test_logs_demultiplexed_on_api_1_41_raw_stream_header(make_client: MakeClient) -> None:
    body = _frame(1, b"hello\nwor") + _frame(2, b"oops\n") + _frame(1, b"ld\n") + _frame(1, b"tail")
    async with ScriptedEngine("1.41") as eng:
        _logs_engine(eng, tty=False, content_type="application/vnd.docker.raw-stream", body=body)
        client = await make_client(host("h1", eng.url))
        resp = await client.get("/api/v1/containers/h1/web/logs", params={"tail": "50"}, headers=OP)
        data = await resp.json()
        assert resp.status == 200, data
        assert data["lines"] == [
            {"stream": "stdout", "line": "hello"},
            {"stream": "stderr", "line": "oops"},
            {"stream": "stdout", "line": "world"},
            {"stream": "stdout", "line": "tail"},
        ]
        assert data["id"] == "ab" * 32 and data["name"] == "web" and data["truncated"] is False
        assert any("/logs?" in p and "tail=50" in p and "stderr=1" in p for _, p in eng.requests)


async def test_logs_of_a_tty_container_and_timestamps(make_client: MakeClient) -> None:
    body = b"2026-11-30T10:00:00.123456789Z first\r\n2026-11-30T10:00:01.5Z second\n"
    async with ScriptedEngine("1.41") as eng:
        _logs_engine(eng, tty=True, content_type="application/vnd.docker.raw-stream", body=body)
        client = await make_client(host("h1", eng.url))
        resp = await client.get("/api/v1/containers/h1/web/logs", params={"timestamps": "true"}, headers=OP)
        data = await resp.json()
        assert data["tty"] is True
        assert data["lines"] == [
            {"stream": "stdout", "time": "2026-11-30T10:00:00.123456789Z", "line": "first\r"},
            {"stream": "stdout", "time": "2026-11-30T10:00:01.5Z", "line": "second"},
        ]
        assert any("timestamps=1" in p for _, p in eng.requests)


async def test_logs_on_api_1_44_follow_the_content_type(make_client: MakeClient) -> None:
    async with ScriptedEngine("1.44") as eng:
        mux = "application/vnd.docker.multiplexed-stream"
        _logs_engine(eng, tty=True, content_type=mux, body=_frame(2, b"err\n"))  # the header wins
        client = await make_client(host("h1", eng.url))
        data = await (await client.get("/api/v1/containers/h1/web/logs", headers=OP)).json()
        assert data["lines"] == [{"stream": "stderr", "line": "err"}]
        resp = await client.get("/api/v1/containers/h1/other/logs", headers=OP)
        assert resp.status == 404 and (await resp.json())["error"]["host"] == "h1"
        resp = await client.get("/api/v1/containers/h1/web/logs", params={"since": "soon"}, headers=OP)
        assert resp.status == 400
        resp = await client.get("/api/v1/containers/h1/web/logs", params={"since": "10m"}, headers=OP)
        assert resp.status == 200
