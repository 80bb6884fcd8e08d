"""A liveness ``GET /_ping`` on a connection of its own, for one daemon, at a fraction of a request's cost;
and the watcher's targeted ``GET /containers/json?filters=`` on the same connection.

With Engine events on, every host is pinged every ``poll.liveness`` seconds (a frozen daemon still
has its kernel acknowledge TCP keep-alives, so only an answer from the daemon proves it runs). At
1,000 hosts that is as many requests as polling every 15 s; through the full HTTP client each costs
about as much CPU as a poll. This pinger keeps one keep-alive connection per daemon and writes the
request bytes itself: one write, one read, a status line and a ``Content-Length`` (or chunks).
A targeted refresh of the rows an Engine event named goes the same way (:meth:`RawPinger.get`),
at about half the CPU of the HTTP client (1,000 fake Engines: 478 µs against 1,025 µs each);
its answer is capped like the client's (``ReadLimits.containers``) and decoded by the client.

TCP (plain or TLS, with the client's own TLS context) and unix sockets. Anything else (ssh://)
has no raw pinger: :func:`raw_pinger` returns None and the caller uses ``client.system.ping()``.
"""

from __future__ import annotations

import asyncio
import ssl
from collections import deque
from collections.abc import Callable
from typing import Final, TypeVar
from urllib.parse import urlencode

import msgspec

from fleetd.dockerapi.client import DockerClient
from fleetd.dockerapi.errors import DockerError, EngineProtocolError, EngineTimeout, EngineUnreachable
from fleetd.dockerapi.exchange import Done, Exchange, ExchangeOwner, KeptConnection, Result
from fleetd.dockerapi.models import ContainerSummary, ImageSummary, SystemInfo

__all__ = ["RawPinger", "Result", "id_query", "images", "info_raw", "list_all_body", "list_by_id", "raw_pinger"]

P = TypeVar("P", bound=asyncio.BaseProtocol)
_MAX_BODY: Final = 1024
_SAFE_PATH: Final = frozenset(b"/?=&%+.-_~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")


