"""``client.system``: ping, version, info, events."""

from __future__ import annotations

from collections.abc import Mapping

import msgspec

from fleetd.dockerapi.events import MAX_EVENT_LINE, EventStream, event_params
from fleetd.dockerapi.models import PingResult, SystemInfo, VersionInfo
from fleetd.dockerapi.transport import EngineTransport

__all__ = ["SystemAPI"]


class SystemAPI:
    def __init__(self, client: EngineTransport) -> None:
        self._client = client

    async def ping(self, *, timeout: float | None = None) -> PingResult:
        """``GET /_ping`` (unversioned): the daemon's newest API version is in a header."""
        async with self._client.stream("GET", "/_ping", timeout=timeout, versioned=False) as resp:
            await resp.read()
            h = resp.headers
        return PingResult(
            api_version=h.get("Api-Version"),
            os_type=h.get("Ostype"),
            server=h.get("Server"),
            experimental=h.get("Docker-Experimental", "").lower() == "true",
        )

    async def version(self, *, versioned: bool = True, timeout: float | None = None) -> VersionInfo:
        return await self._client.query("GET", "/version", VersionInfo, versioned=versioned, timeout=timeout)

    async def info(self, *, timeout: float | None = None) -> SystemInfo:
        info, _ = await self.info_raw(timeout=timeout)
        return info

    async def info_raw(self, *, timeout: float | None = None) -> tuple[SystemInfo, msgspec.Raw]:
        """``GET /info`` as typed facts plus the daemon's whole answer, kept verbatim."""
        body = await self._client.json_body("GET", "/info", timeout=timeout)
        info = self._client.decode(body, SystemInfo, "GET", "/info")
        return info, msgspec.Raw(body)

    def events(
        self,
        *,
        since: int | str | None = None,
        until: int | str | None = None,
        filters: Mapping[str, list[str]] | None = None,
        open_timeout: float | None = None,
        max_line: int = MAX_EVENT_LINE,
    ) -> EventStream:
        """``GET /events`` as ``async with ... as stream: async for event in stream``.

        Integer ``since``/``until`` are nanoseconds on the daemon's clock (dockerd's ``since``
        is inclusive, podman's exclusive); strings are sent as they are."""
        return EventStream(
            self._client,
            event_params(since, until, filters),
            open_timeout=open_timeout if open_timeout is not None else self._client.timeouts.total,
            max_line=max_line,
            bounded=until is not None,
        )
