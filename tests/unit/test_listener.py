"""The guarded listener against idle floods, slowloris, clients that never read and malformed requests."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiohttp import web

from fleetd.api.app import create_app
from fleetd.config.listener import ListenerSettings
from fleetd.runtime import Fleet
from fleetd.web.listener import ConnectionGuard, GuardedRunner
from tests.fakes import FakeEngines
from tests.unit import opskit

BIG = b"x" * (64 * 1024 * 1024)  # far more than the socket buffers hold


@dataclass
class Served:
    port: int
    guard: ConnectionGuard
    release: asyncio.Event


Serve = Callable[[ListenerSettings], Awaitable[Served]]


@pytest.fixture
async def serve() -> AsyncIterator[Serve]:
    runners: list[GuardedRunner] = []

    async def start(settings: ListenerSettings) -> Served:
        release = asyncio.Event()

        async def healthz(_: web.Request) -> web.Response:
            return web.json_response({"status": "ok"})

        async def big(_: web.Request) -> web.Response:
            return web.Response(body=BIG, content_type="application/octet-stream")

        async def hold(_: web.Request) -> web.Response:
            await release.wait()
            return web.json_response({})

        app = web.Application()
        app.router.add_get("/healthz", healthz)
        app.router.add_get("/big", big)
        app.router.add_get("/hold", hold)
        guard = ConnectionGuard(settings)
        runner = GuardedRunner(app, guard, access_log=None, keepalive_timeout=settings.idle_timeout)
        await runner.setup()
        runners.append(runner)
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        return Served(port, guard, release)

    yield start
    for r in runners:
        await r.cleanup()


async def healthz(port: int, timeout: float = 2.0) -> int:
    async with asyncio.timeout(timeout):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        status = int((await reader.readline()).split()[1])
        writer.close()
        return status


async def closed_by_peer(reader: asyncio.StreamReader) -> bool:
    try:
        return await reader.read(65536) == b""
    except ConnectionError:
        return True


async def test_idle_connections_and_a_slowloris_are_closed_and_healthz_keeps_answering(serve: Serve) -> None:
    served = await serve(ListenerSettings(idle_timeout=1.0, max_connections=4096, max_per_client=4096))
    conns = [await asyncio.open_connection("127.0.0.1", served.port) for _ in range(3000)]
    slow_reader, slow_writer = await asyncio.open_connection("127.0.0.1", served.port)

    async def slowloris() -> None:
        for byte in b"GET /healthz HTTP/1.1\r\nHost: x\r\n":
            slow_writer.write(bytes([byte]))
            await asyncio.sleep(0.2)

    drip = asyncio.create_task(slowloris())
    started = time.monotonic()
    assert await healthz(served.port) == 200  # answered amid 3,000 idle connections
    async with asyncio.timeout(1.0 + 3.0):  # idle_timeout plus the sweep and a loaded machine
        results = await asyncio.gather(*(closed_by_peer(r) for r, _ in conns), closed_by_peer(slow_reader))
    drip.cancel()
    assert all(results)
    assert time.monotonic() - started < 4.0
    assert served.guard.stats.open == 0  # aiohttp's keep-alive timer or the guard's sweep, whichever first
    assert await healthz(served.port) == 200
    for _, w in conns:
        w.close()
    slow_writer.close()


async def test_at_a_cap_the_oldest_idle_connection_makes_room(serve: Serve) -> None:
    served = await serve(ListenerSettings(idle_timeout=60.0, max_connections=16, max_per_client=8))
    idle = [await asyncio.open_connection("127.0.0.1", served.port) for _ in range(8)]
    await asyncio.sleep(0.05)
    assert await healthz(served.port) == 200  # the per-client cap closed the oldest idle one
    assert await closed_by_peer(idle[0][0])
    assert served.guard.stats.evicted_idle >= 1
    for _, w in idle:
        w.close()


async def test_when_every_connection_is_busy_a_new_one_gets_a_json_503(serve: Serve) -> None:
    served = await serve(ListenerSettings(idle_timeout=60.0, max_connections=16, max_per_client=4))
    busy = []
    for _ in range(4):
        r, w = await asyncio.open_connection("127.0.0.1", served.port)
        w.write(b"GET /hold HTTP/1.1\r\nHost: x\r\n\r\n")
        busy.append((r, w))
    await asyncio.sleep(0.2)
    reader, writer = await asyncio.open_connection("127.0.0.1", served.port)
    answer = await asyncio.wait_for(reader.read(), 2.0)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 503") and b"Content-Type: application/json" in head
    assert "too many connections from 127.0.0.1" in json.loads(body)["error"]["message"]
    served.release.set()
    for r, w in busy:
        assert (await r.readline()).startswith(b"HTTP/1.1 200")
        w.close()
    writer.close()


async def test_a_client_that_never_reads_is_cut_after_the_write_timeout(serve: Serve) -> None:
    served = await serve(ListenerSettings(idle_timeout=60.0, write_timeout=1.0))
    sock = socket.create_connection(("127.0.0.1", served.port))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.sendall(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n")  # then never reads
    try:
        deadline = time.monotonic() + 6.0
        while served.guard.stats.write_timeouts == 0:
            assert time.monotonic() < deadline, "the non-reading client was not cut"
            await asyncio.sleep(0.1)
        assert served.guard.stats.open == 0
        assert await healthz(served.port) == 200
    finally:
        sock.close()


async def test_errors_of_the_http_layer_are_fleetd_json(serve: Serve) -> None:
    served = await serve(ListenerSettings())
    for raw in (b"NOT A REQUEST\r\n\r\n", b"GET / HTTP/1.1\r\nHost: x\r\nX: " + b"a" * 10000 + b"\r\n\r\n"):
        reader, writer = await asyncio.open_connection("127.0.0.1", served.port)
        writer.write(raw)
        answer = await asyncio.wait_for(reader.read(), 2.0)
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.split()[1] in (b"400", b"431"), head
        assert b"application/json" in head
        error = json.loads(body)["error"]
        assert error["code"] == "bad_http_request" and error["message"]
        writer.close()


async def test_polling_stays_fresh_while_3000_idle_connections_and_a_slowloris_hold_the_listener(
    fake_engine: FakeEngines, tmp_path: Path
) -> None:
    eng = await fake_engine(containers=5)
    interval, timeout = 0.5, 1.0
    cfg = opskit.settings(tmp_path, [opskit.host("h1", eng.url, interval=interval, timeout=timeout)])
    async with Fleet(cfg) as fleet:
        listener = ListenerSettings(idle_timeout=1.0, max_connections=4096, max_per_client=4096)
        runner = GuardedRunner(create_app(fleet), ConnectionGuard(listener), access_log=None, keepalive_timeout=1.0)
        await runner.setup()
        try:
            await web.TCPSite(runner, "127.0.0.1", 0).start()
            port = runner.addresses[0][1]
            assert await fleet.state.wait_ready(10)
            conns = [await asyncio.open_connection("127.0.0.1", port) for _ in range(3000)]
            _, slow = await asyncio.open_connection("127.0.0.1", port)
            slow.write(b"GET /api/v1/hosts HTTP/1.1\r\n")  # and never the rest
            ages: list[float] = []
            for _ in range(30):  # 3 s: longer than the idle timeout, six poll intervals
                record = fleet.state.get("h1")
                assert record is not None and record.last_seen is not None
                ages.append(time.time() - record.last_seen)
                await asyncio.sleep(0.1)
            assert await healthz(port) == 200
            assert max(ages) <= interval + timeout, ages  # never stale: polls went on through the flood
            async with asyncio.timeout(3.0):  # and the flood itself was closed by the idle timeout
                assert all(await asyncio.gather(*(closed_by_peer(r) for r, _ in conns)))
            for _, w in conns:
                w.close()
            slow.close()
        finally:
            await runner.cleanup()
