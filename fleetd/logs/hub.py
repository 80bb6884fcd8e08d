"""Every log stream open in this process: a cap on how many, and closing them all at shutdown."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fleetd.logs.stream import LogStream

__all__ = ["LogStreams", "TooManyStreams"]


class TooManyStreams(Exception):
    def __init__(self, limit: int) -> None:
        super().__init__(
            f"{limit} log streams are open already (container_logs.max_streams); close one or raise the limit"
        )
        self.limit = limit


class LogStreams:
    """Owned by the app: aiohttp waits for running handlers at shutdown, and a followed log never
    ends by itself, so :meth:`close_all` ends them (each client gets a final ``end`` line)."""

    def __init__(self) -> None:
        self._open: set[LogStream] = set()
        self._closing: str | None = None

    def __len__(self) -> int:
        return len(self._open)

    @contextmanager
    def register(self, stream: LogStream, limit: int) -> Iterator[LogStream]:
        if self._closing is not None:
            stream.close(self._closing)
        elif len(self._open) >= limit:
            raise TooManyStreams(limit)
        self._open.add(stream)
        try:
            yield stream
        finally:
            self._open.discard(stream)

    def close_all(self, reason: str) -> None:
        self._closing = reason
        for stream in list(self._open):
            stream.close(reason)
