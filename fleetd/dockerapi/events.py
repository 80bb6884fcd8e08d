"""``client.system.events()``: the daemon's ``GET /events`` stream as typed records.

    async with client.system.events(since=cursor, filters={"type": ["container"]}) as stream:
        async for event in stream:      # EngineEvent, in the daemon's order
            ...

The stream is live once the answer's headers arrived (``stream.opened``). It is split on
newlines, never on chunks, each line capped at ``max_line`` bytes (labels can be large; an
endless line must not cost unbounded memory). An error object written into the stream after
the 200 (podman does that) raises :class:`EngineHTTPError`; a line that is not an event raises
:class:`EngineProtocolError`; the end of the stream (daemon gone) raises
:class:`EngineUnreachable`, unless ``until`` was given and has passed. The request has no total
timeout (an idle stream is silent for hours); only the answer's headers are awaited at most
``open_timeout`` seconds. TCP keep-alive is turned on so that a vanished peer is noticed.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections import deque
from collections.abc import AsyncIterator, Mapping
from types import TracebackType
from typing import Final

import aiohttp
import msgspec

from fleetd.dockerapi.errors import EngineHTTPError, EngineProtocolError, EngineTimeout, EngineUnreachable
from fleetd.dockerapi.transport import EngineTransport

__all__ = [
    "MAX_EVENT_LINE",
    "EngineEvent",
    "EventActor",
    "EventStream",
    "decode_line",
    "event_params",
    "format_timestamp",
    "keepalive",
    "split_lines",
]

#: Longest accepted line of the stream (one event); dockerd's labels may be large, not endless.
MAX_EVENT_LINE: Final = 1024 * 1024
_RS: Final = b"\x1e"  # json-seq record separator (API 1.52+ with Accept: application/json-seq)


class EventActor(msgspec.Struct, frozen=True, gc=False):
    ID: str = ""
    Attributes: dict[str, str] = msgspec.field(default_factory=dict)


class EngineEvent(msgspec.Struct, frozen=True, gc=False):
    """One line of ``/events``. Legacy ``status``/``id``/``from`` fields are not read."""

    Type: str = ""
    Action: str = ""
    Actor: EventActor = msgspec.field(default_factory=EventActor)
    scope: str = ""
    time: int = 0
    timeNano: int = 0
    HealthStatus: str = ""  # podman: a top-level copy of the (previous) health status

    @property
    def action(self) -> str:
        """``exec_start: sh -c true`` → ``exec_start``; ``health_status: healthy`` → ``health_status``."""
        return self.Action.split(":", 1)[0].strip()

    @property
    def detail(self) -> str:
        """What follows ``:`` in the action (``healthy`` for ``health_status: healthy``), or ``""``."""
        return self.Action.partition(":")[2].strip()

    @property
    def time_nano(self) -> int:
        """The daemon's own clock, in nanoseconds (older daemons send only seconds)."""
        return self.timeNano or self.time * 1_000_000_000

    def key(self) -> tuple[int, str, str, str]:
        """What identifies an event across a reconnect (the replay may repeat it)."""
        return (self.time_nano, self.Type, self.Action, self.Actor.ID)


class _ErrorLine(msgspec.Struct, frozen=True):
    """podman writes errors found after the 200 into the stream, then closes it."""

    message: str = ""
    cause: str = ""
    response: int = 0


class _Probe(msgspec.Struct, frozen=True):
    Type: str = ""
    message: str | None = None


_decode_event = msgspec.json.Decoder(EngineEvent).decode
_decode_probe = msgspec.json.Decoder(_Probe).decode
_decode_error = msgspec.json.Decoder(_ErrorLine).decode


def format_timestamp(nanos: int) -> str:
    """``since``/``until`` as ``<sec>.<nanoseconds>``, which dockerd reads exactly and podman as a float."""
    nanos = max(nanos, 0)
    return f"{nanos // 1_000_000_000}.{nanos % 1_000_000_000:09d}"


def split_lines(buffer: bytearray, chunk: bytes, max_line: int) -> list[bytes]:
    """Append ``chunk`` to ``buffer`` and take every complete line out of it (without ``\\n``).

    A pending line longer than ``max_line`` raises EngineProtocolError."""
    buffer += chunk
    if b"\n" not in chunk:
        if len(buffer) > max_line:
            raise EngineProtocolError(f"an event line longer than {max_line} bytes")
        return []
    *complete, rest = bytes(buffer).split(b"\n")
    buffer[:] = rest
    if len(rest) > max_line or any(len(line) > max_line for line in complete):
        raise EngineProtocolError(f"an event line longer than {max_line} bytes")
    return complete


