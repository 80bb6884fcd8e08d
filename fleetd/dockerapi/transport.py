"""What the sub-APIs (``client.system``, ``.containers``, ``.images``, events) need from a client.

:class:`EngineTransport` is the one seam between :class:`~fleetd.dockerapi.client.DockerClient` and the
resource modules: they are written against this protocol and import nothing from ``client.py``,
so the client can build them without an import cycle, and a test can hand them any transport.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import aiohttp

__all__ = ["EngineTransport", "Params", "Timeouts"]

T = TypeVar("T")
Params = Mapping[str, str | int]


@dataclass(frozen=True, slots=True)
class Timeouts:
    total: float = 5.0
    connect: float | None = None  # None: same as total


class EngineTransport(Protocol):
    """Requests to one daemon: versioned paths, timeouts, caps and the error tree applied."""

    timeouts: Timeouts

    @property
    def url(self) -> str: ...

    @property
    def api_version(self) -> str | None: ...

    def stream(
        self,
        method: str,
        path: str,
        *,
        params: Params | None = None,
        data: Any = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
        read_timeout: float | None = None,
        versioned: bool = True,
    ) -> AbstractAsyncContextManager[aiohttp.ClientResponse]:
        """The response, open; a 4xx/5xx has already raised. The body is read inside the block."""
        ...

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Params | None = None,
        json: Any = None,
        data: Any = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
        versioned: bool = True,
    ) -> tuple[int, bytes]:
        """(status, body) of a 2xx/304 answer, the body read under its cap."""
        ...

    async def json_body(
        self,
        method: str,
        path: str,
        *,
        params: Params | None = None,
        json: Any = None,
        timeout: float | None = None,
        versioned: bool = True,
    ) -> bytes:
        """The body of an answer that must be JSON (an empty or non-JSON answer is named)."""
        ...

    async def query(
        self,
        method: str,
        path: str,
        type_: type[T],
        *,
        params: Params | None = None,
        json: Any = None,
        timeout: float | None = None,
        versioned: bool = True,
    ) -> T:
        """:meth:`json_body` decoded into ``type_``."""
        ...

    def decode(self, body: bytes, type_: type[T], method: str, path: str) -> T: ...
