"""A scripted Engine whose containers write log lines when the test says so (followed or not)."""

from __future__ import annotations

import asyncio
import struct
from dataclasses import dataclass, field

from aiohttp import web

from fleetd.logs import parse_timestamp
from tests.unit.opskit import ScriptedEngine

__all__ = ["LogEngine", "stamp"]


def stamp(second: int, ns: int = 0) -> str:
    """A dockerd-style timestamp (9 fraction digits) at 2026-12-03T10:00:<second>."""
    return f"2026-12-03T10:00:{second:02d}.{ns:09d}Z"


def _frame(stream: int, data: bytes) -> bytes:
    return struct.pack(">BxxxL", stream, len(data)) + data


@dataclass(eq=False)
class _Container:
    id: str
    name: str
    labels: dict[str, str]
    running: bool = True
    backlog: list[tuple[int, str]] = field(default_factory=list)  # (stream, "<stamp> text")
    feeds: list[asyncio.Queue[tuple[int, str] | None]] = field(default_factory=list)


class LogEngine(ScriptedEngine):
    """``add`` containers, ``write`` lines to them (to every follower at once), ``stop`` one (its
    followers' streams end, as dockerd ends them). ``follow_requests`` are the server-side requests
    of the log streams, to check that fleetd closed them."""

    def __init__(self, api_version: str = "1.41") -> None:
        super().__init__(api_version)
        self.containers: dict[str, _Container] = {}
        self.follow_requests: list[web.BaseRequest] = []
        self._active: list[web.BaseRequest] = []
        self.line_delay = 0.0  # seconds between the lines of a log answer (a slow daemon)
        self.on("GET", "/containers/json", self._list)
        self.on("GET", r"/containers/[^/]+/json", self._inspect)
        self.on("GET", r"/containers/[^/]+/logs", self._logs)

    def add(self, name: str, labels: dict[str, str] | None = None, *, running: bool = True) -> str:
        cid = (name.encode().hex() * 64)[:64]
        self.containers[cid] = _Container(cid, name, labels or {}, running)
        return cid

    def _find(self, ref: str) -> _Container | None:
        for c in self.containers.values():
            if ref in (c.id, c.name) or (len(ref) >= 4 and c.id.startswith(ref)):
                return c
        return None

    def write(self, name: str, text: str, *, at: str, stream: int = 1) -> None:
        c = self._find(name)
        assert c is not None
        entry = (stream, f"{at} {text}")
        c.backlog.append(entry)
        for feed in c.feeds:
            feed.put_nowait(entry)

    def stop(self, name: str) -> None:
        c = self._find(name)
        assert c is not None
        c.running = False
        for feed in c.feeds:
            feed.put_nowait(None)

    def start_again(self, name: str) -> None:
        c = self._find(name)
        assert c is not None
        c.running = True

    async def __aexit__(self, *exc: object) -> None:
        for c in self.containers.values():  # end the handlers still following (the server waits for them)
            for feed in c.feeds:
                feed.put_nowait(None)
        await super().__aexit__(*exc)

    def open_follows(self) -> int:
        """Follow streams still being served whose connection is still open on the Engine's side."""
        return sum(1 for r in self._active if r.transport is not None and not r.transport.is_closing())

    async def _list(self, request: web.Request) -> web.StreamResponse:
        return web.json_response(
            [
                {
                    "Id": c.id,
                    "Names": [f"/{c.name}"],
                    "Image": "fleet/busybox:test",
                    "State": "running" if c.running else "exited",
                    "Status": "Up 1 second" if c.running else "Exited (0) 1 second ago",
                    "Labels": c.labels,
                }
                for c in self.containers.values()
            ]
        )

    async def _inspect(self, request: web.Request) -> web.StreamResponse:
        c = self._find(request.path.split("/")[-2])
        if c is None:
            return web.json_response({"message": "No such container"}, status=404)
        return web.json_response({"Id": c.id, "Name": f"/{c.name}", "Config": {"Tty": False}})

    async def _logs(self, request: web.Request) -> web.StreamResponse:
        c = self._find(request.path.split("/")[-2])
        if c is None:
            return web.json_response({"message": "No such container"}, status=404)
        q = request.query
        stamped = q.get("timestamps") == "1"

        def frame(stream: int, line: str) -> bytes:
            return _frame(stream, (line if stamped else line.split(" ", 1)[1]).encode() + b"\n")

        backlog = list(c.backlog)
        tail = q.get("tail", "all")
        if tail != "all":
            backlog = backlog[len(backlog) - int(tail) :] if int(tail) else []
        if since := q.get("since"):
            sec, _, frac = since.partition(".")
            floor = int(sec) * 1_000_000_000 + int(frac.ljust(9, "0") or 0)
            backlog = [
                (s, line) for s, line in backlog if (parse_timestamp(line.split(" ", 1)[0]) or 0) >= floor
            ]
        resp = web.StreamResponse(headers={"Content-Type": "application/vnd.docker.raw-stream"})
        await resp.prepare(request)
        for stream, line in backlog:
            await resp.write(frame(stream, line))
            if self.line_delay:
                await asyncio.sleep(self.line_delay)
        if q.get("follow") == "1" and c.running:
            feed: asyncio.Queue[tuple[int, str] | None] = asyncio.Queue()
            c.feeds.append(feed)
            self.follow_requests.append(request)
            self._active.append(request)
            try:
                while (entry := await feed.get()) is not None:
                    await resp.write(frame(*entry))
            finally:
                c.feeds.remove(feed)
                self._active.remove(request)
        await resp.write_eof()
        return resp
