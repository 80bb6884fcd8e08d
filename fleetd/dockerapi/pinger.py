"""A liveness ``GET /_ping`` on a connection of its own, for one daemon, at a fraction of a request's cost.

With Engine events on, every host is pinged every ``poll.liveness`` seconds (a frozen daemon still
has its kernel acknowledge TCP keep-alives, so only an answer from the daemon proves it runs). At
1,000 hosts that is as many requests as polling every 15 s; through the full HTTP client each costs
about as much CPU as a poll. This pinger keeps one keep-alive connection per daemon and writes the
request bytes itself: one write, one read, a status line and a ``Content-Length``.

TCP (plain or TLS, with the client's own TLS context) and unix sockets. Anything else (ssh://)
has no raw pinger: :func:`raw_pinger` returns None and the caller uses ``client.system.ping()``.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from typing import Final

from fleetd.dockerapi.client import DockerClient
from fleetd.dockerapi.errors import DockerError, EngineProtocolError, EngineTimeout, EngineUnreachable

__all__ = ["RawPinger", "raw_pinger"]

_REQUEST: Final = b"GET /_ping HTTP/1.1\r\nHost: docker\r\nUser-Agent: fleetd-liveness\r\nAccept: */*\r\n\r\n"
_MAX_HEAD: Final = 16 * 1024
_MAX_BODY: Final = 1024


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
        try:
            async with asyncio.timeout(timeout):
                await self._exchange()
        except TimeoutError as exc:
            self.close()
            raise EngineTimeout(f"no answer within {timeout:g}s to GET /_ping on {self.url}", url=self.url) from exc
        except DockerError:
            self.close()
            raise
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as exc:
            self.close()
            raise EngineUnreachable(f"GET /_ping on {self.url} failed: {exc!r}", url=self.url) from exc

    async def _exchange(self) -> None:
        for attempt in (0, 1):
            fresh = self._writer is None
            if self._writer is None or self._reader is None:
                self._reader, self._writer = await self._open()
            reader, writer = self._reader, self._writer
            try:
                writer.write(_REQUEST)
                head = await reader.readuntil(b"\r\n\r\n")
                break
            except (ConnectionError, asyncio.IncompleteReadError):
                self.close()
                if fresh or attempt:  # a kept connection may have been closed by the peer meanwhile
                    raise
        status_line, _, rest = head.partition(b"\r\n")
        parts = status_line.split(b" ", 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
            raise EngineProtocolError(f"not an HTTP answer to GET /_ping from {self.url}", url=self.url)
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
        if chunked:
            body = b""
            while True:
                size = int((await reader.readuntil(b"\r\n"))[:-2].split(b";")[0], 16)
                if size > _MAX_BODY:
                    raise EngineProtocolError(f"/_ping answer too long from {self.url}", url=self.url)
                body += (await reader.readexactly(size + 2))[:-2]
                if size == 0:
                    break
        elif length is not None:
            if length > _MAX_BODY:
                raise EngineProtocolError(f"/_ping answer too long from {self.url}", url=self.url)
            await reader.readexactly(length)
        else:
            close = True  # no framing: the body ends with the connection
        if close:
            self.close()
        if status != 200:
            raise EngineProtocolError(f"GET /_ping on {self.url} answered {status}", url=self.url)


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
