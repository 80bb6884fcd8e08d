"""Keep-alive reuse across polls, and one retry on a fresh connection when a reused one is dead."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from fleetd.dockerapi import DockerClient, EngineConnections, EngineUnreachable

_INFO = b'{"ID": "X", "ServerVersion": "27.0.0", "NCPU": 2}'


class StaleServer:
    """A minimal HTTP/1.1 daemon: answers the first request on each connection with keep-alive,
    then (like a daemon whose idle timeout fired just as the next request arrived) closes the
    connection on the second request without answering."""

    def __init__(self, drop_second: bool = True) -> None:
        self.connections = 0
        self.answered = 0
        self.drop_second = drop_second
        self._server: asyncio.Server | None = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        served = 0
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                if served and self.drop_second:
                    return
                path = head.split(b" ", 2)[1]
                body = b"OK" if path == b"/_ping" else _INFO
                writer.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                    + b"Api-Version: 1.47\r\n"  # on every answer, as dockerd and podman send it
                    + b"Content-Length: %d\r\n\r\n" % len(body)
                    + body
                )
                await writer.drain()
                served += 1
                self.answered += 1
        except (asyncio.IncompleteReadError, ConnectionError):
            return
        finally:
            writer.close()

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return int(self._server.sockets[0].getsockname()[1])

    async def aclose(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()


@pytest.fixture
async def stale_server() -> AsyncIterator[StaleServer]:
    server = StaleServer()
    yield server
    await server.aclose()


async def test_dead_reused_connection_is_retried_once_on_a_fresh_one(stale_server: StaleServer) -> None:
    port = await stale_server.start()
    async with EngineConnections(keepalive=60) as pool:
        client = DockerClient(f"tcp://127.0.0.1:{port}", connections=pool, api_version="1.47")
        assert (await client.system.info()).ServerVersion == "27.0.0"  # connection 1, request 1
        info = await client.system.info()  # reused connection dies → retried on connection 2
        assert info.ID == "X"
        assert stale_server.connections == 2
        assert stale_server.answered == 2


async def test_connections_are_kept_alive_between_requests() -> None:
    server = StaleServer(drop_second=False)
    port = await server.start()
    try:
        async with EngineConnections(keepalive=60) as pool:
            client = DockerClient(f"tcp://127.0.0.1:{port}", connections=pool)
            for _ in range(5):
                await client.system.info()
            assert server.answered == 5  # five info calls (the first answer named the version: no ping)
            assert server.connections == 1
    finally:
        await server.aclose()


async def test_a_connection_that_always_drops_still_fails(fake_engine: object) -> None:
    from tests.fakes import FakeEngines
    from tests.fakes.behaviour import Fault

    assert isinstance(fake_engine, FakeEngines)
    eng = await fake_engine(containers=1)
    eng.behaviour.faults["info"] = Fault.CLOSE_CONNECTION
    async with EngineConnections() as pool:
        client = DockerClient(eng.url, connections=pool)
        with pytest.raises(EngineUnreachable, match="closed the connection"):
            await client.system.info()
    assert sum(1 for p in eng.paths() if p.endswith("/info")) == 2  # the request and its one retry
