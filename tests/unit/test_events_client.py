"""``client.system.events()`` against the fake Engine and a hand-written raw server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from aiohttp import web

from fleetd.dockerapi import (
    DockerClient,
    EngineHTTPError,
    EngineProtocolError,
    EngineTimeout,
    EngineUnreachable,
)
from fleetd.dockerapi.events import EngineEvent, format_timestamp, split_lines
from tests.fakes import FakeEngine, Fault, docker_20_10, podman


async def take(stream: AsyncIterator[EngineEvent], n: int, timeout: float = 5.0) -> list[EngineEvent]:
    out: list[EngineEvent] = []
    async with asyncio.timeout(timeout):
        while len(out) < n:
            out.append(await anext(stream))
    return out


def test_format_timestamp_is_exact_nanoseconds() -> None:
    assert format_timestamp(1_700_000_000_000_000_123) == "1700000000.000000123"
    assert format_timestamp(5) == "0.000000005"
    assert format_timestamp(-3) == "0.000000000"


def test_split_lines_on_newlines_not_chunks() -> None:
    buf = bytearray()
    assert split_lines(buf, b'{"a":', 100) == []
    assert split_lines(buf, b'1}\n{"b"', 100) == [b'{"a":1}']
    assert split_lines(buf, b":2}\n\n", 100) == [b'{"b":2}', b""]
    assert buf == b""
    with pytest.raises(EngineProtocolError, match="longer than 10 bytes"):
        split_lines(bytearray(), b"x" * 11, 10)
    with pytest.raises(EngineProtocolError):
        split_lines(bytearray(), b"x" * 11 + b"\n", 10)


async def test_replay_is_inclusive_then_live_docker() -> None:
    async with FakeEngine(docker_20_10(containers=3)) as eng, DockerClient(eng.url) as client:
        first = next(iter(eng.state.containers))
        eng.set_state(first, "exited", 3)  # die
        die = eng.events._log[-1]
        eng.exec_noise(first)
        async with client.system.events(since=die["timeNano"], filters={"type": ["container"]}) as stream:
            assert stream.opened
            replay = await take(stream, 4)
            assert [e.action for e in replay] == ["die", "exec_create", "exec_start", "exec_die"]
            assert replay[0].time_nano == die["timeNano"]  # since is inclusive on dockerd
            assert replay[0].Actor.Attributes["exitCode"] == "3"
            assert replay[1].Action == "exec_create: true" and replay[1].detail == "true"
            eng.set_state(first, "running")
            (live,) = await take(stream, 1)
            assert live.action == "start" and first == live.Actor.ID
            assert live.key() == (live.timeNano, "container", "start", first)
        paths = [p for p in eng.paths() if "/events" in p]
        assert f"since={format_timestamp(die['timeNano'])}" in paths[0]


async def test_podman_since_is_exclusive_and_errors_come_in_band() -> None:
    async with FakeEngine(podman(containers=2)) as eng, DockerClient(eng.url) as client:
        first = next(iter(eng.state.containers))
        eng.set_state(first, "exited", 1)
        events = list(eng.events._log)
        assert [e["Action"] for e in events] == ["die", "cleanup"]
        assert eng.events._replay(events[0]["timeNano"], None) == events[1:]  # exclusive
        eng.events.clock_offset_ns += 10**9
        eng.exec_noise(first)
        # podman reads since as a float (about 240 ns of rounding): 1 µs after the cleanup excludes it
        async with client.system.events(since=events[1]["timeNano"] + 1000) as stream:
            got = await take(stream, 2)
            assert [e.action for e in got] == ["exec", "exec_died"]
        with pytest.raises(EngineHTTPError, match="unsupported filter") as info:
            async with client.system.events(filters={"bogus": ["x"]}) as stream:
                await take(stream, 1)
        assert info.value.status == 500


async def test_end_of_stream_is_unreachable_unless_until() -> None:
    async with FakeEngine(docker_20_10(containers=1)) as eng, DockerClient(eng.url) as client:
        async with client.system.events() as stream:
            await asyncio.sleep(0.05)
            eng.restart_daemon()
            with pytest.raises(EngineUnreachable, match="ended its event stream"):
                await take(stream, 1)
        now = eng.events.now_ns()
        async with client.system.events(since=now - 10**9, until=now) as stream:
            assert [e async for e in stream] == []


async def test_hanging_events_open_times_out() -> None:
    async with FakeEngine(docker_20_10(containers=1)) as eng, DockerClient(eng.url) as client:
        await client.system.ping()
        eng.behaviour.faults["events"] = Fault.HANG
        with pytest.raises(EngineTimeout, match="GET /events"):
            async with client.system.events(open_timeout=0.3):
                pass


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


async def raw_server(handler: Handler) -> tuple[web.AppRunner, str]:
    app = web.Application()
    async def ping(_request: web.Request) -> web.Response:
        return web.Response(text="OK", headers={"Api-Version": "1.41"})

    app.router.add_get("/_ping", ping)
    app.router.add_get("/v1.41/events", handler)
    runner = web.AppRunner(app, handler_cancellation=True)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, f"tcp://127.0.0.1:{port}"


async def test_split_across_chunks_and_json_seq_and_bad_line() -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        resp.content_type = "application/json"
        await resp.prepare(request)
        line = b'{"Type":"container","Action":"start","Actor":{"ID":"abc","Attributes":{"name":"x"}},"time":1,"timeNano":1000000001}\n'
        await resp.write(line[:10])
        await asyncio.sleep(0.02)
        await resp.write(line[10:] + b"\x1e" + line.replace(b"start", b"die"))
        await asyncio.sleep(0.02)
        await resp.write(b"not json\n")
        await asyncio.sleep(5)
        return resp

    runner, url = await raw_server(handler)
    try:
        async with DockerClient(url) as client, client.system.events() as stream:
            first, second = await take(stream, 2)
            assert (first.action, second.action) == ("start", "die")
            assert first.Actor.Attributes == {"name": "x"}
            with pytest.raises(EngineProtocolError, match="invalid event line"):
                await take(stream, 1)
    finally:
        await runner.cleanup()


async def test_endless_line_is_bounded() -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        await resp.prepare(request)
        for _ in range(100):
            await resp.write(b"x" * 65536)
        return resp

    runner, url = await raw_server(handler)
    try:
        async with DockerClient(url) as client, client.system.events(max_line=256 * 1024) as stream:
            with pytest.raises(EngineProtocolError, match="longer than"):
                await take(stream, 1)
    finally:
        await runner.cleanup()