def _keepalive(resp: aiohttp.ClientResponse) -> None:
    conn = resp.connection
    if conn is not None and conn.transport is not None:
        keepalive(conn.transport)


def keepalive(transport: asyncio.BaseTransport) -> None:
    """Probe an idle TCP stream after 30 s, every 10 s, 3 times: a vanished peer ends it."""
    sock = transport.get_extra_info("socket")
    if sock is None or sock.family not in (socket.AF_INET, socket.AF_INET6):
        return
    with contextlib.suppress(OSError, AttributeError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, 30)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, 10)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, 3)


class EventStream:
    """One open ``/events`` request; an async context manager and an async iterator of events."""

    def __init__(
        self,
        client: EngineTransport,
        params: dict[str, str | int],
        *,
        open_timeout: float,
        max_line: int,
        bounded: bool,
    ) -> None:
        self._client = client
        self._params = params
        self._open_timeout = open_timeout
        self._max_line = max_line
        self._bounded = bounded  # ``until`` given: a clean end of the stream is expected
        self._stack = contextlib.AsyncExitStack()
        self._resp: aiohttp.ClientResponse | None = None
        self._buffer = bytearray()
        self._pending: deque[bytes] = deque()
        self.lines = 0  # lines read, events or not (for tests and metrics)

    @property
    def opened(self) -> bool:
        return self._resp is not None

    async def __aenter__(self) -> EventStream:
        cm = self._client.stream(
            "GET", "/events", params=self._params, timeout=0, headers={"Accept": "application/json"}
        )
        try:
            async with asyncio.timeout(self._open_timeout):
                self._resp = await self._stack.enter_async_context(cm)
        except TimeoutError as exc:
            await self._stack.aclose()
            raise EngineTimeout(
                f"no answer within {self._open_timeout:g}s to GET /events on {self._client.url}",
                url=self._client.url,
            ) from exc
        except BaseException:
            await self._stack.aclose()
            raise
        _keepalive(self._resp)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connection (never handed back to the pool half-read); safe to call twice."""
        resp, self._resp = self._resp, None
        if resp is not None:
            resp.close()
        await self._stack.aclose()

    def __aiter__(self) -> AsyncIterator[EngineEvent]:
        return self

    async def __anext__(self) -> EngineEvent:
        while True:
            if self._pending:
                event = self._decode(self._pending.popleft())
                if event is not None:
                    return event
                continue
            await self._fill()

    async def _fill(self) -> None:
        resp = self._resp
        if resp is None:
            raise StopAsyncIteration
        url = self._client.url
        try:
            chunk = await resp.content.readany()
        except (aiohttp.ClientError, OSError) as exc:
            raise EngineUnreachable(f"the event stream of {url} broke: {exc}", url=url) from exc
        if not chunk:
            if self._bounded:
                raise StopAsyncIteration
            raise EngineUnreachable(f"{url} ended its event stream", url=url)
        self._pending.extend(split_lines(self._buffer, chunk, self._max_line))

    def _decode(self, line: bytes) -> EngineEvent | None:
        event = decode_line(line, self._client.url)
        if event is not None:
            self.lines += 1
        return event


def decode_line(line: bytes, url: str) -> EngineEvent | None:
    """One line of the stream as an event (None: an empty line). An error object in the stream
    raises EngineHTTPError; a line that is not an event, EngineProtocolError."""
    line = line.strip().lstrip(_RS)
    if not line:
        return None
    try:  # the usual line: one decode
        event = _decode_event(line)
    except (msgspec.DecodeError, msgspec.ValidationError):
        event = None
    if event is not None and event.Type:
        return event
    try:
        probe = _decode_probe(line)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise EngineProtocolError(f"invalid event line from {url}: {exc}", url=url) from exc
    if not probe.Type and probe.message is not None:
        err = _decode_error(line)
        status = err.response if 400 <= err.response < 600 else 500
        raise EngineHTTPError(status, f"{err.message} (in the event stream of {url})", url=url)
    try:
        return _decode_event(line)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise EngineProtocolError(f"unexpected event shape from {url}: {exc}", url=url) from exc


def event_params(
    since: int | str | None, until: int | str | None, filters: Mapping[str, list[str]] | None
) -> dict[str, str | int]:
    """The query of ``GET /events``; integer times are nanoseconds on the daemon's clock."""
    params: dict[str, str | int] = {}
    if since is not None:
        params["since"] = format_timestamp(since) if isinstance(since, int) else since
    if until is not None:
        params["until"] = format_timestamp(until) if isinstance(until, int) else until
    if filters:
        params["filters"] = msgspec.json.encode({k: list(v) for k, v in filters.items()}).decode()
    return params
