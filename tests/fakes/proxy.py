"""A TCP proxy in front of one daemon that can cut or freeze just its ``/events`` connections.

    async with EventsProxy(("127.0.0.1", daemon.port)) as proxy:
        url = proxy.url                 # point fleetd's host here
        await proxy.cut(3.0)            # /events connections are severed, and refused for 3 s
        proxy.freeze_events = True      # event streams stay open but pass no bytes
        proxy.requests                  # every request line seen, in order

Polls (/info, /containers/json, /_ping) pass untouched. A connection counts as an events
connection from the moment a request line on it asks for ``/events``.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from types import TracebackType
from typing import Final

__all__ = ["EventsProxy"]

_REQUEST_LINE: Final = re.compile(rb"(GET|HEAD|POST|PUT|DELETE) (\S+) HTTP/1\.[01]\r\n")


class _Pair:
    def __init__(self, client: asyncio.StreamWriter, upstream: asyncio.StreamWriter) -> None:
        self.client = client
        self.upstream = upstream
        self.events = False
        self.tasks: list[asyncio.Task[None]] = []

    def abort(self) -> None:
        for writer in (self.client, self.upstream):
            writer.transport.abort()


class EventsProxy:
    def __init__(self, target: tuple[str, int], *, host: str = "127.0.0.1") -> None:
        self.target = target
        self.host = host
        self.port = 0
        self.requests: list[tuple[float, str]] = []  # (monotonic time, "GET /v1.41/events?...")
        self._thawed = asyncio.Event()
        self._thawed.set()
        self.events_connections = 0
        self._refuse_until = 0.0
        self._server: asyncio.Server | None = None
        self._pairs: set[_Pair] = set()

    @property
    def url(self) -> str:
        return f"tcp://{self.host}:{self.port}"

    @property
    def freeze_events(self) -> bool:
        return not self._thawed.is_set()

    @freeze_events.setter
    def freeze_events(self, frozen: bool) -> None:
        if frozen:
            self._thawed.clear()
        else:
            self._thawed.set()

    def paths(self) -> list[str]:
        return [line.split(" ", 1)[1] for _t, line in self.requests]

    def event_requests(self) -> list[str]:
        return [p for p in self.paths() if "/events" in p.split("?", 1)[0]]

    async def start(self) -> EventsProxy:
        self._server = await asyncio.start_server(self._accept, self.host, 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def aclose(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        pairs = list(self._pairs)
        for pair in pairs:
            pair.abort()
        tasks = [t for pair in pairs for t in pair.tasks]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def __aenter__(self) -> EventsProxy:
        return await self.start()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    def sever(self) -> int:
        """Abort every events connection now; returns how many there were."""
        doomed = [p for p in self._pairs if p.events]
        for pair in doomed:
            pair.abort()
        return len(doomed)

    async def cut(self, seconds: float) -> None:
        """Sever the event streams and refuse new ones for ``seconds`` (polls still pass)."""
        self._refuse_until = time.monotonic() + seconds
        self.sever()
        await asyncio.sleep(seconds)

    def block_events(self, seconds: float) -> None:
        self._refuse_until = time.monotonic() + seconds
        self.sever()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        pair = _Pair(writer, up_writer)
        self._pairs.add(pair)
        pair.tasks = [
            asyncio.create_task(self._pipe(pair, reader, up_writer, upstream=True)),
            asyncio.create_task(self._pipe(pair, up_reader, writer, upstream=False)),
        ]
        try:
            await asyncio.gather(*pair.tasks, return_exceptions=True)
        finally:
            self._pairs.discard(pair)
            pair.abort()

    async def _pipe(
        self, pair: _Pair, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, upstream: bool
    ) -> None:
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    with contextlib.suppress(OSError):
                        writer.write_eof()
                    return
                if upstream:
                    for m in _REQUEST_LINE.finditer(data):
                        line = f"{m[1].decode()} {m[2].decode(errors='replace')}"
                        self.requests.append((time.monotonic(), line))
                        if "/events" in line.split(" ", 1)[1].split("?", 1)[0]:
                            pair.events = True
                            self.events_connections += 1
                            if time.monotonic() < self._refuse_until:
                                pair.abort()
                                return
                if pair.events:
                    await self._thawed.wait()
                writer.write(data)
                await writer.drain()
        except (OSError, asyncio.IncompleteReadError):
            pair.abort()
