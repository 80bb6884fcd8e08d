"""The API listener's self-defence: idle and slow clients are cut, connections are capped below the
open-file limit, a client that never reads costs bounded time, and errors aiohttp's HTTP layer
produces itself (a malformed request line, headers too large) come in fleetd's JSON shape.

    guard = ConnectionGuard(settings.listener)
    runner = GuardedRunner(app, guard, keepalive_timeout=settings.listener.idle_timeout, ...)

A connection is *busy* from the moment its request reaches the application until the answer is
written, *idle* otherwise, including while a client is still sending request headers: so one deadline
(``idle_timeout``) closes kept-alive connections nobody uses and slowloris clients alike. At a cap, the
oldest idle connection (of that client, or of anyone at the global cap) is closed to make room: a
flood of idle connections can never lock out a health check. Only when every connection is busy is a
new one refused, with a 503.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import msgspec
import structlog
from aiohttp import web
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest
from aiohttp.web_response import StreamResponse

from fleetd.config.listener import ListenerSettings, connection_limit

__all__ = ["ConnectionGuard", "GuardStats", "GuardedRunner"]

log = structlog.get_logger("fleetd.listener")

SWEEP_EVERY = 1.0  # seconds between two checks of deadlines
ACCEPT_LOG_EVERY = 10.0  # accept() failures are logged at most this often, with a count

Handler = Callable[[web.Request], Awaitable[StreamResponse]]


@dataclass(slots=True, eq=False)
class _Conn:
    transport: asyncio.Transport
    peer: str
    idle_since: float
    busy: int = 0
    stuck_since: float | None = None  # the write buffer stopped shrinking at this time
    last_buffer: int = 0


@dataclass(slots=True)
class GuardStats:
    open: int = 0
    evicted_idle: int = 0  # closed to make room at a cap
    refused: int = 0  # turned away: every connection busy
    idle_closed: int = 0  # idle or slow headers past idle_timeout
    write_timeouts: int = 0  # a client that took nothing for write_timeout
    accept_errors: int = 0  # accept() failures (e.g. out of file descriptors)


def _error_body(status: int, code: str, message: str) -> bytes:
    return msgspec.json.encode({"error": {"code": code, "message": message}})


def _raw_503(message: str) -> bytes:
    body = _error_body(503, "too_many_connections", message)
    head = (
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nRetry-After: 1\r\nConnection: close\r\n\r\n"
    )
    return head.encode() + body


@dataclass(slots=True, eq=False)
class ConnectionGuard:
    settings: ListenerSettings
    clock: Callable[[], float] = time.monotonic
    stats: GuardStats = field(default_factory=GuardStats)
    limit: int = 0
    _conns: dict[RequestHandler, _Conn] = field(default_factory=dict)  # oldest first
    _per_peer: Counter[str] = field(default_factory=Counter)
    _sweeper: asyncio.Task[None] | None = None
    _accept_logged: float = 0.0
    _accept_unlogged: int = 0

    def __post_init__(self) -> None:
        self.limit = connection_limit(self.settings)

    # -- connections ---------------------------------------------------------------

    def admit(self, handler: RequestHandler, transport: asyncio.Transport) -> bool:
        peername = transport.get_extra_info("peername")
        peer = str(peername[0]) if isinstance(peername, tuple) and peername else "unix"
        if self._per_peer[peer] >= self.settings.max_per_client and not self._evict(peer):
            return self._refuse(transport, f"too many connections from {peer} at once; retry shortly")
        if len(self._conns) >= self.limit and not self._evict(None):
            return self._refuse(transport, "fleetd is at its connection limit; retry shortly")
        self._conns[handler] = _Conn(transport, peer, self.clock())
        self._per_peer[peer] += 1
        self.stats.open = len(self._conns)
        return True

    def release(self, handler: RequestHandler) -> None:
        conn = self._conns.pop(handler, None)
        if conn is not None:
            self._per_peer[conn.peer] -= 1
            if self._per_peer[conn.peer] <= 0:
                del self._per_peer[conn.peer]
        self.stats.open = len(self._conns)

    def _evict(self, peer: str | None) -> bool:
        for handler, conn in self._conns.items():
            if conn.busy == 0 and (peer is None or conn.peer == peer):
                self.stats.evicted_idle += 1
                self._close(handler, conn)
                return True
        return False

    def _refuse(self, transport: asyncio.Transport, message: str) -> bool:
        self.stats.refused += 1
        with contextlib.suppress(Exception):
            transport.write(_raw_503(message))
        transport.close()
        return False

    def _close(self, handler: RequestHandler, conn: _Conn) -> None:
        self.release(handler)
        handler.force_close()
        conn.transport.close()

    # -- requests --------------------------------------------------------------------

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> StreamResponse:
        conn = self._conns.get(request.protocol)
        if conn is None:
            return await handler(request)
        conn.busy += 1
        try:
            return await handler(request)
        finally:
            conn.busy -= 1
            conn.idle_since = self.clock()

    # -- deadlines ---------------------------------------------------------------------

    def sweep(self) -> None:
        now = self.clock()
        idle_timeout, write_timeout = self.settings.idle_timeout, self.settings.write_timeout
        for handler, conn in list(self._conns.items()):
            pending = conn.transport.get_write_buffer_size()
            if pending:
                if conn.stuck_since is None or pending < conn.last_buffer:
                    conn.stuck_since = now  # new data queued, or the client took some
                conn.last_buffer = pending
                if now - conn.stuck_since >= write_timeout:
                    self.stats.write_timeouts += 1
                    log.info("client not reading: disconnected", peer=conn.peer, pending_bytes=pending)
                    self.release(handler)
                    conn.transport.abort()  # drops what is queued: the memory is freed now
                continue
            conn.stuck_since = None
            if conn.busy == 0 and now - conn.idle_since >= idle_timeout:
                self.stats.idle_closed += 1
                self._close(handler, conn)

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(SWEEP_EVERY)
            self.sweep()

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        if self._sweeper is None:
            self._sweeper = loop.create_task(self._sweep_forever(), name="listener-guard")
        previous = loop.get_exception_handler()

        def on_loop_error(lp: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
            if "accept" in str(context.get("message", "")):
                self._accept_failed(context)
                return
            if previous is not None:
                previous(lp, context)
            else:
                lp.default_exception_handler(context)

        loop.set_exception_handler(on_loop_error)

    def _accept_failed(self, context: dict[str, Any]) -> None:
        """asyncio logs every failed accept() (EMFILE: one line per try); say it once per interval."""
        self.stats.accept_errors += 1
        self._accept_unlogged += 1
        now = self.clock()
        if now - self._accept_logged >= ACCEPT_LOG_EVERY:
            log.error(
                "cannot accept connections",
                error=str(context.get("exception") or context.get("message")),
                failures=self._accept_unlogged,
                open_connections=len(self._conns),
            )
            self._accept_logged = now
            self._accept_unlogged = 0

    async def aclose(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
            self._sweeper = None


class _JsonErrorHandler(RequestHandler):
    """aiohttp's protocol, with its own errors (400 bad request line, 431, …) as fleetd's JSON."""

    __slots__ = ()

    def handle_error(
        self,
        request: BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> StreamResponse:
        plain = super().handle_error(request, status, exc, message)  # logs; refuses after a partial answer
        code = "internal_error" if plain.status >= 500 else "bad_http_request"
        text = message or plain.reason
        if plain.status >= 500:
            text = "internal error while handling the request; see fleetd's log"
        resp = web.Response(
            status=plain.status,
            body=_error_body(plain.status, code, text),
            content_type="application/json",
        )
        resp.force_close()
        return resp


class _GuardedServer(web.Server):
    guard: ConnectionGuard

    def __call__(self) -> RequestHandler:
        return _JsonErrorHandler(self, loop=self._loop, **self._kwargs)

    def connection_made(self, handler: RequestHandler, transport: asyncio.Transport) -> None:
        super().connection_made(handler, transport)
        if not self.guard.admit(handler, transport):
            handler.force_close()

    def connection_lost(self, handler: RequestHandler, exc: BaseException | None = None) -> None:
        self.guard.release(handler)
        super().connection_lost(handler, exc)


class GuardedRunner(web.AppRunner):
    """An AppRunner whose server is guarded (see the module docstring)."""

    def __init__(self, app: web.Application, guard: ConnectionGuard, **kwargs: Any) -> None:
        app.middlewares.insert(0, guard.middleware)  # outermost: busy for the whole request
        super().__init__(app, **kwargs)
        self.guard = guard

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        server.__class__ = _GuardedServer  # same attributes, our hooks (aiohttp builds the server itself)
        server.guard = self.guard  # type: ignore[attr-defined]
        return server

    async def setup(self) -> None:
        await super().setup()
        self.guard.start()

    async def cleanup(self) -> None:
        await self.guard.aclose()
        await super().cleanup()
