"""One kept HTTP/1.1 connection to a daemon, one ``GET`` at a time, its answer parsed as bytes arrive.

The raw pinger's transport (fleetd/dockerapi/pinger.py): no task per request and no HTTP client, a
status line, a ``Content-Length`` or chunks, and a cap on the body. What the connection learns goes to
its owner (:class:`ExchangeOwner`) by callbacks.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Final, Protocol, cast

from fleetd.dockerapi.errors import DockerError, EngineProtocolError, EngineUnreachable

__all__ = ["MAX_HEAD", "REQUEST", "Done", "Exchange", "ExchangeOwner", "KeptConnection", "Result"]

REQUEST: Final = b"GET %s HTTP/1.1\r\nHost: docker\r\nUser-Agent: fleetd-liveness\r\nAccept: */*\r\n\r\n"
MAX_HEAD: Final = 16 * 1024

#: What an exchange ends with: the status and the body, or why there is none.
Result = tuple[int, bytes] | DockerError
Done = Callable[[Result], None]


class Exchange:
    __slots__ = ("done", "max_body", "retried", "target")

    def __init__(self, target: bytes, max_body: int, done: Done) -> None:
        self.target = target
        self.max_body = max_body
        self.done = done
        self.retried = False


class ExchangeOwner(Protocol):
    """What a :class:`KeptConnection` reports to: the exchange ended, or the connection was lost."""

    url: str

    def finished(self, ex: Exchange, result: Result) -> None: ...

    def lost(self, ex: Exchange, retry: bool, error: DockerError) -> None: ...


class KeptConnection(asyncio.Protocol):
    """One kept HTTP/1.1 connection, one exchange at a time; answers are parsed as bytes arrive
    (callbacks, no task per request)."""

    def __init__(self, owner: ExchangeOwner) -> None:
        self.owner = owner
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.served = 0  # exchanges answered on it (a reused connection may have been closed meanwhile)
        self._ex: Exchange | None = None
        self._buf = bytearray()
        self._head = False
        self._status = 0
        self._length: int | None = None
        self._chunked = False
        self._close = False
        self._parts: list[bytes] = []
        self._total = 0

    # -- asyncio.Protocol -----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses: typed, not checked
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        if self._ex is None:
            return  # nothing asked: not an answer to anything (dropped)
        self._buf += data
        try:
            self._parse()
        except DockerError as exc:
            self._fail(exc)
        except ValueError as exc:
            self._fail(EngineProtocolError(f"{self._what()} from {self.owner.url}: {exc}", url=self.owner.url))

    def eof_received(self) -> bool:
        return False  # close the transport: connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        ex, self._ex = self._ex, None
        if ex is None:
            return
        if self._head and self._length is None and not self._chunked:  # the body ends with the connection
            body = bytes(self._buf)
            self._buf.clear()
            self.served += 1
            self.owner.finished(ex, (self._status, body))
            return
        why = repr(exc) if exc is not None else "the daemon closed the connection"
        retry = not self._head and not self._buf and self.served > 0 and not ex.retried
        self.owner.lost(ex, retry, EngineUnreachable(f"{self._what(ex)} on {self.owner.url} failed: {why}", url=self.owner.url))

    # -- exchanges ------------------------------------------------------------------------

    def start(self, ex: Exchange) -> None:
        assert self.transport is not None
        self._ex = ex
        self._buf.clear()
        self._head = self._chunked = self._close = False
        self._length = None
        self._parts = []
        self._total = 0
        self.transport.write(REQUEST % ex.target)

    def abort(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.abort()

    def _what(self, ex: Exchange | None = None) -> str:
        ex = ex or self._ex
        return f"GET {ex.target.decode()}" if ex is not None else "GET"

    def _fail(self, exc: DockerError) -> None:
        ex, self._ex = self._ex, None
        self.abort()  # connection_lost then finds no exchange
        if ex is not None:
            self.owner.finished(ex, exc)

    def _too_long(self) -> EngineProtocolError:
        assert self._ex is not None
        return EngineProtocolError(
            f"the answer to {self._what()} from {self.owner.url} is longer than {self._ex.max_body} bytes",
            url=self.owner.url,
        )

    def _parse(self) -> None:
        ex = self._ex
        assert ex is not None
        buf = self._buf
        if not self._head:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                if len(buf) > MAX_HEAD:
                    raise EngineProtocolError(f"the answer to {self._what()} has an endless head", url=self.owner.url)
                return
            head = bytes(buf[:end])
            del buf[: end + 4]
            self._read_head(head)
        if self._chunked:
            while True:
                line_end = buf.find(b"\r\n")
                if line_end < 0:
                    return
                size = int(bytes(buf[:line_end]).split(b";")[0], 16)
                if len(buf) < line_end + 2 + size + 2:
                    return
                self._total += size
                if self._total > ex.max_body:
                    raise self._too_long()
                self._parts.append(bytes(buf[line_end + 2 : line_end + 2 + size]))
                del buf[: line_end + 2 + size + 2]
                if size == 0:
                    self._finish(b"".join(self._parts))
                    return
        elif self._length is not None:
            if len(buf) >= self._length:
                body = bytes(buf[: self._length])
                del buf[:]
                self._finish(body)
        elif len(buf) > ex.max_body:
            raise self._too_long()

    def _read_head(self, head: bytes) -> None:
        status_line, _, rest = head.partition(b"\r\n")
        parts = status_line.split(b" ", 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
            raise EngineProtocolError(f"not an HTTP answer to {self._what()} from {self.owner.url}", url=self.owner.url)
        self._status = int(parts[1])
        for line in rest.split(b"\r\n"):
            name, _, value = line.partition(b":")
            key = name.strip().lower()
            if key == b"content-length":
                self._length = int(value.strip())
            elif key == b"transfer-encoding" and b"chunked" in value.lower():
                self._chunked = True
            elif key == b"connection" and b"close" in value.lower():
                self._close = True
        assert self._ex is not None
        if self._length is not None and self._length > self._ex.max_body:
            raise self._too_long()
        self._head = True

    def _finish(self, body: bytes) -> None:
        ex, self._ex = self._ex, None
        assert ex is not None
        self.served += 1
        if self._close:
            self.abort()
        self.owner.finished(ex, (self._status, body))
