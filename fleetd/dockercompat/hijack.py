"""Attach and exec: the HTTP connection becomes a raw byte stream in both directions.

The daemon gets the request on a fresh raw connection; once it answers 101 (or 200, the pre-1.24
way), the client gets ``101 UPGRADED`` and bytes are copied both ways. Half-close is kept: the
docker CLI shuts down its sending side at once when there is no stdin (``docker exec c ls``), and
the output must still flow back. aiohttp's server protocol closes a connection on the client's
EOF, so after the 101 the client transport is handed to :class:`_ClientPipe`, a plain asyncio
protocol whose ``eof_received`` keeps the socket open (for TLS listeners see
:mod:`.tlsserver`, for daemons reached over TLS :mod:`.tlsclient`).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import msgspec
from aiohttp import web

from fleetd.dockercompat.errors import DockerAPIError
from fleetd.dockercompat.proxy import SENT_STATUS
from fleetd.dockercompat.upstream import RawWriter, Upstream

__all__ = ["HijackResponse", "hijack"]

HEAD_MAX = 64 * 1024
CHUNK = 64 * 1024
HIGH_WATER = 1024 * 1024


class HijackResponse(web.StreamResponse):
    """A 101 whose connection belongs to the pipe afterwards: aiohttp must not finish it."""

    async def write_eof(self, data: bytes = b"") -> None:
        return None


class _ClientPipe(asyncio.Protocol):
    """The client's side after the upgrade: bytes to the daemon, EOF kept half-open."""

    def __init__(self, original: asyncio.BaseProtocol, upstream: RawWriter) -> None:
        self.original = original
        self.upstream = upstream
        self.transport: asyncio.Transport | None = None
        self.eof = asyncio.Event()
        self.lost = asyncio.Event()
        self._can_write = asyncio.Event()
        self._can_write.set()
        self._draining: asyncio.Task[None] | None = None

    def data_received(self, data: bytes) -> None:
        if self.upstream.is_closing():
            return
        self.upstream.write(data)
        if self.upstream.transport.get_write_buffer_size() > HIGH_WATER and self.transport is not None:
            self.transport.pause_reading()
            self._draining = asyncio.get_running_loop().create_task(self._drain())

    async def _drain(self) -> None:
        with contextlib.suppress(ConnectionError):
            await self.upstream.drain()
        if self.transport is not None and not self.transport.is_closing():
            self.transport.resume_reading()

    def eof_received(self) -> bool:
        self.eof.set()
        if self.upstream.can_write_eof() and not self.upstream.is_closing():
            with contextlib.suppress(OSError):
                self.upstream.write_eof()
        return True  # keep our sending side open: the output is still coming

    def pause_writing(self) -> None:
        self._can_write.clear()

    def resume_writing(self) -> None:
        self._can_write.set()

    async def drained(self) -> None:
        await self._can_write.wait()

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost.set()
        self.eof.set()
        self._can_write.set()
        if self._draining is not None:
            self._draining.cancel()
        self.original.connection_lost(exc)  # aiohttp forgets the connection


async def _read_head(reader: asyncio.StreamReader) -> tuple[int, dict[str, str]]:
    try:
        raw = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError) as exc:
        raise DockerAPIError(502, f"the daemon sent no valid answer to the upgrade: {exc}") from None
    lines = raw.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[1].isdigit():
        raise DockerAPIError(502, f"the daemon answered the upgrade with {lines[0]!r}")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        key, sep, value = line.partition(":")
        if sep:
            headers[key.strip().lower()] = value.strip()
    return int(parts[1]), headers


async def _error_from(reader: asyncio.StreamReader, status: int, headers: dict[str, str]) -> DockerAPIError:
    length = headers.get("content-length")
    try:
        async with asyncio.timeout(5):
            body = await (reader.readexactly(min(int(length), HEAD_MAX)) if length and length.isdigit()
                          else reader.read(HEAD_MAX))
    except (TimeoutError, asyncio.IncompleteReadError, ValueError):
        body = b""
    message = ""
    with contextlib.suppress(msgspec.DecodeError):
        doc = msgspec.json.decode(body) if body else None
        if isinstance(doc, dict) and isinstance(doc.get("message"), str):
            message = doc["message"]
    return DockerAPIError(status, message or body.decode("utf-8", "replace").strip() or f"HTTP {status}")


async def hijack(
    request: web.Request, up: Upstream, path: str, body: bytes, content_type: str | None
) -> web.StreamResponse:
    """Relay a hijacked stream between the caller and ``up``; returns when either side is done."""
    query = f"?{request.query_string}" if request.query_string else ""
    head = [
        f"POST {path}{query} HTTP/1.1",
        "Host: docker",
        "User-Agent: fleetd",
        "Connection: Upgrade",
        "Upgrade: tcp",
        f"Content-Length: {len(body)}",
    ]
    if content_type:
        head.append(f"Content-Type: {content_type}")
    try:
        reader, writer = await up.open_raw()
    except (OSError, TimeoutError) as exc:
        raise DockerAPIError(502, f"cannot connect to host {up.host}: {exc}") from None
    try:
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body)
        async with asyncio.timeout(up.timeout + 30):
            status, headers = await _read_head(reader)
        if status >= 400:
            raise await _error_from(reader, status, headers)
        if status not in (101, 200):
            raise DockerAPIError(502, f"host {up.host} answered the upgrade with HTTP {status}")
        return await _relay(request, reader, writer, headers)
    finally:
        # Not awaiting wait_closed(): the client's close may be cancelling this handler right now,
        # and the audit must still see how the stream ended.
        writer.close()


async def _relay(
    request: web.Request, reader: asyncio.StreamReader, writer: RawWriter, headers: dict[str, str]
) -> web.StreamResponse:
    upgrade = "upgrade" in request.headers.get("Connection", "").lower()
    resp = HijackResponse(status=101 if upgrade else 200, reason="UPGRADED" if upgrade else "OK")
    resp.headers["Content-Type"] = headers.get("content-type", "application/vnd.docker.raw-stream")
    if upgrade:
        resp.headers["Connection"] = "Upgrade"
        resp.headers["Upgrade"] = "tcp"
    await resp.prepare(request)
    request[SENT_STATUS] = resp.status
    transport: Any = request.transport
    if transport is None or transport.is_closing():
        return resp
    pipe = _ClientPipe(request.protocol, writer)
    pipe.transport = transport
    transport.set_protocol(pipe)
    try:
        while True:
            chunk = await reader.read(CHUNK)
            if not chunk or pipe.lost.is_set():
                break
            transport.write(chunk)
            await pipe.drained()
    except (ConnectionError, OSError):
        pass
    except asyncio.CancelledError:
        # The client closing its connection is how a hijacked stream normally ends: aiohttp then
        # cancels the handler (handler_cancellation). Anything else is a real cancellation.
        if not pipe.lost.is_set():
            raise
    finally:
        if not transport.is_closing():
            transport.close()  # flushes what was written, then closes
    return resp
