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
import contextlib
import ssl
from typing import Final
from urllib.parse import urlencode

import msgspec

from fleetd.dockerapi.client import DockerClient
from fleetd.dockerapi.errors import DockerError, EngineProtocolError, EngineTimeout, EngineUnreachable
from fleetd.dockerapi.models import ContainerSummary

__all__ = ["RawPinger", "list_all_body", "list_by_id", "raw_pinger"]

_REQUEST: Final = b"GET %s HTTP/1.1\r\nHost: docker\r\nUser-Agent: fleetd-liveness\r\nAccept: */*\r\n\r\n"
_MAX_HEAD: Final = 16 * 1024
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
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._turn = asyncio.Lock()  # one exchange at a time on the connection (ping, refresh)

    async def _open(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self._unix is not None:
            return await asyncio.open_unix_connection(self._unix, limit=_MAX_HEAD)
        return await asyncio.open_connection(
            self._host, self._port, ssl=self._ssl, server_hostname=self._server_hostname if self._ssl else None,
            limit=_MAX_HEAD,
        )  # fmt: skip

    def close(self) -> None:
        writer, self._reader, self._writer = self._writer, None, None
        if writer is not None:
            writer.transport.abort()

    async def ping(self, timeout: float) -> None:
        """Return when the daemon answered 200; raise EngineTimeout / EngineUnreachable otherwise."""
        status, _body = await self.get("/_ping", timeout=timeout, max_body=_MAX_BODY)
        if status != 200:
            raise EngineProtocolError(f"GET /_ping on {self.url} answered {status}", url=self.url)

    async def get(self, path: str, *, timeout: float, max_body: int) -> tuple[int, bytes]:
        """``GET path`` (already URL-encoded); the status and the body, at most ``max_body`` bytes."""
        target = path.encode()
        if not target.startswith(b"/") or not _SAFE_PATH.issuperset(target):
            raise ValueError(f"not a plain URL path: {path!r}")
        try:
            async with asyncio.timeout(timeout), self._turn:
                return await self._exchange(target, max_body)
        except TimeoutError as exc:
            self.close()
            raise EngineTimeout(
                f"no answer within {timeout:g}s to GET {path} on {self.url}", url=self.url
            ) from exc
        except DockerError:
            self.close()
            raise
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as exc:
            self.close()
            raise EngineUnreachable(f"GET {path} on {self.url} failed: {exc!r}", url=self.url) from exc

    async def _exchange(self, target: bytes, max_body: int) -> tuple[int, bytes]:
        for attempt in (0, 1):
            fresh = self._writer is None
            if self._writer is None or self._reader is None:
                self._reader, self._writer = await self._open()
            reader, writer = self._reader, self._writer
            try:
                writer.write(_REQUEST % target)
                head = await reader.readuntil(b"\r\n\r\n")
                break
            except (ConnectionError, asyncio.IncompleteReadError):
                self.close()
                if fresh or attempt:  # a kept connection may have been closed by the peer meanwhile
                    raise
        status_line, _, rest = head.partition(b"\r\n")
        parts = status_line.split(b" ", 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
            raise EngineProtocolError(
                f"not an HTTP answer to GET {target.decode()} from {self.url}", url=self.url
            )
        status = int(parts[1])
        length: int | None = None
        chunked = close = False
        for line in rest.split(b"\r\n"):
            name, _, value = line.partition(b":")
            key = name.strip().lower()
            if key == b"content-length":
                length = int(value.strip())
            elif key == b"transfer-encoding" and b"chunked" in value.lower():
                chunked = True
            elif key == b"connection" and b"close" in value.lower():
                close = True
        too_long = f"the answer to GET {target.decode()} from {self.url} is longer than {max_body} bytes"
        body = b""
        if chunked:
            pieces: list[bytes] = []
            total = 0
            while True:
                size = int((await reader.readuntil(b"\r\n"))[:-2].split(b";")[0], 16)
                total += size
                if total > max_body:
                    raise EngineProtocolError(too_long, url=self.url)
                pieces.append((await reader.readexactly(size + 2))[:-2])
                if size == 0:
                    break
            body = b"".join(pieces)
        elif length is not None:
            if length > max_body:
                raise EngineProtocolError(too_long, url=self.url)
            body = await reader.readexactly(length)
        else:
            close = True  # no framing: the body ends with the connection
            while chunk := await reader.read(65536):
                body += chunk
                if len(body) > max_body:
                    raise EngineProtocolError(too_long, url=self.url)
        if close:
            self.close()
        return status, body


def _id_query(ids: list[str]) -> str:
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
        path = f"/v{version}/containers/json?{_id_query(ids)}"
        try:
            status, body = await pinger.get(path, timeout=timeout, max_body=client.limits.containers)
            if status == 200:
                return client.decode(body, list[ContainerSummary], "GET", "/containers/json")
        except EngineTimeout:
            raise
        except DockerError:
            pass
    return await client.containers.list(all=True, filters={"id": ids}, timeout=timeout)


async def list_all_body(pinger: RawPinger | None, client: DockerClient, *, timeout: float) -> bytes:
    """``GET /containers/json?all=1`` undecoded (a safety-net poll while the event stream is healthy)
    on the pinger's connection, as :func:`list_by_id`; through the client when that fails for any
    reason but a timeout, or before the client knows the API version."""
    version = client.api_version
    if pinger is not None and version is not None:
        try:
            status, body = await pinger.get(
                f"/v{version}/containers/json?all=1", timeout=timeout, max_body=client.limits.containers
            )
            if status == 200 and body:
                return body
        except EngineTimeout:
            raise
        except DockerError:
            pass
    return await client.containers.list_body(all=True, timeout=timeout)


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
    if scheme == "https":
        with contextlib.suppress(Exception):
            found = client._connections.ssl_for(endpoint)  # the same (preloaded) context the client uses
            context = found if isinstance(found, ssl.SSLContext) else ssl.create_default_context()
        if context is None:
            return None
    return RawPinger(client.url, host=host, port=int(port), ssl_context=context, server_hostname=host)
