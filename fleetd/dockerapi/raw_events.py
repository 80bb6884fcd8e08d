"""The daemon's ``GET /events`` on a connection of its own, decoded as bytes arrive and handed on by callback.

The same stream as :class:`~fleetd.dockerapi.events.EventStream` (split on newlines, each line capped at
``max_line``, an error object after the 200 raises EngineHTTPError, the end of the stream
EngineUnreachable), without the HTTP client and without a task: the bytes go from the connection's
``data_received`` through the de-chunking and the line split to the decoder and the watcher's
``on_event``, in one callback. Through the client, every event was a wake-up of a reader task, a
read of the client's stream buffer and a chunk parser's bookkeeping, about 190 µs of CPU each at
1,000 fake Engines; here, one decode.

    async with RawEventStream(pinger, client, params, open_timeout=5.0) as stream:
        ended = stream.begin(on_event)   # a future: its exception says why the stream ended
        await ended

The connection is made like the raw pinger's (TCP, TLS with the client's context, or unix:
:meth:`~fleetd.dockerapi.pinger.RawPinger.connect`); ``ssh://`` hosts have no pinger and use the
client's stream. The stream is never reused: closing it aborts the connection.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from types import TracebackType
from typing import Final, cast
from urllib.parse import urlencode

from fleetd.dockerapi.client import DockerClient
from fleetd.dockerapi.errors import DockerError, EngineProtocolError, EngineTimeout, EngineUnreachable
from fleetd.dockerapi.events import MAX_EVENT_LINE, EngineEvent, decode_line, keepalive, split_lines
from fleetd.dockerapi.exchange import MAX_HEAD
from fleetd.dockerapi.pinger import RawPinger

__all__ = ["RawEventStream"]

_REQUEST: Final = b"GET %s HTTP/1.1\r\nHost: docker\r\nUser-Agent: fleetd\r\nAccept: application/json\r\n\r\n"
_MAX_ERROR_BODY: Final = 64 * 1024  # what is kept of a refusal's body (its message)
_MAX_CHUNK_LINE: Final = 1024

OnEvent = Callable[[EngineEvent], None]


class RawEventStream(asyncio.Protocol):
    def __init__(
        self,
        pinger: RawPinger,
        client: DockerClient,
        params: dict[str, str | int],
        *,
        open_timeout: float,
        max_line: int = MAX_EVENT_LINE,
    ) -> None:
        version = client.api_version
        query = urlencode(params)
        self._target = (f"/v{version}/events" if version else "/events") + (f"?{query}" if query else "")
        self._pinger = pinger
        self._client = client
        self.url = client.url
        self._open_timeout = open_timeout
        self._max_line = max_line
        self.transport: asyncio.Transport | None = None
        self._buf = bytearray()  # the head, then body bytes not yet de-chunked
        self._line = bytearray()  # the start of a line not complete yet
        self._head = False
        self._status = 0
        self._chunked = False
        self._length: int | None = None  # a Content-Length (refusals): body bytes still to come
        self._chunk_left = 0  # bytes of the current chunk still to come
        self._chunk_crlf = False  # the CRLF after a chunk's data is due
        self._error_body = bytearray()
        self._queue: list[EngineEvent] = []  # decoded before begin()
        self._on_event: OnEvent | None = None
        self.lines = 0  # events read (tests and metrics)
        loop = asyncio.get_running_loop()
        self._opened: asyncio.Future[None] = loop.create_future()
        self.ended: asyncio.Future[None] = loop.create_future()

    @property
    def opened(self) -> bool:
        return self._opened.done() and not self._opened.cancelled() and self._opened.exception() is None

    # -- opening and closing -------------------------------------------------------------

    async def __aenter__(self) -> RawEventStream:
        what = f"GET /events on {self.url}"
        try:
            async with asyncio.timeout(self._open_timeout):
                await self._pinger.connect(lambda: self)
                await self._opened
        except TimeoutError as exc:
            self.close()
            raise EngineTimeout(f"no answer within {self._open_timeout:g}s to {what}", url=self.url) from exc
        except OSError as exc:
            self.close()
            raise EngineUnreachable(f"{what} failed: {exc!r}", url=self.url) from exc
        except BaseException:
            self.close()
            raise
        assert self.transport is not None
        keepalive(self.transport)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        """Abort the connection (never reused); whoever waits on ``ended`` is cancelled."""
        for fut in (self._opened, self.ended):
            if not fut.done():
                fut.cancel()
        if self.transport is not None:
            self.transport.abort()

    def begin(self, on_event: OnEvent) -> asyncio.Future[None]:
        """Hand every event, those read already first, to ``on_event`` (which must not block);
        returns ``ended``, whose exception says why the stream ended (``on_event``'s own included)."""
        queued, self._queue = self._queue, []
        try:
            for event in queued:
                on_event(event)
        except Exception as exc:
            self._end(exc)
            return self.ended
        self._on_event = on_event
        return self.ended

    def _end(self, exc: BaseException) -> None:
        if not self._opened.done():
            # The stream never opened: opening raises ``exc``, and nobody waits on ``ended`` (an
            # exception left in it would be logged as "never retrieved" when it is collected).
            self._opened.set_exception(exc)
            if not self.ended.done():
                self.ended.cancel()
        elif not self.ended.done():
            self.ended.set_exception(exc)
        if self.transport is not None:
            self.transport.abort()

    # -- asyncio.Protocol -----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses: typed, not checked
        self.transport = cast(asyncio.Transport, transport)
        self.transport.write(_REQUEST % self._target.encode())

    def data_received(self, data: bytes) -> None:
        if self.ended.done():
            return
        try:
            self._receive(data)
        except ValueError as exc:  # a chunk size that is not one
            self._end(EngineProtocolError(f"the event stream of {self.url} is not valid HTTP: {exc}", url=self.url))
        except Exception as exc:  # a DockerError of the stream, or on_event's own
            self._end(exc)

    def eof_received(self) -> bool:
        return False  # close the transport: connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        if self.ended.done():
            return
        if self._head and self._status != 200:
            self._refused()
            return
        if exc is not None:
            self._end(EngineUnreachable(f"the event stream of {self.url} broke: {exc!r}", url=self.url))
        elif not self._head:
            self._end(EngineUnreachable(f"GET /events on {self.url} failed: the daemon closed the connection", url=self.url))
        else:
            self._end(EngineUnreachable(f"{self.url} ended its event stream", url=self.url))

    # -- the answer -------------------------------------------------------------------------

    def _receive(self, data: bytes) -> None:
        buf = self._buf
        buf += data
        if not self._head:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                if len(buf) > MAX_HEAD:
                    raise EngineProtocolError(f"the answer to GET /events from {self.url} has an endless head", url=self.url)
                return
            head = bytes(buf[:end])
            del buf[: end + 4]
            self._read_head(head)
        if self._chunked:
            self._dechunk()
        elif buf:
            body = bytes(buf)
            buf.clear()
            if self._length is not None:
                body = body[: self._length]
                self._length -= len(body)
            self._payload(body)
            if self._length == 0:
                self._ended_cleanly()

    def _read_head(self, head: bytes) -> None:
        status_line, _, rest = head.partition(b"\r\n")
        parts = status_line.split(b" ", 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
            raise EngineProtocolError(f"not an HTTP answer to GET /events from {self.url}", url=self.url)
        self._status = int(parts[1])
        for line in rest.split(b"\r\n"):
            name, _, value = line.partition(b":")
            key = name.strip().lower()
            if key == b"transfer-encoding" and b"chunked" in value.lower():
                self._chunked = True
            elif key == b"content-length":
                self._length = int(value.strip())
        self._head = True
        if self._status == 200:
            self._opened.set_result(None)

    def _dechunk(self) -> None:
        buf = self._buf
        while buf:
            if self._chunk_left:
                take = min(self._chunk_left, len(buf))
                self._chunk_left -= take
                if take == len(buf):
                    data = bytes(buf)
                    buf.clear()
                else:
                    data = bytes(buf[:take])
                    del buf[:take]
                self._chunk_crlf = not self._chunk_left
                self._payload(data)
                continue
            if self._chunk_crlf:
                if len(buf) < 2:
                    return
                if buf[:2] != b"\r\n":
                    raise ValueError("no CRLF after a chunk")
                del buf[:2]
                self._chunk_crlf = False
                continue
            end = buf.find(b"\r\n")
            if end < 0:
                if len(buf) > _MAX_CHUNK_LINE:
                    raise ValueError("an endless chunk-size line")
                return
            size = int(bytes(buf[:end]).split(b";")[0], 16)
            del buf[: end + 2]
            if size == 0:
                self._ended_cleanly()
                return
            self._chunk_left = size

    def _payload(self, data: bytes) -> None:
        if self._status != 200:
            room = _MAX_ERROR_BODY - len(self._error_body)
            self._error_body += data[: max(room, 0)]
            return
        for line in split_lines(self._line, data, self._max_line):
            event = decode_line(line, self.url)
            if event is None:
                continue
            self.lines += 1
            on_event = self._on_event
            if on_event is None:
                self._queue.append(event)
            else:
                on_event(event)

    def _ended_cleanly(self) -> None:
        if self._status != 200:
            self._refused()
        else:
            self._end(EngineUnreachable(f"{self.url} ended its event stream", url=self.url))

    def _refused(self) -> None:
        try:
            self._client.raise_for_status(self._status, bytes(self._error_body), "GET", "/events")
        except DockerError as exc:
            self._end(exc)
            return
        self._end(EngineProtocolError(f"GET /events on {self.url} answered {self._status}", url=self.url))
