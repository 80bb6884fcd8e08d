"""``client.system``: ping, version, info."""

from __future__ import annotations

from typing import TYPE_CHECKING

import msgspec

from fleetd.dockerapi.models import PingResult, SystemInfo, VersionInfo

if TYPE_CHECKING:
    from fleetd.dockerapi.client import DockerClient

__all__ = ["SystemAPI"]


class SystemAPI:
    def __init__(self, client: DockerClient) -> None:
        self._client = client

    async def ping(self, *, timeout: float | None = None) -> PingResult:
        """``GET /_ping`` (unversioned): the daemon's newest API version is in a header."""
        async with self._client._stream("GET", "/_ping", timeout=timeout, versioned=False) as resp:
            await resp.read()
            h = resp.headers
        return PingResult(
            api_version=h.get("Api-Version"),
            os_type=h.get("Ostype"),
            server=h.get("Server"),
            experimental=h.get("Docker-Experimental", "").lower() == "true",
        )

    async def version(self, *, versioned: bool = True, timeout: float | None = None) -> VersionInfo:
        return await self._client._query("GET", "/version", VersionInfo, versioned=versioned, timeout=timeout)

    async def info(self, *, timeout: float | None = None) -> SystemInfo:
        info, _ = await self.info_raw(timeout=timeout)
        return info

    async def info_raw(self, *, timeout: float | None = None) -> tuple[SystemInfo, msgspec.Raw]:
        """``GET /info`` as typed facts plus the daemon's whole answer, kept verbatim."""
        _, body = await self._client._request("GET", "/info", timeout=timeout)
        info = self._client.decode(body, SystemInfo, "GET", "/info")
        return info, msgspec.Raw(body)