class RawPinger:
    def __init__(
        self,
        url: str,
        *,
        host: str | None = None,
        port: int | None = None,
        unix_path: str | None = None,
        ssl_context: ssl.SSLContext | None = None,
        server_hostname: str | None = None,
    ) -> None:
        self.url = url
        self._host = host
        self._port = port
        self._unix = unix_path
        self._ssl = ssl_context
        self._server_hostname = server_hostname
        self._conn: KeptConnection | None = None
        self._opening: asyncio.Task[tuple[asyncio.BaseTransport, KeptConnection]] | None = None
        self._current: Exchange | None = None
        self._queue: deque[Exchange] = deque()  # one exchange at a time on the connection

    @property
    def transport(self) -> asyncio.Transport | None:
        """The kept connection's transport, if one is open (tests)."""
        conn = self._conn
        return conn.transport if conn is not None and not conn.closed else None

    def close(self) -> None:
        """Drop the connection; every exchange under way or waiting ends with EngineUnreachable."""
        waiting = ([self._current] if self._current is not None else []) + list(self._queue)
        self._current = None
        self._queue.clear()
        self._drop()
        for ex in waiting:
            ex.done(EngineUnreachable(f"GET {ex.target.decode()} on {self.url}: connection closed", url=self.url))

    def reset(self) -> None:
        """Drop the connection and end the exchange under way with EngineTimeout (it got no answer in
        time); the ones waiting go on over a new connection."""
        ex, self._current = self._current, None
        self._drop()
        if ex is not None:
            ex.done(EngineTimeout(f"no answer in time to GET {ex.target.decode()} on {self.url}", url=self.url))
        self._next()

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.owner = _DETACHED  # its late callbacks reach nobody
            conn.abort()
        opening, self._opening = self._opening, None
        if opening is not None:
            opening.cancel()

    def send(self, path: bytes, max_body: int, done: Done) -> None:
        """``GET path`` without waiting: ``done`` is called with the status and body, or the error.
        No timeout of its own (the caller judges, and calls :meth:`reset`)."""
        if not path.startswith(b"/") or not _SAFE_PATH.issuperset(path):
            raise ValueError(f"not a plain URL path: {path!r}")
        self._queue.append(Exchange(path, max_body, done))
        self._next()

    def send_ping(self, done: Done) -> None:
        self.send(b"/_ping", _MAX_BODY, done)

    async def ping(self, timeout: float) -> None:
        """Return when the daemon answered 200; raise EngineTimeout / EngineUnreachable otherwise."""
        status, _body = await self.get("/_ping", timeout=timeout, max_body=_MAX_BODY)
        if status != 200:
            raise EngineProtocolError(f"GET /_ping on {self.url} answered {status}", url=self.url)

    async def get(self, path: str, *, timeout: float, max_body: int) -> tuple[int, bytes]:
        """``GET path`` (already URL-encoded); the status and the body, at most ``max_body`` bytes."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Result] = loop.create_future()

        def done(result: Result) -> None:
            if not fut.done():
                fut.set_result(result)

        self.send(path.encode(), max_body, done)
        try:
            async with asyncio.timeout(timeout):
                result = await fut
        except TimeoutError as exc:
            self.cancel(done)
            raise EngineTimeout(f"no answer within {timeout:g}s to GET {path} on {self.url}", url=self.url) from exc
        except asyncio.CancelledError:
            self.cancel(done)  # half an answer would be read as the next one's
            raise
        if isinstance(result, DockerError):
            raise result
        return result

    def cancel(self, done: Done) -> None:
        """The exchange sent with ``done`` is not wanted any more (no answer in time): one still
        waiting is dropped; the one under way drops the connection with it (its answer would be
        read as the next one's), and ``done`` hears EngineTimeout."""
        if self._current is not None and self._current.done is done:
            self.reset()
        else:
            self._queue = deque(ex for ex in self._queue if ex.done is not done)

    # -- the connection ---------------------------------------------------------------------

    def _next(self) -> None:
        if self._current is not None or not self._queue:
            return
        conn = self._conn
        if conn is None or conn.closed:
            self._conn = None
            if self._opening is None:
                self._opening = asyncio.ensure_future(self._open())
                self._opening.add_done_callback(self._opened)
            return
        ex = self._current = self._queue.popleft()
        conn.start(ex)

    async def _open(self) -> tuple[asyncio.BaseTransport, KeptConnection]:
        return await self.connect(lambda: KeptConnection(self))

    async def connect(self, factory: Callable[[], P]) -> tuple[asyncio.BaseTransport, P]:
        """A new connection to the daemon (TCP, TLS or unix, as the pinger's) speaking ``factory``'s
        protocol; the caller owns it (the raw event stream, fleetd/dockerapi/raw_events.py)."""
        loop = asyncio.get_running_loop()
        if self._unix is not None:
            return await loop.create_unix_connection(factory, self._unix)
        assert self._host is not None and self._port is not None
        return await loop.create_connection(
            factory, self._host, self._port, ssl=self._ssl,
            server_hostname=self._server_hostname if self._ssl else None,
        )  # fmt: skip

    def _opened(self, task: asyncio.Task[tuple[asyncio.BaseTransport, KeptConnection]]) -> None:
        if task is not self._opening:
            if not task.cancelled() and task.exception() is None:
                task.result()[1].abort()  # dropped meanwhile
            return
        self._opening = None
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            waiting = list(self._queue)
            self._queue.clear()
            for ex in waiting:
                ex.done(EngineUnreachable(f"GET {ex.target.decode()} on {self.url} failed: {exc!r}", url=self.url))
            return
        self._conn = task.result()[1]
        self._next()

    # -- called by the connection -------------------------------------------------------------

    def lost(self, ex: Exchange, retry: bool, error: DockerError) -> None:
        if ex is not self._current:
            return
        self._current = None
        self._conn = None
        if retry:  # a kept connection the daemon closed just as it was reused: once more, on a new one
            ex.retried = True
            self._queue.appendleft(ex)
        else:
            ex.done(error)
        self._next()

    def finished(self, ex: Exchange, result: Result) -> None:
        if ex is self._current:
            self._current = None
        ex.done(result)
        self._next()


class _Detached:
    """The owner of a connection its pinger dropped: callbacks go nowhere."""

    url = ""

    def _next(self) -> None:
        return None

    def finished(self, ex: Exchange, result: Result) -> None:
        return None

    def lost(self, ex: Exchange, retry: bool, error: DockerError) -> None:
        return None


_DETACHED: ExchangeOwner = _Detached()


def id_query(ids: list[str]) -> str:
    """``all=1&filters={"id": ids}`` URL-encoded; container ids (hex) without the general encoder."""
    if all(i.isascii() and i.isalnum() for i in ids):
        return "all=1&filters=%7B%22id%22%3A%5B%22" + "%22%2C%22".join(ids) + "%22%5D%7D"
    return urlencode({"all": "1", "filters": msgspec.json.encode({"id": ids}).decode()})


async def list_by_id(
    pinger: RawPinger | None, client: DockerClient, ids: list[str], *, timeout: float
) -> list[ContainerSummary]:
    """``GET /containers/json?all=1&filters={"id": ids}`` on the pinger's connection once the
    client knows the API version; through the client otherwise, or when the raw exchange fails for
    any reason but a timeout (the client then says precisely what is wrong with the answer)."""
    version = client.api_version
    if pinger is not None and version is not None:
        path = f"/v{version}/containers/json?{id_query(ids)}"
        try:
            status, body = await pinger.get(path, timeout=timeout, max_body=client.limits.containers)
            if status == 200:
                return client.decode(body, list[ContainerSummary], "GET", "/containers/json")
        except EngineTimeout:
            raise
        except DockerError:
            pass
    return await client.containers.list(all=True, filters={"id": ids}, timeout=timeout)


async def _kept_body(pinger: RawPinger | None, client: DockerClient, path: str, cap: int, timeout: float) -> bytes | None:
    """The 200 answer's body to ``GET /v<version><path>`` on the pinger's connection; None when there
    is no pinger or version yet, or the exchange failed for any reason but a timeout (the caller asks
    the client then, which says precisely what is wrong with the answer)."""
    version = client.api_version
    if pinger is None or version is None:
        return None
    try:
        status, body = await pinger.get(f"/v{version}{path}", timeout=timeout, max_body=cap)
    except EngineTimeout:
        raise
    except DockerError:
        return None
    return body if status == 200 and body else None


async def list_all_body(pinger: RawPinger | None, client: DockerClient, *, timeout: float) -> bytes:
    """``GET /containers/json?all=1`` undecoded (a safety-net poll while the event stream is healthy)
    on the pinger's connection, as :func:`list_by_id`; through the client when that fails for any
    reason but a timeout, or before the client knows the API version."""
    body = await _kept_body(pinger, client, "/containers/json?all=1", client.limits.containers, timeout)
    return body if body is not None else await client.containers.list_body(all=True, timeout=timeout)


async def info_raw(pinger: RawPinger | None, client: DockerClient, *, timeout: float) -> tuple[SystemInfo, msgspec.Raw]:
    """``GET /info`` as ``client.system.info_raw()`` returns it, on the pinger's connection when it can."""
    body = await _kept_body(pinger, client, "/info", client.limits.info, timeout)
    if body is None:
        return await client.system.info_raw(timeout=timeout)
    return client.decode(body, SystemInfo, "GET", "/info"), msgspec.Raw(body)


async def images(pinger: RawPinger | None, client: DockerClient, *, timeout: float) -> list[ImageSummary]:
    """``GET /images/json`` as ``client.images.list()`` returns it, on the pinger's connection when it can."""
    body = await _kept_body(pinger, client, "/images/json", client.limits.images, timeout)
    if body is None:
        return await client.images.list(timeout=timeout)
    return client.decode(body, list[ImageSummary], "GET", "/images/json")


def raw_pinger(client: DockerClient) -> RawPinger | None:
    """A pinger for ``client``'s daemon, or None when its transport is not plain TCP, TLS or unix."""
    endpoint = client.endpoint
    if endpoint.ssh is not None:
        return None
    if endpoint.unix_path is not None:
        return RawPinger(client.url, unix_path=endpoint.unix_path)
    base = endpoint.base
    scheme, _, hostport = base.partition("://")
    if scheme not in ("http", "https"):
        return None
    host, _, port = hostport.rstrip("/").rpartition(":")
    if not port.isdigit():
        return None
    host = host.strip("[]")
    context: ssl.SSLContext | None = None
    if scheme == "https":  # always with a TLS config (connections.parse_endpoint)
        try:  # the context the client prepared off the loop; none prepared: no pinger, the client's path
            found = client._connections.ssl_for(endpoint)
        except RuntimeError:
            return None
        if not isinstance(found, ssl.SSLContext):
            return None
        context = found
    return RawPinger(client.url, host=host, port=int(port), ssl_context=context, server_hostname=host)
